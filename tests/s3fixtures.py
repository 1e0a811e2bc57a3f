"""S3 fixtures: moto in-process and as a real HTTP server on 127.0.0.1.

Registered for every test module by `pytest_plugins = ["s3fixtures"]` in conftest.py.

- `s3_inprocess`: moto's `mock_aws()` with a bucket. Fast; no sockets. Every boto3 client
  made inside the test is served by moto, so flows may build their own clients too.
- `moto_server` (session): the URL of one `ThreadedMotoServer` on 127.0.0.1 (free port).
- `s3_http`: a fresh bucket on that server per test, emptied (server reset) afterwards.

Both S3 fixtures yield an `S3Place`:

    place.bucket, place.client (boto3), place.endpoint (None in-process)
    place.storage(prefix="kraft", **S3Storage options) -> S3Storage on this bucket
    place.request_log   every request to the bucket, see `RequestLog`
    place.settings(prefix="kraft", **overrides) -> Settings (s3_http only)

Counting uploads. On `s3_http` the log is kept by the server itself, so it sees requests of
every client, including the ones a flow builds from Settings:

    def test_rerun_uploads_nothing(s3_http):
        settings = s3_http.settings()        # storage=s3://<bucket>/kraft, endpoint = moto
        publish(settings)                    # the flow makes its own boto3 client
        s3_http.request_log.clear()
        publish(settings)
        assert s3_http.request_log.count("PUT") == 0

On `s3_inprocess` the log is kept by botocore event hooks on `place.client`, so it counts
the requests of `place.storage(...)` (and of clients passed `place.client`) only.

Recipe without the fixture's helper (e.g. in a CLI test):
`Settings.load(storage=f"s3://{s3_http.bucket}/kraft", s3_endpoint_url=s3_http.endpoint)`,
or set `KRAFTSAMLING_STORAGE` and `AWS_ENDPOINT_URL_S3` with `monkeypatch.setenv`.

Do not use `s3_inprocess` and `s3_http` in the same test: they share moto's global state
(entering `mock_aws()` resets it) and while `mock_aws()` is active every client, even one
pointed at the HTTP server, is answered in-process.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from flows.core.s3 import S3Storage, _new_session
from flows.core.settings import Settings

REGION = "us-east-1"


@dataclass(frozen=True)
class Request:
    """One HTTP request to the bucket: `key` is the full object key ('' for the bucket)."""

    method: str
    key: str
    query: str = ""


@dataclass
class RequestLog:
    """Requests made to one bucket, in order. Thread-safe (uploads use several threads)."""

    bucket: str
    requests: list[Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, method: str, path: str, query: str, host: str = "") -> None:
        """Record a request given its path-style or virtual-hosted-style URL parts."""
        path = unquote(path)
        if path == f"/{self.bucket}" or path.startswith(f"/{self.bucket}/"):
            key = path[len(self.bucket) + 2 :]
        elif host.startswith(f"{self.bucket}."):
            key = path.lstrip("/")
        else:
            return  # another bucket (or the service itself)
        with self._lock:
            self.requests.append(Request(method.upper(), key, query))

    def count(self, method: str | None = None, key: str | None = None, prefix: str = "") -> int:
        """How many requests match the method (e.g. "PUT"), exact key and/or key prefix."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method.upper())
                and (key is None or r.key == key)
                and r.key.startswith(prefix)
            )

    @property
    def puts(self) -> int:
        """PUT requests (simple uploads, multipart parts, copies)."""
        return self.count("PUT")

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()


@dataclass
class S3Place:
    """A bucket in moto, a client for it and the log of requests to it."""

    bucket: str
    client: Any
    request_log: RequestLog
    endpoint: str | None = None

    def storage(self, prefix: str = "kraft", **options: Any) -> S3Storage:
        """An S3Storage on this bucket using the fixture's client (so its requests are logged)."""
        return S3Storage(self.bucket, prefix, client=self.client, **options)

    def settings(self, prefix: str = "kraft", **overrides: Any) -> Settings:
        """Settings that make flows build their own S3 client against this HTTP server."""
        return s3_url_settings(self, prefix, **overrides)


def s3_url_settings(place: S3Place, prefix: str = "kraft", **overrides: Any) -> Settings:
    """Settings with storage=s3://<bucket>/<prefix> and the moto server as endpoint.

    Two attempts per request keep a failing test fast; override `s3_max_attempts` if needed.
    """
    if place.endpoint is None:
        raise ValueError("s3_url_settings needs the s3_http fixture (a real endpoint)")
    values: dict[str, Any] = {
        "storage": f"s3://{place.bucket}/{prefix}".rstrip("/"),
        "s3_endpoint_url": place.endpoint,
        "s3_region": REGION,
        "s3_max_attempts": 2,
    }
    values.update(overrides)
    return Settings.load(**values)


def _log_client_requests(client: Any, log: RequestLog) -> None:
    """Record every HTTP attempt of this client. "before-send.s3" runs before moto's
    catch-all "before-send" stub, so in-process requests are seen too."""

    def before_send(request: Any, **_: Any) -> None:
        parts = urlsplit(request.url)
        log.add(request.method, parts.path, parts.query, parts.hostname or "")

    client.meta.events.register("before-send.s3", before_send)


def _http_client(endpoint: str) -> Any:
    from botocore.config import Config

    return _new_session().client(
        "s3",
        region_name=REGION,
        endpoint_url=endpoint,
        config=Config(retries={"mode": "standard", "total_max_attempts": 2}),
    )


@pytest.fixture
def s3_inprocess() -> Iterator[S3Place]:
    """moto in-process (`mock_aws`) with a created bucket."""
    from moto import mock_aws

    with mock_aws():
        bucket = "kraftsamling-test"
        client = _new_session().client("s3", region_name=REGION)
        client.create_bucket(Bucket=bucket)
        log = RequestLog(bucket)
        _log_client_requests(client, log)
        yield S3Place(bucket, client, log)


class _Recorder:
    """WSGI middleware in front of moto: logs each request into the current bucket's log."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.log: RequestLog | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        log = self.log
        if log is not None:
            log.add(
                environ["REQUEST_METHOD"],
                environ.get("PATH_INFO", ""),
                environ.get("QUERY_STRING", ""),
                environ.get("HTTP_HOST", ""),
            )
        return self.app(environ, start_response)


@dataclass
class MotoServer:
    endpoint: str
    recorder: _Recorder


@pytest.fixture(scope="session")
def _moto_server() -> Iterator[MotoServer]:
    from moto.server import ThreadedMotoServer

    # Werkzeug would log every request at INFO on stderr; we keep our own log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    wsgi_server = server._server  # moto does not expose the app; wrap it to count requests
    assert wsgi_server is not None and hasattr(wsgi_server, "app"), "moto server changed shape"
    recorder = _Recorder(wsgi_server.app)
    wsgi_server.app = recorder
    try:
        yield MotoServer(f"http://{host}:{port}", recorder)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_server(_moto_server: MotoServer) -> str:
    """The endpoint URL of a moto S3 server on 127.0.0.1, started once per session."""
    return _moto_server.endpoint


@pytest.fixture
def s3_http(_moto_server: MotoServer) -> Iterator[S3Place]:
    """A fresh bucket on the HTTP moto server; the server's state is reset afterwards."""
    endpoint = _moto_server.endpoint
    client = _http_client(endpoint)
    bucket = f"kraft-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    log = RequestLog(bucket)
    _moto_server.recorder.log = log
    try:
        yield S3Place(bucket, client, log, endpoint)
    finally:
        _moto_server.recorder.log = None
        client.close()
        # Drop every bucket and object so large test files do not pile up in memory.
        import urllib.request

        urllib.request.urlopen(
            urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10
        ).close()
