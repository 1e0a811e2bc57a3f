"""Servers on 127.0.0.1 for tests: a free port, and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (the OS picks it; the socket is closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def smtp_server(handler: Any, **smtp_kwargs: Any) -> Iterator[int]:
    """A real SMTP server on 127.0.0.1 with this aiosmtpd handler; yields its port.

    `smtp_kwargs` go to aiosmtpd (authenticator, tls_context, ssl_context, ...)."""
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), server_hostname="localhost", **smtp_kwargs
    )
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()
