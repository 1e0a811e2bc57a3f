"""Podcast review fixes: a pinned `--now` against the lock and the backups, files that vanish
or cannot be read, refused special files across file systems, a non-UTF-8 show.yaml.

Each test runs the real pipeline (`publish`, real files, LocalStorage); the only hook is the
run loop's own `Steps` (how a step runs), used to act in the middle of a run the way a person
or a second run would.
"""

# ruff: noqa: F811  (the fixtures imported from test_podcast are test arguments here)

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_podcast import (  # noqa: F401  (audio, cover_bytes, show_dir are fixtures)
    audio,
    cover_bytes,
    inbox_names,
    put,
    settings_for,
    show_dir,
)

from flows.core.errors import InputError
from flows.core.storage import LocalStorage
from flows.podcast.catalog import (
    BACKUP_PREFIX,
    CATALOG_KEY,
    backup_keys,
    load_catalog,
    remove_episodes,
)
from flows.podcast.files import complete_moves
from flows.podcast.lock import LOCK_KEY, RunLock, acquire_run_lock
from flows.podcast.run import ThreadSteps, publish

BACKFILL = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)  # a `--now` far in the past


def wall() -> datetime:
    """The real clock, to the second (backup keys and lock times are second-grained)."""
    return datetime.now(UTC).replace(microsecond=0)


def backup_time(key: str) -> datetime:
    """The time stamp in a backup key `podcast/catalog-backups/catalog-<stamp>[-n].json`."""
    stamp = key.removeprefix(f"{BACKUP_PREFIX}catalog-")[:16]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


class Meanwhile(ThreadSteps):
    """The plain run's steps, calling `before(candidate)` first: what a person or another
    run does while this run is working."""

    def __init__(self, pool, before) -> None:
        super().__init__(pool)
        self.before = before

    def prepare(self, candidate, context):
        self.before(candidate)
        return super().prepare(candidate, context)


def run_with(show_dir: Path, storage, now: datetime, before, **overrides):
    """`publish` as the flow calls it (a wall-clock scan time), with `before` hooked in."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return publish(
            settings_for(show_dir, **overrides),
            storage,
            now,
            time.time(),
            steps=Meanwhile(pool, before),
        )


# --- 1. `--now` decides what is due, never the lock or the backups ----------------------------


def test_a_backfill_with_a_past_now_holds_the_lock_against_the_scheduled_run(
    show_dir, audio, tmp_path
):
    storage = LocalStorage(tmp_path / "storage")
    other = shutil.copytree(show_dir, tmp_path / "other-episodes")  # the same storage
    put(show_dir, "gammalt.mp3", audio["mp3"])
    put(show_dir, "gammalt.md", "---\ntitle: Gammalt avsnitt\n---\n")
    (Path(other) / "inbox" / "nytt.mp3").write_bytes(audio["mp3_other"].read_bytes())
    seen: dict[str, object] = {}

    def scheduled_run_starts(_candidate) -> None:
        data, etag = storage.get_bytes(LOCK_KEY)
        seen["lock"] = RunLock.from_bytes(data, etag)
        seen["scheduled"] = publish(settings_for(Path(other)), storage, wall(), time.time())

    started = wall()
    report = run_with(show_dir, storage, BACKFILL, scheduled_run_starts)

    lock = seen["lock"]
    assert started <= lock.started_at <= wall() + timedelta(seconds=1), (
        f"the backfill's lock says it started {lock.started_at}, not now"
    )
    scheduled = seen["scheduled"]
    assert scheduled.locked_by, f"the scheduled run took the live lock: {scheduled.summary()}"
    assert [o.status for o in report.outcomes] == ["published"], report.summary()
    [episode] = load_catalog(storage).episodes
    assert episode.first_published == BACKFILL  # `now` still dates the catalog
    assert storage.get_bytes(LOCK_KEY) is None


def test_a_run_with_a_future_now_does_not_take_over_a_live_lock(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    live = acquire_run_lock(storage, wall(), 7200, run_id="scheduled", host="cron-1")
    assert live.acquired
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Framtid\n---\n")

    report = publish(settings_for(show_dir), storage, wall() + timedelta(days=30), time.time())

    assert report.locked_by and "run id scheduled" in report.locked_by, report.summary()
    assert inbox_names(show_dir) == {"ep.mp3", "ep.md"}
    assert RunLock.from_bytes(*storage.get_bytes(LOCK_KEY)).run_id == "scheduled"


def test_a_lock_dated_far_in_the_future_is_taken_over(show_dir, audio, tmp_path):
    # Written by a run whose pinned time was its lock time: it would hold off every run
    # until that day. More than the stale age away from the clock, either way, is stale.
    storage = LocalStorage(tmp_path / "storage")
    acquire_run_lock(storage, wall() + timedelta(days=300), 7200, run_id="from-the-future")
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Nu\n---\n")

    report = publish(settings_for(show_dir), storage, wall(), time.time())

    assert [o.status for o in report.outcomes] == ["published"], report.summary()
    assert any("ahead of this machine's clock" in note for note in report.notes), report.notes


def test_a_backfills_catalog_backup_is_dated_now_and_survives_pruning(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    for name, source in (("ett", "mp3"), ("tva", "mp3_other")):
        put(show_dir, f"{name}.mp3", audio[source])
        put(show_dir, f"{name}.md", f"---\ntitle: Avsnitt {name}\n---\n")
        assert publish(settings_for(show_dir), storage, wall(), time.time()).count("published")
    put(show_dir, "gammalt.mp3", audio["m4a"])
    put(show_dir, "gammalt.md", "---\ntitle: Gammalt\n---\n")

    started = wall()
    report = publish(settings_for(show_dir, catalog_backups_keep=1), storage, BACKFILL, time.time())

    assert report.count("published") == 1, report.summary()
    [kept] = storage.list_keys(BACKUP_PREFIX)
    assert backup_time(kept) >= started, f"the backfill's backup is dated {kept}"
    # The newest backup is the backfill's own version: not pruned for its old `--now`.
    assert storage.get_bytes(kept)[0] == storage.get_bytes(CATALOG_KEY)[0], "it was pruned"


def test_a_removal_with_a_past_now_dates_its_backup_by_the_clock(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Bort\n---\n")
    publish(settings_for(show_dir), storage, wall(), time.time())
    [episode] = load_catalog(storage).episodes

    started = wall()
    removal = remove_episodes(storage, [episode.guid], BACKFILL)

    assert removal.catalog.by_guid(episode.guid).removed_at == BACKFILL
    backup = backup_keys(storage)[-1]  # the newest: the version the removal wrote
    assert storage.get_bytes(backup)[0] == storage.get_bytes(CATALOG_KEY)[0]
    assert backup_time(backup) >= started, f"the removal's backup is dated {backup}"


# --- 3. a file that vanishes or cannot be read fails its episode only ---------------------------


def test_an_audio_file_removed_mid_run_fails_only_its_episode(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    put(show_dir, "borta.mp3", audio["mp3"])
    put(show_dir, "borta.md", "---\ntitle: Borta\n---\n")
    put(show_dir, "bra.mp3", audio["mp3_other"])
    put(show_dir, "bra.md", "---\ntitle: Bra\n---\n")

    def producer_removes_it(candidate) -> None:
        if candidate.slug == "borta":
            candidate.audio.unlink()

    report = run_with(show_dir, storage, wall(), producer_removes_it)

    status = {o.name: o for o in report.outcomes}
    assert status["bra.mp3"].status == "published", report.summary()
    gone = status["borta.mp3"]
    assert gone.status == "failed"
    assert gone.reason.splitlines()[1] == (
        "borta.mp3: cannot be read (No such file or directory). Drop it again, e.g. "
        "`inbox/borta.mp3`."
    )
    assert [ep.slug for ep in load_catalog(storage).episodes] == ["bra"]
    text = (show_dir / "failed" / "borta.error.txt").read_text(encoding="utf-8")
    assert "borta.mp3: cannot be read" in text and "borta.mp3: går inte att läsa" in text
    assert (show_dir / "failed" / "borta.md").is_file()


def test_an_audio_file_that_cannot_be_opened_fails_only_its_episode(
    show_dir, audio, tmp_path, monkeypatch
):
    # A disk error (EIO) when the run opens the file: the kernel's answer, simulated at os.open.
    storage = LocalStorage(tmp_path / "storage")
    put(show_dir, "trasig.mp3", audio["mp3"])
    put(show_dir, "bra.mp3", audio["mp3_other"])
    put(show_dir, "bra.md", "---\ntitle: Bra\n---\n")
    real_open = os.open

    def failing_open(path, flags, *args, **kwargs):
        if Path(path).name == "trasig.mp3":
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)
    report = publish(settings_for(show_dir), storage, wall(), time.time())

    status = {o.name: o for o in report.outcomes}
    assert status["bra.mp3"].status == "published", report.summary()
    assert status["trasig.mp3"].status == "failed"
    assert status["trasig.mp3"].reason.splitlines()[1] == (
        "trasig.mp3: cannot be read (Input/output error). Drop it again, e.g. `inbox/trasig.mp3`."
    )


# --- 4. refused special files across file systems -----------------------------------------------


@pytest.fixture
def inbox_elsewhere(show_dir):
    """The drop folder on another file system (tmpfs), linked in as episodes/inbox."""
    shm = Path("/dev/shm")
    # Linux machines (this project's and CI's) mount /dev/shm as tmpfs: never skip silently.
    assert shm.is_dir() and shm.stat().st_dev != show_dir.stat().st_dev, (
        "this test needs /dev/shm on another file system than the temporary folder"
    )
    with tempfile.TemporaryDirectory(dir=shm, prefix="kraftsamling-inbox-") as folder:
        real = Path(folder) / "inbox"
        real.mkdir()
        (show_dir / "inbox").rmdir()  # empty still
        (show_dir / "inbox").symlink_to(real, target_is_directory=True)
        yield real


def test_special_files_are_left_in_a_mounted_inbox_and_the_run_finishes(
    show_dir, audio, tmp_path, inbox_elsewhere
):
    storage = LocalStorage(tmp_path / "storage")
    put(show_dir, "ror.mp3", audio["mp3"])
    os.mkfifo(inbox_elsewhere / "ror.md")
    (inbox_elsewhere / "mapp.mp3").mkdir()
    (inbox_elsewhere / "mapp.mp3" / "lank.txt").symlink_to("/etc/hostname")
    put(show_dir, "bra.mp3", audio["mp3_other"])
    put(show_dir, "bra.md", "---\ntitle: Bra\n---\n")

    report = publish(settings_for(show_dir), storage, wall(), time.time())

    status = {o.name: o for o in report.outcomes}
    assert status["bra.mp3"].status == "published", report.summary()
    assert (show_dir / "published" / "bra.mp3").is_file()
    assert (show_dir / "failed" / "ror.mp3").is_file()  # the regular file crossed over
    # The FIFO and the folder cannot be renamed across file systems: left where they are.
    assert inbox_names(show_dir) == {"ror.md", "mapp.mp3"}
    ror = (show_dir / "failed" / "ror.error.txt").read_text(encoding="utf-8")
    assert "ror.md: was left in inbox/" in ror and "Remove it from inbox/" in ror
    assert "ror.md: lämnades kvar i inbox/" in ror  # Swedish first, English below
    assert "ror.md: was left in inbox/" in status["ror.mp3"].reason
    assert "mapp.mp3: was left in inbox/" in status["mapp.mp3"].reason
    assert (status["ror.mp3"].moved_to, status["mapp.mp3"].moved_to) == ("failed/ror.mp3", "")
    assert not list(inbox_elsewhere.glob(".moving-*"))  # no journal for the next run to trip on

    again = publish(settings_for(show_dir), storage, wall(), time.time())  # refused again

    assert {o.name: o.status for o in again.outcomes} == {
        "ror.md": "failed",
        "mapp.mp3": "failed",
    }, again.summary()
    assert inbox_names(show_dir) == {"ror.md", "mapp.mp3"}
    # Their notes stand in failed/ already: no new error file on every run.
    assert {p.name for p in (show_dir / "failed").iterdir()} == {
        "ror.mp3",
        "ror.error.txt",
        "mapp.error.txt",
    }


def test_a_journal_that_cannot_be_finished_is_reported_not_raised(show_dir, audio, tmp_path):
    inbox = show_dir / "inbox"
    put(show_dir, "x.md", "---\ntitle: X\n---\n")
    (show_dir / "failed").write_text("a file where the failed/ folder should be")
    journal = {
        "moves": [["x.md", "../failed/x.md"]],
        "error_file": "../failed/x.error.txt",
        "error_text": "Fel / Error",
    }
    (inbox / ".moving-x.json").write_text(json.dumps(journal), encoding="utf-8")

    [note] = complete_moves(inbox)

    assert note.startswith(
        ".moving-x.json in inbox/: could not move inbox/x.md to failed/x.md ("
    ), note
    assert "move the files it names by hand, then delete inbox/.moving-x.json" in note
    assert (inbox / ".moving-x.json").exists() and (inbox / "x.md").exists()
    # A whole run goes on, publishes, and says so; the next run tries the journal again.
    put(show_dir, "bra.mp3", audio["mp3_other"])
    put(show_dir, "bra.md", "---\ntitle: Bra\n---\n")
    report = publish(settings_for(show_dir), LocalStorage(tmp_path / "s"), wall(), time.time())
    assert report.count("published") == 1, report.summary()
    assert any(n.startswith(".moving-x.json in inbox/: could not move") for n in report.notes)
    (show_dir / "failed").unlink()
    assert complete_moves(inbox) == [
        "Finished moving the files of an interrupted run: failed/x.md."
    ]
    assert (show_dir / "failed" / "x.error.txt").read_text(encoding="utf-8") == "Fel / Error"


# --- 6. show.yaml -----------------------------------------------------------------------------


def test_a_show_yaml_that_is_not_utf8_is_named_with_the_fix(show_dir, audio, tmp_path):
    show_yaml = show_dir / "show.yaml"
    show_yaml.write_bytes(show_yaml.read_text(encoding="utf-8").encode("latin-1"))
    put(show_dir, "ep.mp3", audio["mp3"])

    with pytest.raises(InputError) as raised:
        publish(settings_for(show_dir), LocalStorage(tmp_path / "s"), wall(), time.time())

    message = str(raised.value)
    assert "show.yaml is not UTF-8 text" in message and "Save it as UTF-8" in message
    assert inbox_names(show_dir) == {"ep.mp3"}
