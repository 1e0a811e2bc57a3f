"""Issue 6 through the whole pipeline: masters in, loudness-normalised MP3 out, and one
publish run at a time.

The audio is made with the same ffmpeg the pipeline uses (sine tones at known loudness,
checked with `measure_loudness` before use), published with `flows.podcast.run.publish` into
LocalStorage and into moto over HTTP, and the published MP3 is measured again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from mutagen.id3 import ID3
from mutagen.mp3 import MP3

from flows.core.backends import open_storage
from flows.core.settings import Settings
from flows.core.storage import CACHE_PRIVATE, LocalStorage
from flows.podcast.catalog import (
    BACKUP_PREFIX,
    CATALOG_KEY,
    load_catalog,
    mark_removed,
    save_catalog,
)
from flows.podcast.ffmpeg import ffmpeg_exe
from flows.podcast.lock import LOCK_KEY, RunLock, acquire_run_lock, release_run_lock
from flows.podcast.loudness import master_key, measure_loudness
from flows.podcast.run import publish

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
T1 = T0 + timedelta(days=1)
SECONDS = 4
CODECS = {".wav": ["-c:a", "pcm_s24le"], ".aiff": ["-c:a", "pcm_s24be"], ".flac": []}


# --- test audio ---------------------------------------------------------------------------------


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True
    )


def _tone(path: Path, lufs: float, channels: int, reference: dict[int, float]) -> Path:
    """A 1 kHz-ish tone at `lufs` integrated loudness (gain from a measured reference)."""
    gain = lufs - reference[channels]
    _ffmpeg(
        *("-f", "lavfi", "-i", f"sine=frequency=997:duration={SECONDS}:sample_rate=48000"),
        *("-af", f"volume={gain:.2f}dB", "-ac", str(channels)),
        *CODECS[path.suffix],
        str(path),
    )
    measured = measure_loudness(path).integrated_lufs
    assert abs(measured - lufs) <= 0.5, f"{path.name} measures {measured}, wanted {lufs}"
    return path


@pytest.fixture(scope="session")
def tones(tmp_path_factory) -> dict[str, Path]:
    """Masters and an MP3 at known loudness, made once per session."""
    folder = tmp_path_factory.mktemp("tones")
    reference = {}
    for channels in (1, 2):
        ref = folder / f"ref{channels}.wav"
        _ffmpeg(
            *("-f", "lavfi", "-i", f"sine=frequency=997:duration={SECONDS}:sample_rate=48000"),
            *("-ac", str(channels), str(ref)),
        )
        reference[channels] = measure_loudness(ref).integrated_lufs
    files = {
        "quiet_stereo_wav": _tone(folder / "quiet-stereo.wav", -30, 2, reference),
        "loud_stereo_flac": _tone(folder / "loud-stereo.flac", -8, 2, reference),
        "quiet_mono_flac": _tone(folder / "quiet-mono.flac", -30, 1, reference),
        "loud_mono_wav": _tone(folder / "loud-mono.wav", -8, 1, reference),
        "loud_mono_aiff": _tone(folder / "loud-mono.aiff", -8, 1, reference),
    }
    quiet_mp3 = folder / "quiet.mp3"
    _ffmpeg("-i", str(files["quiet_stereo_wav"]), "-b:a", "128k", "-ar", "44100", str(quiet_mp3))
    files["quiet_mp3"] = quiet_mp3
    silence = folder / "silence.wav"
    _ffmpeg("-f", "lavfi", "-i", f"anullsrc=r=44100:cl=stereo:d={SECONDS}", str(silence))
    files["silence_wav"] = silence
    empty = folder / "zero.wav"
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-t", "0", str(empty))
    files["zero_seconds_wav"] = empty
    whole = files["quiet_stereo_wav"].read_bytes()
    cut = folder / "cut.wav"
    cut.write_bytes(whole[: len(whole) // 2])  # a header promising 4 s, then half of it
    files["cut_wav"] = cut
    noise = folder / "noise.wav"
    noise.write_bytes(os.urandom(5000))
    files["noise_wav"] = noise
    return files


@pytest.fixture
def show_dir(tmp_path) -> Path:
    folder = tmp_path / "episodes"
    (folder / "inbox").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "episodes" / "show.yaml", folder / "show.yaml")
    shutil.copy(REPO_ROOT / "episodes" / "cover.jpg", folder / "cover.jpg")
    return folder


def drop(show_dir: Path, name: str, audio: Path, title: str | None = None) -> None:
    shutil.copy(audio, show_dir / "inbox" / name)
    if title is not None:
        stem = Path(name).stem
        (show_dir / "inbox" / f"{stem}.md").write_text(
            f"---\ntitle: {title}\n---\nOm {title}.\n", encoding="utf-8"
        )


def settings_for(show_dir: Path, **overrides) -> Settings:
    return Settings.load(**{"episodes_dir": str(show_dir), "settle_seconds": 0, **overrides})


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_on_target(mp3: Path, lufs: float = -16.0) -> None:
    measured = measure_loudness(mp3, fmt="mp3")
    assert abs(measured.integrated_lufs - lufs) <= 1.0, measured
    assert measured.true_peak_dbtp <= -1.0, measured


# --- masters -> normalised MP3, master kept privately --------------------------------------------


def test_masters_become_normalised_tagged_mp3_and_are_kept(show_dir, tones, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    masters = {
        "tyst-stereo.wav": (tones["quiet_stereo_wav"], "Tyst i stereo", 2, "wav"),
        "hog-stereo.flac": (tones["loud_stereo_flac"], "Högt i stereo", 2, "flac"),
        "tyst-mono.flac": (tones["quiet_mono_flac"], "Tyst i mono", 1, "flac"),
        "hog-mono.aif": (tones["loud_mono_aiff"], "Högt i mono", 1, "aiff"),
    }
    for name, (source, title, _, _) in masters.items():
        drop(show_dir, name, source, title)

    report = publish(settings_for(show_dir), storage, T0)

    assert {o.name: o.status for o in report.outcomes} == dict.fromkeys(masters, "published")
    catalog = {ep.slug: ep for ep in load_catalog(storage).episodes}
    for name, (source, title, channels, fmt) in masters.items():
        slug = Path(name).stem
        episode = catalog[slug]
        mp3 = storage.path_of(episode.audio_key)
        assert episode.audio_key.endswith(".mp3") and episode.mime_type == "audio/mpeg"
        assert_on_target(mp3)
        assert MP3(mp3).info.channels == channels  # mono stays mono
        tags = ID3(mp3)
        assert str(tags["TIT2"]) == title and str(tags["TALB"]) == "Digitalsamtal"
        assert abs(episode.loudness["integrated_lufs"] + 16) <= 1.0
        assert episode.loudness["true_peak_dbtp"] <= -1.0
        assert abs(episode.loudness["source_integrated_lufs"] - (-30 if "tyst" in slug else -8)) < 1
        assert episode.source_sha256 == sha256(source)
        assert episode.master_key == master_key(slug, sha256(source), fmt)
        kept = storage.metadata(episode.master_key)
        assert kept["public"] is False and kept["cache_control"] == CACHE_PRIVATE
        assert kept["content_type"] == f"audio/{fmt}"
        assert storage.path_of(episode.master_key).read_bytes() == source.read_bytes()
        assert storage.metadata(episode.audio_key)["public"] is True
        assert (show_dir / "published" / name).exists()
    summary = report.summary()
    assert "loudness: -1" in summary and "dBTP" in summary
    assert "WAV master -> MP3 128 kbps stereo" in summary
    assert "FLAC master -> MP3 128 kbps mono" in summary
    assert not any("LUFS" in w for w in catalog["tyst-mono"].warnings)  # on target: no warning


def test_redrop_of_the_same_master_is_unchanged_and_uploads_nothing(show_dir, tones, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    drop(show_dir, "avsnitt.wav", tones["loud_mono_wav"], "Samma master")
    first = publish(settings_for(show_dir), storage, T0)
    assert [o.status for o in first.outcomes] == ["published"] and first.uploads == 2
    before = {k: storage.path_of(k).stat().st_mtime_ns for k in storage.list_keys("podcast/")}

    drop(show_dir, "avsnitt.wav", tones["loud_mono_wav"], "Samma master")
    again = publish(settings_for(show_dir), storage, T1)

    # The encode is deterministic: the same MP3, the same key, nothing written.
    assert [o.status for o in again.outcomes] == ["unchanged"] and again.uploads == 0
    after = {k: storage.path_of(k).stat().st_mtime_ns for k in storage.list_keys("podcast/")}
    assert after == before
    assert (show_dir / "published" / "avsnitt-2.wav").exists()


def test_mono_target_when_configured(show_dir, tones, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    drop(show_dir, "mono.wav", tones["loud_mono_wav"], "Mono")
    drop(show_dir, "stereo.flac", tones["loud_stereo_flac"], "Stereo")
    publish(settings_for(show_dir, loudness_mono_lufs=-19), storage, T0)
    catalog = {ep.slug: ep for ep in load_catalog(storage).episodes}
    assert_on_target(storage.path_of(catalog["mono"].audio_key), -19)
    assert_on_target(storage.path_of(catalog["stereo"].audio_key), -16)


def test_master_over_s3_http(show_dir, tones, s3_http):
    settings = s3_http.settings(episodes_dir=str(show_dir), settle_seconds=0, s3_public_acl=True)
    drop(show_dir, "over-http.flac", tones["quiet_stereo_wav"], "Över HTTP")  # a WAV named .flac

    report = publish(settings, open_storage(settings), T0)

    [outcome] = report.outcomes
    assert outcome.status == "published"
    assert any("holds WAV audio, whatever its name says" in w for w in outcome.warnings)
    [episode] = load_catalog(open_storage(settings)).episodes
    client, bucket = s3_http.client, s3_http.bucket
    audio = client.head_object(Bucket=bucket, Key="kraft/" + episode.audio_key)
    master = client.head_object(Bucket=bucket, Key="kraft/" + episode.master_key)
    assert audio["ContentType"] == "audio/mpeg" and audio["ContentLength"] == episode.size
    assert master["ContentType"] == "audio/wav" and master["CacheControl"] == CACHE_PRIVATE
    assert episode.master_key.startswith("podcast/masters/over-http-")

    def readable_by_all(key: str) -> bool:
        grants = client.get_object_acl(Bucket=bucket, Key="kraft/" + key)["Grants"]
        return any(g["Grantee"].get("URI", "").endswith("/AllUsers") for g in grants)

    assert readable_by_all(episode.audio_key) and not readable_by_all(episode.master_key)
    local = show_dir.parent / "downloaded.mp3"
    local.write_bytes(
        client.get_object(Bucket=bucket, Key="kraft/" + episode.audio_key)["Body"].read()
    )
    assert_on_target(local)


# --- lossy files: measured, warned about, re-encoded only when asked -----------------------------


def test_off_target_mp3_is_published_as_it_is_with_a_warning(show_dir, tones, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    drop(show_dir, "tyst.mp3", tones["quiet_mp3"], "Tyst MP3")
    report = publish(settings_for(show_dir), storage, T0)
    [outcome] = report.outcomes
    [warning] = [w for w in outcome.warnings if "LUFS target" in w]
    assert "LU quieter than the -16 LUFS target" in warning
    assert "KRAFTSAMLING_NORMALISE_LOSSY" in warning
    [episode] = load_catalog(storage).episodes
    assert abs(episode.loudness["integrated_lufs"] + 30) <= 1.0 and episode.master_key is None
    assert warning in episode.warnings and "MP3 as dropped" in report.summary()


def test_off_target_mp3_is_reencoded_when_the_setting_asks(show_dir, tones, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    drop(show_dir, "tyst.mp3", tones["quiet_mp3"], "Tyst MP3")
    report = publish(settings_for(show_dir, normalise_lossy=True), storage, T0)
    [outcome] = report.outcomes
    assert any("re-encoded to MP3" in w for w in outcome.warnings)
    [episode] = load_catalog(storage).episodes
    assert_on_target(storage.path_of(episode.audio_key))
    assert str(ID3(storage.path_of(episode.audio_key))["TIT2"]) == "Tyst MP3"
    assert episode.master_key is None  # a lossy source is not a master


# --- bad input ----------------------------------------------------------------------------------


def test_bad_masters_fail_clearly_and_the_good_one_is_published(show_dir, tones, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    drop(show_dir, "bra.wav", tones["loud_mono_wav"], "Bra")
    drop(show_dir, "kapad.wav", tones["cut_wav"], "Kapad")
    drop(show_dir, "brus.wav", tones["noise_wav"], "Brus")
    drop(show_dir, "noll.wav", tones["zero_seconds_wav"], "Noll sekunder")
    drop(show_dir, "tystnad.wav", tones["silence_wav"], "Tystnad")

    report = publish(settings_for(show_dir), storage, T0)

    status = {o.name: o.status for o in report.outcomes}
    assert status == {
        "bra.wav": "published",
        "kapad.wav": "failed",
        "brus.wav": "failed",
        "noll.wav": "failed",
        "tystnad.wav": "failed",
    }
    assert [ep.slug for ep in load_catalog(storage).episodes] == ["bra"]
    failed = show_dir / "failed"
    errors = {
        name: (failed / f"{name}.error.txt").read_text("utf-8")
        for name in ("kapad", "brus", "noll", "tystnad")
    }
    assert "cut short" in errors["kapad"] and "Copy or export it again" in errors["kapad"]
    assert "not a WAV, FLAC or AIFF file (by its content)" in errors["brus"]
    assert "holds no audio (0 seconds)" in errors["noll"]
    assert "silent (integrated loudness -inf" in errors["tystnad"]
    assert "tystnad.wav: the audio is silent" in errors["tystnad"]  # named, without the folder
    reasons = [text.split("how to fix it:\n")[1].split("\n\n")[0] for text in errors.values()]
    assert all("again" in reason for reason in reasons)  # each says what to do
    assert storage.list_keys("podcast/masters/") == [load_catalog(storage).episodes[0].master_key]


def test_ffmpeg_failing_shows_its_own_last_lines(show_dir, tones, tmp_path, monkeypatch):
    fake = tmp_path / "ffmpeg"
    fake.write_text(
        "#!/bin/sh\necho 'Unknown encoder libmp3lame' >&2\necho 'Conversion failed!' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    drop(show_dir, "ep.wav", tones["loud_mono_wav"], "Avsnitt")
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fake))
    report = publish(settings_for(show_dir), LocalStorage(tmp_path / "storage"), T0)
    [outcome] = report.outcomes
    assert outcome.status == "failed"
    text = (show_dir / "failed" / "ep.error.txt").read_text("utf-8")
    assert "ffmpeg failed measuring loudness (exit status 1)" in text
    assert "Unknown encoder libmp3lame" in text and "Conversion failed!" in text


# --- removed episodes stay removed ---------------------------------------------------------------


def test_redrop_of_a_removed_episode_says_removed(show_dir, tones, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    drop(show_dir, "borta.mp3", tones["quiet_mp3"], "Borttaget")
    publish(settings_for(show_dir), storage, T0)
    catalog = load_catalog(storage)
    save_catalog(storage, mark_removed(catalog, [catalog.episodes[0].guid], T0)[0], T0)

    drop(show_dir, "borta.mp3", tones["quiet_mp3"], "Borttaget")
    report = publish(settings_for(show_dir), storage, T1)

    [outcome] = report.outcomes
    assert outcome.status == "removed"
    assert "was removed from the feed by an operator" in outcome.reason
    assert "ask an operator to restore it (see README)" in outcome.reason
    assert (
        "removed   borta.mp3" in report.summary() and "1 removed from the feed" in report.summary()
    )
    [episode] = load_catalog(storage).episodes
    assert episode.removed_at == T0  # still removed


# --- one publish run at a time -------------------------------------------------------------------


def test_lock_is_exclusive_stale_locks_are_taken_over_and_release_is_careful(tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    first = acquire_run_lock(storage, T0, 7200, run_id="run-a", host="host-a")
    assert first.acquired and storage.metadata(LOCK_KEY)["public"] is False
    second = acquire_run_lock(storage, T0 + timedelta(minutes=5), 7200, run_id="run-b")
    assert not second.acquired and second.lock.run_id == "run-a"
    assert "run id run-a, host host-a" in second.lock.describe()

    # Three hours later run-a is presumed crashed: run-c takes over (If-Match on its ETag).
    third = acquire_run_lock(storage, T0 + timedelta(hours=3), 7200, run_id="run-c")
    assert third.acquired and third.took_over is not None and third.took_over.run_id == "run-a"
    release_run_lock(storage, first.lock)  # run-a wakes up: it must not remove run-c's lock
    data, _ = storage.get_bytes(LOCK_KEY)
    assert RunLock.from_bytes(data, "").run_id == "run-c"
    release_run_lock(storage, third.lock)
    assert storage.get_bytes(LOCK_KEY) is None


def test_a_lock_read_back_with_our_own_run_id_is_ours(tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    # Our create was applied but its answer lost: the retry finds our own lock.
    storage.put_bytes(
        LOCK_KEY,
        RunLock("run-a", T0, "host-a").to_bytes(),
        content_type="application/json",
        cache_control="no-store",
        public=False,
    )
    attempt = acquire_run_lock(storage, T0, 7200, run_id="run-a")
    assert attempt.acquired and attempt.took_over is None
    assert not acquire_run_lock(storage, T0, 7200, run_id="run-b").acquired
    release_run_lock(storage, attempt.lock)
    assert storage.get_bytes(LOCK_KEY) is None


def test_a_second_run_stops_cleanly_while_one_is_publishing(show_dir, tones, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    held = acquire_run_lock(storage, T0, 7200, run_id="other-run", host="elsewhere")
    drop(show_dir, "ep.wav", tones["loud_mono_wav"], "Avsnitt")

    report = publish(settings_for(show_dir), storage, T0 + timedelta(minutes=1))

    assert report.outcomes == [] and report.uploads == 0
    assert report.summary() == (
        f"Another run is publishing to {storage.describe()} since 2026-03-01 09:00:00 Stockholm "
        "time (run id other-run, host elsewhere), 1 min ago; if that run has stopped on another "
        "machine, its lock is taken over from 2026-03-01 11:00 Stockholm time "
        "(lock_stale_seconds); this run did nothing. Run again when it has finished."
    )
    assert sorted(p.name for p in (show_dir / "inbox").iterdir()) == ["ep.md", "ep.wav"]
    assert storage.get_bytes(CATALOG_KEY) is None
    release_run_lock(storage, held.lock)
    assert [o.status for o in publish(settings_for(show_dir), storage, T1).outcomes] == [
        "published"
    ]
    assert storage.get_bytes(LOCK_KEY) is None  # released after the run


def _race(show_dir: Path, make_storage, settings: Settings, stagger: float) -> list:
    """Two runs of `publish` started together (the second `stagger` s later)."""
    reports: list = [None, None]
    barrier = threading.Barrier(2)

    def run(index: int) -> None:
        barrier.wait()
        if index:
            threading.Event().wait(stagger)
        reports[index] = publish(settings, make_storage(), T0, run_id=f"run-{index}")

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return reports


def _assert_one_published(show_dir: Path, reports: list) -> None:
    winners = [r for r in reports if not r.locked_by]
    losers = [r for r in reports if r.locked_by]
    assert len(winners) == 1 and len(losers) == 1
    assert sorted(o.status for o in winners[0].outcomes) == ["published", "published"]
    assert "this run did nothing" in losers[0].summary() and losers[0].outcomes == []
    # No file lost: everything the producers dropped is in published/.
    assert sorted(p.name for p in (show_dir / "published").iterdir()) == [
        "a.md",
        "a.wav",
        "b.flac",
        "b.md",
    ]
    assert list((show_dir / "inbox").iterdir()) == []


def test_two_runs_at_once_on_local_storage(show_dir, tones, tmp_path):
    drop(show_dir, "a.wav", tones["loud_mono_wav"], "A")
    drop(show_dir, "b.flac", tones["quiet_mono_flac"], "B")
    root = tmp_path / "storage"
    reports = _race(show_dir, lambda: LocalStorage(root), settings_for(show_dir), 0.0)
    _assert_one_published(show_dir, reports)
    storage = LocalStorage(root)
    assert len(load_catalog(storage).episodes) == 2
    # Written once: its one backup is that version itself (every version written is one).
    [backup] = storage.list_keys(BACKUP_PREFIX)
    assert storage.get_bytes(backup)[0] == storage.get_bytes(CATALOG_KEY)[0]
    assert storage.get_bytes(LOCK_KEY) is None


def test_two_runs_at_once_on_s3_http(show_dir, tones, s3_http):
    drop(show_dir, "a.wav", tones["loud_mono_wav"], "A")
    drop(show_dir, "b.flac", tones["quiet_mono_flac"], "B")
    settings = s3_http.settings(episodes_dir=str(show_dir), settle_seconds=0)
    # 50 ms apart: the lock's If-None-Match is what is tested, not moto's own atomicity.
    reports = _race(show_dir, lambda: open_storage(settings), settings, 0.05)
    _assert_one_published(show_dir, reports)
    log = s3_http.request_log
    assert log.count("PUT", key="kraft/" + CATALOG_KEY) == 1
    assert log.count("PUT", key="kraft/" + LOCK_KEY) == 2  # one created it, one was refused
    assert log.count("DELETE", key="kraft/" + LOCK_KEY) == 1
    assert len(load_catalog(open_storage(settings)).episodes) == 2
