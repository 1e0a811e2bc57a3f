"""A lost catalog rebuilt (issue 20): the audio carries its guid, every catalog version is the
newest backup, and `recover-catalog` gives back the catalog from the newest backup, the live
feed and the audio's tags, keeping guids, dates, enclosures, lengths, scheduled and removed
episodes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import mutagen
import pytest
from conftest import REPO_ROOT
from test_podcast import T0, T1, audio, cover_bytes, put, run, settings_for, show_dir  # noqa: F401

from flows.core.errors import CatalogError
from flows.core.storage import LocalStorage
from flows.podcast.catalog import (
    CATALOG_KEY,
    backup_keys,
    load_catalog,
    remove_episodes,
)
from flows.podcast.feed import build_feed
from flows.podcast.feedpublish import publish_feed
from flows.podcast.recover import recover_catalog, write_recovered
from flows.podcast.show import load_show

LATER = T1 + timedelta(days=1)

# What the feed and the guids depend on (bookkeeping and producer notes aside).
FEED_FIELDS = (
    "guid", "slug", "title", "description_html", "publish_at", "duration", "size", "mime_type",
    "audio_key", "episode", "season", "episode_type", "explicit", "guests", "image_key",
    "transcript_key", "transcript_type", "chapters_key",
)  # fmt: skip


def _sidecar(title: str, number: int, publish_at: str) -> str:
    return f"---\ntitle: {title}\nepisode: {number}\npublish_at: {publish_at}\n---\nOm {title}.\n"


@pytest.fixture
def published(show_dir, audio, tmp_path):  # noqa: F811
    """Storage after a publish of three episodes (one scheduled), and a removal of one."""
    put(show_dir, "ett.mp3", audio["mp3"])
    put(show_dir, "ett.md", _sidecar("Ett", 1, "2026-02-20 07:00"))
    put(show_dir, "tva.mp3", audio["mp3_other"])
    put(show_dir, "tva.md", _sidecar("Två", 2, "2026-05-05 07:00"))  # scheduled
    put(show_dir, "tre.m4a", audio["m4a"])
    put(show_dir, "tre.md", _sidecar("Tre", 3, "2026-02-25 07:00"))
    storage = LocalStorage(tmp_path / "storage")
    report = run(show_dir, storage, T0)
    assert [o.status for o in report.outcomes] == ["published"] * 3, report.summary()
    tre = load_catalog(storage).by_slug("tre")
    removal = remove_episodes(storage, [tre.guid], T1)  # its backup named by the wall clock
    show = load_show(show_dir / "show.yaml")
    publish_feed(storage, show, show_dir, removal.catalog, settings_for(show_dir), T1)
    return storage, show


def _feed_of(show, episodes, now):
    return build_feed(show, episodes, public_url="https://media.example/", now=now)


def test_the_audio_carries_its_guid(published):
    storage, _ = published
    for episode in load_catalog(storage).episodes:
        tags = mutagen.File(storage.path_of(episode.audio_key)).tags
        guid = tags["TGID"].text[0] if "TGID" in tags else tags["egid"][0]
        assert guid == episode.guid, episode.slug


def test_a_deleted_catalog_comes_back_equal_from_its_newest_backup(published):
    storage, _ = published
    lost = storage.get_bytes(CATALOG_KEY)[0]
    assert storage.get_bytes(backup_keys(storage)[-1])[0] == lost  # the newest backup is it
    storage.delete(CATALOG_KEY)
    with pytest.raises(CatalogError, match="missing, but storage holds a feed"):
        load_catalog(storage)  # a run refuses to start a new one

    recovery = recover_catalog(storage, LATER)
    write_recovered(storage, recovery)

    assert storage.get_bytes(CATALOG_KEY)[0] == lost  # every field, byte for byte
    states = {
        ep.slug: (ep.removed_at is not None, ep.publish_at > LATER) for ep in recovery.episodes
    }
    assert states == {"ett": (False, False), "tva": (False, True), "tre": (True, False)}
    assert set(recovery.sources.values()) == {f"backup {backup_keys(storage)[-2]}"}


def test_without_backups_the_feed_and_the_audio_tags_give_back_guids_and_states(published):
    storage, show = published
    lost = load_catalog(storage).episodes
    storage.delete(CATALOG_KEY)
    for key in backup_keys(storage):
        storage.delete(key)

    recovery = recover_catalog(storage, LATER)

    got = {ep.guid: ep for ep in recovery.episodes}
    assert set(got) == {ep.guid for ep in lost}  # no guid lost, none new
    by_slug = {ep.slug: ep for ep in lost}
    ett = got[by_slug["ett"].guid]  # from the live feed: every field the feed uses
    for name in FEED_FIELDS:
        assert getattr(ett, name) == getattr(by_slug["ett"], name), name
    assert ett.sha256 == by_slug["ett"].sha256
    tva = got[by_slug["tva"].guid]  # scheduled, from its tags: still to come, not removed
    assert (tva.audio_key, tva.size, tva.title, tva.episode) == (
        by_slug["tva"].audio_key, by_slug["tva"].size, "Två", 2,
    )  # fmt: skip
    assert tva.removed_at is None and tva.publish_at.date() == by_slug["tva"].publish_at.date()
    tre = got[by_slug["tre"].guid]  # removed: not in the feed, its date past: stays removed
    assert tre.removed_at is not None and tre.audio_key == by_slug["tre"].audio_key
    assert any("tags' date" in c or "tag's date" in c for c in recovery.checks)
    # The feed built from it is the lost catalog's, byte for byte.
    assert _feed_of(show, recovery.episodes, LATER) == _feed_of(show, lost, LATER)


def test_a_backup_older_than_the_catalog_is_brought_up_to_date_from_the_feed(
    published,
    show_dir,  # noqa: F811
    audio,  # noqa: F811
):
    storage, show = published
    put(show_dir, "fyra.mp3", audio["mp3_tagged"])
    put(show_dir, "fyra.md", _sidecar("Fyra", 4, "2026-02-27 07:00"))
    assert [o.status for o in run(show_dir, storage, LATER).outcomes] == ["published"]
    lost = load_catalog(storage).episodes
    storage.delete(CATALOG_KEY)
    storage.delete(backup_keys(storage)[-1])  # as if the run had stopped before its backup

    recovery = recover_catalog(storage, LATER)

    fyra = next(ep for ep in lost if ep.slug == "fyra")
    got = next(ep for ep in recovery.episodes if ep.guid == fyra.guid)
    assert recovery.sources[fyra.guid] == "live feed"
    assert [getattr(got, n) for n in FEED_FIELDS] == [getattr(fyra, n) for n in FEED_FIELDS]
    assert _feed_of(show, recovery.episodes, LATER) == _feed_of(show, lost, LATER)


def test_recovery_refuses_where_a_catalog_exists_or_nothing_is_left(published, tmp_path):
    storage, _ = published
    with pytest.raises(CatalogError, match="exists: there is nothing to recover"):
        recover_catalog(storage, LATER)
    with pytest.raises(CatalogError, match="nothing to rebuild the catalog from"):
        recover_catalog(LocalStorage(tmp_path / "empty"), LATER)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "flows", "recover-catalog", *args],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120,
    )  # fmt: skip


def test_the_command_as_an_operator_runs_it(published):
    storage, _ = published
    lost = storage.get_bytes(CATALOG_KEY)[0]
    storage.delete(CATALOG_KEY)
    root = str(storage.root)

    dry = _cli("--storage", root, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert (
        "Would recover (nothing written)" in dry.stdout and "3 episodes (1 removed)" in dry.stdout
    )
    assert storage.get_bytes(CATALOG_KEY) is None

    done = _cli("--storage", root)
    assert done.returncode == 0, done.stderr
    assert "Recovered" in done.stdout
    assert storage.get_bytes(CATALOG_KEY)[0] == lost
    assert storage.get_bytes(backup_keys(storage)[-1])[0] == lost  # and backed up at once

    again = _cli("--storage", root)
    assert again.returncode == 1 and "nothing to recover" in again.stderr
