"""The connection to the SMTP server: TLS as configured, the login, and errors that name
host:port and the settings to fix. `check_smtp` is `python -m flows smtp-check`: it connects
and logs in, and sends nothing.
"""

from __future__ import annotations

import base64
import ipaddress
import smtplib
import ssl
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from typing import Any, Protocol

from flows.core.errors import DeliveryError
from flows.core.settings import Settings

_SMTP_SETTINGS = (
    "KRAFTSAMLING_SMTP_HOST, KRAFTSAMLING_SMTP_PORT, KRAFTSAMLING_SMTP_SECURITY, "
    "KRAFTSAMLING_SMTP_USER and KRAFTSAMLING_SMTP_PASSWORD"
)


class SmtpClient(Protocol):
    """What `send_issue` needs from a connected SMTP client (smtplib.SMTP has it)."""

    def send_message(
        self, msg: EmailMessage, from_addr: str | None = ..., to_addrs: Sequence[str] = ...
    ) -> Any: ...

    def quit(self) -> Any: ...

    def close(self) -> None: ...


SmtpFactory = Callable[[Settings], SmtpClient]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class SmtpUnreachableError(DeliveryError):
    """Nothing answered at the SMTP host:port (refused, timed out, unknown host): a
    setting to fix, so the test-copy task does not retry it."""


def _password_to_send(settings: Settings, where: str) -> str | None:
    """The SMTP password, after refusing a login that could not or must not happen."""
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    if settings.smtp_user and password is None:
        raise DeliveryError(
            f"smtp_user is set for {where} but no password: set KRAFTSAMLING_SMTP_PASSWORD "
            "(or pass the password from a Secret block), or unset the user."
        )
    if (
        settings.smtp_user
        and settings.smtp_security == "none"
        and not _is_loopback(settings.smtp_host)
    ):
        raise DeliveryError(
            f"Refusing to send the SMTP password to {where} unencrypted: set "
            "smtp_security to 'starttls' (port 587) or 'ssl' (port 465)."
        )
    return password


def connect_smtp(settings: Settings, *, timeout: float | None = None) -> smtplib.SMTP:
    """A connected, greeted, (TLS-protected,) logged-in SMTP client, or DeliveryError
    naming host:port and the fix. The password never appears in a message.

    `timeout` (default: the `smtp_timeout` setting) bounds the connection and each socket
    operation; an unreachable server raises SmtpUnreachableError within it."""
    host, port, security = settings.smtp_host, settings.smtp_port, settings.smtp_security
    if timeout is None:
        timeout = settings.smtp_timeout
    where = f"{host}:{port}"
    password = _password_to_send(settings, where)
    client: smtplib.SMTP | None = None
    try:
        if security == "ssl":
            client = smtplib.SMTP_SSL(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        client.ehlo()
        if security == "starttls":
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if settings.smtp_user and password is not None:
            _login(client, settings.smtp_user, password, where)
        return client
    except smtplib.SMTPAuthenticationError as exc:
        close_quietly(client)
        raise DeliveryError(
            f"The SMTP server {where} refused the login of user {settings.smtp_user!r} "
            f"(code {exc.smtp_code}). Check KRAFTSAMLING_SMTP_USER and KRAFTSAMLING_SMTP_PASSWORD"
            " (or the Secret block), then run the send again."
        ) from None
    except smtplib.SMTPNotSupportedError:
        close_quietly(client)
        raise DeliveryError(
            f"The SMTP server {where} does not offer STARTTLS. Use smtp_security 'ssl' for an "
            "implicit-TLS port (465), or 'none' only for a relay on this machine."
        ) from None
    except smtplib.SMTPServerDisconnected as exc:
        # smtplib turns a reply that never comes (a socket timeout) into this.
        close_quietly(client)
        timed_out = "timed out" in str(exc)
        reason = f"no answer within {timeout:g} s" if timed_out else "it closed the connection"
        raise SmtpUnreachableError(
            f"The SMTP server {where} stopped answering while connecting ({reason}). Check "
            "that the server is up "
            f"and that the settings {_SMTP_SETTINGS} are right (try them with "
            "`python -m flows smtp-check`), then run the send again."
        ) from None
    except smtplib.SMTPException as exc:
        close_quietly(client)
        raise DeliveryError(
            f"The SMTP server {where} failed while connecting ({type(exc).__name__}: "
            f"{getattr(exc, 'smtp_code', '')}). Check the settings {_SMTP_SETTINGS}, then "
            "run the send again."
        ) from None
    except ssl.SSLError as exc:
        close_quietly(client)
        raise DeliveryError(
            f"TLS with the SMTP server {where} failed ({exc.reason or exc}). Check that "
            "smtp_security matches the port (465: 'ssl', 587: 'starttls') and that the "
            "server's certificate is valid for the host name."
        ) from None
    except OSError as exc:
        close_quietly(client)
        reason = (
            f"no answer within {timeout:g} s"
            if isinstance(exc, TimeoutError)
            else (exc.strerror or str(exc) or type(exc).__name__)
        )
        raise SmtpUnreachableError(
            f"Could not connect to the SMTP server {where} ({reason}). Check that the server "
            f"is up and that the settings {_SMTP_SETTINGS} are right (try them with "
            "`python -m flows smtp-check`), then run the send again: recipients already "
            "sent are recorded and do not get it twice."
        ) from None


def check_smtp(settings: Settings) -> str:
    """Connect, start TLS as configured, log in when a user is set, and QUIT: nothing is
    sent. Returns "SMTP ok: ..." or raises DeliveryError (`python -m flows smtp-check`)."""
    client = connect_smtp(settings)
    close_quietly(client)
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    login = f"logged in as {settings.smtp_user}" if settings.smtp_user else "no login (no user set)"
    return f"SMTP ok: {where}, {settings.smtp_security}, {login}; nothing was sent."


def _login(client: smtplib.SMTP, user: str, password: str, where: str) -> None:
    if (user + password).isascii():
        client.login(user, password)
        return
    # smtplib encodes credentials as ASCII; AUTH PLAIN (RFC 4616) carries UTF-8, so a
    # password with å, ä or ö still works where the server offers PLAIN.
    mechanisms = (client.esmtp_features.get("auth") or "").upper().split()
    if "PLAIN" not in mechanisms:
        raise DeliveryError(
            f"The SMTP server {where} does not offer AUTH PLAIN, the only way to log in with "
            "a user name or password containing non-ASCII letters; use an ASCII-only password."
        )
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    code, response = client.docmd("AUTH", "PLAIN " + token)
    if code not in (235, 503):  # 503: already authenticated
        raise smtplib.SMTPAuthenticationError(code, response)


def close_quietly(client: SmtpClient | None) -> None:
    if client is None:
        return
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()
