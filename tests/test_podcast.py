"""Publishing episodes end to end: real audio (made with ffmpeg), real storage, real tags.

Most tests run the plain pipeline (`publish`) against LocalStorage or moto; one runs the
Prefect flow under the opt-in `prefect_harness`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mutagen
import pytest
from conftest import REPO_ROOT
from mutagen.id3 import ID3
from mutagen.mp4 import MP4
from PIL import Image

from flows.core.backends import open_storage
from flows.core.errors import CatalogError, PublishIncompleteError, StorageError
from flows.core.models import STOCKHOLM
from flows.core.settings import Settings
from flows.core.storage import CACHE_LONG, LocalStorage
from flows.podcast.catalog import BACKUP_PREFIX, CATALOG_KEY, load_catalog, save_catalog, upsert
from flows.podcast.episode import (
    CHAPTERS_TYPE,
    Failed,
    description_to_html,
    try_prepare,
    upload_episode,
)
from flows.podcast.feed import FEED_KEY
from flows.podcast.files import complete_moves, move_group
from flows.podcast.lock import LOCK_KEY, RunLock
from flows.podcast.run import commit_catalog, finish, plan_run, publish, refused_as_failed

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
T1 = T0 + timedelta(days=2)


# --- test audio, made once per session --------------------------------------------------------


def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def audio(tmp_path_factory) -> dict[str, Path]:
    """Small real audio files: 2 s of tone, mono, 44.1 kHz."""
    folder = tmp_path_factory.mktemp("audio")
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-ac", "1", "-ar", "44100"]
    other = ["-f", "lavfi", "-i", "sine=frequency=660:duration=2", "-ac", "1", "-ar", "44100"]
    files = {
        "mp3": folder / "a.mp3",
        "mp3_other": folder / "b.mp3",
        "m4a": folder / "a.m4a",
        "wav": folder / "a.wav",
        "flac": folder / "a.flac",
        "mp3_tagged": folder / "tagged.mp3",
    }
    _ffmpeg(*tone, "-b:a", "64k", str(files["mp3"]))
    _ffmpeg(*other, "-b:a", "64k", str(files["mp3_other"]))
    _ffmpeg(*tone, "-c:a", "aac", "-b:a", "64k", str(files["m4a"]))
    _ffmpeg(*tone, str(files["wav"]))
    _ffmpeg(*tone, str(files["flac"]))
    _ffmpeg(
        *tone,
        "-b:a",
        "64k",
        "-metadata",
        "title=Titel från filen",
        "-metadata",
        "comment=Beskrivning från filen",
        str(files["mp3_tagged"]),
    )
    return files


@pytest.fixture(scope="session")
def cover_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1400, 1400), (20, 80, 140)).save(out, "JPEG", quality=70)
    return out.getvalue()


@pytest.fixture
def show_dir(tmp_path, cover_bytes) -> Path:
    """An episodes folder: the real show.yaml, a cover, an empty inbox."""
    folder = tmp_path / "episodes"
    (folder / "inbox").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "episodes" / "show.yaml", folder / "show.yaml")
    (folder / "cover.jpg").write_bytes(cover_bytes)
    return folder


def put(show_dir: Path, name: str, content: Path | bytes | str) -> Path:
    target = show_dir / "inbox" / name
    if isinstance(content, Path):
        shutil.copy(content, target)
    else:
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    return target


def settings_for(show_dir: Path, **overrides) -> Settings:
    return Settings.load(**{"episodes_dir": str(show_dir), "settle_seconds": 0, **overrides})


def run(show_dir: Path, storage, now: datetime = T0, **overrides):
    return publish(settings_for(show_dir, **overrides), storage, now)


def inbox_names(show_dir: Path) -> set[str]:
    return {p.name for p in (show_dir / "inbox").iterdir()}


SIDECAR = """---
title: "Öppna data & <AI> i \\"kommunen\\" 🎙"
episode: 3
season: 1
publish_at: 2026-02-20
guests: [Cecilia Påhittad]
chapters:
  - {start: "00:00:00", title: Intro}
  - {start: "00:00:01", title: Samtalet}
transcript: ep3.vtt
image: ep3.png
---
Vi pratar om **öppna data** & annat.
"""


def _episode_art() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1400, 1400), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


# --- the happy path ---------------------------------------------------------------------------


def test_publishes_tags_uploads_and_records(show_dir, audio, tmp_path, cover_bytes):
    put(show_dir, "ep3.mp3", audio["mp3"])
    put(show_dir, "ep3.md", SIDECAR)
    put(show_dir, "ep3.vtt", "WEBVTT\n\n00:00.000 --> 00:01.000\nHej och välkomna.\n")
    put(show_dir, "ep3.png", _episode_art())
    put(show_dir, "Kort M4A.m4a", audio["m4a"])
    put(
        show_dir, "Kort M4A.md", "---\ntitle: Ett kort avsnitt\nepisode: 4\nseason: 1\n---\nKort.\n"
    )
    storage = LocalStorage(tmp_path / "storage")

    report = run(show_dir, storage)

    assert [o.status for o in report.outcomes] == ["published", "published"]
    assert report.failed == [] and report.feed_error == ""
    assert report.uploads == 5  # 2 audio, transcript, chapters, image
    catalog = load_catalog(storage)
    eps = {ep.slug: ep for ep in catalog.episodes}
    assert set(eps) == {"ep3", "kort-m4a"}
    ep = eps["ep3"]
    assert ep.title == 'Öppna data & <AI> i "kommunen" 🎙'
    assert ep.description == "Vi pratar om **öppna data** & annat."
    assert ep.description_html == "<p>Vi pratar om <strong>öppna data</strong> &amp; annat.</p>"
    assert ep.publish_at == datetime(2026, 2, 20, 7, 0, tzinfo=STOCKHOLM)
    assert ep.audio_key == f"podcast/audio/ep3-{ep.sha256[:8]}.mp3"
    assert ep.mime_type == "audio/mpeg" and ep.duration == 2
    assert ep.first_published == ep.last_updated == T0
    assert (ep.episode, ep.season, ep.guests) == (3, 1, ["Cecilia Påhittad"])
    assert ep.transcript_key.startswith("podcast/transcripts/ep3-") and ep.transcript_type == (
        "text/vtt"
    )
    assert ep.image_key.startswith("podcast/art/ep3-") and ep.image_key.endswith(".png")
    audio_path = storage.path_of(ep.audio_key)
    assert audio_path.stat().st_size == ep.size

    assert hashlib.sha256(audio_path.read_bytes()).hexdigest() == ep.sha256
    assert eps["kort-m4a"].audio_key.endswith(".m4a") and eps["kort-m4a"].mime_type == "audio/mp4"

    meta = storage.metadata(ep.audio_key)
    assert (meta["content_type"], meta["cache_control"], meta["public"]) == (
        "audio/mpeg",
        CACHE_LONG,
        True,
    )
    assert storage.metadata(eps["kort-m4a"].audio_key)["content_type"] == "audio/mp4"
    assert storage.metadata(ep.transcript_key)["content_type"] == "text/vtt"
    assert storage.metadata(ep.chapters_key)["content_type"] == CHAPTERS_TYPE
    chapters = json.loads(storage.get_bytes(ep.chapters_key)[0])
    assert chapters["version"] == "1.2.0"
    assert chapters["chapters"] == [
        {"startTime": 0, "title": "Intro"},
        {"startTime": 1, "title": "Samtalet"},
    ]
    assert storage.metadata(CATALOG_KEY)["public"] is False

    # Files moved out of the inbox, nothing deleted.
    assert inbox_names(show_dir) == set()
    assert {p.name for p in (show_dir / "published").iterdir()} == {
        "ep3.mp3",
        "ep3.md",
        "ep3.vtt",
        "ep3.png",
        "ep3.notes.txt",  # its warnings (loudness, art), beside it for the producer
        "Kort M4A.m4a",
        "Kort M4A.md",
        "Kort M4A.notes.txt",
    }
    notes = (show_dir / "published" / "ep3.notes.txt").read_text(encoding="utf-8")
    assert notes.startswith("Avsnittet publicerades, men läs anmärkningarna.")
    assert all(w.replace("\n", "\n  ") in notes for w in eps["ep3"].warnings)
    assert (show_dir / "published" / "ep3.mp3").read_bytes() == audio["mp3"].read_bytes()
    summary = report.summary()
    assert "2 published" in summary and "ep3.mp3" in summary
    assert "https://kraftsamling.example/podcast/audio/ep3-" in summary

    # Tags read back with mutagen equal what was written.
    id3 = ID3(audio_path)
    assert id3.version[:2] == (2, 3)
    assert str(id3["TIT2"]) == ep.title
    assert str(id3["TPE1"]) == "Kraftsamling för AI i kommuner och civilsamhälle"
    assert str(id3["TALB"]) == "Digitalsamtal"
    assert str(id3["TRCK"]) == "3" and str(id3["TPOS"]) == "1"
    assert str(id3["TCON"]) == "Podcast" and str(id3["TLAN"]) == "swe"
    # Tags carry plain text: the description's Markdown read, not its `**` (the feed has HTML).
    assert ep.description == "Vi pratar om **öppna data** & annat."
    assert id3.getall("COMM")[0].text[0] == "Vi pratar om öppna data & annat."
    assert id3.getall("APIC")[0].data == cover_bytes
    assert id3.getall("WOAS")[0].url == "https://kraftsamling.example/digitalsamtal"
    chap_titles = [str(c.sub_frames["TIT2"]) for c in id3.getall("CHAP")]
    assert sorted(chap_titles) == ["Intro", "Samtalet"]
    assert mutagen.File(audio_path).info.length == pytest.approx(2, abs=0.2)

    mp4 = MP4(storage.path_of(eps["kort-m4a"].audio_key))
    assert mp4.tags["\xa9nam"] == ["Ett kort avsnitt"]
    assert mp4.tags["\xa9alb"] == ["Digitalsamtal"]
    assert mp4.tags["\xa9ART"] == ["Kraftsamling för AI i kommuner och civilsamhälle"]
    assert mp4.tags["trkn"] == [(4, 0)]
    assert bytes(mp4.tags["covr"][0]) == cover_bytes


def test_rerun_of_the_same_files_uploads_nothing(show_dir, audio, tmp_path):
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Hej\nchapters: [{start: 0, title: A}]\n---\nText\n")
    storage = LocalStorage(tmp_path / "storage")
    first = run(show_dir, storage)
    stamps = {key: storage.path_of(key).stat().st_mtime_ns for key in storage.list_keys()}
    catalog_bytes = storage.get_bytes(CATALOG_KEY)[0]

    # Nothing in the inbox: nothing happens.
    empty = run(show_dir, storage, T1)
    assert empty.outcomes == [] and empty.uploads == 0
    assert "Nothing new" in empty.summary()

    # The same files dropped again: unchanged, nothing uploaded, the copies filed away.
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Hej\nchapters: [{start: 0, title: A}]\n---\nText\n")
    again = run(show_dir, storage, T1)
    assert [o.status for o in again.outcomes] == ["unchanged"]
    assert again.uploads == 0
    assert again.outcomes[0].guid == first.outcomes[0].guid
    assert {key: storage.path_of(key).stat().st_mtime_ns for key in storage.list_keys()} == stamps
    assert storage.get_bytes(CATALOG_KEY)[0] == catalog_bytes
    assert {p.name for p in (show_dir / "published").iterdir()} == {
        "ep.mp3",
        "ep.md",
        "ep.notes.txt",
        "ep-2.mp3",
        "ep-2.md",
        "ep-2.notes.txt",
    }


def test_rerun_over_s3_http_makes_no_put(show_dir, audio, s3_http):
    settings = s3_http.settings(episodes_dir=str(show_dir), settle_seconds=0)
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Över HTTP\n---\n")
    first = publish(settings, open_storage(settings), T0)
    assert [o.status for o in first.outcomes] == ["published"]
    assert s3_http.request_log.count("PUT", prefix="kraft/podcast/audio/") == 1
    head = s3_http.client.head_object(
        Bucket=s3_http.bucket,
        Key="kraft/" + load_catalog(open_storage(settings)).episodes[0].audio_key,
    )
    assert head["ContentType"] == "audio/mpeg" and head["CacheControl"] == CACHE_LONG

    s3_http.request_log.clear()
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Över HTTP\n---\n")
    again = publish(settings, open_storage(settings), T1)
    assert [o.status for o in again.outcomes] == ["unchanged"]
    # Only the run's lock is written (and deleted); no audio, catalog or feed object.
    assert s3_http.request_log.puts == 1
    assert s3_http.request_log.count("PUT", key="kraft/podcast/.lock") == 1
    assert s3_http.request_log.count("DELETE", key="kraft/podcast/.lock") == 1


def test_replacement_keeps_the_guid_and_the_old_object(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Avsnittet\nepisode: 1\n---\n")
    run(show_dir, storage)
    before = load_catalog(storage).episodes[0]

    put(show_dir, "ep.mp3", audio["mp3_other"])  # new audio, same name
    put(show_dir, "ep.md", "---\ntitle: Avsnittet\nepisode: 1\n---\n")
    report = run(show_dir, storage, T1)

    assert [o.status for o in report.outcomes] == ["replaced"]
    [after] = load_catalog(storage).episodes
    assert after.guid == before.guid
    assert after.audio_key != before.audio_key and after.sha256 != before.sha256
    assert after.first_published == T0 and after.last_updated == T1
    assert after.publish_at == before.publish_at  # no publish_at given: the first one is kept
    assert storage.head(before.audio_key) is not None  # the old object is kept for the feed


def test_catalog_backups_are_pruned_to_the_setting(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    for day in range(4):  # four catalog changes, each version kept as the newest backup
        put(show_dir, "ep.mp3", audio["mp3"])
        put(show_dir, "ep.md", f"---\ntitle: Titel {day}\n---\n")
        run(show_dir, storage, T0 + timedelta(days=day), catalog_backups_keep=2)
    backups = storage.list_keys(BACKUP_PREFIX)
    assert len(backups) == 2
    # The newest two remain: they hold the versions titled 2 and 3 (3 is the catalog itself).
    titles = {k: json.loads(storage.get_bytes(k)[0])["episodes"][0]["title"] for k in backups}
    assert set(titles.values()) == {"Titel 2", "Titel 3"}, titles
    assert load_catalog(storage).episodes[0].title == "Titel 3"


def test_metadata_change_is_an_update_with_the_same_guid(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Första titeln\n---\n")
    first = run(show_dir, storage)
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Bättre titel\n---\n")
    second = run(show_dir, storage, T1)
    assert [o.status for o in second.outcomes] == ["updated"]
    assert second.outcomes[0].guid == first.outcomes[0].guid
    assert load_catalog(storage).episodes[0].title == "Bättre titel"


def test_without_sidecar_title_and_description_come_from_the_file(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    put(show_dir, "taggad.mp3", audio["mp3_tagged"])
    put(show_dir, "otaggad.mp3", audio["mp3"])
    report = run(show_dir, storage)
    status = {o.name: o for o in report.outcomes}
    assert status["taggad.mp3"].status == "published"
    [ep] = load_catalog(storage).episodes
    assert (ep.title, ep.description) == ("Titel från filen", "Beskrivning från filen")
    assert status["otaggad.mp3"].status == "failed"
    assert "has no title" in status["otaggad.mp3"].reason
    assert "otaggad.md" in status["otaggad.mp3"].reason  # the fix: which sidecar to write


# --- bad input: each named, each filed, nothing published is lost -------------------------


def test_bad_audio_is_refused_and_the_good_episode_still_published(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    whole = audio["mp3"].read_bytes()
    put(show_dir, "bra.mp3", audio["mp3"])
    put(show_dir, "bra.md", "---\ntitle: Bra avsnitt\n---\n")
    put(show_dir, "brus.mp3", os.urandom(20_000))
    put(show_dir, "kapad.mp3", whole[: len(whole) // 2])
    put(show_dir, "tom.mp3", b"")
    put(show_dir, "egentligen-wav.mp3", audio["wav"])
    put(show_dir, "egentligen-flac.mp3", audio["flac"])
    put(show_dir, "master.wav", audio["wav"])

    report = run(show_dir, storage)

    status = {o.name: o.status for o in report.outcomes}
    assert status.pop("bra.mp3") == "published"
    assert set(status.values()) == {"failed"} and len(status) == 6
    assert [ep.slug for ep in load_catalog(storage).episodes] == ["bra"]
    failed = show_dir / "failed"
    for name in status:
        stem = Path(name).stem
        assert (failed / name).exists(), name
        text = (failed / f"{stem}.error.txt").read_text(encoding="utf-8")
        assert name in text and "The episode could not be published" in text
    assert "empty (0 bytes)" in (failed / "tom.error.txt").read_text()
    # Masters are welcome (tests/test_podcast_loudness.py), but need a sidecar title.
    assert "Add master.md next to it" in (failed / "master.error.txt").read_text()
    assert "WAV master has no episode title" in (failed / "egentligen-wav.error.txt").read_text()
    assert "FLAC master" in (failed / "egentligen-flac.error.txt").read_text()
    assert (failed / "brus.mp3").stat().st_size == 20_000  # the producer's file, untouched
    assert inbox_names(show_dir) == set()


def test_run_with_failures_tells_what_failed(show_dir, audio, tmp_path):
    put(show_dir, "brus.mp3", os.urandom(1000))
    report = run(show_dir, LocalStorage(tmp_path / "storage"))
    assert len(report.failed) == 1
    assert "failed    brus.mp3 -> failed/brus.mp3" in report.summary()


def test_file_still_being_copied_is_left_in_the_inbox(show_dir, audio, tmp_path):
    put(show_dir, "ep.mp3", audio["mp3"])  # just written: mtime is now
    put(show_dir, "ep2.mp3.part", b"half")
    report = publish(settings_for(show_dir, settle_seconds=30), LocalStorage(tmp_path / "s"), T0)
    assert report.outcomes == [] and report.failed == []
    assert set(report.waiting) == {"ep.mp3", "ep2.mp3.part"}
    assert inbox_names(show_dir) == {"ep.mp3", "ep2.mp3.part"}
    assert not (show_dir / "failed").exists()


@pytest.mark.parametrize(
    ("sidecar", "expected"),
    [
        ("---\ntitle: [oj\n---\n", "ep.md: line 2: broken YAML"),
        ("---\ntitle: X\npublish_at: 2026-02-30\n---\n", "publish_at (line 3): '2026-02-30' is"),
        ("---\ntitle: X\nepisode: -1\n---\n", "episode (line 3): is -1; it cannot be negative"),
        (f"---\ntitle: {'x' * 300}\n---\n", "title (line 2): is 300 characters"),
        ("---\ntitle: X\nchapters: [{start: 99, title: Sent}]\n---\n", "audio is only 2.0 s"),
        ("---\ntitle: X\ntranscript: ../hemlig.vtt\n---\n", "plain file name"),
    ],
)
def test_bad_sidecar_goes_to_failed_with_the_fix(show_dir, audio, tmp_path, sidecar, expected):
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", sidecar)
    storage = LocalStorage(tmp_path / "storage")
    report = run(show_dir, storage)
    [outcome] = report.outcomes
    assert outcome.status == "failed" and expected in outcome.reason
    assert expected in (show_dir / "failed" / "ep.error.txt").read_text(encoding="utf-8")
    assert {p.name for p in (show_dir / "failed").iterdir()} == {"ep.mp3", "ep.md", "ep.error.txt"}
    assert storage.get_bytes(CATALOG_KEY) is None
    assert storage.list_keys("podcast/audio/") == []


def test_title_with_emoji_ampersand_quotes_and_control_characters(show_dir, audio, tmp_path):
    title = "Vi & <de> \"andra\" 🎙\x07 – 'slut'"
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: " + json.dumps(title, ensure_ascii=False) + "\n---\n")
    storage = LocalStorage(tmp_path / "storage")
    report = run(show_dir, storage)
    assert report.outcomes[0].status == "published"
    [ep] = load_catalog(storage).episodes
    assert ep.title == "Vi & <de> \"andra\" 🎙 – 'slut'"  # the bell is gone, the rest kept
    assert str(ID3(storage.path_of(ep.audio_key))["TIT2"]) == ep.title


def test_two_files_with_one_episode_number_are_both_refused(show_dir, audio, tmp_path):
    put(show_dir, "a.mp3", audio["mp3"])
    put(show_dir, "a.md", "---\ntitle: A\nepisode: 5\n---\n")
    put(show_dir, "b.mp3", audio["mp3_other"])
    put(show_dir, "b.md", "---\ntitle: B\nepisode: 5\n---\n")
    report = run(show_dir, LocalStorage(tmp_path / "storage"))
    assert [o.status for o in report.outcomes] == ["failed", "failed"]
    for stem in ("a", "b"):
        text = (show_dir / "failed" / f"{stem}.error.txt").read_text(encoding="utf-8")
        assert "a.mp3 and b.mp3 both claim episode 5" in text


def test_fix_and_drop_again_works(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: X\nepisode: -4\n---\n")
    assert run(show_dir, storage).outcomes[0].status == "failed"
    failed = show_dir / "failed"
    # The producer fixes the sidecar and moves the files back.
    shutil.move(failed / "ep.mp3", show_dir / "inbox" / "ep.mp3")
    (show_dir / "inbox" / "ep.md").write_text("---\ntitle: X\nepisode: 4\n---\n")
    report = run(show_dir, storage, T1)
    assert [o.status for o in report.outcomes] == ["published"]
    assert load_catalog(storage).episodes[0].episode == 4


def test_broken_redrop_never_touches_the_published_episode(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: X\n---\n")
    run(show_dir, storage)
    catalog_bytes = storage.get_bytes(CATALOG_KEY)[0]
    keys = storage.list_keys()
    put(show_dir, "ep.mp3", os.urandom(4000))  # same slug, broken audio
    report = run(show_dir, storage, T1)
    assert report.outcomes[0].status == "failed"
    assert storage.get_bytes(CATALOG_KEY)[0] == catalog_bytes
    assert storage.list_keys() == keys
    assert (show_dir / "failed" / "ep.mp3").exists()


# --- storage and catalog trouble: nothing lost, episodes retried -------------------------------


def test_storage_down_changes_nothing(show_dir, audio):
    put(show_dir, "ep.mp3", audio["mp3"])
    settings = settings_for(
        show_dir, storage="s3://kraft/p", s3_endpoint_url="http://127.0.0.1:9", s3_max_attempts=1
    )
    # The first request of a run is its check of the live feed against the catalog.
    with pytest.raises(StorageError, match=r"s3://kraft/p/podcast/catalog\.json.*run again"):
        publish(settings, open_storage(settings), T0)
    assert inbox_names(show_dir) == {"ep.mp3"}


def test_upload_failing_midway_leaves_the_episode_in_the_inbox(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    blocker = storage.root / "podcast" / "transcripts"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where a folder should be: every transcript upload fails")
    put(show_dir, "med.mp3", audio["mp3"])
    put(show_dir, "med.md", "---\ntitle: Med text\ntranscript: med.vtt\n---\n")
    put(show_dir, "med.vtt", "WEBVTT\n")
    put(show_dir, "utan.mp3", audio["mp3_other"])
    put(show_dir, "utan.md", "---\ntitle: Utan text\n---\n")

    report = run(show_dir, storage)

    status = {o.name: o for o in report.outcomes}
    assert status["utan.mp3"].status == "published"
    assert status["med.mp3"].status == "retry"
    assert "storage failed" in status["med.mp3"].reason
    assert "next run tries again" in status["med.mp3"].reason
    assert inbox_names(show_dir) == {"med.mp3", "med.md", "med.vtt"}
    assert [ep.slug for ep in load_catalog(storage).episodes] == ["utan"]
    assert "(left in the inbox)" in report.summary()

    # Storage repaired: the next run publishes it; its audio, already up, is not re-sent.
    [audio_key] = [
        k for k in storage.list_keys("podcast/audio/") if k.startswith("podcast/audio/med-")
    ]
    stamp = storage.path_of(audio_key).stat().st_mtime_ns
    blocker.unlink()
    report = run(show_dir, storage, T1)
    assert [o.status for o in report.outcomes] == ["published"]
    assert storage.path_of(audio_key).stat().st_mtime_ns == stamp
    assert {ep.slug for ep in load_catalog(storage).episodes} == {"med", "utan"}


def test_catalog_changed_by_another_run_loses_nothing(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Mitt avsnitt\n---\n")
    settings = settings_for(show_dir)
    with tempfile.TemporaryDirectory() as work:
        plan = plan_run(settings, storage, T0, time.time(), Path(work))
        [candidate] = plan.scan.candidates
        prepared = try_prepare(candidate, plan.context)
        assert not isinstance(prepared, Failed)
        other = load_catalog(storage)  # another run, started before our upload, ...
        upload_episode(storage, prepared)
        # ... meanwhile publishes its own episode.
        theirs = prepared.record.model_copy(  # their own audio: not a copy of ours
            update={
                "guid": "",  # their run decides their own guid
                "slug": "theirs",
                "title": "Deras",
                "sha256": "f" * 64,
                "source_sha256": None,
            }
        )
        save_catalog(storage, upsert(other, theirs, T0)[0], T0)

        report = finish(
            plan,
            storage,
            [prepared],
            refused_as_failed(plan),
            1,
            lambda base, records: commit_catalog(storage, base, records, T0),
        )
    [outcome] = report.outcomes
    assert outcome.status == "retry"
    assert "changed while this run was working" in outcome.reason and "Run again" in outcome.reason
    assert [ep.slug for ep in load_catalog(storage).episodes] == ["theirs"]  # theirs is kept
    assert inbox_names(show_dir) == {"ep.mp3", "ep.md"}  # ours waits for the next run
    again = run(show_dir, storage, T1)
    assert [o.status for o in again.outcomes] == ["published"]
    assert {ep.slug for ep in load_catalog(storage).episodes} == {"ep", "theirs"}


def test_s3_inprocess_publish(show_dir, audio, s3_inprocess):
    storage = s3_inprocess.storage()
    put(show_dir, "ep.m4a", audio["m4a"])
    put(show_dir, "ep.md", "---\ntitle: I minnet\n---\n")
    report = run(show_dir, storage)
    assert [o.status for o in report.outcomes] == ["published"]
    [ep] = load_catalog(storage).episodes
    head = s3_inprocess.client.head_object(Bucket=s3_inprocess.bucket, Key="kraft/" + ep.audio_key)
    assert head["ContentType"] == "audio/mp4" and head["ContentLength"] == ep.size
    catalog_head = s3_inprocess.client.head_object(
        Bucket=s3_inprocess.bucket, Key="kraft/" + CATALOG_KEY
    )
    assert catalog_head["CacheControl"] == "private, no-store"


# --- descriptions, the no-op run, crash leftovers ------------------------------------------------


def test_soft_line_breaks_become_spaces_not_glued_words():
    html = description_to_html(
        "I detta avsnitt berättar styrelsen\nanvänder **AI**\n*varje dag*.\n\n"
        "- första\n- andra\n\nRad ett  \nrad två"
    )
    assert html == (
        "<p>I detta avsnitt berättar styrelsen använder <strong>AI</strong> "
        "<em>varje dag</em>.</p><ul><li>första</li><li>andra</li></ul>"
        "<p>Rad ett<br>rad två</p>"
    )
    assert "\n" not in html


def test_the_empty_inbox_run_does_not_read_the_catalog(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Ett\n---\n")
    run(show_dir, storage)

    # A current feed: the empty-inbox run only compares ETags (tests/test_episode_isolation.py
    # counts its requests); the catalog's bytes are never read.
    class NoCatalogReads(LocalStorage):
        def get_bytes(self, key: str) -> tuple[bytes, str] | None:
            assert key != CATALOG_KEY, "the empty-inbox run read the catalog"
            return super().get_bytes(key)

    report = run(show_dir, NoCatalogReads(storage.root), T1)
    assert report.outcomes == [] and "Nothing new" in report.summary()
    # A catalog changed behind the feed's back (here: broken) is read, and it stops the run.
    storage.put_bytes(
        CATALOG_KEY,
        b"{not json",
        content_type="application/json",
        cache_control="no-store",
        public=False,
    )
    with pytest.raises(CatalogError, match="is not valid JSON"):
        run(show_dir, storage, T1)


def test_moves_interrupted_by_a_crash_are_finished_by_the_next_run(show_dir, audio, tmp_path):
    inbox = show_dir / "inbox"
    files = [put(show_dir, "ep.mp3", audio["mp3"]), put(show_dir, "ep.md", "---\ntitle: A\n---\n")]
    files.append(put(show_dir, "ep.vtt", "WEBVTT\n"))
    move_group(files, show_dir / "published")
    assert inbox_names(show_dir) == set()  # done: no journal left behind
    # A journal as a run killed after its first move leaves it: the audio is moved already.
    for path in files:
        shutil.copy(show_dir / "published" / path.name, path)
    (show_dir / "published" / "ep-2.mp3").write_bytes(files[0].read_bytes())
    files[0].unlink()
    journal = {
        "moves": [[f"{name}", f"../published/{name.replace('.', '-2.')}"] for name in (
            "ep.mp3", "ep.md", "ep.vtt")],
        "error_file": None,
        "error_text": None,
    }  # fmt: skip
    (inbox / ".moving-ep.json").write_text(json.dumps(journal), encoding="utf-8")
    (inbox / ".moving-x.json.tmp").write_text("{", encoding="utf-8")  # killed mid-write
    storage = LocalStorage(tmp_path / "storage")
    report = run(show_dir, storage)  # the inbox holds only hidden files: still work to do
    assert report.outcomes == []
    assert inbox_names(show_dir) == set()
    assert sorted(p.name for p in (show_dir / "published").iterdir()) == [
        "ep-2.md", "ep-2.mp3", "ep-2.vtt", "ep.md", "ep.mp3", "ep.vtt",
    ]  # fmt: skip
    assert any("published/ep-2.vtt" in note for note in report.notes), report.notes
    assert storage.get_bytes(LOCK_KEY) is None
    assert complete_moves(inbox) == []


def test_a_failed_groups_error_file_is_written_when_its_moves_are_finished(show_dir):
    inbox = show_dir / "inbox"
    (inbox / "x.md").write_text("oops", encoding="utf-8")
    journal = {
        "moves": [["x.md", "../failed/x.md"]],
        "error_file": "../failed/x.error.txt",
        "error_text": "Fel / Error",
    }
    (inbox / ".moving-x.json").write_text(json.dumps(journal), encoding="utf-8")
    (inbox / ".moving-bad.json").write_text("[", encoding="utf-8")
    notes = complete_moves(inbox)
    assert (show_dir / "failed" / "x.error.txt").read_text(encoding="utf-8") == "Fel / Error"
    assert (show_dir / "failed" / "x.md").exists() and not (inbox / "x.md").exists()
    assert any(".moving-bad.json is not a readable move journal" in n for n in notes), notes
    assert (inbox / ".moving-bad.json").exists()  # left for a person, never guessed at


def test_after_a_crashed_run_the_feed_is_rebuilt_even_if_nothing_is_published(
    show_dir, audio, tmp_path
):
    storage = LocalStorage(tmp_path / "storage")
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: A\n---\n")
    run(show_dir, storage)
    # A run killed between its catalog and its feed: the feed is gone, the lock is left.
    storage.delete(FEED_KEY)
    storage.put_bytes(
        LOCK_KEY,
        RunLock("crashed", T0, "elsewhere").to_bytes(),
        content_type="application/json",
        cache_control="no-store",
        public=False,
    )
    put(show_dir, "tom.mp3", b"")  # the only work: a file to refuse
    report = run(show_dir, storage, T1)
    assert [o.status for o in report.outcomes] == ["failed"]
    assert any("over lock_stale_seconds" in note for note in report.notes), report.notes
    assert storage.get_bytes(FEED_KEY) is not None, report.summary()
    assert storage.get_bytes(LOCK_KEY) is None


# --- the Prefect flow ---------------------------------------------------------------------------


@pytest.mark.prefect
def test_flow_publishes_the_good_and_fails_the_run_for_the_bad(
    prefect_harness, show_dir, audio, tmp_path
):
    from flows.podcast.flow import publish_episodes

    storage_dir = tmp_path / "storage"
    sources = {1: audio["mp3"], 2: audio["mp3_other"], 3: audio["mp3_tagged"]}  # three audios
    for number in (1, 2, 3):
        put(show_dir, f"ep{number}.mp3", sources[number])
        put(show_dir, f"ep{number}.md", f"---\ntitle: Avsnitt {number}\nepisode: {number}\n---\n")
    put(show_dir, "trasig.mp3", os.urandom(3000))

    with pytest.raises(PublishIncompleteError, match=r"trasig\.mp3") as info:
        publish_episodes(episodes=str(show_dir), storage=str(storage_dir), now=T0, settle_seconds=0)
    assert "3 published" in str(info.value)
    catalog = load_catalog(LocalStorage(storage_dir))
    assert sorted(ep.slug for ep in catalog.episodes) == ["ep1", "ep2", "ep3"]
    assert (show_dir / "failed" / "trasig.error.txt").exists()

    # A second run with nothing new succeeds and uploads nothing.
    report = publish_episodes(
        episodes=str(show_dir), storage=str(storage_dir), now=T1, settle_seconds=0
    )
    assert report.outcomes == [] and report.uploads == 0
