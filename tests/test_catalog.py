"""The podcast catalog: guids that never change, deterministic bytes, safe concurrent writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from flows.core.errors import CatalogError
from flows.core.models import STOCKHOLM, Episode
from flows.core.storage import CACHE_PRIVATE, LocalStorage
from flows.podcast.catalog import (
    BACKUP_PREFIX,
    CATALOG_KEY,
    Catalog,
    backup_keys,
    dump_catalog,
    heal_backup,
    load_catalog,
    mark_removed,
    new_guid,
    parse_catalog,
    prune_backups,
    remove_episodes,
    save_catalog,
    upsert,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
T1 = T0 + timedelta(days=1)


def record(slug: str = "avsnitt-1", **changes) -> Episode:
    """A record as the pipeline builds it before upsert (no guid yet)."""
    values = {
        "guid": "",
        "slug": slug,
        "title": "Öppna data & AI",
        "description": "Om öppna data.",
        "publish_at": datetime(2026, 3, 1, 7, 0, tzinfo=STOCKHOLM),
        "duration": 1800,
        "size": 28_800_000,
        "mime_type": "audio/mpeg",
        "sha256": "a" * 64,
        "audio_key": f"podcast/audio/{slug}-aaaaaaaa.mp3",
        "episode": 1,
        "first_published": T0,
        "last_updated": T0,
        "source_sha256": "1" * 64,
    }
    values.update(changes)
    return Episode(**values)


def test_new_guid_is_a_uuid4():
    import uuid

    guid = new_guid()
    assert uuid.UUID(guid).version == 4
    assert guid != new_guid()


def test_upsert_new_assigns_guid_and_dates():
    catalog, change = upsert(Catalog(), record(), T1)
    assert change == "new"
    [ep] = catalog.episodes
    assert len(ep.guid) == 36
    assert ep.first_published == T1 and ep.last_updated == T1


def test_upsert_same_audio_is_unchanged_and_keeps_the_published_record():
    catalog, _ = upsert(Catalog(etag="e1"), record(), T0)
    again, change = upsert(catalog, record(), T1)
    assert change == "unchanged"
    assert again is catalog  # nothing changes, not even last_updated
    assert again.episodes[0].last_updated == T0


def test_upsert_new_audio_is_a_replacement_with_the_same_guid():
    catalog, _ = upsert(Catalog(), record(), T0)
    guid = catalog.episodes[0].guid
    new = record(
        sha256="b" * 64,
        source_sha256="2" * 64,
        audio_key="podcast/audio/avsnitt-1-bbbbbbbb.mp3",
        size=30_000_000,
        duration=1900,
    )
    replaced, change = upsert(catalog, new, T1)
    assert change == "replaced"
    [ep] = replaced.episodes
    assert ep.guid == guid
    assert ep.audio_key.endswith("bbbbbbbb.mp3")
    assert (ep.size, ep.duration) == (30_000_000, 1900)
    assert ep.first_published == T0 and ep.last_updated == T1


def test_upsert_metadata_only_is_an_update_with_the_same_guid():
    catalog, _ = upsert(Catalog(), record(), T0)
    guid = catalog.episodes[0].guid
    # A new title re-tags the same source audio: new final bytes, same source hash.
    updated, change = upsert(catalog, record(title="Ny titel", sha256="c" * 64), T1)
    assert change == "updated"
    assert updated.episodes[0].guid == guid
    assert updated.episodes[0].title == "Ny titel"


def test_upsert_keeps_other_episodes():
    catalog, _ = upsert(Catalog(), record("a"), T0)
    catalog, _ = upsert(catalog, record("b", episode=2), T0)
    guids = {ep.slug: ep.guid for ep in catalog.episodes}
    catalog, change = upsert(catalog, record("a", sha256="d" * 64, source_sha256="9" * 64), T1)
    assert change == "replaced"
    assert {ep.slug: ep.guid for ep in catalog.episodes} == guids


def test_dump_is_deterministic_sorted_and_ordered_by_publish_time():
    late = record("late", publish_at=datetime(2026, 5, 1, tzinfo=UTC), guid="2")
    early = record("early", publish_at=datetime(2026, 1, 1, tzinfo=UTC), guid="1")
    data = dump_catalog([late, early])
    assert data == dump_catalog([early, late])
    document = json.loads(data)
    assert [ep["slug"] for ep in document["episodes"]] == ["early", "late"]
    assert data.decode().startswith('{\n  "episodes": [')
    assert list(document["episodes"][0]) == sorted(document["episodes"][0])
    assert [ep.slug for ep in parse_catalog(data)] == ["early", "late"]


def test_load_of_a_missing_catalog_is_empty(tmp_path):
    assert load_catalog(LocalStorage(tmp_path)) == Catalog([], None)


def test_save_then_load_round_trip_private(tmp_path):
    storage = LocalStorage(tmp_path)
    catalog, _ = upsert(Catalog(), record(), T0)
    saved = save_catalog(storage, catalog, T0)
    assert saved.etag
    loaded = load_catalog(storage)
    assert loaded.episodes == catalog.episodes
    assert loaded.etag == saved.etag
    meta = storage.metadata(CATALOG_KEY)
    assert meta["public"] is False and meta["cache_control"] == CACHE_PRIVATE
    # The first version is a backup too: a lost catalog is its newest backup.
    assert storage.list_keys(BACKUP_PREFIX) == [BACKUP_PREFIX + "catalog-20260301T080000Z.json"]
    assert (
        storage.get_bytes(BACKUP_PREFIX + "catalog-20260301T080000Z.json")[0]
        == storage.get_bytes(CATALOG_KEY)[0]
    )


def test_every_version_written_is_the_newest_backup(tmp_path):
    storage = LocalStorage(tmp_path)
    first = save_catalog(storage, upsert(Catalog(), record("a"), T0)[0], T0)
    before = storage.get_bytes(CATALOG_KEY)[0]
    second = save_catalog(storage, upsert(first, record("b", episode=2), T1)[0], T1)
    assert storage.list_keys(BACKUP_PREFIX) == [
        BACKUP_PREFIX + "catalog-20260301T080000Z.json",
        BACKUP_PREFIX + "catalog-20260302T080000Z.json",
    ]
    assert storage.get_bytes(BACKUP_PREFIX + "catalog-20260301T080000Z.json")[0] == before
    assert (
        storage.get_bytes(BACKUP_PREFIX + "catalog-20260302T080000Z.json")[0]
        == storage.get_bytes(CATALOG_KEY)[0]
    )
    assert storage.metadata(BACKUP_PREFIX + "catalog-20260302T080000Z.json")["public"] is False
    # A second save in the same second gets its own backup, never overwriting one.
    save_catalog(storage, upsert(second, record("c", episode=3), T1)[0], T1)
    keys = backup_keys(storage)  # oldest first
    assert keys[-1] == BACKUP_PREFIX + "catalog-20260302T080000Z-2.json"
    assert storage.get_bytes(keys[-1])[0] == storage.get_bytes(CATALOG_KEY)[0]


def test_a_backup_after_pruning_in_the_same_second_is_still_the_newest(tmp_path):
    """Pruning leaves a gap in one second's numbers; the next backup must not fill it, or it
    would sort as the oldest and be the next one pruned."""
    storage = LocalStorage(tmp_path)
    catalog = Catalog()
    for n, slug in enumerate("abc", start=1):
        catalog = save_catalog(storage, upsert(catalog, record(slug, episode=n), T1)[0], T1)
    prune_backups(storage, keep=2)  # the un-numbered first one of that second goes
    catalog = save_catalog(storage, upsert(catalog, record("d", episode=4), T1)[0], T1)
    newest = backup_keys(storage)[-1]
    assert newest == BACKUP_PREFIX + "catalog-20260302T080000Z-4.json"
    assert storage.get_bytes(newest)[0] == storage.get_bytes(CATALOG_KEY)[0]
    prune_backups(storage, keep=2)
    assert storage.get_bytes(backup_keys(storage)[-1])[0] == storage.get_bytes(CATALOG_KEY)[0]


def test_a_version_missing_from_the_backups_is_backed_up(tmp_path):
    """A run that stopped between writing the catalog and its backup: the next save backs
    up the previous version first, and a run with nothing to change mends it too."""
    storage = LocalStorage(tmp_path)
    first = save_catalog(storage, upsert(Catalog(), record("a"), T0)[0], T0)
    storage.delete(
        BACKUP_PREFIX + "catalog-20260301T080000Z.json"
    )  # as if the run had stopped before the backup
    before = storage.get_bytes(CATALOG_KEY)[0]
    save_catalog(storage, upsert(first, record("b", episode=2), T1)[0], T1)
    assert [storage.get_bytes(k)[0] == before for k in backup_keys(storage)] == [
        True,
        False,
    ]
    for key in storage.list_keys(BACKUP_PREFIX):
        storage.delete(key)
    loaded = load_catalog(storage)
    assert heal_backup(storage, loaded, T1) is True
    assert (
        storage.get_bytes(BACKUP_PREFIX + "catalog-20260302T080000Z.json")[0]
        == storage.get_bytes(CATALOG_KEY)[0]
    )
    assert heal_backup(storage, loaded, T1) is False  # the newest backup is it: nothing to do


PRIVATE_JSON = {"content_type": "application/json", "cache_control": CACHE_PRIVATE, "public": False}


def test_prune_keeps_the_newest_backups_in_time_order(tmp_path):
    storage = LocalStorage(tmp_path)
    # Same-second backups carry -2, -3: they are newer than the unnumbered one of that second
    # although "-" sorts before "." as text.
    names = [
        "catalog-20260301T080000Z.json",
        "catalog-20260302T080000Z.json",
        "catalog-20260302T080000Z-2.json",
        "catalog-20260302T080000Z-10.json",
        "catalog-20260303T080000Z.json",
    ]
    for name in names:
        storage.put_bytes(BACKUP_PREFIX + name, b"{}", **PRIVATE_JSON)
    storage.put_bytes(BACKUP_PREFIX + "README.txt", b"notes", **PRIVATE_JSON)

    assert prune_backups(storage, 0) == []  # 0 keeps every backup
    deleted = prune_backups(storage, 2)
    assert deleted == [BACKUP_PREFIX + n for n in names[:3]]
    assert storage.list_keys(BACKUP_PREFIX) == [
        BACKUP_PREFIX + "README.txt",  # not ours: never deleted
        BACKUP_PREFIX + "catalog-20260302T080000Z-10.json",
        BACKUP_PREFIX + "catalog-20260303T080000Z.json",
    ]
    assert prune_backups(storage, 2) == []


def test_a_missing_catalog_is_not_started_afresh_over_a_published_feed(tmp_path):
    storage = LocalStorage(tmp_path)
    assert load_catalog(storage).episodes == []  # a first publish: nothing there yet
    storage.put_bytes(
        "podcast/feed.xml",
        b"<rss/>",
        content_type="application/rss+xml",
        cache_control="no-cache",
        public=True,
    )
    with pytest.raises(CatalogError, match="storage holds a feed: a new catalog would give"):
        load_catalog(storage)


def test_save_of_unchanged_content_writes_nothing(tmp_path):
    storage = LocalStorage(tmp_path)
    saved = save_catalog(storage, upsert(Catalog(), record(), T0)[0], T0)
    mtime = storage.path_of(CATALOG_KEY).stat().st_mtime_ns
    again = save_catalog(storage, load_catalog(storage), T1)
    assert again.etag == saved.etag
    assert storage.path_of(CATALOG_KEY).stat().st_mtime_ns == mtime
    assert storage.list_keys(BACKUP_PREFIX) == [
        BACKUP_PREFIX + "catalog-20260301T080000Z.json"
    ]  # the first version's, no more


def test_concurrent_writer_is_detected_and_nothing_is_lost(tmp_path):
    storage = LocalStorage(tmp_path)
    save_catalog(storage, upsert(Catalog(), record("a"), T0)[0], T0)
    mine = load_catalog(storage)
    theirs = load_catalog(storage)
    save_catalog(storage, upsert(theirs, record("theirs", episode=2), T1)[0], T1)
    with pytest.raises(CatalogError, match=r"changed while this run was working.*Run again"):
        save_catalog(storage, upsert(mine, record("mine", episode=3), T1)[0], T1)
    slugs = {ep.slug for ep in load_catalog(storage).episodes}
    assert slugs == {"a", "theirs"}  # the other run's episode is kept


def test_two_first_writers_do_not_overwrite_each_other(tmp_path):
    storage = LocalStorage(tmp_path)
    mine, theirs = load_catalog(storage), load_catalog(storage)
    save_catalog(storage, upsert(theirs, record("theirs"), T0)[0], T0)
    with pytest.raises(CatalogError, match="Run again"):
        save_catalog(storage, upsert(mine, record("mine", episode=2), T0)[0], T0)
    assert [ep.slug for ep in load_catalog(storage).episodes] == ["theirs"]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'{"episodes": [', "not valid JSON \\(line 1"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"version": 1}', "no 'episodes' list"),
        (b'{"version": 1, "episodes": [{"slug": "x"}]}', "episode #1 \\(x\\) is invalid"),
        (b'{"version": 99, "episodes": []}', "version 99"),
    ],
)
def test_malformed_catalog_names_the_key_and_the_backups(tmp_path, data, problem):
    storage = LocalStorage(tmp_path)
    storage.put_bytes(
        CATALOG_KEY, data, content_type="application/json", cache_control="x", public=False
    )
    with pytest.raises(CatalogError, match=problem) as info:
        load_catalog(storage)
    assert CATALOG_KEY in str(info.value)
    if "version 99" not in problem:
        assert BACKUP_PREFIX in str(info.value)


def test_duplicate_guid_in_catalog_is_refused():
    a = record("a", guid="same")
    b = record("b", guid="same")
    with pytest.raises(CatalogError, match="guid same appears more than once"):
        parse_catalog(dump_catalog([a, b]))


@pytest.mark.parametrize("fixture", ["s3_inprocess", "s3_http"])
def test_save_and_conflict_on_s3(request, fixture):
    place = request.getfixturevalue(fixture)
    storage = place.storage()
    first = save_catalog(storage, upsert(Catalog(), record("a"), T0)[0], T0)
    loaded = load_catalog(storage)
    assert loaded.episodes == first.episodes and loaded.etag == first.etag
    head = place.client.head_object(Bucket=place.bucket, Key="kraft/" + CATALOG_KEY)
    assert head["CacheControl"] == CACHE_PRIVATE
    stale = load_catalog(storage)
    save_catalog(storage, upsert(loaded, record("b", episode=2), T1)[0], T1)
    with pytest.raises(CatalogError, match="Run again"):
        save_catalog(storage, upsert(stale, record("c", episode=3), T1)[0], T1)
    assert {ep.slug for ep in load_catalog(storage).episodes} == {"a", "b"}
    assert storage.list_keys(BACKUP_PREFIX) == [
        BACKUP_PREFIX + "catalog-20260301T080000Z.json",
        BACKUP_PREFIX + "catalog-20260302T080000Z.json",
    ]


# --- removal: lasting, the record stays -----------------------------------------------------


def test_mark_removed_sets_removed_at_keeps_the_record_and_reports_unknown_guids():
    catalog, _ = upsert(Catalog(etag="e1"), record("a"), T0)
    catalog, _ = upsert(catalog, record("b", episode=2), T0)
    a, b = (catalog.by_slug(slug).guid for slug in ("a", "b"))

    marked, unknown = mark_removed(catalog, [a, "nope", a], T1)
    assert unknown == ["nope"]
    assert marked.by_guid(a).removed_at == T1 and marked.by_guid(b).removed_at is None
    assert len(marked.episodes) == 2 and marked.etag == "e1"
    assert catalog.by_guid(a).removed_at is None  # pure: the input is untouched
    # Already removed: the first date stays.
    again, unknown = mark_removed(marked, [a], T1 + timedelta(days=1))
    assert unknown == [] and again.by_guid(a).removed_at == T1


def test_a_redrop_of_the_same_audio_after_removal_stays_removed_and_is_unchanged():
    catalog, _ = upsert(Catalog(), record(), T0)
    catalog, _ = mark_removed(catalog, [catalog.episodes[0].guid], T1)
    later = T1 + timedelta(days=1)
    again, change = upsert(catalog, record(), later)  # a fresh record has no removed_at
    assert change == "unchanged" and again is catalog
    assert again.episodes[0].removed_at == T1


def test_new_audio_or_metadata_for_a_removed_episode_keeps_it_removed():
    catalog, _ = upsert(Catalog(), record(), T0)
    guid = catalog.episodes[0].guid
    catalog, _ = mark_removed(catalog, [guid], T1)
    later = T1 + timedelta(days=1)
    new_audio = record(sha256="b" * 64, source_sha256="2" * 64)
    replaced, change = upsert(catalog, new_audio, later)
    assert change == "replaced"
    assert (replaced.episodes[0].guid, replaced.episodes[0].removed_at) == (guid, T1)
    updated, change = upsert(catalog, record(title="Ny titel"), later)
    assert change == "updated" and updated.episodes[0].removed_at == T1


def test_removed_at_survives_the_catalog_round_trip(tmp_path):
    storage = LocalStorage(tmp_path)
    catalog, _ = upsert(Catalog(), record(), T0)
    catalog, _ = mark_removed(catalog, [catalog.episodes[0].guid], T1)
    save_catalog(storage, catalog, T1)
    [episode] = load_catalog(storage).episodes
    assert episode.removed_at == T1
    assert json.loads(storage.get_bytes(CATALOG_KEY)[0])["episodes"][0]["removed_at"] == (
        "2026-03-02T08:00:00Z"
    )


def test_remove_episodes_saves_with_a_backup_and_detects_a_concurrent_writer(tmp_path):
    storage = LocalStorage(tmp_path)
    first, _ = upsert(Catalog(), record("a"), T0)
    saved = save_catalog(storage, upsert(first, record("c", episode=3), T0)[0], T0)
    guid, other = saved.by_slug("a").guid, saved.by_slug("c").guid
    # `saved_at` is the wall clock that names the backup (read when saving if not given).
    removal = remove_episodes(storage, [guid], T1, saved_at=T1)
    assert removal.removed == (guid,) and removal.catalog.etag != saved.etag
    assert load_catalog(storage).by_guid(guid).removed_at == T1
    assert storage.list_keys(BACKUP_PREFIX) == [
        BACKUP_PREFIX + "catalog-20260301T080000Z.json",
        BACKUP_PREFIX + "catalog-20260302T080000Z.json",
    ]

    with pytest.raises(CatalogError, match=r"No episode in .*podcast/catalog\.json has the guid x"):
        remove_episodes(storage, ["x"], T1)
    assert load_catalog(storage).etag == removal.catalog.etag  # nothing written

    # Another run saves right after this removal read the catalog: refused, theirs kept.
    class OtherRunMeanwhile(LocalStorage):
        done = False

        def get_bytes(self, key):
            found = super().get_bytes(key)
            if key == CATALOG_KEY and not self.done:
                self.done = True
                theirs = load_catalog(storage)
                save_catalog(storage, upsert(theirs, record("b", episode=2), T1)[0], T1)
            return found

    with pytest.raises(CatalogError, match="changed while this run was working"):
        remove_episodes(OtherRunMeanwhile(tmp_path), [other], T1 + timedelta(hours=1))
    after = load_catalog(storage)
    assert {ep.slug for ep in after.episodes} == {"a", "b", "c"}
    assert after.by_guid(other).removed_at is None  # run again to remove it
