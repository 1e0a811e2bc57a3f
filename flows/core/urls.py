"""The one policy for URLs that reach the email: https, or nothing.

Feeds and calendars still carry `http://` links; mail clients and readers treat them as
unsafe. An http link is upgraded to https (nearly every site answers both). Hosts known to
have no https are named in `settings.http_only_hosts`: their links are kept as http (and
flagged for the reviewer), their images dropped (an http image is blocked by mail clients).
Any other scheme (`data:`, `javascript:`, `ftp:`...) never reaches the email.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

Change = Literal["kept", "upgraded", "kept-http", "dropped"]


@dataclass(frozen=True)
class SafeUrl:
    url: str  # "" when dropped
    change: Change
    original: str

    def note(self, what: str) -> str:
        """A line for the manifest and the review, or "" when nothing changed."""
        if self.change == "upgraded":
            return f"{what} upgraded to https: {self.original}"
        if self.change == "kept-http":
            return f"{what} kept as http (its host is in http_only_hosts): {self.original}"
        if self.change == "dropped":
            return f"{what} left out (not an https address): {self.original[:120]}"
        return ""


def safe_url(url: str, http_only_hosts: Collection[str] = (), *, image: bool = False) -> SafeUrl:
    """`url` as it may appear in the email (see the module's docstring).

    >>> safe_url("http://ai.example/a?b=1#c").url
    'https://ai.example/a?b=1#c'
    >>> safe_url("javascript:alert(1)").change
    'dropped'
    >>> safe_url("http://old.example/x", ["old.example"]).change
    'kept-http'
    >>> safe_url("http://old.example/x.jpg", ["old.example"], image=True).url
    ''
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return SafeUrl("", "dropped", text)
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme not in ("http", "https"):
        return SafeUrl("", "dropped", text)
    if scheme == "https":
        return SafeUrl(text, "kept", text)
    if parts.hostname.lower() in {host.lower() for host in http_only_hosts}:
        return SafeUrl("", "dropped", text) if image else SafeUrl(text, "kept-http", text)
    return SafeUrl(urlunsplit(("https", *parts[1:])), "upgraded", text)
