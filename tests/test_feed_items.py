"""The feed's items, written a chunk at a time by `flows.podcast.feeditems` (issue 23), are
byte for byte what lxml gives when it pretty-prints the whole feed tree at once, whatever
the items hold: episode numbers or none, extras, kept live items, more items than a chunk."""

from __future__ import annotations

import random
from datetime import timedelta

from lxml import etree
from test_feed import BASE, NOW, make_episode, make_show

from flows.core.models import Episode
from flows.podcast.catalog import dump_catalog, parse_catalog
from flows.podcast.feed import build_feed, feed_episodes
from flows.podcast.feeditems import _CHUNK
from flows.podcast.feedpublish import live_items


def varied(count: int, seed: int) -> list[Episode]:
    """Episodes of every shape the items take, in a random order of shapes."""
    rnd = random.Random(seed)
    episodes = []
    for n in range(1, count + 1):
        changes = {
            "episode": rnd.choice([None, n, n]),
            "season": rnd.choice([None, 1, 2]),
            "episode_type": rnd.choice(["full", "full", "bonus", "trailer"]),
            "explicit": rnd.random() < 0.2,
            "mime_type": rnd.choice(["audio/mpeg", "audio/mpeg", "audio/mp4"]),
            "guests": rnd.choice([[], [], ["Anna Ö"], ["Bo", "Cecilia & Co"]]),
            "image_key": rnd.choice([None, None, f"podcast/art/ep-{n}.jpg"]),
            "transcript_key": rnd.choice([None, f"podcast/transcripts/ep-{n}.vtt"]),
            "chapters_key": rnd.choice([None, f"podcast/chapters/ep-{n}.json"]),
            "description_html": rnd.choice(["", "<p>Rad ett</p>\n<p>Rad två ]]> & mer</p>"]),
        }
        episodes.append(make_episode(n, **changes))
    return episodes


def pretty_printed_whole(xml: bytes) -> bytes:
    """The feed's tree, read back and pretty-printed by lxml in one go."""
    parser = etree.XMLParser(remove_blank_text=True, strip_cdata=False)
    tree = etree.fromstring(xml, parser)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def test_items_written_in_chunks_are_the_whole_tree_pretty_printed():
    show = make_show(hosts=["Alva Exempelsson", "Bo Påhittad"])
    for seed, count in ((1, 0), (2, 1), (3, _CHUNK), (4, _CHUNK + 1), (5, 3 * _CHUNK + 5)):
        episodes = varied(count, seed)
        now = NOW + timedelta(weeks=count + 1)
        xml = build_feed(show, episodes, public_url=BASE, now=now)
        assert xml == pretty_printed_whole(xml), (seed, count)
        assert len(etree.fromstring(xml).findall("channel/item")) == count


def test_kept_live_items_go_in_as_they_were_between_written_ones():
    show = make_show()
    episodes = varied(2 * _CHUNK + 3, 7)
    now = NOW + timedelta(weeks=200)
    live = build_feed(show, episodes, public_url=BASE, now=now)
    items = live_items(live)
    kept = {guid: items[guid] for guid in sorted(items)[::5]}  # every fifth, spread out
    changed = [e.model_copy(update={"title": "Ny titel"}) for e in episodes]
    mixed = build_feed(show, changed, public_url=BASE, now=now, kept=kept)
    assert mixed == pretty_printed_whole(mixed)
    titles = {
        item.findtext("guid"): item.findtext("title")
        for item in etree.fromstring(mixed).iterfind("channel/item")
    }
    assert {g for g, t in titles.items() if t != "Ny titel"} == set(kept)


def test_equal_publish_times_are_ordered_by_guid_in_a_loaded_catalog_too():
    moment = make_episode(1).publish_at
    episodes = [make_episode(n, publish_at=moment + timedelta(hours=n % 3)) for n in range(1, 10)]
    loaded = parse_catalog(dump_catalog(episodes))  # times with pydantic's own time zones
    expected = sorted(episodes, key=lambda e: (e.publish_at, e.guid), reverse=True)
    now = moment + timedelta(days=1)
    assert [e.guid for e in feed_episodes(episodes, now)] == [e.guid for e in expected]
    assert [e.guid for e in feed_episodes(loaded, now)] == [e.guid for e in expected]
