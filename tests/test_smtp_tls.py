"""SMTP over TLS against a real server on 127.0.0.1: STARTTLS (587) and implicit TLS (465).

The server's certificate comes from a test CA made by `trustme`; the client trusts it only
through SSL_CERT_FILE, so `connect_smtp` keeps its production TLS context (certificate and
host name verified) and an untrusted certificate must fail the same way it would in use.
"""

from __future__ import annotations

import socket
import ssl
import time

import loopback
import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword

from flows.cli import main
from flows.core.errors import DeliveryError
from flows.core.settings import Settings
from flows.newsletter.smtp import SmtpUnreachableError, connect_smtp

USER = "redaktionen"
PASSWORD = "hemligt-lösenord-4711"  # non-ASCII: goes through AUTH PLAIN, over TLS only


class TlsRecorder:
    """Keeps each accepted message with whether its session was encrypted and logged in."""

    def __init__(self) -> None:
        self.sessions: list[dict] = []

    async def handle_DATA(self, server, session, envelope):
        self.sessions.append(
            {
                "tls": server.transport.get_extra_info("ssl_object") is not None,
                "authenticated": session.authenticated,
                "rcpt": list(envelope.rcpt_tos),
            }
        )
        return "250 Message accepted for delivery"


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def trust_ca(ca: trustme.CA, tmp_path, monkeypatch) -> None:
    """The client trusts the test CA as a system CA (read when a default context is made)."""
    pem = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))


def smtp_server(handler: TlsRecorder, **kwargs):
    return loopback.smtp_server(handler, authenticator=_authenticator, **kwargs)


def settings_for(port: int, security: str) -> Settings:
    return Settings.load(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security=security,
        smtp_user=USER,
        smtp_password=PASSWORD,
    )


def send_one(settings: Settings) -> None:
    client = connect_smtp(settings, timeout=10)
    try:
        client.sendmail("nyhetsbrev@example.org", ["person01@example.org"], b"Subject: t\r\n\r\nx")
    finally:
        client.quit()


CONTEXT = object()  # stands for the server_context fixture in parameters


@pytest.mark.parametrize(
    ("security", "server_kwargs"),
    [
        # require_starttls: the server refuses MAIL and AUTH until the session is encrypted.
        ("starttls", {"tls_context": CONTEXT, "require_starttls": True}),
        # aiosmtpd counts only STARTTLS as TLS when deciding to offer AUTH; this socket is
        # encrypted from its first byte, which the handler checks on the transport itself.
        ("ssl", {"ssl_context": CONTEXT, "auth_require_tls": False}),
    ],
)
def test_sends_encrypted_and_logged_in(security, server_kwargs, server_context, trust_ca):
    kwargs = {k: server_context if v is CONTEXT else v for k, v in server_kwargs.items()}
    recorder = TlsRecorder()
    with smtp_server(recorder, **kwargs) as port:
        send_one(settings_for(port, security))
    assert recorder.sessions == [
        {"tls": True, "authenticated": True, "rcpt": ["person01@example.org"]}
    ]


def test_untrusted_certificate_is_refused_before_the_password(server_context, monkeypatch):
    # No trust_ca: the certificate is valid but signed by a CA the client does not know.
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    recorder = TlsRecorder()
    with (
        smtp_server(recorder, tls_context=server_context, require_starttls=True) as port,
        pytest.raises(DeliveryError, match=rf"TLS with the SMTP server 127\.0\.0\.1:{port}"),
    ):
        connect_smtp(settings_for(port, "starttls"), timeout=10)
    assert recorder.sessions == []


def test_starttls_to_a_server_without_it_says_what_to_set(trust_ca):
    recorder = TlsRecorder()
    with (
        smtp_server(recorder, auth_require_tls=False) as port,
        pytest.raises(DeliveryError, match="does not offer STARTTLS") as info,
    ):
        connect_smtp(settings_for(port, "starttls"), timeout=10)
    assert "'ssl'" in str(info.value) and PASSWORD not in str(info.value)


def test_implicit_tls_to_a_starttls_port_names_the_mismatch(server_context, trust_ca):
    recorder = TlsRecorder()
    with (
        smtp_server(recorder, tls_context=server_context, require_starttls=True) as port,
        pytest.raises(DeliveryError, match="smtp_security matches the port") as info,
    ):
        connect_smtp(settings_for(port, "ssl"), timeout=10)
    assert PASSWORD not in str(info.value)


# --- an unreachable server, and `python -m flows smtp-check` ---------------------------------


def test_a_server_that_never_answers_fails_within_smtp_timeout():
    # Accepts the connection (the kernel's backlog) but never greets: before the fix the
    # client waited the hard-coded 30 s.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        settings = Settings.load(
            smtp_host="127.0.0.1", smtp_port=port, smtp_security="none", smtp_timeout=1
        )
        started = time.monotonic()
        with pytest.raises(SmtpUnreachableError, match="no answer within 1 s") as info:
            connect_smtp(settings)
        took = time.monotonic() - started
    assert took < 10, f"took {took:.1f} s with smtp_timeout=1"
    for name in ("HOST", "PORT", "SECURITY", "USER", "PASSWORD"):
        assert f"KRAFTSAMLING_SMTP_{name}" in str(info.value)
    assert f"127.0.0.1:{port}" in str(info.value)


def smtp_env(monkeypatch, port: int, security: str) -> None:
    monkeypatch.setenv("KRAFTSAMLING_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("KRAFTSAMLING_SMTP_PORT", str(port))
    monkeypatch.setenv("KRAFTSAMLING_SMTP_SECURITY", security)
    monkeypatch.setenv("KRAFTSAMLING_SMTP_USER", USER)
    monkeypatch.setenv("KRAFTSAMLING_SMTP_PASSWORD", PASSWORD)


def test_smtp_check_logs_in_over_tls_and_sends_nothing(
    server_context, trust_ca, monkeypatch, capsys
):
    recorder = TlsRecorder()
    with smtp_server(recorder, tls_context=server_context, require_starttls=True) as port:
        smtp_env(monkeypatch, port, "starttls")
        status = main(["smtp-check"])
    out = capsys.readouterr().out
    assert status == 0
    assert f"SMTP ok: 127.0.0.1:{port}, starttls, logged in as {USER}" in out
    assert PASSWORD not in out
    assert recorder.sessions == []  # nothing was sent


def test_smtp_check_against_a_closed_port_exits_1_naming_the_settings(monkeypatch, capsys):
    port = loopback.free_port()  # nothing listens here
    smtp_env(monkeypatch, port, "starttls")
    assert main(["smtp-check"]) == 1
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "KRAFTSAMLING_SMTP_HOST" in err
    assert PASSWORD not in err
