"""Where published things live: one small interface, a local folder or any S3-compatible store.

Keys are relative to the storage's prefix (e.g. `podcast/feed.xml`); the storage adds the
prefix. Every write says whether the object is public (audio, art, feed, web copies) or
private (catalog, masters, drafts), and what it is (Content-Type, Cache-Control).

This module owns the interface (`Storage`, `ObjectInfo`), the rules for keys (`check_key`) and
their public links (`public_url`), the one retry policy for storage failures
(`retry_on_storage_error`) and `LocalStorage`. `S3Storage` is in `flows.core.s3`;
`flows.core.backends.open_storage(settings)` picks one from the `storage` setting.

ETags are opaque strings **without surrounding quotes** in every `ObjectInfo` and from
`get_bytes`, whichever store they come from (S3 sends `"abc"`, we hand out `abc`). Pass one back
as `put_bytes(..., if_match=etag)` unchanged; the store re-quotes it when its protocol wants
quotes. A local ETag is the content's SHA-256; an S3 ETag is the store's own (MD5, or
`md5-N` for an object uploaded in N parts). Compare ETags only with ETags of the same store.

Errors: every failure is a `StorageError` whose message names `<store>/<key>`, the reason and
the fix; a lost conditional write is a `ConcurrentWriteError` (a `StorageError`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from flows.core.errors import ConcurrentWriteError, StorageError
from flows.core.fsio import atomic_write

try:  # POSIX only; without it LocalStorage's conditional writes are checked but not locked.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

CACHE_LONG = "public, max-age=31536000, immutable"  # content-addressed audio and art
CACHE_SHORT = "public, max-age=300"  # the feed and web pages
CACHE_PRIVATE = "private, no-store"  # the catalog and other private objects

MiB = 1024 * 1024
_CHUNK = MiB  # read/copy/hash block size: memory stays flat whatever the file size
_META_DIR = ".meta"  # LocalStorage keeps per-object metadata here
_TMP_PREFIX = ".tmp-"  # LocalStorage's in-progress files; never listed, never a key


@dataclass(frozen=True)
class ObjectInfo:
    """What storage knows of one object. `etag` never has surrounding quotes."""

    key: str
    size: int
    etag: str
    content_type: str | None = None
    cache_control: str | None = None


class Storage(Protocol):
    """The operations the flows need from object storage."""

    def describe(self) -> str:
        """A short human name, e.g. `s3://bucket/prefix` or a folder path."""
        ...

    def put_file(
        self, key: str, path: Path, *, content_type: str, cache_control: str, public: bool
    ) -> ObjectInfo:
        """Upload a file from disk, streaming (memory does not grow with its size)."""
        ...

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        cache_control: str,
        public: bool,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectInfo:
        """Write small data. `if_match`: only if the current ETag is this one;
        `if_none_match`: only if the object does not exist. Else ConcurrentWriteError."""
        ...

    def get_bytes(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None if it does not exist."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """Size, ETag and type of an object, or None if it does not exist."""
        ...

    def list_keys(self, prefix: str = "") -> list[str]:
        """All keys that start with `prefix` (a plain string prefix, as in S3), sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object (no error if it is already gone)."""
        ...


def retry_on_storage_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only storage failures; bad input will not fix itself.

    The one storage retry policy: every task that talks to storage retries with this."""
    try:
        state.result()
    except StorageError:
        return True
    except Exception:
        return False
    return False


def check_key(key: str) -> str:
    """Refuse keys that could leave the storage prefix or that only one store could hold.

    A key is `/`-separated segments; none may be empty, `.` or `..`, start with `.tmp-`
    (LocalStorage's in-progress files), and the first may not be `.meta` (its metadata).
    No leading `/`, backslashes or control characters; at most 1024 bytes (S3's limit).

    >>> check_key("podcast/feed.xml")
    'podcast/feed.xml'
    >>> check_key("podcast/../../etc/passwd")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flows.core.errors.StorageError: Refused storage key 'podcast/../../etc/passwd': ...
    """
    segments = key.split("/") if isinstance(key, str) else [""]
    if (
        not key
        or "\\" in key
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in key)
        or any(segment in ("", ".", "..") for segment in segments)
        or any(segment.startswith(_TMP_PREFIX) for segment in segments)
        or segments[0] == _META_DIR
        or len(key.encode("utf-8", "surrogatepass")) > 1024
    ):
        raise StorageError(
            f"Refused storage key {key!r}: keys must be relative paths like "
            "'podcast/audio/name.mp3' without empty, '.' or '..' segments, a leading '/', "
            "backslashes or control characters. Fix the name (or slug) that produced it."
        )
    return key


# URL-safe segments that do not start with "." (so no ".", "..", ".meta" or ".tmp-") pass
# `check_key` and need no percent-encoding; anything else takes the full path.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*")


def is_plain_key(key: str) -> bool:
    """True for a valid key whose URL needs no percent-encoding (most keys): its public URL
    is the base URL and the key, joined by one `/`.

    >>> is_plain_key("podcast/audio/a-1.mp3"), is_plain_key("podcast/audio/a b.mp3")
    (True, False)
    """
    return isinstance(key, str) and len(key) <= 1024 and _PLAIN_KEY.fullmatch(key) is not None


def public_url(base_url: str, key: str) -> str:
    """The public https link of a key under the public base URL.

    >>> public_url("https://cdn.example/", "podcast/audio/a-1.mp3")
    'https://cdn.example/podcast/audio/a-1.mp3'
    >>> public_url("https://cdn.example", "podcast/audio/å b.mp3")
    'https://cdn.example/podcast/audio/%C3%A5%20b.mp3'
    """
    if is_plain_key(key):  # fast path: the feed asks several times per item
        return base_url.rstrip("/") + "/" + key
    return base_url.rstrip("/") + "/" + quote(check_key(key))


def plain_etag(etag: str | None) -> str:
    """An ETag without surrounding quotes (or a weak `W/` marker).

    >>> plain_etag('"9b2cf535f27731c974343645a3985328"')
    '9b2cf535f27731c974343645a3985328'
    >>> plain_etag('W/"abc-2"')
    'abc-2'
    """
    value = (etag or "").strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def concurrent_write_error(where: str, *, existed: bool) -> ConcurrentWriteError:
    """The error of a lost conditional write to `where` (`<store>/<key>`)."""
    what = "appeared" if existed else "changed"
    return ConcurrentWriteError(
        f"{where} {what} while this run was working: another run wrote it. Nothing was "
        "overwritten; run again to build on the other run's result."
    )


class LocalStorage:
    """A folder on disk; the default, so the demo needs no credentials.

    Writes are atomic (`flows.core.fsio.atomic_write`), so a reader sees the old object or
    the new one, never half of one. Object metadata (type, cache,
    public, ETag) is kept in `.meta/<key>.json`, so a local folder can be checked like a
    bucket. The ETag is the SHA-256 of the content; `head` reuses the stored one while the
    file's size and mtime are unchanged, so it does not re-read large audio.
    Conditional writes are serialised with a lock file (`.meta/.lock`), so two processes
    cannot both win an `if_match`.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def path_of(self, key: str) -> Path:
        """The file that holds an object (whether or not it exists)."""
        return self.root / check_key(key)

    def _meta_path(self, key: str) -> Path:
        return self.root / _META_DIR / (check_key(key) + ".json")

    def _where(self, key: str) -> str:
        return f"{self.root}/{key}"

    def metadata(self, key: str) -> dict[str, Any]:
        """Stored content_type, cache_control, public, etag, size, mtime_ns ({} if none)."""
        try:
            return json.loads(self._meta_path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.root / _META_DIR / ".lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as handle:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes
            yield

    @staticmethod
    def _write_atomically(path: Path, chunks: Iterator[bytes]) -> str:
        """Write chunks whole or not at all; returns their SHA-256 (the local ETag).

        The temporary file is named `.tmp-...`, which `list_keys` skips and `check_key`
        refuses, so an interrupted write never shows up as an object.
        """
        # Published objects must be readable by the web server, whatever the umask.
        return atomic_write(path, chunks, mode=0o644, prefix=_TMP_PREFIX)

    def _record(
        self, key: str, etag: str, content_type: str, cache_control: str, public: bool
    ) -> ObjectInfo:
        stat = self.path_of(key).stat()
        meta = {
            "cache_control": cache_control,
            "content_type": content_type,
            "etag": etag,
            "mtime_ns": stat.st_mtime_ns,
            "public": public,
            "size": stat.st_size,
        }
        self._write_atomically(self._meta_path(key), iter([json.dumps(meta).encode()]))
        return ObjectInfo(key, stat.st_size, etag, content_type, cache_control)

    def put_file(
        self, key: str, path: Path, *, content_type: str, cache_control: str, public: bool
    ) -> ObjectInfo:
        target = self.path_of(key)
        try:
            with Path(path).open("rb") as src:
                etag = self._write_atomically(target, iter(lambda: src.read(_CHUNK), b""))
            with self._locked():
                return self._record(key, etag, content_type, cache_control, public)
        except OSError as exc:
            raise StorageError(
                f"Could not copy {path} to {target}: {exc.strerror or exc}. Check that the "
                "source file exists and the storage folder is writable."
            ) from exc

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        cache_control: str,
        public: bool,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectInfo:
        target = self.path_of(key)
        try:
            with self._locked():
                if if_match is not None or if_none_match:
                    current = self.head(key)
                    if if_none_match and current is not None:
                        raise concurrent_write_error(self._where(key), existed=True)
                    if if_match is not None and (
                        current is None or current.etag != plain_etag(if_match)
                    ):
                        raise concurrent_write_error(self._where(key), existed=False)
                etag = self._write_atomically(target, iter([bytes(data)]))
                return self._record(key, etag, content_type, cache_control, public)
        except OSError as exc:
            raise StorageError(
                f"Could not write {target}: {exc.strerror or exc}. Check that the storage "
                "folder is writable and no folder has the name of a file in the key."
            ) from exc

    def get_bytes(self, key: str) -> tuple[bytes, str] | None:
        path = self.path_of(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"Could not read {path}: {exc.strerror or exc}.") from exc
        return data, hashlib.sha256(data).hexdigest()

    def head(self, key: str) -> ObjectInfo | None:
        path = self.path_of(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        meta = self.metadata(key)
        etag = meta.get("etag")
        if meta.get("size") != stat.st_size or meta.get("mtime_ns") != stat.st_mtime_ns:
            etag = None  # changed behind our back: the stored ETag is stale
        if etag is None:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(_CHUNK), b""):
                    digest.update(chunk)
            etag = digest.hexdigest()
        return ObjectInfo(
            key, stat.st_size, etag, meta.get("content_type"), meta.get("cache_control")
        )

    def list_keys(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys: list[str] = []
        for folder, dirs, files in os.walk(self.root):
            rel_folder = Path(folder).relative_to(self.root).as_posix()
            base = "" if rel_folder == "." else rel_folder + "/"
            # Skip metadata and in-progress files; prune folders that cannot match.
            dirs[:] = [
                name
                for name in dirs
                if not (base == "" and name == _META_DIR)
                and not name.startswith(_TMP_PREFIX)
                and (base + name + "/").startswith(prefix[: len(base + name) + 1])
            ]
            keys.extend(
                base + name
                for name in files
                if not name.startswith(_TMP_PREFIX) and (base + name).startswith(prefix)
            )
        return sorted(keys)

    def delete(self, key: str) -> None:
        try:
            with self._locked():
                self.path_of(key).unlink(missing_ok=True)
                self._meta_path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(
                f"Could not delete {self._where(key)}: {exc.strerror or exc}."
            ) from exc
