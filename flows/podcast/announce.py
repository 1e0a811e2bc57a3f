"""Telling apps that the feed changed: a WebSub hub and Podping.

Podcast apps learn of a new episode when they next poll the feed, often hours later. After a
run that uploaded a changed feed (`flows.podcast.feedpublish.publish_feed`), the ones that
listen are told at once:

- **WebSub** (`KRAFTSAMLING_WEBSUB_HUB`): the feed names the hub beside its own address
  (`<atom:link rel="hub" href="…"/>`, see `flows.podcast.feed.build_feed`), and the hub gets
  a form-encoded `POST hub.mode=publish&hub.url=<feed URL>`, the publish ping that public
  hubs take (WebSub leaves it to the hub; this is PubSubHubbub 0.4's). Any 2xx is taken.
- **Podping** (`KRAFTSAMLING_PODPING_URL` and `KRAFTSAMLING_PODPING_TOKEN`): as podping.cloud
  documents it (github.com/Podcastindex-org/podping.cloud, README and `podping/src/handler.rs`):
  `GET <url>?url=<feed URL>&reason=update&medium=podcast`, the token as the whole
  `Authorization` header, and a `User-Agent` (the endpoint answers 401 without either).

Each announcement is one request, retried on network errors, timeouts, 429 and 5xx
(`KRAFTSAMLING_HTTP_RETRIES` times, waiting `KRAFTSAMLING_HTTP_BACKOFF` seconds and doubling),
each try bounded by `KRAFTSAMLING_HTTP_TIMEOUT`, and no try started after `BUDGET` seconds
(or `KRAFTSAMLING_HTTP_DEADLINE`, when shorter). Any other answer (401: a wrong token; 404)
fails at once. A failed announcement is a warning in the log and a line in the run's summary
(`Announcement.describe`); it never fails the run: the feed is published, and apps find it at
their next poll.

The token is read from the settings (a `SecretStr`) only to build the request's header. It is
in no log line, no message and no repr: a failure names the target, the HTTP status or the
network error, never a response body (a server may echo what it was sent), and every message
is scrubbed of the token all the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from flows.core.settings import Settings

log = logging.getLogger(__name__)

BUDGET = 20.0  # seconds one announcement may take, retries included
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Announcement:
    """What telling one target of a feed change gave: whether it took it, and after what."""

    target: str  # "hub" or "podping"
    ok: bool
    detail: str  # the tries, or why it failed; never a secret

    def describe(self) -> str:
        """A few words for the summary: "hub told", "podping failed: HTTP 500 … (3 tries)"."""
        if not self.ok:
            return f"{self.target} failed: {self.detail}"
        return f"{self.target} told" + ("" if self.detail == _tries(1) else f" ({self.detail})")


@dataclass(frozen=True)
class _Target:
    """One planned announcement. `request` makes the keyword arguments of `httpx.Client
    .stream` (the token is only ever in what it returns, never in this object's fields)."""

    name: str
    url: str
    request: Callable[[], dict[str, Any]]
    secret: str = field(default="", repr=False)  # scrubbed from every message


def targets(feed_url: str, settings: Settings) -> list[_Target]:
    """The announcements the settings ask for, in order (hub, then Podping)."""
    found: list[_Target] = []
    if settings.websub_hub:
        hub = settings.websub_hub
        form = {"hub.mode": "publish", "hub.url": feed_url}
        found.append(_Target("hub", hub, lambda: {"method": "POST", "url": hub, "data": form}))
    if settings.podping_url and settings.podping_token:
        url, token = settings.podping_url, settings.podping_token

        def podping() -> dict[str, Any]:
            params = {"url": feed_url, "reason": "update", "medium": "podcast"}
            headers = {"Authorization": token.get_secret_value()}
            return {"method": "GET", "url": url, "params": params, "headers": headers}

        found.append(_Target("podping", url, podping, token.get_secret_value()))
    return found


def announce_feed_change(
    feed_url: str,
    settings: Settings,
    *,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Announcement, ...]:
    """Tell the hub and Podping (those configured) that the feed at `feed_url` changed.

    Never raises for the network or the endpoints' answers: each failure is logged as a
    warning and returned as an `Announcement` with `ok=False`.
    """
    planned = targets(feed_url, settings)
    if not planned:
        return ()
    if client is not None:
        return tuple(_announce(client, t, feed_url, settings, sleep, clock) for t in planned)
    headers = {"User-Agent": settings.user_agent}
    with httpx.Client(headers=headers, follow_redirects=False) as own:
        return tuple(_announce(own, t, feed_url, settings, sleep, clock) for t in planned)


def _announce(
    client: httpx.Client,
    target: _Target,
    feed_url: str,
    settings: Settings,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> Announcement:
    budget = min(BUDGET, settings.http_deadline)
    deadline = clock() + budget
    problem, tries = "", 0
    for attempt in range(settings.http_retries + 1):
        if attempt:
            pause = settings.http_backoff * 2 ** (attempt - 1)
            if clock() + pause >= deadline:
                problem += f"; no time left for another try within {budget:g} s"
                break
            sleep(pause)
        tries += 1
        timeout = max(0.01, min(settings.http_timeout, deadline - clock()))
        status, problem = _try(client, target, timeout)
        if 200 <= status < 300:
            log.info("Feed %s: %s %s told of the change", feed_url, target.name, target.url)
            return Announcement(target.name, True, _tries(tries))
        if status and status not in RETRY_STATUS:
            break
    detail = _scrub(f"{problem} ({_tries(tries)})", target.secret)
    log.warning(
        "Feed %s: %s %s was not told of the change: %s. The feed is published; apps find it "
        "at their next poll.",
        feed_url,
        target.name,
        target.url,
        detail,
    )
    return Announcement(target.name, False, detail)


def _try(client: httpx.Client, target: _Target, timeout: float) -> tuple[int, str]:
    """One request: (its status, or 0 for a network error; what went wrong, if anything).
    The body is never read: the status says all, and a slow body cannot hold the run."""
    try:
        with client.stream(**target.request(), timeout=timeout) as response:
            return response.status_code, f"HTTP {response.status_code} {response.reason_phrase}"
    except httpx.TimeoutException:
        return 0, f"timed out after {timeout:g} s"
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        return 0, f"could not connect ({type(exc).__name__}: {exc})"


def _tries(count: int) -> str:
    return "1 try" if count == 1 else f"{count} tries"


def _scrub(text: str, secret: str) -> str:
    """`text` without `secret` (nothing a server or a library says may carry it out)."""
    return text.replace(secret, "[token]") if secret else text
