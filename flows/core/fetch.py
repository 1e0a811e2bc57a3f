"""Fetch the bytes of a source: a local file or an http(s) URL.

This is the only module of the inputs that does I/O; `flows.newsletter.posts` and `.events`
parse bytes.

- Every request has a timeout (`settings.http_timeout`) and our User-Agent, and every
  source a total deadline (`settings.http_deadline`: connect, every read and the retries),
  so a server sending one byte at a time cannot hold the run.
- Connect errors, timeouts, HTTP 5xx and 429 are retried `settings.http_retries` times with
  exponential backoff (`settings.http_backoff`, doubling; a server's Retry-After is honoured
  up to 30 s). Other HTTP errors (404, 403...) fail at once: retrying will not fix them.
- Conditional GET: with a `cache_dir`, the body and the ETag/Last-Modified of each URL are
  stored there; the next fetch sends If-None-Match/If-Modified-Since and a 304 answer returns
  the stored body.
- Every failure raises `SourceError` naming the URL or path, what happened and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from flows.core.clock import system_clock
from flows.core.errors import SourceError
from flows.core.fsio import atomic_write
from flows.core.settings import Settings

MAX_RETRY_AFTER = 30.0  # seconds; a server asking for longer is treated as down
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def is_remote(source: str) -> bool:
    """True for an http(s) URL, False for a local path (or file:// URL)."""
    return source.lower().startswith(("http://", "https://"))


def local_path(source: str) -> Path:
    """The path of a local source, accepting plain paths and file:// URLs."""
    if source.lower().startswith("file://"):
        return Path(unquote(urlparse(source).path))
    return Path(source).expanduser()


def fetch_source(
    source: str,
    settings: Settings,
    client: httpx.Client | None = None,
    cache_dir: Path | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """Return the bytes of `source` (a local path or an http(s) URL); raise SourceError."""
    if not is_remote(source):
        return _read_local(source)
    if client is not None:
        return _fetch_url(source, settings, client, cache_dir, sleep)
    with httpx.Client(follow_redirects=True) as own_client:
        return _fetch_url(source, settings, own_client, cache_dir, sleep)


def _read_local(source: str) -> bytes:
    path = local_path(source)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SourceError(
            f"Source {source}: file not found. Check the path (relative paths are read from "
            f"the current folder, {Path.cwd()})."
        ) from None
    except IsADirectoryError:
        raise SourceError(f"Source {source}: is a folder, not a file. Name the file.") from None
    except OSError as exc:
        raise SourceError(
            f"Source {source}: cannot be read ({exc.strerror or exc}). Check its permissions."
        ) from None


def _fetch_url(
    url: str,
    settings: Settings,
    client: httpx.Client,
    cache_dir: Path | None,
    sleep: Callable[[float], None],
) -> bytes:
    cache = _Cache(cache_dir, url) if cache_dir is not None else None
    headers = {"User-Agent": settings.user_agent}
    cached = cache.load() if cache else None
    if cached is not None:
        headers.update(cached.validators())

    attempts = settings.http_retries + 1
    deadline = time.monotonic() + settings.http_deadline
    problem = ""
    tried = 0
    failed: httpx.Response | None = None  # the last retryable answer, for its Retry-After
    for attempt in range(attempts):
        if attempt:
            pause = _delay(settings.http_backoff, attempt, failed)
            if time.monotonic() + pause >= deadline:
                problem += f"; no time left for another try within {settings.http_deadline:g} s"
                break
            sleep(pause)
        failed = None
        tried += 1
        timeout = min(settings.http_timeout, deadline - time.monotonic())
        try:
            response, body = _get(client, url, headers, timeout, deadline)
        except httpx.TimeoutException:
            problem = f"timed out after {timeout:g} s"
            continue
        except httpx.TransportError as exc:
            problem = f"could not connect ({exc.__class__.__name__}: {exc})"
            continue
        except _TooSlow:
            raise SourceError(
                f"Source {url}: still sending after {settings.http_deadline:g} s in all; the "
                f"server is too slow. Run again later, or raise KRAFTSAMLING_HTTP_DEADLINE; "
                f"the other sources were still read."
            ) from None

        if response.status_code == 304 and cached is not None:
            return cached.body
        if response.status_code in RETRY_STATUS:
            problem = f"the server answered HTTP {response.status_code} {response.reason_phrase}"
            failed = response
            continue
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError:
            raise SourceError(
                f"Source {url}: the server answered HTTP {response.status_code} "
                f"{response.reason_phrase}. Check the URL in the settings or on the command "
                f"line; retrying will not help."
            ) from None
        if cache is not None:
            cache.store(response, body)
        return body

    tries = "1 attempt" if tried == 1 else f"{tried} attempts"
    raise SourceError(
        f"Source {url}: {problem} ({tries}). Check that the site is up and the URL is right, "
        f"or run again later; the other sources were still read."
    )


class _TooSlow(Exception):
    """The source's total deadline passed while its body was still arriving."""


def _get(
    client: httpx.Client, url: str, headers: dict[str, str], timeout: float, deadline: float
) -> tuple[httpx.Response, bytes]:
    """GET `url`, reading the body in chunks so the total `deadline` is kept between them."""
    with client.stream(
        "GET", url, headers=headers, timeout=timeout, follow_redirects=True
    ) as response:
        chunks = []
        for chunk in response.iter_bytes():
            if time.monotonic() > deadline:
                raise _TooSlow
            chunks.append(chunk)
    return response, b"".join(chunks)


def _delay(backoff: float, attempt: int, response: httpx.Response | None) -> float:
    """Exponential backoff; a Retry-After header (seconds or a date) wins when it is sane."""
    delay = backoff * 2 ** (attempt - 1)
    retry_after = response.headers.get("Retry-After") if response is not None else None
    if retry_after:
        with contextlib.suppress(ValueError, TypeError, IndexError, OverflowError):
            if retry_after.strip().isdigit():
                wanted = float(retry_after)
            else:
                wanted = parsedate_to_datetime(retry_after).timestamp() - system_clock().timestamp()
            delay = max(delay, min(max(wanted, 0.0), MAX_RETRY_AFTER))
    return delay


class _Cached:
    def __init__(self, body: bytes, etag: str | None, last_modified: str | None) -> None:
        self.body = body
        self.etag = etag
        self.last_modified = last_modified

    def validators(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


class _Cache:
    """One URL's stored body and validators: `<sha256(url)>.body` and `.json` in cache_dir."""

    def __init__(self, cache_dir: Path, url: str) -> None:
        key = hashlib.sha256(url.encode()).hexdigest()[:32]
        self.dir = cache_dir
        self.url = url
        self.body_path = cache_dir / f"{key}.body"
        self.meta_path = cache_dir / f"{key}.json"

    def load(self) -> _Cached | None:
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            body = self.body_path.read_bytes()
        except (OSError, ValueError):
            return None  # no usable cache: fetch unconditionally
        if meta.get("url") != self.url:
            return None
        return _Cached(body, meta.get("etag"), meta.get("last_modified"))

    def store(self, response: httpx.Response, body: bytes) -> None:
        etag = response.headers.get("ETag")
        last_modified = response.headers.get("Last-Modified")
        if not etag and not last_modified:
            # Nothing to validate against: drop a stale entry so we never send old validators.
            for path in (self.meta_path, self.body_path):
                path.unlink(missing_ok=True)
            return
        meta = {"url": self.url, "etag": etag, "last_modified": last_modified}
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            # Body first, then the metadata that points at it, each replaced atomically.
            # 0600 as before: the cache is this user's working data, not a published file.
            atomic_write(self.body_path, body, mode=0o600)
            atomic_write(self.meta_path, json.dumps(meta, indent=1).encode(), mode=0o600)
        except OSError as exc:
            raise SourceError(
                f"Source {self.url}: fetched, but the HTTP cache folder {self.dir} cannot be "
                f"written ({exc.strerror or exc}). Fix its permissions or choose another folder."
            ) from None
