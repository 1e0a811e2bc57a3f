"""Feed cases as data: a catalog in, what a podcast client reads back out.

Every `tests/data/feed-cases/<name>.json` is one case: the show (show.yaml's keys), the
catalog (`podcast/catalog.json`'s document), the public URL and the run's "now". Beside it,
`<name>.expected.json` holds what podcastparser reads from the feed built from it, and the
entries feedparser reads. Adding a case is adding those two files; write the first with
this file's `about`/`show`/`catalog` keys, then make its expected file with

    REGEN_GOLDENS=1 python -m pytest tests/test_feed_cases.py

and review it like code. Every case must also pass the publishing gate (`check_feed`).
"""

from __future__ import annotations

import calendar
import io
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import feedparser
import podcastparser
import pytest

from flows.core.models import Episode
from flows.podcast.catalog import parse_catalog
from flows.podcast.feed import FEED_KEY, build_feed, feed_episodes
from flows.podcast.feedgate import check_feed
from flows.podcast.show import parse_show

CASES = Path(__file__).parent / "data" / "feed-cases"


def case_files() -> list[Path]:
    return sorted(p for p in CASES.glob("*.json") if not p.name.endswith(".expected.json"))


def build_case(case: dict[str, Any]) -> tuple[bytes, list[Episode]]:
    """The feed's bytes and the episodes it must hold (as publish_feed gates it)."""
    # JSON is YAML, so the show goes through the same parser as episodes/show.yaml.
    show = parse_show(json.dumps(case["show"], ensure_ascii=False), "show")
    catalog = json.dumps(case["catalog"], ensure_ascii=False).encode("utf-8")
    episodes = parse_catalog(catalog, "catalog")
    now = datetime.fromisoformat(case["now"])
    xml = build_feed(show, episodes, public_url=case["public_url"], now=now)
    return xml, feed_episodes(episodes, now)


def read_back(xml: bytes, public_url: str) -> dict[str, Any]:
    """What two real podcast clients read from the feed, as plain JSON."""
    fp = feedparser.parse(io.BytesIO(xml))
    assert not fp.bozo, f"feedparser cannot read the feed: {fp.get('bozo_exception')}"
    entries = [
        {
            "id": entry.get("id"),
            "title": entry.get("title"),
            "link": entry.get("link"),
            "published": calendar.timegm(entry.published_parsed),
            "itunes_duration": entry.get("itunes_duration"),
            "enclosures": [
                {"href": e.get("href"), "length": e.get("length"), "type": e.get("type")}
                for e in entry.get("enclosures", [])
            ],
        }
        for entry in fp.entries
    ]
    gp = podcastparser.parse(public_url + FEED_KEY, io.BytesIO(xml))
    return {
        "podcastparser": json.loads(json.dumps(gp)),
        "feedparser": {"title": fp.feed.get("title"), "entries": entries},
    }


def test_there_are_cases():
    assert len(case_files()) >= 3, f"no feed cases found in {CASES}"


@pytest.mark.parametrize("path", case_files(), ids=lambda p: p.stem)
def test_feed_case(path: Path):
    case = json.loads(path.read_text(encoding="utf-8"))
    xml, episodes = build_case(case)
    assert check_feed(xml, live_xml=None, episodes=episodes) == []
    got = read_back(xml, case["public_url"])
    expected_path = path.with_suffix(".expected.json")
    if os.environ.get("REGEN_GOLDENS"):
        text = json.dumps(got, indent=2, sort_keys=True, ensure_ascii=False)
        expected_path.write_text(text + "\n", encoding="utf-8")
    assert expected_path.exists(), (
        f"{expected_path.name} is missing: make it with "
        "REGEN_GOLDENS=1 python -m pytest tests/test_feed_cases.py, then review it."
    )
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    assert got == expected, f"the feed built from {path.name} reads back differently"
