"""Benchmark: build the podcast feed for 100, 1,000 and 10,000 episodes.

    python tests/bench/bench_feed.py [--runs 5]

Side by side, on the same show and catalog:
- ours:   `flows.podcast.feed.build_feed` (lxml builder, pretty-printed, forbidden
  characters removed);
- feedgen: `feedgen` with its podcast extension building the same items (it has no
  Podcasting 2.0 tags, so the catalog has no hosts or guests; the channel's podcast:guid,
  locked and medium are ours alone);
- floor:  a plain string join with `xml.sax.saxutils.escape`: the same text preparation as
  ours (forbidden characters removed, titles on one line, the description's HTML), then
  escape and join, no tree. What is left between ours and the floor is the cost of lxml.

Prints the median CPU time of a few interleaved runs per size. Targets: ours at least 2x
faster than feedgen and within 2x of the floor. Also times the publishing gate
(`check_feed`) once per size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flows.core.models import Episode, Show
from flows.podcast.feed import (
    build_feed,
    clean_text,
    description_html,
    enclosure_url,
    one_line,
    rfc2822,
)
from flows.podcast.feedgate import check_feed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import Row, factor, ms, verdict

BASE = "https://cdn.kraftsamling.example/"
START = datetime(2020, 1, 6, 6, 0, tzinfo=UTC)
NOW = datetime(2100, 1, 1, tzinfo=UTC)

SHOW = Show(
    title="Digitalsamtal",
    description="Samtal om digitalisering i offentlig sektor – från Kraftsamling.",
    author="Kraftsamling",
    owner_name="Redaktionen",
    owner_email="podd@kraftsamling.example",
    category="Government",
    website="https://kraftsamling.example/",
    image="cover.jpg",
    hosts=[],  # feedgen has no podcast:person: without persons all three build the same items
)


def catalog(count: int) -> list[Episode]:
    """`count` episodes with realistic field sizes (a ~600-character HTML description)."""
    html = (
        "<p>I det här avsnittet pratar vi om öppna data, e-tjänster & kommunernas vardag. "
        "Vad krävs för att digitaliseringen ska nå hela landet?</p>"
    ) * 4
    episodes = []
    for n in range(count):
        moment = START + timedelta(hours=6 * n)
        episodes.append(
            Episode(
                guid=f"5b0c6a3e-{n:04x}-4000-8000-{n:012x}"[:36],
                slug=f"avsnitt-{n}",
                title=f"Avsnitt {n}: Öppna data & kommunerna",
                description_html=html,
                publish_at=moment,
                duration=1800 + n,
                size=30_000_000 + n,
                mime_type="audio/mpeg",
                sha256=f"{n:064x}",
                audio_key=f"podcast/audio/avsnitt-{n}-{n:08x}.mp3",
                episode=n + 1,
                season=1 + n // 50,
                first_published=moment,
                last_updated=moment,
            )
        )
    return episodes


def ours(episodes: list[Episode]) -> bytes:
    return build_feed(SHOW, episodes, public_url=BASE, now=NOW)


def with_feedgen(episodes: list[Episode]) -> bytes:
    from feedgen.feed import FeedGenerator

    fg = FeedGenerator()
    fg.load_extension("podcast")
    fg.title(SHOW.title)
    fg.link(href=SHOW.website, rel="alternate")
    fg.link(href=BASE + "podcast/feed.xml", rel="self")
    fg.description(SHOW.description)
    fg.language("sv")
    fg.copyright(f"© {SHOW.author}")
    fg.lastBuildDate(max(e.last_updated for e in episodes))
    fg.podcast.itunes_author(SHOW.author)
    fg.podcast.itunes_owner(name=SHOW.owner_name, email=SHOW.owner_email)
    fg.podcast.itunes_image(BASE + "podcast/art/cover.jpg")
    fg.podcast.itunes_category(SHOW.category)
    fg.podcast.itunes_explicit("no")
    fg.podcast.itunes_type("episodic")
    for episode in sorted(episodes, key=lambda e: e.publish_at, reverse=True):
        fe = fg.add_entry(order="append")
        fe.guid(episode.guid, permalink=False)
        fe.title(episode.title)
        fe.description(episode.description_html)
        fe.content(episode.description_html, type="CDATA")
        fe.published(episode.publish_at)
        fe.enclosure(enclosure_url(BASE, episode.audio_key), str(episode.size), episode.mime_type)
        fe.podcast.itunes_duration(episode.duration)
        fe.podcast.itunes_episode(episode.episode)
        fe.podcast.itunes_season(episode.season)
        fe.podcast.itunes_episode_type(episode.episode_type)
        fe.podcast.itunes_explicit("no")
    return fg.rss_str(pretty=True)


def floor(episodes: list[Episode]) -> bytes:
    """The least work for the same valid bytes: the same cleaning, then escape and join."""
    hosts = "".join(
        f'<podcast:person role="host">{escape(one_line(name))}</podcast:person>'
        for name in SHOW.hosts
    )
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
        'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd" '
        'xmlns:podcast="https://podcastindex.org/namespace/1.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>',
        f"<title>{escape(SHOW.title)}</title><description>{escape(SHOW.description)}"
        f"</description><language>sv</language>",
    ]
    for e in sorted(episodes, key=lambda e: e.publish_at, reverse=True):
        body = description_html(e)
        url = quoteattr(clean_text(enclosure_url(BASE, e.audio_key)))
        guests = "".join(
            f'<podcast:person role="guest">{escape(one_line(name))}</podcast:person>'
            for name in e.guests
        )
        parts.append(
            f"<item><title>{escape(one_line(e.title))}</title>"
            f"<description><![CDATA[{body}]]></description>"
            f"<content:encoded><![CDATA[{body}]]></content:encoded>"
            f'<guid isPermaLink="false">{escape(clean_text(e.guid))}</guid>'
            f"<pubDate>{rfc2822(e.publish_at)}</pubDate>"
            f'<enclosure url={url} length="{e.size}" type={quoteattr(clean_text(e.mime_type))}/>'
            f"<itunes:duration>{e.duration}</itunes:duration>"
            f"<itunes:episode>{e.episode}</itunes:episode>"
            f"<itunes:season>{e.season}</itunes:season>"
            f"<itunes:episodeType>{e.episode_type}</itunes:episodeType>"
            f"<itunes:explicit>false</itunes:explicit>{hosts}{guests}</item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


def medians(builders: dict, episodes: list[Episode], runs: int) -> dict[str, float]:
    """Median CPU seconds per builder. Runs are interleaved and timed with process CPU time,
    so load from other processes on a shared machine skews all builders alike (and little)."""
    times: dict[str, list[float]] = {name: [] for name in builders}
    for _ in range(runs):
        for name, build in builders.items():
            started = time.process_time()
            build(episodes)
            times[name].append(time.process_time() - started)
    return {name: statistics.median(values) for name, values in times.items()}


SIZES = (100, 1_000, 10_000)


def measure(count: int, runs: int) -> dict[str, float]:
    """Median CPU seconds of ours, feedgen and the floor for `count` episodes, and the size."""
    episodes = catalog(count)
    ours(episodes), with_feedgen(episodes[:10]), floor(episodes)  # warm up
    result = medians(
        {"ours": ours, "feedgen": with_feedgen, "floor": floor},
        episodes,
        runs * max(1, 1000 // count),  # small sizes are quick: more runs, less noise
    )
    result["kib"] = len(ours(episodes)) / 1024
    return result


def gate_seconds(count: int) -> float:
    """CPU seconds of one `check_feed` over a feed of `count` episodes."""
    episodes = catalog(count)
    xml = ours(episodes)
    started = time.process_time()
    problems = check_feed(xml, live_xml=xml, episodes=episodes)
    assert problems == [], problems
    return time.process_time() - started


def run(quick: bool = False) -> list[Row]:
    """The table's rows: ours beside feedgen and beside the string-join floor, per size."""
    rows = []
    for count in SIZES:
        r = measure(count, 2 if quick else 5)
        name = f"feed build ({count:,} episodes)"
        rows.append(
            Row(
                name,
                "build_feed vs feedgen (CPU)",
                ms(r["ours"]),
                ms(r["feedgen"]) + " feedgen",
                factor(r["feedgen"] / r["ours"]),
                "feedgen/ours >= 2x",
                verdict(r["feedgen"] / r["ours"] >= 2),
            )
        )
        rows.append(
            Row(
                name,
                "build_feed vs string-join floor (CPU)",
                ms(r["ours"]),
                ms(r["floor"]) + " floor",
                factor(r["ours"] / r["floor"]),
                "ours/floor <= 2x",
                verdict(r["ours"] / r["floor"] <= 2),
            )
        )
        if not quick:
            gate = gate_seconds(count)
            rows.append(
                Row(
                    name,
                    "publishing gate check_feed (CPU)",
                    ms(gate),
                    ms(r["ours"]) + " build",
                    factor(gate / r["ours"]),
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per size (median)")
    args = parser.parse_args()
    print(f"median of {args.runs} interleaved runs (x10 for 100 episodes), CPU milliseconds")
    header = (
        f"{'episodes':>9} {'ours':>9} {'feedgen':>9} {'floor':>9} "
        f"{'feedgen/ours':>13} {'ours/floor':>11} {'feed KiB':>9}"
    )
    print(header)
    print("-" * len(header))
    for count in SIZES:
        result = measure(count, args.runs)
        t_ours, t_fg, t_floor = result["ours"], result["feedgen"], result["floor"]
        size = result["kib"]
        print(
            f"{count:>9,} {t_ours * 1e3:>9.1f} {t_fg * 1e3:>9.1f} {t_floor * 1e3:>9.1f} "
            f"{t_fg / t_ours:>12.1f}x {t_ours / t_floor:>10.2f}x {size:>9,.0f}"
        )
    print("targets: feedgen/ours >= 2.0x, ours/floor <= 2.0x")
    print()
    print("the gate (check_feed: feedparser + podcastparser + lxml), one run, CPU seconds")
    for count in SIZES:
        print(f"{count:>9,} {gate_seconds(count):>9.2f}")


if __name__ == "__main__":
    main()
