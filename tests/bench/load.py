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
  Target (from the 500-episode benchmark): zero uploads, under 200 ms.
- feed build: `flows.podcast.feed.build_feed` for the same catalogs (the feed-vs-feedgen rows are
  in bench_feed.py's part of the table, at 100/1,000/10,000 episodes).
- newsletter: `build_issue` (read/select/render/MJML/write) on a generated 2,000-entry (and
  200-entry) posts feed plus the demo events, with the 10,000-episode catalog passed in as
  the "listen" source. Targets: the email stays under Gmail's 102 KB (the max_items cap) and
  the demo target of 50 ms is shown beside it.

"Memory stays flat" is read as: the peak grows no faster than the data. A 10x larger
catalog is 10x more records to parse and keep, so the peak may grow up to 10x, not more;
the table shows the peak ratio beside the data ratio.
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
POSTS = (200, 2_000)
NOOP_TARGET_MS = 200.0
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
    """Set up, warm up, time `runs` runs, then measure one run's peak memory (two ways)."""
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        operation, facts = SCENARIOS[name](size, Path(tmp))
        operation()  # warm-up: imports, template compilation, caches
        walls, cpus = [0.0], [0.0]
        # The newsletter is timed stage by stage below (`_stages`), not here.
        for _ in range(runs if name != "newsletter" else 0):
            wall, cpu = time.perf_counter(), time.process_time()
            operation()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        _release()
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _status("VmRSS")
        operation()
        rss_peak = _status("VmHWM") - before
        gc.collect()
        tracemalloc.start()
        operation()
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        found = {key: value() if callable(value) else value for key, value in facts.items()}
        if name == "newsletter":
            found["stages"] = _stages(size, Path(tmp), runs)
    return {
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "rss_peak": rss_peak,
        "traced_peak": traced_peak,
        **found,
    }


def measure(name: str, size: int, runs: int) -> dict[str, Any]:
    """Run one scenario at one size in a fresh process; its figures as a dict."""
    done = subprocess.run(
        [sys.executable, __file__, "child", name, str(size), str(runs)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
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
                f"<= data ratio {data_ratio:.1f}x",
                verdict(ratio <= data_ratio * 1.1),
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

    bench = f"load: feed build ({large_n:,} episodes)"
    small, large = measure("feed", small_n, runs), measure("feed", large_n, runs)
    rows.append(
        Row(
            bench,
            f"build_feed (CPU), {large['data_bytes'] / 2**20:.1f} MiB feed",
            ms(large["cpu"]),
            ms(small["cpu"]) + f" ({small_n:,})",
            factor(large["cpu"] / small["cpu"]),
            "<= 10x (linear)",
            verdict(large["cpu"] / small["cpu"] <= 11),
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
