"""A real HTTP server on 127.0.0.1 that serves the files under tests/data (a pytest plugin).

Paths (FILE is relative to tests/data, e.g. feeds/rss2.xml):
    /files/FILE                 the file, 200
    /slow/FILE?delay=S          the file after S seconds (default 1.0)
    /status/CODE                always answers CODE (500, 404, 429...) with a short body
    /flaky/N/FILE               answers 503 to the first N requests for this path, then the file
    /etag/FILE                  the file with ETag and Last-Modified; 304 to a matching
                                If-None-Match or a not-older If-Modified-Since
    /lastmod/FILE               like /etag but with Last-Modified only
    /redirect/PATH              301 to /PATH
    /nohead/PATH                405 to HEAD; GET is answered as PATH
    /hang                       never answers (until the client gives up)
    /drip?interval=S            200 with a 1000-byte body sent one byte every S seconds
HEAD is answered as GET is, without the body.
Every request is recorded (method, path, headers) in `server.requests`.

Fixtures: `feed_server` (one server per session, log and counters cleared for each test).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

DATA = Path(__file__).resolve().parent / "data"
LAST_MODIFIED = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
CONTENT_TYPES = {
    ".xml": "application/rss+xml; charset=utf-8",
    ".atom": "application/atom+xml; charset=utf-8",
    ".ics": "text/calendar; charset=utf-8",
    ".yaml": "application/yaml; charset=utf-8",
    ".yml": "application/yaml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names


class FeedServer:
    """The running server: build URLs, read the request log."""

    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self.httpd = httpd
        host, port = httpd.server_address[:2]
        self.base = f"http://{host}:{port}"
        self.requests: list[SeenRequest] = []
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        return self.base + "/" + path.lstrip("/")

    def seen(self, path: str) -> list[SeenRequest]:
        """Requests whose path (without query) is `path`."""
        wanted = "/" + path.lstrip("/").split("?")[0]
        with self.lock:
            return [r for r in self.requests if r.path.split("?")[0] == wanted]

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.hits.clear()


class _Handler(BaseHTTPRequestHandler):
    server_version = "KraftsamlingTestServer/1"
    protocol_version = "HTTP/1.1"
    feed_server: FeedServer  # set on the subclass made per server

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        with self.feed_server.lock:
            self.feed_server.requests.append(SeenRequest(self.command, self.path, headers))
            count = self.feed_server.hits.get(self.path, 0) + 1
            self.feed_server.hits[self.path] = count
        parts = urlsplit(self.path)
        route, _, rest = parts.path.lstrip("/").partition("/")
        if route == "nohead":
            if self.command == "HEAD":
                self._send(405, b"", "text/plain")
                return
            route, _, rest = rest.partition("/")
        try:
            if route == "redirect":
                self._send(301, b"moved\n", "text/plain", {"Location": "/" + rest})
            elif route == "hang":
                time.sleep(60)
            elif route == "drip":
                self._drip(float(parse_qs(parts.query).get("interval", ["0.5"])[0]))
            elif route == "files":
                self._file(rest)
            elif route == "slow":
                delay = float(parse_qs(parts.query).get("delay", ["1.0"])[0])
                time.sleep(delay)
                self._file(rest)
            elif route == "status":
                self._send(int(rest), b"status page\n", "text/plain")
            elif route == "flaky":
                failures, _, name = rest.partition("/")
                if count <= int(failures):
                    self._send(503, b"try again\n", "text/plain")
                else:
                    self._file(name)
            elif route in ("etag", "lastmod"):
                self._conditional(rest, with_etag=route == "etag")
            else:
                self._send(404, b"no such route\n", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the slow path's timeout test): nothing to answer

    def _drip(self, interval: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(1000):
            self.wfile.write(b" ")
            self.wfile.flush()
            time.sleep(interval)

    def _file(self, name: str, extra: dict[str, str] | None = None) -> None:
        path = (DATA / name).resolve()
        if DATA not in path.parents or not path.is_file():
            self._send(404, b"not found\n", "text/plain")
            return
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        self._send(200, path.read_bytes(), content_type, extra)

    def _conditional(self, name: str, *, with_etag: bool) -> None:
        path = (DATA / name).resolve()
        if DATA not in path.parents or not path.is_file():
            self._send(404, b"not found\n", "text/plain")
            return
        etag = '"' + hashlib.sha256(path.read_bytes()).hexdigest()[:16] + '"'
        validators = {"Last-Modified": format_datetime(LAST_MODIFIED, usegmt=True)}
        if with_etag:
            validators["ETag"] = etag
        if_none_match = self.headers.get("If-None-Match")
        if_modified_since = self.headers.get("If-Modified-Since")
        if with_etag and if_none_match is not None:
            not_modified = etag in [v.strip() for v in if_none_match.split(",")]
        elif if_modified_since:
            try:
                not_modified = parsedate_to_datetime(if_modified_since) >= LAST_MODIFIED
            except (TypeError, ValueError):
                not_modified = False
        else:
            not_modified = False
        if not_modified:
            self._send(304, b"", None, validators)
        else:
            self._file(name, validators)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304 and self.command != "HEAD":
            self.wfile.write(body)


@pytest.fixture(scope="session")
def feed_server_session() -> Iterator[FeedServer]:
    """One threaded HTTP server on 127.0.0.1 for the whole session."""
    handler = type("Handler", (_Handler,), {})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    server = FeedServer(httpd)
    handler.feed_server = server
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="feed-server", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def feed_server(feed_server_session: FeedServer) -> FeedServer:
    """The session's server with an empty request log and fresh counters."""
    feed_server_session.reset()
    return feed_server_session
