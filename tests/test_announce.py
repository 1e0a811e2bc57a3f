"""Apps told of a changed feed: a WebSub hub and Podping (flows/podcast/announce.py).

A real HTTP server on 127.0.0.1 plays the hub (`/hub`) and the Podping endpoint (`/podping`):
it records every request and answers from a per-path script of statuses. The feed is published
with the plain `publish_feed` into a LocalStorage (the fixtures of test_feed), so no Prefect
server is needed. The Podping token comes from the environment, as in production.
"""
# ruff: noqa: F811  (the place fixture imported from test_feed is a test argument here)

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from loopback import free_port
from test_feed import (  # noqa: F401  (place is a fixture)
    BASE,
    NOW,
    NS,
    build,
    live_feed,
    make_episode,
    parse,
    place,
    publish,
    upload_audio,
)

from flows.core.errors import SettingsError
from flows.core.settings import Settings
from flows.podcast.announce import BUDGET, announce_feed_change
from flows.podcast.catalog import Catalog, save_catalog
from flows.podcast.feedpublish import FeedResult, feed_staleness, publish_feed

TOKEN = "FAKE-SECRET-podping-7d1e-do-not-use"


# --- a recording endpoint on 127.0.0.1 ------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes


class Endpoint:
    """The running server: each path answers the next status of its script (the last one
    repeats; unscripted: 204 for /hub, 200 for /podping). `/slow` waits 2 s first."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.scripts: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        self.base = ""

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def script(self, path: str, *statuses: int) -> None:
        with self.lock:
            self.scripts["/" + path.lstrip("/")] = list(statuses)

    def requests(self, path: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path == "/" + path.lstrip("/")]

    def answer(self, seen: Seen) -> int:
        with self.lock:
            self.seen.append(seen)
            script = self.scripts.get(seen.path) or [204 if seen.path == "/hub" else 200]
            return script.pop(0) if len(script) > 1 else script[0]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    endpoint: Endpoint

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        status = self.endpoint.answer(
            Seen(self.command, parts.path, parse_qs(parts.query), headers, body)
        )
        if parts.path == "/slow":
            time.sleep(2)
        # Like podping.cloud, a refusal names what it was sent: a body the client must not log.
        text = b"Success!" if status < 300 else f"No match for [{headers.get('authorization')}]"
        payload = text if isinstance(text, bytes) else text.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    handler = type("Handler", (_Handler,), {"endpoint": server})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    server.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def announcing(
    place: dict[str, Any], endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, **changes: Any
) -> Settings:
    """The place's settings with the hub and Podping on the endpoint (the token from the
    environment), short retry waits; the place then publishes with them."""
    monkeypatch.setenv("KRAFTSAMLING_PODPING_TOKEN", TOKEN)
    values: dict[str, Any] = {
        "storage": place["settings"].storage,
        "public_url": BASE,
        "websub_hub": endpoint.url("hub"),
        "podping_url": endpoint.url("podping"),
        "http_backoff": 0.01,
    }
    values.update(changes)
    place["settings"] = Settings.load(**values)
    return place["settings"]


def hub_links(xml: bytes | None) -> list[str]:
    assert xml is not None
    links = parse(xml).findall("channel/atom:link[@rel='hub']", NS)
    return [link.get("href") for link in links]


# --- one announcement per feed change -----------------------------------------------------


def test_each_feed_change_is_announced_once_and_a_noop_run_announces_nothing(
    place, endpoint, monkeypatch
):
    announcing(place, endpoint, monkeypatch)
    episodes = [make_episode(1), make_episode(2)]
    upload_audio(place["storage"], episodes)

    first = publish(place, episodes)
    assert first.uploaded
    [hub] = endpoint.requests("hub")
    assert hub.method == "POST"
    assert hub.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(hub.body.decode()) == {"hub.mode": ["publish"], "hub.url": [first.feed_url]}
    [ping] = endpoint.requests("podping")
    assert ping.method == "GET"
    assert ping.query == {"url": [first.feed_url], "reason": ["update"], "medium": ["podcast"]}
    assert ping.headers["authorization"] == TOKEN  # the token itself, as podping.cloud wants
    assert ping.headers["user-agent"] == place["settings"].user_agent  # required there too
    assert "hub told" in first.summary() and "podping told" in first.summary()

    second = publish(place, episodes, now=NOW + timedelta(hours=1))
    assert not second.uploaded and second.announced == ()
    assert (len(endpoint.requests("hub")), len(endpoint.requests("podping"))) == (1, 1)
    assert "told" not in second.summary()

    episodes.append(make_episode(3))
    upload_audio(place["storage"], episodes[2:])
    third = publish(place, episodes, now=NOW + timedelta(hours=2))
    assert third.uploaded
    assert (len(endpoint.requests("hub")), len(endpoint.requests("podping"))) == (2, 2)


def test_the_feed_names_the_hub_only_when_one_is_configured(place, endpoint, monkeypatch):
    episodes = [make_episode(1)]
    upload_audio(place["storage"], episodes)
    catalog = save_catalog(place["storage"], Catalog(episodes, None), saved_at=NOW)

    def run(settings: Settings) -> FeedResult:
        return publish_feed(
            place["storage"], place["show"], place["show_dir"], catalog, settings, NOW
        )

    def staleness(settings: Settings) -> str:
        return feed_staleness(place["storage"], place["show"], place["show_dir"], settings, NOW)

    plain_settings = place["settings"]  # the fixture's: no hub, no Podping
    plain = run(plain_settings)
    assert hub_links(live_feed(place)) == [] and plain.announced == ()
    assert endpoint.seen == [] and staleness(plain_settings) == ""
    assert hub_links(build(episodes)) == []
    assert hub_links(build(episodes, hub="https://hub.example/")) == ["https://hub.example/"]

    settings = announcing(place, endpoint, monkeypatch)
    # The hub is one of the feed's inputs: setting it makes the live feed stale, so the next
    # run rebuilds it with the link, and tells the hub.
    assert "a feed setting changed" in staleness(settings)
    with_hub = run(settings)
    assert with_hub.uploaded and len(endpoint.requests("hub")) == 1
    feed = live_feed(place)
    assert hub_links(feed) == [endpoint.url("hub")]
    self_links = parse(feed).findall("channel/atom:link[@rel='self']", NS)
    assert [link.get("href") for link in self_links] == [with_hub.feed_url]
    assert staleness(settings) == ""


# --- failures: retried, then a warning; the run goes on ------------------------------------


def test_a_failed_try_is_retried_and_the_second_one_tells(place, endpoint, monkeypatch, caplog):
    announcing(place, endpoint, monkeypatch)
    endpoint.script("hub", 500, 204)
    endpoint.script("podping", 503, 200)
    episodes = [make_episode(1)]
    upload_audio(place["storage"], episodes)
    with caplog.at_level(logging.INFO):
        result = publish(place, episodes)
    assert (len(endpoint.requests("hub")), len(endpoint.requests("podping"))) == (2, 2)
    assert "hub told (2 tries)" in result.summary()
    assert "podping told (2 tries)" in result.summary()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_endpoint_that_always_fails_warns_and_the_run_succeeds(
    place, endpoint, monkeypatch, caplog
):
    announcing(place, endpoint, monkeypatch, http_retries=2)
    endpoint.script("hub", 500)
    episodes = [make_episode(1)]
    upload_audio(place["storage"], episodes)
    with caplog.at_level(logging.INFO):
        result = publish(place, episodes)
    assert result.uploaded and live_feed(place) is not None  # the feed is out all the same
    assert len(endpoint.requests("hub")) == 3  # 1 + KRAFTSAMLING_HTTP_RETRIES
    assert "hub failed: HTTP 500 Internal Server Error (3 tries)" in result.summary()
    assert "podping told" in result.summary()  # one failing target does not stop the other
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "hub" in warning.getMessage() and "HTTP 500" in warning.getMessage()
    assert "next poll" in warning.getMessage()


def test_a_refused_token_is_not_retried(place, endpoint, monkeypatch):
    announcing(place, endpoint, monkeypatch)
    endpoint.script("podping", 401)
    episodes = [make_episode(1)]
    upload_audio(place["storage"], episodes)
    result = publish(place, episodes)
    assert result.uploaded and len(endpoint.requests("podping")) == 1
    assert "podping failed: HTTP 401 Unauthorized (1 try)" in result.summary()


def test_an_unreachable_hub_warns_and_the_run_succeeds(place, endpoint, monkeypatch, caplog):
    announcing(place, endpoint, monkeypatch, http_retries=1)
    place["settings"] = place["settings"].model_copy(
        update={"websub_hub": f"http://127.0.0.1:{free_port()}/hub"}
    )
    episodes = [make_episode(1)]
    upload_audio(place["storage"], episodes)
    result = publish(place, episodes)
    assert result.uploaded
    assert "hub failed: could not connect (ConnectError" in result.summary()
    assert "(2 tries)" in result.summary()
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_a_slow_endpoint_times_out(endpoint):
    settings = Settings.load(websub_hub=endpoint.url("slow"), http_timeout=0.3, http_retries=0)
    started = time.monotonic()
    [told] = announce_feed_change(BASE + "podcast/feed.xml", settings)
    assert time.monotonic() - started < 1.5
    assert (told.ok, told.detail) == (False, "timed out after 0.3 s (1 try)")


def test_retries_stop_at_the_time_budget(endpoint):
    endpoint.script("hub", 503)
    clock = [0.0]

    def sleep(seconds: float) -> None:  # time passes only while waiting
        clock[0] += seconds

    settings = Settings.load(websub_hub=endpoint.url("hub"), http_retries=10, http_backoff=4)
    [told] = announce_feed_change(
        BASE + "podcast/feed.xml", settings, sleep=sleep, clock=lambda: clock[0]
    )
    # Tries at 0 s, 4 s and 12 s; the next would start at 28 s, past the 20 s budget.
    assert BUDGET == 20
    assert len(endpoint.requests("hub")) == 3 and clock[0] == 12
    assert not told.ok and "no time left for another try within 20 s (3 tries)" in told.detail


# --- the token: in the header, nowhere else ---------------------------------------------------


def test_the_token_is_in_the_header_and_in_no_log_output_or_object(
    place, endpoint, monkeypatch, caplog, capfd
):
    settings = announcing(place, endpoint, monkeypatch, http_retries=1)
    endpoint.script("podping", 500, 401)  # a retry and a refusal: every log path is taken
    episodes = [make_episode(1)]
    upload_audio(place["storage"], episodes)
    with caplog.at_level(logging.DEBUG):  # every logger, httpx and httpcore included
        result = publish(place, episodes)

    assert [r.headers["authorization"] for r in endpoint.requests("podping")] == [TOKEN, TOKEN]
    assert any("podping" in r.getMessage() for r in caplog.records if r.levelno >= 30)
    assert any(r.name.startswith("httpx") for r in caplog.records)  # the wire log was on
    texts = {f"log {r.name}:{r.lineno}": r.getMessage() + repr(r.args) for r in caplog.records}
    out, err = capfd.readouterr()
    texts.update(
        {
            "stdout": out,
            "stderr": err,
            "summary": result.summary(),
            "result": repr(result),
            "settings repr": repr(settings),
            "settings str": str(settings),
            "settings json": settings.model_dump_json(),
        }
    )
    storage_root = Path(settings.storage)
    for path in storage_root.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    assert [where for where, text in texts.items() if TOKEN in text] == []


# --- the settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"websub_hub": "http://hub.example/"}, "websub_hub"),
        ({"websub_hub": "hub.example"}, "websub_hub"),
        ({"podping_url": "http://podping.example/", "podping_token": "t"}, "podping_url"),
        ({"podping_url": "https://podping.cloud/"}, "KRAFTSAMLING_PODPING_TOKEN"),
        ({"podping_token": "t"}, "KRAFTSAMLING_PODPING_URL"),
    ],
)
def test_bad_announcement_settings_are_refused_with_the_fix(changes, named):
    with pytest.raises(SettingsError, match=named):
        Settings.load(**changes)


def test_announcement_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("KRAFTSAMLING_WEBSUB_HUB", "https://pubsubhubbub.appspot.com/")
    monkeypatch.setenv("KRAFTSAMLING_PODPING_URL", "https://podping.cloud/")
    monkeypatch.setenv("KRAFTSAMLING_PODPING_TOKEN", TOKEN)
    settings = Settings.load()
    assert settings.websub_hub == "https://pubsubhubbub.appspot.com/"
    assert settings.podping_token is not None
    assert settings.podping_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)
    assert Settings.load(websub_hub="http://127.0.0.1:8080/hub").websub_hub  # a test hub
    for name in ("WEBSUB_HUB", "PODPING_URL", "PODPING_TOKEN"):
        monkeypatch.setenv(f"KRAFTSAMLING_{name}", "")
    empty = Settings.load()  # empty is unset: no one is told
    assert (empty.websub_hub, empty.podping_url, empty.podping_token) == (None, None, None)
