"""The drop folder is a boundary: only regular files inside it are read.

A symlink, FIFO or directory with an episode file's name is refused with a note and never
read; the files it points to never reach the catalog, the feed or storage. The drop folder
itself may be a symlink (operators use one).
"""

# ruff: noqa: F811  (the fixtures imported from test_podcast are test arguments here)

from __future__ import annotations

import io
import os
import signal
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image
from test_podcast import (  # noqa: F401  (audio, cover_bytes, show_dir are fixtures)
    T0,
    audio,
    cover_bytes,
    inbox_names,
    put,
    run,
    settings_for,
    show_dir,
)

from flows.core.errors import InputError
from flows.core.storage import LocalStorage
from flows.podcast.catalog import load_catalog
from flows.podcast.episode import Failed, try_prepare
from flows.podcast.inbox import read_inbox, refuse_clashes
from flows.podcast.run import plan_run

SECRET = "HEMLIGT-8c1f2e innehåll utanför inkorgen"


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder beside the episodes folder, holding files no run may read."""
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


@pytest.fixture
def no_hang():
    """Fail, rather than hang, if a run blocks (e.g. opening a FIFO)."""

    def stop(*_):
        raise TimeoutError("the run blocked")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def link(show_dir: Path, name: str, target: Path) -> Path:
    path = show_dir / "inbox" / name
    path.symlink_to(target)
    return path


def stored_bytes(storage: LocalStorage) -> bytes:
    """Every byte in the storage folder (objects, metadata, catalog, feed)."""
    return b"".join(p.read_bytes() for p in sorted(storage.root.rglob("*")) if p.is_file())


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1400, 1400), colour).save(out, "PNG")
    return out.getvalue()


def assert_refused(show_dir: Path, report, audio_name: str, bad_name: str, what: str) -> str:
    outcome = next(o for o in report.outcomes if o.name == audio_name)
    assert outcome.status == "failed"
    assert f"{bad_name}: is {what}, not a regular file" in outcome.reason
    assert "Copy the file itself" in outcome.reason
    stem = Path(audio_name).stem
    text = (show_dir / "failed" / f"{stem}.error.txt").read_text(encoding="utf-8")
    assert f"{bad_name}: is {what}, not a regular file" in text
    return text


# --- each kind of episode file as a link to a file outside --------------------------------------


def test_a_linked_sidecar_is_refused_and_never_read(show_dir, audio, outside, tmp_path):
    secret = outside / "anteckningar.md"
    secret.write_text(f"---\ntitle: Läckt\n---\n{SECRET}\n", encoding="utf-8")
    put(show_dir, "ep.mp3", audio["mp3"])
    link(show_dir, "ep.md", secret)
    put(show_dir, "bra.mp3", audio["mp3_other"])
    put(show_dir, "bra.md", "---\ntitle: Bra\n---\n")
    storage = LocalStorage(tmp_path / "storage")

    report = run(show_dir, storage)

    assert_refused(show_dir, report, "ep.mp3", "ep.md", "a symbolic link")
    assert [ep.slug for ep in load_catalog(storage).episodes] == ["bra"]
    assert SECRET.encode() not in stored_bytes(storage)
    assert "Läckt".encode() not in stored_bytes(storage)
    # The link itself moved aside with the audio; the file it points to is untouched.
    assert (show_dir / "failed" / "ep.md").is_symlink()
    assert secret.read_text(encoding="utf-8").endswith(f"{SECRET}\n")
    assert inbox_names(show_dir) == set()


def test_a_linked_transcript_is_refused_and_never_uploaded(show_dir, audio, outside, tmp_path):
    secret = outside / "privat.vtt"
    secret.write_text(f"WEBVTT\n\n00:00.000 --> 00:01.000\n{SECRET}\n", encoding="utf-8")
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Med text\n---\n")
    link(show_dir, "ep.vtt", secret)
    storage = LocalStorage(tmp_path / "storage")

    report = run(show_dir, storage)

    assert_refused(show_dir, report, "ep.mp3", "ep.vtt", "a symbolic link")
    assert storage.list_keys("podcast/") == []
    assert SECRET.encode() not in stored_bytes(storage)


def test_a_transcript_named_in_the_sidecar_as_a_link_is_refused(show_dir, audio, outside, tmp_path):
    secret = outside / "privat.srt"
    secret.write_text(f"1\n00:00:00,000 --> 00:00:01,000\n{SECRET}\n", encoding="utf-8")
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Med text\ntranscript: text.srt\n---\n")
    link(show_dir, "text.srt", secret)
    storage = LocalStorage(tmp_path / "storage")

    report = run(show_dir, storage)

    assert_refused(show_dir, report, "ep.mp3", "text.srt", "a symbolic link")
    assert {p.name for p in (show_dir / "failed").iterdir()} == {
        "ep.mp3",
        "ep.md",
        "text.srt",
        "ep.error.txt",
    }
    assert SECRET.encode() not in stored_bytes(storage)


def test_a_linked_chapters_file_is_refused(show_dir, audio, outside, tmp_path):
    secret = outside / "kapitel.json"
    secret.write_text(f'{{"chapters": [{{"startTime": 0, "title": "{SECRET}"}}]}}')
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Med kapitel\n---\n")
    link(show_dir, "ep.json", secret)
    storage = LocalStorage(tmp_path / "storage")

    report = run(show_dir, storage)

    assert_refused(show_dir, report, "ep.mp3", "ep.json", "a symbolic link")
    assert SECRET.encode() not in stored_bytes(storage)
    assert (show_dir / "failed" / "ep.json").is_symlink()


def test_a_linked_episode_image_is_refused_and_never_uploaded(show_dir, audio, outside, tmp_path):
    secret = outside / "privat.png"
    secret.write_bytes(_png((1, 2, 3)))
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Med bild\nimage: bild.png\n---\n")
    link(show_dir, "bild.png", secret)
    storage = LocalStorage(tmp_path / "storage")

    report = run(show_dir, storage)

    assert_refused(show_dir, report, "ep.mp3", "bild.png", "a symbolic link")
    assert storage.list_keys("podcast/art/") == []
    assert secret.read_bytes() not in stored_bytes(storage)


def test_a_stray_linked_image_is_refused_alone(show_dir, audio, outside, tmp_path):
    secret = outside / "privat.jpg"
    secret.write_bytes(SECRET.encode())
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Utan bild\n---\n")
    link(show_dir, "semester.jpg", secret)
    storage = LocalStorage(tmp_path / "storage")

    report = run(show_dir, storage)

    status = {o.name: o.status for o in report.outcomes}
    assert status == {"ep.mp3": "published", "semester.jpg": "failed"}
    text = (show_dir / "failed" / "semester.error.txt").read_text(encoding="utf-8")
    assert "semester.jpg: is a symbolic link, not a regular file" in text
    assert SECRET.encode() not in stored_bytes(storage)


def test_linked_audio_is_refused_and_never_read(show_dir, audio, outside, tmp_path):
    target = outside / "annan.mp3"
    target.write_bytes(audio["mp3_other"].read_bytes())
    link(show_dir, "ep.mp3", target)
    put(show_dir, "ep.md", "---\ntitle: Länkat ljud\n---\n")
    put(show_dir, "bra.mp3", audio["mp3"])
    put(show_dir, "bra.md", "---\ntitle: Bra\n---\n")
    storage = LocalStorage(tmp_path / "storage")

    report = run(show_dir, storage)

    assert_refused(show_dir, report, "ep.mp3", "ep.mp3", "a symbolic link")
    assert [ep.slug for ep in load_catalog(storage).episodes] == ["bra"]
    assert not [k for k in storage.list_keys() if "/ep-" in k]
    assert (show_dir / "failed" / "ep.mp3").is_symlink()
    assert target.read_bytes() == audio["mp3_other"].read_bytes()


def test_a_link_pointing_inside_the_inbox_is_refused_too(show_dir, audio, tmp_path):
    put(show_dir, "original.mp3", audio["mp3"])
    put(show_dir, "original.md", "---\ntitle: Original\n---\n")
    link(show_dir, "kopia.mp3", show_dir / "inbox" / "original.mp3")
    report = run(show_dir, LocalStorage(tmp_path / "storage"))
    status = {o.name: o.status for o in report.outcomes}
    assert status == {"original.mp3": "published", "kopia.mp3": "failed"}


# --- the show's own files -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cover.jpg", "show.yaml"])
def test_a_linked_show_file_stops_the_run_before_anything_is_written(
    show_dir, audio, outside, tmp_path, name
):
    target = outside / name
    (show_dir / name).rename(target)
    (show_dir / name).symlink_to(target)
    put(show_dir, "ep.mp3", audio["mp3"])
    storage = LocalStorage(tmp_path / "storage")

    with pytest.raises(InputError, match=rf"{name}: is a symbolic link, not a regular file"):
        run(show_dir, storage)

    assert stored_bytes(storage) == b""
    assert inbox_names(show_dir) == {"ep.mp3"}


def test_a_cover_path_leaving_the_episodes_folder_is_refused(show_dir, outside, tmp_path):
    (outside / "cover.jpg").write_bytes((show_dir / "cover.jpg").read_bytes())
    show_yaml = show_dir / "show.yaml"
    text = show_yaml.read_text(encoding="utf-8").replace(
        "image: cover.jpg", "image: ../outside/cover.jpg"
    )
    show_yaml.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=r"cover\.jpg.* outside"):
        run(show_dir, LocalStorage(tmp_path / "storage"))


# --- special files -------------------------------------------------------------------------------


def test_a_fifo_with_an_audio_name_is_refused_without_blocking(show_dir, audio, tmp_path, no_hang):
    os.mkfifo(show_dir / "inbox" / "ror.mp3")
    put(show_dir, "bra.mp3", audio["mp3"])
    put(show_dir, "bra.md", "---\ntitle: Bra\n---\n")
    storage = LocalStorage(tmp_path / "storage")

    report = run(show_dir, storage)

    assert_refused(show_dir, report, "ror.mp3", "ror.mp3", "a FIFO (named pipe)")
    assert [ep.slug for ep in load_catalog(storage).episodes] == ["bra"]


def test_a_fifo_as_sidecar_refuses_its_episode_without_blocking(show_dir, audio, tmp_path, no_hang):
    put(show_dir, "ep.mp3", audio["mp3"])
    os.mkfifo(show_dir / "inbox" / "ep.md")
    report = run(show_dir, LocalStorage(tmp_path / "storage"))
    assert_refused(show_dir, report, "ep.mp3", "ep.md", "a FIFO (named pipe)")


def test_a_directory_named_like_audio_is_refused(show_dir, audio, tmp_path):
    (show_dir / "inbox" / "x.mp3").mkdir()
    (show_dir / "inbox" / "x.mp3" / "inuti.txt").write_text("kvar")
    put(show_dir, "bra.mp3", audio["mp3"])
    put(show_dir, "bra.md", "---\ntitle: Bra\n---\n")
    storage = LocalStorage(tmp_path / "storage")

    report = run(show_dir, storage)

    assert_refused(show_dir, report, "x.mp3", "x.mp3", "a directory")
    assert (show_dir / "failed" / "x.mp3" / "inuti.txt").read_text() == "kvar"
    assert [ep.slug for ep in load_catalog(storage).episodes] == ["bra"]


def test_other_folders_in_the_inbox_are_left_alone(show_dir, tmp_path):
    (show_dir / "inbox" / "gamla avsnitt").mkdir()
    result = refuse_clashes(read_inbox(show_dir / "inbox", time.time() + 30, 0), [])
    assert result.candidates == result.refused == result.waiting == ()


# --- a file swapped for a link after the scan ----------------------------------------------------


@pytest.mark.parametrize("swapped", ["ep.mp3", "ep.vtt", "ep.png"])
def test_a_file_swapped_for_a_link_after_the_scan_is_not_followed(
    show_dir, audio, outside, tmp_path, swapped
):
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Bytt\nimage: ep.png\n---\n")
    put(show_dir, "ep.vtt", "WEBVTT\n")
    put(show_dir, "ep.png", _png((9, 9, 9)))
    target = outside / swapped
    target.write_bytes((show_dir / "inbox" / swapped).read_bytes())
    with tempfile.TemporaryDirectory() as work:
        plan = plan_run(
            settings_for(show_dir), LocalStorage(tmp_path / "s"), T0, time.time(), Path(work)
        )
        [candidate] = plan.scan.candidates
        (show_dir / "inbox" / swapped).unlink()
        link(show_dir, swapped, target)  # the race: checked as a file, opened as a link
        result = try_prepare(candidate, plan.context)
    assert isinstance(result, Failed)
    assert f"{swapped}: is a symbolic link, not a regular file" in result.reason


# --- the drop folder itself may be a link ------------------------------------------------------


def test_an_episodes_folder_that_is_a_symlink_works(show_dir, audio, tmp_path):
    linked = tmp_path / "episodes-link"
    linked.symlink_to(show_dir, target_is_directory=True)
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Via länk\n---\n")
    storage = LocalStorage(tmp_path / "storage")

    report = run(linked, storage)

    assert [o.status for o in report.outcomes] == ["published"]
    assert [ep.title for ep in load_catalog(storage).episodes] == ["Via länk"]
    assert (show_dir / "published" / "ep.mp3").is_file()


def test_an_inbox_that_is_a_symlink_works(show_dir, audio, tmp_path):
    real = tmp_path / "delad-mapp"
    (show_dir / "inbox").rename(real)
    (show_dir / "inbox").symlink_to(real, target_is_directory=True)
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Delad inkorg\n---\n")
    put(show_dir, "ep.vtt", "WEBVTT\n\n00:00.000 --> 00:01.000\nHej\n")
    put(show_dir, "tom.mp3", b"")  # refused: it goes to episodes/failed/
    storage = LocalStorage(tmp_path / "storage")

    report = run(show_dir, storage)

    assert {o.name: o.status for o in report.outcomes} == {
        "ep.mp3": "published",
        "tom.mp3": "failed",
    }
    [ep] = load_catalog(storage).episodes
    assert ep.title == "Delad inkorg" and ep.transcript_key
    assert inbox_names(show_dir) == set()
    # Moved into the episodes folder, never beside the link's target.
    published = {p.name for p in (show_dir / "published").iterdir()}
    assert published - {"ep.notes.txt"} == {"ep.mp3", "ep.md", "ep.vtt"}  # notes: its warnings
    assert {p.name for p in (show_dir / "failed").iterdir()} == {"tom.mp3", "tom.error.txt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "delad-mapp",
        "episodes",
        "storage",
    ]
