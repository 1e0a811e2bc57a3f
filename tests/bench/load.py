"""Load scenarios: a catalog of 10,000 episodes and a posts feed of 2,000 entries.

    python tests/bench/load.py [--quick] [--markdown]

Each scenario runs in a fresh subprocess (so one scenario's memory is not another's), which
builds its inputs, runs the operation once to warm up, then:

- time:   the median wall time (and CPU time) of a few runs;
- memory: the peak resident memory *during* one run, above the resident memory just before
          it (the kernel's high-water mark is reset first through /proc/self/clear_refs, so
          setup and imports do not count), and the peak of Python allocations (tracemalloc)
          in a further run. lxml's and mjml's C allocations show only in the first.

Scenarios, each at a small and a large size (10x apart):
- podcast no-op: `flows.podcast.run.publish` with an empty inbox over a catalog of 1,000 and
  10,000 realistic `Episode` records, in LocalStorage and in moto's in-process S3.
  Target (from the 500-episode benchmark): zero uploads, under 200 ms. (An empty inbox
  reads no catalog: these rows show that nothing grows when there is nothing to read.)
- catalog: `load_catalog` of the same catalogs from LocalStorage. Target (issue 23): the
  large one costs at most 11x the small one; peak memory grows no faster than the data.
- feed run, nothing new: what the hourly `feed` command does (`load_catalog`, then
  `publish_feed`) over a published feed of 1,000 and 10,000 episodes (+1 real one), with
  its storage requests counted (at 100 episodes too). Target: the same requests at every
  size, no upload.
- re-drop: `publish` with a published episode dropped again into the inbox (inspected,
  tagged, found unchanged), over the same storage. Target: the same requests at every size,
  no upload.
  Both are set up with one publish run whose storage answers HEAD for the catalog's audio as
  if it were uploaded, and reads its transcripts (10,000 files of 28 MB are not written;
  the web pages are made then); the measured runs see plain storage, so a run that looked
  at every enclosure again would find them missing and upload a changed feed. The set-up
  run's feed gate is skipped (the measured runs never call it: their feed is unchanged).
- feed build: `flows.podcast.feed.build_feed` for the same catalogs (the feed-vs-feedgen rows are
  in bench_feed.py's part of the table, at 100/1,000/10,000 episodes).
- newsletter: `build_issue` (read/select/render/MJML/write) on a generated 2,000-entry (and
  200-entry) posts feed plus the demo events, with the 10,000-episode catalog passed in as
  the "listen" source. Targets: the email stays under Gmail's 102 KB (the max_items cap) and
  the demo target of 50 ms is shown beside it.

"Memory stays flat" is read as: the peak grows no faster than the data. A 10x larger
catalog is 10x more records to parse and keep, so the peak may grow up to 10x; the check
allows 10% over the data ratio for the allocator's and the page size's granularity, and
the target column says so.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from table import Row, factor, mib, ms, verdict  # noqa: E402

MONTH = "2026-12"
NOW = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
EPISODES = (1_000, 10_000)
TINY = 100  # the feed no-op's and re-drop's requests are counted at this size too
POSTS = (200, 2_000)
NOOP_TARGET_MS = 200.0
CATALOG_TARGET = 11.0  # loading 10x the episodes costs at most this many times as much
FEED_TARGET = 11.0  # building the feed of 10x the episodes: linear, with 10% for noise
MEMORY_SLACK = 1.1  # a peak may grow 10% more than the data (allocator and page granularity)
NEWSLETTER_TARGET_MS = 50.0
GMAIL_CLIP = 102_000

# --- inputs -------------------------------------------------------------------------------

_KINDS = [  # (categories, title, body extra): the mix of a busy programme site
    (("Nyheter", "Kommuner"), "{town} kommun prövar AI för {topic}", ""),
    (("Nyheter", "Civilsamhälle"), "Föreningar i {town} delar erfarenheter av {topic}", ""),
    (
        ("Utlysningar",),
        "Utlysning: stöd för {topic} i {town}",
        "<p><strong>Sista ansökningsdag: {deadline}.</strong> Beslut meddelas inom sex veckor.</p>",
    ),
    (("Podd", "Digitalsamtal"), "Digitalsamtal: {topic} i {town}", ""),
    (("Webbinarium", "Inspelningar"), "Inspelning: webbinarium om {topic}", ""),
    (("Evenemang",), "Träff i {town} om {topic}", ""),
]
_TOWNS = ["Örebro", "Umeå", "Kiruna", "Gävle", "Växjö", "Luleå", "Karlstad", "Visby", "Ystad"]
_TOPICS = ["öppna data", "e-tjänster", "språkmodeller", "äldreomsorg", "skolskjuts", "bygglov"]
_MONTHS_SV = [
    "januari",
    "februari",
    "mars",
    "april",
    "maj",
    "juni",
    "juli",
    "augusti",
    "september",
    "oktober",
    "november",
    "december",
]


def posts_feed(count: int, newest: datetime = NOW - timedelta(hours=1)) -> bytes:
    """A WordPress-like RSS 2.0 feed of `count` Swedish entries, one every 3 hours back.

    Each entry has categories, a summary, ~1 KB of content:encoded HTML with an image, and
    funding calls state a deadline, like the demo feed's entries (all names are made up)."""
    items = []
    for n in range(count):
        categories, title, extra = _KINDS[n % len(_KINDS)]
        moment = newest - timedelta(hours=3 * n)
        due = (moment + timedelta(days=40)).date()
        words = {
            "town": _TOWNS[n % len(_TOWNS)],
            "topic": _TOPICS[(n // len(_KINDS)) % len(_TOPICS)],
            "deadline": f"{due.day} {_MONTHS_SV[due.month - 1]} {due.year}",
        }
        summary = (
            f"<p>I {words['town']} har kommunen och föreningslivet arbetat med "
            f"{words['topic']} i ett år. Här är vad de lärt sig, vad det kostade och vad "
            f"de gör annorlunda nästa gång &#8221;utan att tappa medarbetarna&#8221;. [&#8230;]</p>"
        )
        content = (
            f'<figure class="wp-block-image"><img src="https://kraftsamling.example/'
            f'wp-content/uploads/2026/{n % 12 + 1:02d}/bild-{n}.jpg" alt="Bild till inlägg {n}"'
            ' width="1200" height="675" /></figure>'
            + summary.replace(" [&#8230;]", "")
            + "<h2>Så gick det till</h2><p>Projektgruppen träffades varannan vecka och "
            "prövade tjänsten på riktiga ärenden. Inga personuppgifter lämnade kommunens "
            "egen miljö, och alla förslag granskades av en handläggare.</p>"
            "<ul><li>Börja i liten skala.</li><li>Låt medarbetarna vara med från start."
            "</li><li>Dela resultaten öppet.</li></ul>" + extra.format(**words)
        )
        cats = "".join(f"<category><![CDATA[{c}]]></category>" for c in categories)
        items.append(
            f"<item><title>{escape(title.format(**words))} ({n})</title>"
            f"<link>https://kraftsamling.example/{moment:%Y/%m/%d}/inlagg-{n}/</link>"
            f"<dc:creator><![CDATA[Redaktionen]]></dc:creator>"
            f"<pubDate>{format_datetime(moment)}</pubDate>{cats}"
            f'<guid isPermaLink="false">https://kraftsamling.example/?p={100000 + n}</guid>'
            f"<description><![CDATA[{summary}]]></description>"
            f"<content:encoded><![CDATA[{content}]]></content:encoded></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        "<title>Kraftsamling (lasttest)</title><link>https://kraftsamling.example/</link>"
        "<description>Genererat flöde för lasttest; allt innehåll är påhittat.</description>"
        "<language>sv-SE</language>" + "\n".join(items) + "</channel></rss>"
    ).encode("utf-8")


def episodes(count: int) -> list[Any]:
    """`count` realistic catalog records (the podcast benchmark's: guests, transcripts,
    a ~500-character description in text and HTML), all published before NOW, one every
    6 hours, so every one of them is in the feed."""
    from bench_podcast import fake_catalog

    last = NOW - timedelta(hours=1)
    return [
        ep.model_copy(update={"publish_at": when, "first_published": when, "last_updated": when})
        for ep in fake_catalog(count)
        for when in [last - timedelta(hours=6 * (count - ep.episode))]
    ]


# --- scenarios: setup -> operation ------------------------------------------------------------


def _noop(size: int, work: Path, where: str) -> tuple[Callable[[], Any], dict[str, float]]:
    from bench_podcast import episodes_folder

    from flows.core.s3 import S3Storage
    from flows.core.settings import Settings
    from flows.core.storage import LocalStorage
    from flows.podcast.catalog import Catalog, save_catalog
    from flows.podcast.run import publish

    settings = Settings.load(episodes_dir=str(episodes_folder(work)), settle_seconds=0)
    if where == "local":
        storage: Any = LocalStorage(work / "storage")
    else:
        from moto import mock_aws

        os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
        mock = mock_aws()
        mock.start()  # stays on for the life of this child process
        import boto3

        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="bench")
        storage = S3Storage("bench", "kraft", client=client)
    save_catalog(storage, Catalog(episodes(size)), NOW)
    data = len(storage.get_bytes("podcast/catalog.json")[0])
    uploads: list[int] = []

    def operation() -> Any:
        report = publish(settings, storage, NOW)
        uploads.append(report.uploads)
        return report

    return operation, {"data_bytes": data, "uploads": lambda: sum(uploads)}  # type: ignore[dict-item]


def _catalog(size: int, work: Path) -> tuple[Callable[[], Any], dict[str, float]]:
    from flows.core.storage import LocalStorage
    from flows.podcast.catalog import load_catalog

    # Written by another process (once for all samples, in BENCH_CATALOGS), as a run finds
    # it: the records made to write it would leave memory behind for the load to reuse.
    where = Path(os.environ.get("BENCH_CATALOGS", work))
    for count in (size, 10):
        if not (where / f"catalog-{count}").exists():
            command = [sys.executable, __file__, "write-catalog", str(where), str(count)]
            subprocess.run(command, check=True, cwd=ROOT)
    storage, small = LocalStorage(where / f"catalog-{size}"), LocalStorage(where / "catalog-10")
    data = len(storage.get_bytes("podcast/catalog.json")[0])
    facts = {"data_bytes": data, "warm_up": lambda: load_catalog(small)}
    return lambda: load_catalog(storage), facts  # type: ignore[return-value]


def write_catalog(folder: str, count: int) -> None:
    from flows.core.storage import LocalStorage
    from flows.podcast.catalog import Catalog, save_catalog

    save_catalog(LocalStorage(Path(folder) / f"catalog-{count}"), Catalog(episodes(count)), NOW)


class _Counting:
    """A storage that counts the requests made through it, and passes them on."""

    REQUESTS = ("head", "get_bytes", "put_bytes", "put_file", "list_keys", "delete")

    def __init__(self, inner: Any) -> None:
        self.inner, self.requests, self.puts = inner, 0, 0

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.inner, name)
        if name not in self.REQUESTS:
            return found

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.requests += 1
            # An upload changes something published; the run lock is only taken and freed.
            self.puts += name in ("put_bytes", "put_file") and args[0] != "podcast/.lock"
            return found(*args, **kwargs)

        return counted


class _AudioThere:
    """A storage where each catalog episode's audio is found with its size (HEAD), and its
    transcript can be read (set-up only: they are not written)."""

    TRANSCRIPT = b"WEBVTT\n\n00:00.000 --> 00:05.000\nHej och v\xc3\xa4lkommen.\n"

    def __init__(self, inner: Any, records: list[Any]) -> None:
        self.inner = inner
        self.sizes = {e.audio_key: e.size for e in records}
        self.transcripts = {e.transcript_key for e in records if e.transcript_key}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def head(self, key: str) -> Any:
        from flows.core.storage import ObjectInfo

        if key in self.sizes:
            return ObjectInfo(key, self.sizes[key], "bench")
        return self.inner.head(key)

    def get_bytes(self, key: str) -> Any:
        if key in self.transcripts:
            return self.TRANSCRIPT, "bench"
        return self.inner.get_bytes(key)


_REDROP = "avsnitt-igen"  # the real episode that the re-drop scenario drops again


def _published(size: int, work: Path) -> tuple[Any, Any, Path]:
    """LocalStorage with a catalog of `size` episodes and one real one, and the live feed of
    them all, as a publish run leaves it; the settings and the episodes folder."""
    from unittest import mock

    from bench_podcast import episodes_folder, tone_mp3

    from flows.core.settings import Settings
    from flows.core.storage import LocalStorage
    from flows.podcast.catalog import Catalog, save_catalog
    from flows.podcast.run import publish

    show_dir = episodes_folder(work)
    settings = Settings.load(episodes_dir=str(show_dir), settle_seconds=0)
    storage = LocalStorage(work / "storage")
    records = episodes(size)
    save_catalog(storage, Catalog(records), NOW)
    tone_mp3(work / "igen.mp3")
    _drop(work, show_dir)
    there = _AudioThere(storage, records)
    with mock.patch("flows.podcast.feedpublish.check_feed", return_value=[]):
        report = publish(settings, there, NOW)
    assert [o.status for o in report.outcomes] == ["published"], report.summary()
    return storage, settings, show_dir


def _drop(work: Path, show_dir: Path) -> None:
    import shutil

    shutil.copy(work / "igen.mp3", show_dir / "inbox" / f"{_REDROP}.mp3")
    (show_dir / "inbox" / f"{_REDROP}.md").write_text("---\ntitle: Igen\n---\n")


def _feed_noop(size: int, work: Path) -> tuple[Callable[[], Any], dict[str, float]]:
    from flows.podcast.catalog import load_catalog
    from flows.podcast.feedpublish import publish_feed
    from flows.podcast.show import load_show

    storage, settings, show_dir = _published(size, work)
    show = load_show(show_dir / "show.yaml")
    seen: list[_Counting] = []

    def operation() -> Any:
        counting = _Counting(storage)
        seen.append(counting)
        catalog = load_catalog(counting)
        return publish_feed(counting, show, show_dir, catalog, settings, NOW)

    return operation, _request_facts(storage, seen)


def _redrop(size: int, work: Path) -> tuple[Callable[[], Any], dict[str, float]]:
    from flows.podcast.run import publish

    storage, settings, show_dir = _published(size, work)
    seen: list[_Counting] = []

    def operation() -> Any:
        _drop(work, show_dir)
        counting = _Counting(storage)
        seen.append(counting)
        report = publish(settings, counting, NOW)
        assert [o.status for o in report.outcomes] == ["unchanged"], report.summary()
        return report

    return operation, _request_facts(storage, seen)


def _request_facts(storage: Any, seen: list[_Counting]) -> dict[str, float]:
    """The catalog's size, the last run's requests and every run's uploads."""
    data = len(storage.get_bytes("podcast/catalog.json")[0])
    facts = {
        "data_bytes": data,
        "requests": lambda: seen[-1].requests,
        "uploads": lambda: sum(c.puts for c in seen),
    }
    return facts  # type: ignore[return-value]


def _feed(size: int, work: Path) -> tuple[Callable[[], Any], dict[str, float]]:
    from flows.podcast.feed import build_feed
    from flows.podcast.show import load_show

    show = load_show(ROOT / "episodes" / "show.yaml")
    records = episodes(size)
    sizes: list[int] = []

    def operation() -> bytes:
        xml = build_feed(show, records, public_url="https://cdn.kraftsamling.example/", now=NOW)
        sizes.append(len(xml))
        return xml

    return operation, {"data_bytes": lambda: sizes[-1]}  # type: ignore[dict-item]


def _newsletter(size: int, work: Path) -> tuple[Callable[[], Any], dict[str, float]]:
    from bench_newsletter import DEMO_SOURCES, INTRO

    from flows.core.settings import Settings
    from flows.newsletter.build import build_issue

    feed = work / "posts.xml"
    feed.write_bytes(posts_feed(size))
    out = work / "newsletters"
    (out / MONTH).mkdir(parents=True)
    (out / MONTH / "intro.md").write_bytes(INTRO.read_bytes())
    settings = Settings.load(posts=[str(feed)], events=DEMO_SOURCES["events"], newsletters_dir=out)
    catalog = episodes(EPISODES[-1])
    html: list[int] = []

    def operation() -> Any:
        result = build_issue(settings, MONTH, NOW, episodes=catalog)
        assert result.written, result.message
        html.append((out / MONTH / "index.html").stat().st_size)
        return result

    return operation, {"data_bytes": feed.stat().st_size, "html_bytes": lambda: html[-1]}  # type: ignore[dict-item]


def _stages(size: int, work: Path, runs: int) -> dict[str, float]:
    """The newsletter build split by stage (bench_newsletter's phases) on the load inputs."""
    from bench_newsletter import DEMO_SOURCES, bench_pipeline

    from flows.core.settings import Settings

    feed = work / "stages-posts.xml"
    feed.write_bytes(posts_feed(size))
    settings = Settings.load(posts=[str(feed)], events=DEMO_SOURCES["events"])
    return bench_pipeline(
        runs, settings=settings, month=MONTH, now=NOW, episodes=episodes(EPISODES[-1])
    )


SCENARIOS = {
    "noop-local": lambda size, work: _noop(size, work, "local"),
    "noop-s3": lambda size, work: _noop(size, work, "s3"),
    "catalog": _catalog,
    "feed-noop": _feed_noop,
    "redrop": _redrop,
    "feed": _feed,
    "newsletter": _newsletter,
}

# --- the child process --------------------------------------------------------------------


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _release() -> None:
    """Collect garbage and hand free heap back to the system, so the peak that follows is
    this run's own and not memory the warm-up runs left resident."""
    gc.collect()
    # Not glibc: no malloc_trim, and the RSS figure is then a lower bound.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def child(name: str, size: int, runs: int) -> dict[str, Any]:
    """Set up, warm up, measure one run's peak resident memory, time `runs` runs, then
    measure one more run's peak of Python allocations."""
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        operation, facts = SCENARIOS[name](size, Path(tmp))
        # Imports, template compilation, caches; a scenario may warm up on smaller input, so
        # that the run measured next is, as in a real run, the first of its size.
        facts.pop("warm_up", operation)()
        _release()
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before, first_cpu = _status("VmRSS"), time.process_time()
        result = operation()
        first_cpu = time.process_time() - first_cpu
        rss_peak = _status("VmHWM") - before
        del result
        walls: list[float] = []
        cpus: list[float] = []
        # The newsletter is timed stage by stage below (`_stages`), not here.
        for _ in range(runs if name != "newsletter" else 0):
            wall, cpu = time.perf_counter(), time.process_time()
            result = operation()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            del result  # freeing what the operation returned is not its work: after the clock
        gc.collect()
        tracemalloc.start()
        operation()
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        found = {key: value() if callable(value) else value for key, value in facts.items()}
        if name == "newsletter":
            found["stages"] = _stages(size, Path(tmp), runs)
    return {
        "wall": statistics.median(walls) if walls else 0.0,
        "cpu": statistics.median(cpus) if cpus else 0.0,
        "first_cpu": first_cpu,  # the first run of its size in the process (no warm memory)
        "rss_peak": rss_peak,
        "traced_peak": traced_peak,
        **found,
    }


def measure(name: str, size: int, runs: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one scenario at one size in a fresh process; its figures as a dict."""
    done = subprocess.run(
        [sys.executable, __file__, "child", name, str(size), str(runs)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load scenario {name} ({size}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- rows ---------------------------------------------------------------------------------


def _memory_rows(
    bench: str, what: str, small: dict, large: dict, sizes: tuple[int, int]
) -> list[Row]:
    data_ratio = large["data_bytes"] / small["data_bytes"]
    rows = []
    for key, label in (
        ("rss_peak", "peak RSS during one run"),
        ("traced_peak", "tracemalloc peak"),
    ):
        ratio = large[key] / max(small[key], 1)
        rows.append(
            Row(
                bench,
                f"{what}: {label}, {sizes[1]:,} vs {sizes[0]:,}",
                mib(large[key]),
                f"{mib(small[key])} ({sizes[0]:,})",
                factor(ratio),
                f"<= {data_ratio * MEMORY_SLACK:.1f}x (data ratio {data_ratio:.1f}x + 10%)",
                verdict(ratio <= data_ratio * MEMORY_SLACK),
            )
        )
    return rows


def _pairs(
    name: str, count: int, runs: int, env: dict[str, str] | None = None
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], dict[str, Any], dict[str, Any]]:
    """`count` pairs of fresh processes, the small size then the large one, alternating, so
    that a pair's ratio compares runs made seconds apart on a shared machine; the pairs and
    the median of each figure at each size."""
    small_n, large_n = EPISODES
    pairs = [
        (measure(name, small_n, runs, env), measure(name, large_n, runs, env)) for _ in range(count)
    ]

    def medians(size: int) -> dict[str, Any]:  # 0: the small size, 1: the large one
        return {key: statistics.median(p[size][key] for p in pairs) for key in pairs[0][size]}

    return pairs, medians(0), medians(1)


def _catalog_rows(runs: int) -> list[Row]:
    """A run loads its catalog once, in a new process: each sample is the first load in a
    fresh process (after a 10-episode warm-up), the two sizes alternating; the ratio is the
    median of the pairs' ratios. Repeated loads in one process (shown for information) time
    the small catalog with its memory still in the CPU's cache and the large one without."""
    small_n, large_n = EPISODES
    bench = f"load: catalog ({large_n:,} episodes)"
    with tempfile.TemporaryDirectory(prefix="bench-catalogs-") as catalogs:
        env = {**os.environ, "BENCH_CATALOGS": catalogs}
        pairs, small, large = _pairs("catalog", max(3, runs), 3, env)
    ratio = statistics.median(b["first_cpu"] / a["first_cpu"] for a, b in pairs)
    row = Row(
        bench,
        f"load_catalog, first in a process, LocalStorage (CPU), "
        f"{large['data_bytes'] / 2**20:.1f} MiB catalog",
        ms(large["first_cpu"]),
        ms(small["first_cpu"]) + f" ({small_n:,})",
        factor(ratio),
        f"<= {CATALOG_TARGET:g}x",
        verdict(ratio <= CATALOG_TARGET),
    )
    again = Row(
        bench,
        "load_catalog, again in the same process (CPU)",
        ms(large["cpu"]),
        ms(small["cpu"]) + f" ({small_n:,})",
        factor(statistics.median(b["cpu"] / a["cpu"] for a, b in pairs)),
    )
    return [row, again, *_memory_rows(bench, "load_catalog", small, large, EPISODES)]


def _request_rows(runs: int) -> list[Row]:
    """The feed run with nothing new and the re-drop: time and storage requests by size. The
    requests are also counted at 100 episodes (the issue's figure: 10,000 makes as many as
    100); the time is compared with 1,000."""
    small_n, large_n = EPISODES
    rows = []
    for name, bench, what in (
        ("feed-noop", "feed run, nothing new", "load_catalog + publish_feed"),
        ("redrop", "re-drop of a published episode", "publish"),
    ):
        tiny = measure(name, TINY, 1)
        small, large = measure(name, small_n, runs), measure(name, large_n, runs)
        same = large["requests"] == small["requests"] == tiny["requests"]
        uploads = large["uploads"] + small["uploads"] + tiny["uploads"]
        rows.append(
            Row(
                f"load: {bench} ({large_n:,} episodes)",
                f"{what}, LocalStorage (CPU; requests: {large['requests']}, "
                f"uploads: {large['uploads']}; at {TINY}: requests {tiny['requests']})",
                ms(large["cpu"]),
                ms(small["cpu"]) + f" ({small_n:,}; requests: {small['requests']})",
                factor(large["cpu"] / small["cpu"]),
                f"requests as at {TINY} and {small_n:,}, 0 uploads",
                verdict(same and uploads == 0),
            )
        )
    return rows


def run(quick: bool = False) -> list[Row]:
    """The load rows of the benchmark table."""
    runs = 1 if quick else 7
    rows: list[Row] = []
    small_n, large_n = EPISODES
    bench = f"load: podcast no-op ({large_n:,} episodes)"
    for name, where in (("noop-local", "LocalStorage"), ("noop-s3", "S3 (moto in-process)")):
        small, large = measure(name, small_n, runs), measure(name, large_n, runs)
        rows.append(
            Row(
                bench,
                f"publish, empty inbox, {where} (CPU; uploads: {large['uploads']})",
                ms(large["cpu"]),
                ms(small["cpu"]) + f" ({small_n:,})",
                factor(large["cpu"] / small["cpu"]),
                "< 200 ms, 0 uploads",
                verdict(large["cpu"] * 1000 < NOOP_TARGET_MS and large["uploads"] == 0),
            )
        )
        rows += _memory_rows(bench, where, small, large, EPISODES)

    rows += _catalog_rows(runs)
    rows += _request_rows(runs)

    bench = f"load: feed build ({large_n:,} episodes)"
    # Paired processes, as for the catalog: two lone processes minutes apart differed 6x-14x.
    pairs, small, large = _pairs("feed", max(3, runs), 3)
    ratio = statistics.median(b["cpu"] / a["cpu"] for a, b in pairs)
    rows.append(
        Row(
            bench,
            f"build_feed (CPU), {large['data_bytes'] / 2**20:.1f} MiB feed",
            ms(large["cpu"]),
            ms(small["cpu"]) + f" ({small_n:,})",
            factor(ratio),
            f"<= {FEED_TARGET:g}x (linear, 10% for noise)",
            verdict(ratio <= FEED_TARGET),
        )
    )
    rows += _memory_rows(bench, "build_feed", small, large, EPISODES)

    small_p, large_p = POSTS
    bench = f"load: newsletter ({large_p:,} posts)"
    small, large = measure("newsletter", small_p, runs), measure("newsletter", large_p, runs)
    stages = large["stages"]
    for key in ("read", "select", "render", "mjml", "write"):
        rows.append(
            Row(
                bench,
                f"stage: {key} (CPU)",
                ms(stages[key]),
                ms(small["stages"][key]) + f" ({small_p:,})",
                factor(stages[key] / max(small["stages"][key], 1e-9)),
            )
        )
    rows.append(
        Row(
            bench,
            "build_issue (CPU)",
            ms(stages["build"]),
            ms(small["stages"]["build"]) + f" ({small_p:,})",
            factor(stages["build"] / small["stages"]["build"]),
            f"< {NEWSLETTER_TARGET_MS:.0f} ms (demo target)",
            verdict(stages["build"] * 1000 < NEWSLETTER_TARGET_MS),
        )
    )
    rows.append(
        Row(
            bench,
            "email HTML size (max_items cap)",
            f"{large['html_bytes'] / 1000:.1f} KB",
            f"{small['html_bytes'] / 1000:.1f} KB ({small_p:,})",
            factor(large["html_bytes"] / small["html_bytes"]),
            "< 102 KB",
            verdict(large["html_bytes"] < GMAIL_CLIP),
        )
    )
    rows += _memory_rows(bench, "build_issue", small, large, POSTS)
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "write-catalog":
        write_catalog(sys.argv[2], int(sys.argv[3]))
        return
    from table import format_table, machine_line

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed runs")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = run(args.quick)
    print(machine_line())
    print(format_table(rows, markdown=args.markdown))


if __name__ == "__main__":
    main()
