"""Reading the catalog in one pass (issue 23): pydantic's JSON parser reads a well-formed
catalog; anything it refuses is read again step by step, which names the problem. Both
readings must agree on every catalog the one pass accepts."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime, timedelta

import pytest

from flows.core.errors import CatalogError
from flows.core.models import Chapter, Episode
from flows.podcast import catalog as catalog_module
from flows.podcast.catalog import dump_catalog, parse_catalog

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def rich(n: int) -> Episode:
    """An episode with every kind of field filled in."""
    moment = T0 + timedelta(days=n)
    return Episode(
        guid=f"3f1c2a4e-0000-4000-8000-{n:012d}",
        slug=f"avsnitt-{n}",
        title="Öppna data & AI 😀 \u2013 del två",
        description="Rad ett\n\nRad två med <b>tecken</b> & mer.",
        description_html="<p>Rad ett</p>\n<p>Rad två</p>",
        publish_at=moment,
        duration=1800 + n,
        size=28_000_000 + n,
        mime_type="audio/mpeg",
        sha256=f"{n:064x}",
        audio_key=f"podcast/audio/avsnitt-{n}-{n:08x}.mp3",
        episode=n,
        season=2,
        episode_type="bonus",
        explicit=True,
        guests=["Cecilia Påhittad", "Bo Exempel"],
        image_key=f"podcast/art/avsnitt-{n}.jpg",
        transcript_key=f"podcast/transcripts/avsnitt-{n}.vtt",
        transcript_type="text/vtt",
        chapters_key=f"podcast/chapters/avsnitt-{n}.json",
        chapters=[Chapter(start=0, title="Intro"), Chapter(start=90.5, title="Samtal")],
        first_published=moment,
        last_updated=moment + timedelta(hours=1),
        source_sha256="1" * 64,
        master_key=f"podcast/masters/avsnitt-{n}.flac",
        loudness={"integrated": -16.0, "true_peak": -1.2, "range": 6.5},
        warnings=["Lite tyst i början."],
        removed_at=moment + timedelta(days=3) if n % 2 else None,
    )


def test_the_one_pass_reading_gives_what_the_checked_reading_gives():
    document = json.loads(dump_catalog([rich(n) for n in range(1, 6)]))
    # What a hand edit or an older version may leave: an unknown key, a whole float, a
    # number as text, a time with another offset.
    document["comment"] = "handredigerad"
    first = document["episodes"][0]
    first["unknown"] = {"nested": [1, 2]}
    first["duration"] = 1801.0
    first["size"] = "28000001"
    first["publish_at"] = "2026-03-02T09:00:00+01:00"
    data = json.dumps(document, ensure_ascii=False).encode()
    assert catalog_module._read_fast(data) is not None  # the one pass took it
    assert parse_catalog(data) == catalog_module._read_checked(data, "catalog.json")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'{"version": 1, "episodes": [{"slug": "\\ud800"}]}', "lone surrogate"),
        (b'{"version": 1, "episodes": [], "note": "\\udfff"}', "lone surrogate"),
        (b'\xef\xbb\xbf{"version": 1, "episodes": []}', "not valid JSON"),
        (b'{"version": 1, "episodes": ["\xff"]}', "not UTF-8"),
        (b'{"version": 2, "episodes": []}', "version 2"),
        (b'{"version": null, "episodes": []}', "version None"),
        (b'{"version": 1, "episodes": {}}', "no 'episodes' list"),
        (b'{"version": 1, "episodes": [{"slug": "x"}]}', "episode #1 \\(x\\) is invalid"),
        (b'{"version": 1, "episodes": []} trailing', "not valid JSON"),
    ],
)
def test_what_the_one_pass_refuses_is_named_by_the_checked_reading(data, problem):
    assert catalog_module._read_fast(data) is None
    with pytest.raises(CatalogError, match=problem):
        parse_catalog(data)


def test_garbage_collection_is_left_as_it_was():
    good = dump_catalog([rich(1)])
    bad = b'{"version": 1, "episodes": [{"slug": "x"}]}'
    assert gc.isenabled()
    parse_catalog(good)
    with pytest.raises(CatalogError):
        parse_catalog(bad)
    assert gc.isenabled()
    gc.disable()
    try:
        parse_catalog(good)
        assert not gc.isenabled()  # not switched on behind the caller's back
    finally:
        gc.enable()
