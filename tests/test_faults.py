"""Publishing through a flaky S3: 30% of requests fail (500, 503 SlowDown, a connection
reset mid-body, a stall past the read timeout), injected by `tests/faultproxy.py` between
the storage client and moto's HTTP server.

The publish runs every 15 minutes (as its schedule would) until the inbox is empty; then,
checked directly against moto (not through the proxy): every episode is in the catalog
exactly once with the guid it got when it was first published, every audio object exists
with the catalog's size and no other audio was uploaded, the feed reads cleanly in
feedparser and podcastparser and lists every episode, and no file left the drop folder
except into published/.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import faultproxy
import feedparser
import podcastparser
import pytest
from crashpoints import drop, make_show, make_tone
from faultproxy import FaultProxy, quick_retries

from flows.core.errors import KraftsamlingError
from flows.core.s3 import S3Storage
from flows.podcast.catalog import CATALOG_KEY
from flows.podcast.feed import FEED_KEY
from flows.podcast.lock import LOCK_KEY
from flows.podcast.run import publish

EPISODES = 20
FAIL_RATE = 0.3
SEED = 20260301
MAX_RUNS = 30  # 7.5 hours of the 15-minute schedule
T0 = datetime(2026, 3, 20, 6, 0, tzinfo=UTC)
PUBLIC = "https://kraftsamling.example/"

fault_proxy = faultproxy.fault_proxy  # the fixture, used in this module


@pytest.fixture(scope="module")
def tone(tmp_path_factory) -> Path:
    return make_tone(tmp_path_factory.mktemp("tone") / "tone.mp3")


def test_publishing_through_thirty_percent_failures_converges(
    tone, tmp_path, s3_http, fault_proxy: Callable[..., FaultProxy]
):
    show_dir = make_show(tmp_path / "episodes")
    for n in range(1, EPISODES + 1):
        drop(
            show_dir,
            f"avsnitt-{n:02d}",
            tone,
            title=f"Samtal nummer {n}",
            number=n,
            publish_at=(T0 - timedelta(days=EPISODES - n)).strftime("%Y-%m-%d"),
            transcript=n % 5 == 0,
        )
    dropped = sorted(p.name for p in (show_dir / "inbox").iterdir())

    proxy = fault_proxy(fail_rate=FAIL_RATE, seed=SEED, bucket=s3_http.bucket, stall_seconds=2)
    settings = s3_http.settings(
        "kraft", episodes_dir=str(show_dir), settle_seconds=0, s3_endpoint_url=proxy.url
    )
    attempts = 4
    # Settings has no S3 timeouts, so the storage is built here: a stall of 2 s must outlast
    # the read timeout, and botocore's standard retries keep their rules but sleep less.
    flaky = S3Storage(
        s3_http.bucket,
        "kraft",
        region="us-east-1",
        endpoint_url=proxy.url,
        max_attempts=attempts,
        connect_timeout=1,
        read_timeout=1,
    )
    quick_retries(flaky.client, attempts, seed=SEED)
    direct = s3_http.storage("kraft")  # moto itself, no faults

    guids: dict[str, str] = {}
    runs = errors = locked = 0
    started = time.monotonic()
    # The schedule runs again while drops wait or the feed is not out yet (an empty inbox
    # rebuilds a stale feed: `feed_staleness`).
    while runs < MAX_RUNS and (
        any((show_dir / "inbox").iterdir()) or direct.head(FEED_KEY) is None
    ):
        now = T0 + timedelta(minutes=15 * runs)
        runs += 1
        try:
            report = publish(settings, flaky, now)
        except KraftsamlingError:
            errors += 1  # e.g. the catalog could not be read: the schedule runs again
        else:
            locked += bool(report.locked_by)
        found = direct.get_bytes(CATALOG_KEY)
        for episode in json.loads(found[0])["episodes"] if found else []:
            first = guids.setdefault(episode["slug"], episode["guid"])
            assert episode["guid"] == first, f"{episode['slug']}'s guid changed in run {runs}"
    elapsed = time.monotonic() - started
    summary = (
        f"{runs} runs ({errors} ended in an error, {locked} found the lock held) in "
        f"{elapsed:.1f} s; proxy: {dict(proxy.counts)}"
    )
    print(summary)  # shown with -s: the figures for the report

    # About 120 requests, 30% of them failed (a feed build HEADs only the enclosures the
    # live feed does not carry yet, and a no-op compares first, so fewer than before).
    assert proxy.faults > 25, f"too few faults to mean anything: {summary}"
    assert not any((show_dir / "inbox").iterdir()), f"inbox not empty after {summary}"
    assert not (show_dir / "failed").exists(), f"an episode was refused: {summary}"
    # (A published episode with warnings also gets a `.notes.txt` beside it.)
    published = sorted(p.name for p in (show_dir / "published").iterdir())
    published = [name for name in published if not name.endswith(".notes.txt")]
    assert published == dropped, f"drop folder lost or renamed files: {summary}"

    proxy.enabled = False  # from here on only moto's own answers count
    catalog = json.loads(direct.get_bytes(CATALOG_KEY)[0])["episodes"]
    slugs = [ep["slug"] for ep in catalog]
    assert sorted(slugs) == [f"avsnitt-{n:02d}" for n in range(1, EPISODES + 1)], summary
    assert len({ep["guid"] for ep in catalog}) == EPISODES, "a guid is shared"
    assert {ep["slug"]: ep["guid"] for ep in catalog} == guids
    for episode in catalog:
        info = direct.head(episode["audio_key"])
        assert info is not None and info.size == episode["size"], episode["audio_key"]
    audio_keys = direct.list_keys("podcast/audio/")
    assert sorted(audio_keys) == sorted(ep["audio_key"] for ep in catalog), (
        "audio objects that no catalog entry names were uploaded"
    )
    assert direct.head(LOCK_KEY) is None, "the publish lock was left behind"

    feed = direct.get_bytes(FEED_KEY)
    assert feed is not None, f"no feed was ever published: {summary}"
    parsed = feedparser.parse(io.BytesIO(feed[0]))
    assert not parsed.bozo, parsed.get("bozo_exception")
    items = podcastparser.parse(PUBLIC + FEED_KEY, io.BytesIO(feed[0]))["episodes"]
    assert sorted(item["guid"] for item in items) == sorted(guids.values()), (
        f"the feed lists {len(items)} of {EPISODES} episodes: the catalog got every episode "
        "but the feed was not rebuilt after a lost catalog answer (flows/podcast/run.py `finish` "
        f"rebuilds the feed only when the catalog changed); {summary}"
    )
    for item in items:
        (enclosure,) = item["enclosures"]
        info = direct.head(enclosure["url"].removeprefix(PUBLIC))
        assert info is not None and info.size == enclosure["file_size"], enclosure["url"]


def test_a_lost_answer_to_the_lock_write_does_not_lock_the_run_out(
    tone, tmp_path, s3_http, fault_proxy: Callable[..., FaultProxy]
):
    """The lock's create reaches the store but its answer is lost (a stall past the read
    timeout); botocore retries, the retry finds the lock. It is this run's own lock."""
    show_dir = make_show(tmp_path / "episodes")
    drop(show_dir, "avsnitt-01", tone, title="Samtal", number=1, publish_at="2026-03-01")
    lock_put = f"PUT /kraft/{LOCK_KEY}?"
    proxy = fault_proxy(bucket=s3_http.bucket, fail_rate=0, script={lock_put: ["stall"]})
    proxy.stall_seconds = 1.5
    storage = S3Storage(
        s3_http.bucket, "kraft", region="us-east-1", endpoint_url=proxy.url, read_timeout=1
    )
    quick_retries(storage.client, 3)
    settings = s3_http.settings("kraft", episodes_dir=str(show_dir), settle_seconds=0)
    report = publish(settings, storage, T0)
    assert proxy.counts["stall"] == 1, proxy.log
    later = publish(settings, storage, T0 + timedelta(minutes=15))
    assert not report.locked_by and report.count("published") == 1, (
        "the run locked itself out: its lock create was applied but the answer lost, the "
        "retry got 412 and acquire_run_lock took the lock it had just written (same run_id) "
        "for another run's. It also never released it, so the 15-minute runs after it are "
        f"blocked until the lock is stale (lock_stale_seconds). Run 1: {report.summary()} / "
        f"run 2: {later.summary()}"
    )
    assert s3_http.storage("kraft").head(LOCK_KEY) is None, "the lock was left behind"
