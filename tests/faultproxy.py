"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the moto S3 server.

Every request is forwarded to moto, except that a chosen share of them fails, the way a
real S3 endpoint or the network between fails:

- `500`:   500 InternalError (XML), the request is NOT applied (half of them) or IS applied
           and only the answer is lost (the other half: the nasty case for conditional writes);
- `503`:   503 SlowDown (XML), not applied (S3's throttling);
- `reset`: the request is applied, the status line, headers and half of the body are sent,
           then the socket is closed with SO_LINGER 0 (the client sees a connection reset);
- `stall`: the request is applied, then nothing is sent for `stall_seconds` (longer than
           the client's read timeout), then the connection is closed.

Which request fails is decided by a seeded RNG per request *signature* (method, path
without the bucket, query, and how often that signature was seen), not by arrival order,
so the pattern is the same whatever order the client's threads send requests in.

    with FaultProxy(moto_endpoint, fail_rate=0.3, seed=7) as proxy:
        storage = S3Storage(bucket, "kraft", endpoint_url=proxy.url, read_timeout=1)
        ...
        proxy.counts    # Counter: pass / 500 / 503 / reset / stall

`quick_retries(client)` swaps the client's "standard" retry handler for one with the same
rules (which errors, how many attempts, the retry quota) but its jitter scaled down, so a
test with hundreds of injected faults does not sleep for minutes.

The fixture `fault_proxy` gives a factory: `fault_proxy(fail_rate=0.3, seed=7)` starts a
proxy in front of the session's moto server and stops it after the test.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

FAULTS = ("500", "503", "reset", "stall")
DEFAULT_WEIGHTS = {"500": 0.3, "503": 0.3, "reset": 0.25, "stall": 0.15}
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "content-length",
}

_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>{code}</Code><Message>{message}</Message>"
    "<RequestId>FAULTPROXY</RequestId></Error>"
)


class FaultProxy:
    """A threaded HTTP proxy that fails a seeded share of the requests it forwards."""

    def __init__(
        self,
        upstream: str,
        *,
        fail_rate: float = 0.3,
        seed: int = 0,
        weights: dict[str, float] | None = None,
        stall_seconds: float = 2.0,
        bucket: str = "",
        script: dict[str, list[str]] | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.fail_rate = fail_rate
        self.seed = seed
        self.weights = dict(weights or DEFAULT_WEIGHTS)
        self.stall_seconds = stall_seconds
        self.bucket = bucket  # stripped from paths so the pattern does not depend on it
        # {signature prefix: outcomes of its 1st, 2nd, ... request}, before the RNG decides;
        # outcomes as in FAULTS, "500-applied" (moto applies it, the answer is lost) or "pass".
        self.script = dict(script or {})
        self.enabled = True
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str, str]] = []  # (method, path, outcome)
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes stalled handlers
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def faults(self) -> int:
        """How many requests were failed on purpose."""
        return sum(n for kind, n in self.counts.items() if kind != "pass")

    # --- the decision -------------------------------------------------------------------

    def _signature(self, method: str, target: str) -> str:
        parts = urlsplit(target)
        path = parts.path
        if self.bucket and (path == f"/{self.bucket}" or path.startswith(f"/{self.bucket}/")):
            path = path[len(self.bucket) + 1 :]
        return f"{method} {path}?{parts.query}"

    def decide(self, method: str, target: str) -> tuple[str, bool]:
        """(outcome, applied): outcome is "pass" or a fault; `applied` says whether the
        request reaches moto first (for 500)."""
        signature = self._signature(method, target)
        with self._lock:
            self._seen[signature] += 1
            nth = self._seen[signature]
        rng = random.Random(f"{self.seed}|{signature}|{nth}")
        scripted = next(
            (steps for prefix, steps in self.script.items() if signature.startswith(prefix)), []
        )
        if self.enabled and nth <= len(scripted):
            outcome = scripted[nth - 1]
            applied = outcome in ("pass", "reset", "stall", "500-applied")
            outcome = outcome.removesuffix("-applied")
        else:
            if not self.enabled or rng.random() >= self.fail_rate:
                outcome = "pass"
            else:
                kinds = list(self.weights)
                outcome = rng.choices(kinds, weights=[self.weights[k] for k in kinds])[0]
            applied = outcome in ("pass", "reset", "stall") or (
                outcome == "500" and rng.random() < 0.5
            )
        with self._lock:
            self.counts[outcome] += 1
            self.log.append((method, signature, outcome))
        return outcome, applied

    # --- the handler --------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and "Expect: 100-continue" handled

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the proxy keeps its own log

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=30
                )
                try:
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP
                    }
                    if body or self.command in ("PUT", "POST"):
                        headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    return response.status, response.getheaders(), data
                finally:
                    conn.close()

            def _head_bytes(
                self, status: int, headers: list[tuple[str, str]], body: bytes
            ) -> bytes:
                reason = http.client.responses.get(status, "")
                lines = [f"HTTP/1.1 {status} {reason}"]
                lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _HOP_BY_HOP]
                if self.command == "HEAD":
                    length = next(
                        (v for k, v in headers if k.lower() == "content-length"), str(len(body))
                    )
                else:
                    length = str(len(body))
                lines.append(f"Content-Length: {length}")
                return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

            def _reset(self) -> None:
                """Close with SO_LINGER 0: the kernel sends RST, not FIN."""
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.wfile.flush()
                sock = self.connection
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.rfile.close()
                self.wfile.close()
                sock.close()
                # The server still flushes and closes these after us; give it harmless ones.
                self.rfile, self.wfile = io.BytesIO(), io.BytesIO()

            def _error(self, status: int, code: str, message: str) -> None:
                data = _ERROR_XML.format(code=code, message=message).encode()
                headers = [("Content-Type", "application/xml")]
                self.wfile.write(
                    self._head_bytes(status, headers, b"" if self.command == "HEAD" else data)
                )
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _handle(self) -> None:
                body = self._read_body()
                outcome, applied = proxy.decide(self.command, self.path)
                answer = self._forward(body) if applied else None
                if outcome == "pass":
                    assert answer is not None
                    status, headers, data = answer
                    self.wfile.write(self._head_bytes(status, headers, data))
                    if self.command != "HEAD":
                        self.wfile.write(data)
                elif outcome == "500":
                    self._error(500, "InternalError", "We encountered an internal error.")
                elif outcome == "503":
                    self._error(503, "SlowDown", "Please reduce your request rate.")
                elif outcome == "reset":
                    assert answer is not None
                    status, headers, data = answer
                    head = self._head_bytes(status, headers, data)
                    if self.command == "HEAD" or not data:
                        self.wfile.write(head[: len(head) // 2])  # cut inside the headers
                    else:
                        self.wfile.write(head + data[: len(data) // 2])
                    self._reset()
                elif outcome == "stall":
                    proxy._stop.wait(proxy.stall_seconds)
                    self.close_connection = True

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        return Handler


def quick_retries(client: Any, max_attempts: int, scale: float = 0.05, seed: int = 0) -> None:
    """Give `client` botocore's "standard" retry handler with its jitter scaled by `scale`.

    Same retryable errors (5xx, throttling, connection errors, timeouts), same attempt limit,
    same retry quota; only the sleep between attempts is shorter. Test use only.
    """
    from botocore.retries import quota, standard

    rng = random.Random(seed)
    quota_checker = standard.RetryQuotaChecker(quota.RetryQuota())
    handler = standard.RetryHandler(
        retry_policy=standard.RetryPolicy(
            retry_checker=standard.StandardRetryConditions(max_attempts=max_attempts),
            retry_backoff=standard.ExponentialBackoff(random=lambda: rng.random() * scale),
        ),
        retry_event_adapter=standard.RetryEventAdapter(),
        retry_quota=quota_checker,
    )
    events = client.meta.events
    events.unregister("needs-retry.s3", unique_id="retry-config-s3")
    events.register("needs-retry.s3", handler.needs_retry, unique_id="retry-config-s3")
    events.register("after-call.s3", quota_checker.release_retry_quota)


@pytest.fixture
def fault_proxy(moto_server: str) -> Iterator[Callable[..., FaultProxy]]:
    """A factory of started FaultProxy instances in front of the session's moto server."""
    started: list[FaultProxy] = []

    def make(**options: Any) -> FaultProxy:
        proxy = FaultProxy(moto_server, **options).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()
