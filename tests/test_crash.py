"""Crash recovery: a publish run SIGKILLed at 20 points, then one normal run.

The killed runs happen in forked children of `tests/crashpoints.py` (one process imports
the flows once and forks a child per crash point; the child wraps one function and kills
itself with SIGKILL when it is reached). After each kill, one normal `publish` in this
process must converge to what an uninterrupted run gives from the same starting state:

- the catalog's bytes and the feed's bytes are the reference's, once each guid is replaced
  by its episode's slug (guids are random UUIDs, so two runs never share new ones);
- the guids the catalog had before the crash are unchanged;
- every enclosure in the feed exists in storage with the announced size;
- the drop folder (inbox/, published/, failed/) holds the same files as the reference's,
  so nothing is lost, left behind or published twice.

The starting state: ep01 and ep02 were published at T0; at T1 the inbox holds a metadata
update of ep02 and three new episodes (ep04 with a transcript). A newsletter send killed
between batches is resumed the same way.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import podcastparser
import pytest
from conftest import REPO_ROOT
from crashpoints import HTTP_POINTS, POINTS, drop, make_show, make_tone
from pydantic import TypeAdapter
from test_delivery import Recorder, make_issue, smtp_server

from flows.core.backends import open_storage
from flows.core.s3 import S3Storage
from flows.core.settings import Settings
from flows.core.storage import LocalStorage, Storage
from flows.podcast.catalog import BACKUP_PREFIX, CATALOG_KEY
from flows.podcast.feed import FEED_KEY, rfc2822
from flows.podcast.lock import LOCK_KEY
from flows.podcast.run import publish

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)  # the crashed run and the reference
T2 = T1 + timedelta(minutes=1)  # the recovering run, at once: well within lock_stale_seconds
PUBLIC = "https://kraftsamling.example/"


# --- the fork server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crasher(tmp_path_factory) -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
    """Send a job to tests/crashpoints.py; returns its result line."""
    errors = tmp_path_factory.mktemp("crasher") / "stderr.txt"
    with errors.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "tests" / "crashpoints.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert proc.stdin is not None and proc.stdout is not None
        ready = proc.stdout.readline()
        assert json.loads(ready or "{}").get("ready"), errors.read_text()

        def run(job: dict[str, Any]) -> dict[str, Any]:
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            assert line, f"crashpoints.py died: {errors.read_text()}"
            result = json.loads(line)
            result["stderr"] = errors.read_text()[-2000:]
            return result

        try:
            yield run
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)


# --- the starting state and the reference ---------------------------------------------------


def settings_for(show_dir: Path, storage: str, **overrides: Any) -> Settings:
    return Settings.load(episodes_dir=str(show_dir), storage=storage, settle_seconds=0, **overrides)


@dataclass(frozen=True)
class Base:
    show_dir: Path
    storage_root: Path
    guids: dict[str, str]  # slug -> guid before T1


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    """ep01, ep02 published at T0; at T1 the inbox holds ep02 (new title), ep03-ep05."""
    root = tmp_path_factory.mktemp("base")
    tone = make_tone(root / "tone.mp3")
    show_dir = make_show(root / "episodes")
    storage_root = root / "storage"
    drop(show_dir, "ep01", tone, title="Öppna data", number=1, publish_at="2026-02-01")
    drop(show_dir, "ep02", tone, title="AI i skolan", number=2, publish_at="2026-02-08")
    report = publish(settings_for(show_dir, str(storage_root)), LocalStorage(storage_root), T0)
    assert report.count("published") == 2, report.summary()
    drop(show_dir, "ep02", tone, title="AI i skolan, del 1", number=2, publish_at="2026-02-08")
    drop(show_dir, "ep03", tone, title="Civilsamhället", number=3, publish_at="2026-02-15")
    drop(
        show_dir, "ep04", tone, title="Röst och text", number=4, publish_at="2026-02-22",
        transcript=True,
    )  # fmt: skip
    drop(show_dir, "ep05", tone, title="Vätgas", number=5, publish_at="2026-03-01")
    catalog = json.loads((storage_root / CATALOG_KEY).read_text())
    return Base(show_dir, storage_root, {ep["slug"]: ep["guid"] for ep in catalog["episodes"]})


def copy_base(base: Base, where: Path) -> tuple[Path, Path]:
    show_dir = shutil.copytree(base.show_dir, where / "episodes", copy_function=shutil.copy2)
    storage_root = shutil.copytree(base.storage_root, where / "storage")
    return Path(show_dir), Path(storage_root)


@dataclass(frozen=True)
class Snapshot:
    catalog: str  # guids replaced by slugs
    feed: str  # guids replaced by slugs
    guids: dict[str, str]
    drop_folder: dict[str, str]  # relative path -> sha256
    keys: list[str]  # storage keys, backups aside
    backups: int


def json_time(moment: datetime) -> str:
    """A time as the catalog writes it."""
    return TypeAdapter(datetime).dump_python(moment, mode="json")


def snapshot_raw(show_dir: Path, storage: Storage) -> dict[str, Any]:
    """Every file of the drop folder and every object in storage, with their bytes."""
    files = {
        p.relative_to(show_dir).as_posix(): p.read_bytes()
        for p in show_dir.rglob("*")
        if p.is_file()
    }
    objects = {key: storage.get_bytes(key) for key in storage.list_keys()}
    return {"files": files, "objects": objects}


def snapshot(show_dir: Path, storage: Storage) -> Snapshot:
    catalog_bytes = storage.get_bytes(CATALOG_KEY)
    feed_bytes = storage.get_bytes(FEED_KEY)
    assert catalog_bytes is not None, "no catalog in storage"
    assert feed_bytes is not None, "no feed in storage"
    catalog, feed = catalog_bytes[0].decode(), feed_bytes[0].decode()
    episodes = json.loads(catalog)["episodes"]
    guids = {ep["slug"]: ep["guid"] for ep in episodes}
    assert len(set(guids.values())) == len(episodes), "a guid appears twice in the catalog"
    for slug, guid in guids.items():
        catalog = catalog.replace(guid, f"GUID-OF-{slug}")
        feed = feed.replace(guid, f"GUID-OF-{slug}")
    files = {
        path.relative_to(show_dir).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in ("inbox", "published", "failed")
        for path in sorted((show_dir / folder).rglob("*"))
        if path.is_file()
    }
    keys = storage.list_keys()
    return Snapshot(
        catalog=catalog,
        feed=feed,
        guids=guids,
        drop_folder=files,
        keys=[k for k in keys if not k.startswith(BACKUP_PREFIX) and k != LOCK_KEY],
        backups=sum(1 for k in keys if k.startswith(BACKUP_PREFIX)),
    )


@pytest.fixture(scope="module")
def reference(base: Base, tmp_path_factory) -> Snapshot:
    """What one uninterrupted run at T1 gives."""
    show_dir, storage_root = copy_base(base, tmp_path_factory.mktemp("reference"))
    storage = LocalStorage(storage_root)
    report = publish(settings_for(show_dir, str(storage_root)), storage, T1)
    assert report.count("published") == 3 and report.count("updated") == 1, report.summary()
    return snapshot(show_dir, storage)


def check_feed(storage: Storage, xml: bytes, slugs: set[str]) -> None:
    """The real parsers read the feed; every enclosure exists with the announced size."""
    parsed = feedparser.parse(io.BytesIO(xml))
    assert not parsed.bozo, parsed.get("bozo_exception")
    episodes = podcastparser.parse(PUBLIC + FEED_KEY, io.BytesIO(xml))["episodes"]
    assert len(episodes) == len(slugs), f"{len(episodes)} feed items for {len(slugs)} episodes"
    for episode in episodes:
        (enclosure,) = episode["enclosures"]
        key = enclosure["url"].removeprefix(PUBLIC)
        info = storage.head(key)
        assert info is not None, f"the feed points at {key}, which is not in storage"
        assert info.size == enclosure["file_size"], f"{key}: size differs from the feed's"


def same_run_time(text: str) -> str:
    """`text` with the recovering run's time (T2) written as the crashed run's (T1)."""
    for t2, t1 in ((rfc2822(T2), rfc2822(T1)), (json_time(T2), json_time(T1))):
        text = text.replace(t2, t1)
    return text


def converges(show_dir: Path, storage: Storage, settings: Settings, base: Base, ref: Snapshot):
    """The crashed run's lock is taken over at once by the next run (its process, on this
    host, is gone: no waiting for it to go stale); that one normal run ends where the
    uninterrupted run ended."""
    locked = storage.head(LOCK_KEY) is not None
    report = publish(settings, storage, T2)
    if locked:
        assert any("no longer exists" in note for note in report.notes), report.notes
    assert not report.failed, report.summary()
    assert not report.feed_error, report.summary()
    got = snapshot(show_dir, storage)
    for slug, guid in base.guids.items():
        assert got.guids[slug] == guid, f"{slug}'s guid changed across the crash"
    assert sorted(got.guids) == sorted(ref.guids), "episodes lost or added"
    assert storage.head(LOCK_KEY) is None, "the publish lock was left behind"
    assert same_run_time(got.catalog) == ref.catalog, (
        "the catalog differs from an uninterrupted run's"
    )
    missing = sorted(set(ref.drop_folder) - set(got.drop_folder))
    extra = sorted(set(got.drop_folder) - set(ref.drop_folder))
    assert (missing, extra) == ([], []), (
        f"the drop folder differs from an uninterrupted run's: missing {missing}, "
        f"unexpected {extra}"
    )
    assert got.drop_folder == ref.drop_folder, "a file's content changed in the drop folder"
    assert same_run_time(got.feed) == ref.feed, (
        "the feed differs from an uninterrupted run's"
        + (
            " (not rebuilt: the catalog was complete already)"
            if "not rebuilt" in report.feed
            else ""
        )
        + f"; run summary: {report.summary()}"
    )
    check_feed(storage, storage.get_bytes(FEED_KEY)[0], set(got.guids))
    assert got.keys == ref.keys, "storage holds other objects than after an uninterrupted run"
    assert got.backups in (ref.backups, ref.backups + 1), f"{got.backups} catalog backups"
    again = publish(settings, storage, T2)  # and a further run changes nothing
    assert again.uploads == 0 and not again.outcomes, again.summary()


# --- the local crash points -------------------------------------------------------------------


@pytest.mark.parametrize("point", POINTS)
def test_killed_run_converges_local(point, crasher, base, reference, tmp_path):
    show_dir, storage_root = copy_base(base, tmp_path)
    job = {
        "kind": "publish",
        "point": point,
        "episodes": str(show_dir),
        "storage": str(storage_root),
        "now": T1.isoformat(),
    }
    result = crasher(job)
    assert result["killed"], f"{point} was never reached ({result['status']}): {result['stderr']}"
    settings = settings_for(show_dir, str(storage_root))
    converges(show_dir, LocalStorage(storage_root), settings, base, reference)


# --- a few over moto's HTTP server --------------------------------------------------------------


def upload_base(base_root: Path, storage: S3Storage) -> None:
    """Copy the starting state's objects into the bucket (content types kept)."""
    local = LocalStorage(base_root)
    for key in local.list_keys():
        meta = local.metadata(key)
        storage.put_bytes(
            key,
            local.path_of(key).read_bytes(),
            content_type=meta["content_type"],
            cache_control=meta["cache_control"],
            public=meta["public"],
        )


@pytest.mark.parametrize("point", HTTP_POINTS)
def test_killed_run_converges_s3(point, crasher, base, reference, s3_http, tmp_path):
    show_dir, storage_root = copy_base(base, tmp_path)
    settings = s3_http.settings(
        "kraft", episodes_dir=str(show_dir), settle_seconds=0, s3_max_attempts=3
    )
    storage = open_storage(settings)
    upload_base(storage_root, storage)
    job = {
        "kind": "publish",
        "point": point,
        "episodes": str(show_dir),
        "storage": settings.storage,
        "endpoint": settings.s3_endpoint_url,
        "now": T1.isoformat(),
    }
    result = crasher(job)
    assert result["killed"], f"{point} was never reached ({result['status']}): {result['stderr']}"
    converges(show_dir, storage, settings, base, reference)


# --- the newsletter send -----------------------------------------------------------------------

PEOPLE = [f"lyssnare{n}@example.org" for n in range(7)]  # fictional, reserved domain


def test_send_killed_between_batches_resumes_without_duplicates(crasher, tmp_path):
    issue = make_issue(tmp_path)
    recorder = Recorder()
    now = datetime(2026, 12, 3, 8, 30, tzinfo=UTC)
    with smtp_server(recorder) as port:
        job = {
            "kind": "send",
            "point": "after-batch-2",
            "issue": str(issue),
            "smtp_port": port,
            "recipients": PEOPLE,
            "batch_size": 2,
            "now": now.isoformat(),
        }
        result = crasher(job)
        assert result["killed"], f"the send was never killed: {result['stderr']}"
        assert sum(recorder.delivered_to().values()) == 4, "two batches of two before the kill"

        from flows.newsletter.delivery import send_issue

        settings = Settings.load(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")
        report = send_issue(issue, PEOPLE, settings, now, batch_size=2)
    assert report.sent == 7 and report.sent_now == 3, report.summary()
    assert recorder.delivered_to() == Counter({p: 1 for p in PEOPLE}), (
        "someone got the issue twice or not at all"
    )
