"""flows.podcast.audio and .tags: inspecting, refusing and tagging episode audio, read back
with mutagen.

Fixtures are real encodes made once per session with the ffmpeg binary imageio-ffmpeg ships.
"""

from __future__ import annotations

import doctest
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import imageio_ffmpeg
import mutagen
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutagen.apev2 import APEv2
from mutagen.id3 import APIC, COMM, ID3, TIT2, TPE1, PictureType
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4, MP4Cover
from PIL import Image

import flows.podcast.audio
import flows.podcast.tags
from flows.core.errors import AudioError
from flows.core.models import STOCKHOLM, Chapter
from flows.podcast.audio import AudioInfo, inspect_audio
from flows.podcast.tags import EpisodeTags, build_id3_frames, build_mp4_atoms, tag_audio

MP3_MONO = ["-ac", "1", "-c:a", "libmp3lame", "-b:a", "64k"]
AAC_MONO = ["-ac", "1", "-c:a", "aac", "-b:a", "64k"]
SINE = "sine=frequency=440:duration=3:sample_rate={rate}"
# name -> (input rate, ffmpeg output options)
ENCODES = {
    "mono64.mp3": (44100, ["-ac", "1", "-c:a", "libmp3lame", "-b:a", "64k"]),
    "stereo128.mp3": (44100, ["-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k"]),
    "low.mp3": (22050, ["-ac", "1", "-c:a", "libmp3lame", "-b:a", "32k"]),
    # no Xing frame and no ID3 tag: the stream starts with a plain frame
    "bare.mp3": (
        44100,
        [
            "-ac",
            "1",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "64k",
            "-write_xing",
            "0",
            "-id3v2_version",
            "0",
        ],
    ),
    "titled.mp3": (
        44100,
        [
            *MP3_MONO,
            "-metadata",
            "title=Avsnitt från taggen",
            "-metadata",
            "comment=Beskrivning i taggen",
        ],
    ),
    "aac.m4a": (44100, ["-ac", "1", "-c:a", "aac", "-b:a", "64k"]),
    "faststart.m4a": (44100, ["-ac", "1", "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart"]),
    "titled.m4a": (
        44100,
        [*AAC_MONO, "-metadata", "title=M4A-titel", "-metadata", "comment=M4A-beskrivning"],
    ),
    "pcm.wav": (44100, ["-ac", "1"]),
    "lossless.flac": (44100, ["-ac", "1"]),
}
COVER = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4  # JPEG magic; the bytes only travel
WHEN = datetime(2026, 11, 5, 7, 0, tzinfo=STOCKHOLM)


def _ffmpeg(*args: str) -> None:
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All fixture files, encoded once: one ffmpeg run per input rate, plus the odd ones."""
    root = tmp_path_factory.mktemp("audio")
    for rate in sorted({r for r, _ in ENCODES.values()}):
        outputs: list[str] = []
        for name, (r, opts) in ENCODES.items():
            if r == rate:
                outputs += [*opts, str(root / name)]
        _ffmpeg("-f", "lavfi", "-i", SINE.format(rate=rate), *outputs)
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-t", "0", str(root / "zero.mp3"))
    _make_bad_inputs(root)
    return root


def _make_bad_inputs(root: Path) -> None:
    def cut(src: str, dst: str, fraction: float) -> None:
        data = (root / src).read_bytes()
        (root / dst).write_bytes(data[: int(len(data) * fraction)])

    (root / "random.mp3").write_bytes(os.urandom(40_000))
    (root / "empty.mp3").write_bytes(b"")
    cut("mono64.mp3", "truncated.mp3", 0.6)
    cut("bare.mp3", "truncated-bare.mp3", 0.6)
    cut("aac.m4a", "truncated.m4a", 0.6)
    cut("faststart.m4a", "truncated-faststart.m4a", 0.6)
    shutil.copyfile(root / "pcm.wav", root / "renamed-wav.mp3")
    shutil.copyfile(root / "lossless.flac", root / "renamed-flac.mp3")
    # an ID3 tag and nothing after it but noise
    (root / "tag-only.mp3").write_bytes((root / "mono64.mp3").read_bytes()[:44] + os.urandom(9000))
    (root / "folder.mp3").mkdir()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tags(**changes: object) -> EpisodeTags:
    base = EpisodeTags(
        title='Avsnitt 3: AI & "vi" <på> riktigt 🎙️',
        artist="Kraftsamling för AI",
        album="Digitalsamtal",
        description="Första raden.\nAndra raden med å, ä och ö.",
        track=3,
        disc=2,
        date=WHEN,
        url="https://example.org/podcast/avsnitt-3",
        chapters=(
            Chapter(start=0, title="Intro"),
            Chapter(start=1.25, title="Samtalet"),
            Chapter(start=2.5, title="Avslutning"),
        ),
        cover=COVER,
        cover_mime="image/jpeg",
    )
    return replace(base, **changes)


# ---------------------------------------------------------------------------------------------
# inspect_audio


@pytest.mark.parametrize(
    ("name", "fmt", "mime", "rate", "channels", "bitrate"),
    [
        ("mono64.mp3", "mp3", "audio/mpeg", 44100, 1, 64_000),
        ("stereo128.mp3", "mp3", "audio/mpeg", 44100, 2, 128_000),
        ("bare.mp3", "mp3", "audio/mpeg", 44100, 1, 64_000),
        ("aac.m4a", "m4a", "audio/mp4", 44100, 1, 64_000),
        ("faststart.m4a", "m4a", "audio/mp4", 44100, 1, 64_000),
    ],
)
def test_inspect_good_files(media, name, fmt, mime, rate, channels, bitrate):
    info = inspect_audio(media / name)
    assert (info.format, info.extension, info.mime_type) == (fmt, f".{fmt}", mime)
    assert info.duration == pytest.approx(3.0, abs=0.1)
    assert (info.sample_rate, info.channels) == (rate, channels)
    assert info.bitrate == pytest.approx(bitrate, rel=0.1)
    assert info.warnings == ()
    assert info.path == media / name


def test_content_decides_not_the_extension(media, tmp_path):
    disguised = tmp_path / "really-m4a.mp3"
    shutil.copyfile(media / "aac.m4a", disguised)
    info = inspect_audio(disguised)
    assert (info.format, info.mime_type, info.extension) == ("m4a", "audio/mp4", ".m4a")


def test_low_bitrate_and_odd_rate_are_warnings(media):
    info = inspect_audio(media / "low.mp3")
    assert info.sample_rate == 22050
    assert any("32 kbps" in w and "64 kbps" in w for w in info.warnings)
    assert any("22050 Hz" in w for w in info.warnings)


def test_title_and_description_come_from_existing_tags(media):
    mp3 = inspect_audio(media / "titled.mp3")
    assert (mp3.title, mp3.description) == ("Avsnitt från taggen", "Beskrivning i taggen")
    m4a = inspect_audio(media / "titled.m4a")
    assert (m4a.title, m4a.description) == ("M4A-titel", "M4A-beskrivning")
    bare = inspect_audio(media / "mono64.mp3")
    assert (bare.title, bare.description) == (None, None)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("random.mp3", "no MP3 or M4A audio"),
        ("empty.mp3", "empty (0 bytes)"),
        ("truncated.mp3", "cut short"),
        ("truncated-bare.mp3", "cut short"),
        ("truncated.m4a", "damaged or cut short"),
        ("truncated-faststart.m4a", "cut short"),
        ("renamed-wav.mp3", "this is a WAV file"),
        ("renamed-flac.mp3", "this is a FLAC file"),
        ("zero.mp3", "no duration"),
        ("tag-only.mp3", "cannot be read"),
        ("folder.mp3", "cannot be read"),
        ("missing.mp3", "does not exist"),
    ],
)
def test_bad_input_is_refused_with_the_file_and_the_fix(media, name, hint):
    path = media / name
    with pytest.raises(AudioError) as caught:
        inspect_audio(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:")
    assert hint in message
    # every message says what to do about it
    assert any(word in message for word in ("Export", "Copy", "drop it in again", "drop the"))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    noise=st.binary(min_size=1, max_size=20_000),
    prefix=st.sampled_from([b"", b"\xff\xfb\x50\xc0", b"ID3\x03\x00\x00\x00\x00\x00\x00"]),
)
def test_noise_is_never_accepted_as_audio(media, noise, prefix):
    path = media / "noise.mp3"
    path.write_bytes(prefix + noise)
    with pytest.raises(AudioError, match=re.escape(str(path))):
        inspect_audio(path)


def test_large_random_file_is_refused(media):
    # mutagen searches up to 1 MiB for frame syncs; noise that size must not pass either.
    path = media / "big-noise.mp3"
    path.write_bytes(os.urandom(1_200_000))
    with pytest.raises(AudioError, match="no MP3 or M4A audio"):
        inspect_audio(path)


# ---------------------------------------------------------------------------------------------
# tag building (pure)


def test_doctests_hold():
    assert doctest.testmod(flows.podcast.audio).failed == 0
    assert doctest.testmod(flows.podcast.tags).failed == 0


def test_id3_frames_cover_every_field():
    ids = [f.FrameID for f in build_id3_frames(_tags(), 3.0)]
    expected = ["TIT2", "TPE1", "TALB", "COMM", "TCON", "TLAN", "TRCK", "TPOS", "TDRC", "WOAS"]
    assert ids == [*expected, "APIC", "CHAP", "CHAP", "CHAP", "CTOC"]
    minimal = _tags(track=None, disc=None, date=None, url=None, chapters=(), cover=None)
    assert [f.FrameID for f in build_id3_frames(minimal, 3.0)] == expected[:6]


def test_chapters_past_the_end_or_out_of_order_are_refused():
    with pytest.raises(AudioError, match=re.escape("'Avslutning' starts at 2.5 s")):
        build_id3_frames(_tags(), 2.0)
    swapped = (Chapter(start=2, title="B"), Chapter(start=1, title="A"))
    with pytest.raises(AudioError, match="not in order"):
        build_id3_frames(_tags(chapters=swapped), 3.0)


def test_text_is_cleaned_of_control_characters():
    frames = build_id3_frames(_tags(title="Rad\x00 ett\x07\tslut"), 3.0)
    assert frames[0].text == ["Rad ett slut"]
    atoms = build_mp4_atoms(_tags(description="a\x1bb\nc"))
    assert atoms["ldes"] == ["ab\nc"]


def test_cover_type_is_sniffed_or_refused():
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 20
    assert build_mp4_atoms(_tags(cover=png, cover_mime=None))["covr"][0].imageformat == (
        MP4Cover.FORMAT_PNG
    )
    with pytest.raises(AudioError, match="JPEG or PNG"):
        build_mp4_atoms(_tags(cover=b"GIF89a", cover_mime=None))


# ---------------------------------------------------------------------------------------------
# tag_audio, read back with mutagen


def _tagged(media: Path, tmp_path: Path, name: str, tags: EpisodeTags) -> tuple[Path, AudioInfo]:
    info = inspect_audio(media / name)
    dst = tmp_path / f"out-{name}"
    tag_audio(media / name, dst, tags, info)
    return dst, info


def test_mp3_tags_read_back(media, tmp_path):
    tags = _tags()
    dst, info = _tagged(media, tmp_path, "mono64.mp3", tags)
    id3 = ID3(dst)
    assert id3.version == (2, 3, 0)
    assert id3["TIT2"].text == [tags.title]
    assert id3["TPE1"].text == ["Kraftsamling för AI"]
    assert id3["TALB"].text == ["Digitalsamtal"]
    assert id3["TRCK"].text == ["3"]
    assert id3["TPOS"].text == ["2"]
    assert str(id3["TDRC"].text[0]) == "2026-11-05"
    assert id3["TCON"].text == ["Podcast"]
    assert id3["TLAN"].text == ["swe"]
    assert id3["WOAS"].url == tags.url
    (comm,) = id3.getall("COMM")
    assert (comm.lang, comm.desc, comm.text) == ("swe", "", [tags.description])
    (apic,) = id3.getall("APIC")
    assert (apic.type, apic.mime, apic.data) == (PictureType.COVER_FRONT, "image/jpeg", COVER)
    chaps = sorted(id3.getall("CHAP"), key=lambda c: c.start_time)
    end_ms = round(info.duration * 1000)
    assert [(c.start_time, c.end_time, c.sub_frames["TIT2"].text[0]) for c in chaps] == [
        (0, 1250, "Intro"),
        (1250, 2500, "Samtalet"),
        (2500, end_ms, "Avslutning"),
    ]
    (toc,) = id3.getall("CTOC")
    assert toc.child_element_ids == [c.element_id for c in chaps]
    assert toc.flags & 1 and toc.flags & 2  # top level, ordered
    data = dst.read_bytes()
    assert data[-128:-125] != b"TAG"  # no ID3v1
    # the audio itself is untouched and still reads as the same stream
    again = inspect_audio(dst)
    assert again.duration == pytest.approx(info.duration)
    assert again.title == tags.title


def test_m4a_atoms_read_back(media, tmp_path):
    tags = _tags(description="Kort. " * 60)
    dst, info = _tagged(media, tmp_path, "aac.m4a", tags)
    mp4 = MP4(dst)
    t = mp4.tags
    assert t["©nam"] == [tags.title]
    assert t["©ART"] == ["Kraftsamling för AI"]
    assert t["©alb"] == ["Digitalsamtal"]
    assert t["trkn"] == [(3, 0)]
    assert t["disk"] == [(2, 0)]
    assert t["©day"] == ["2026-11-05T06:00:00Z"]
    assert t["©gen"] == ["Podcast"]
    assert t["©cmt"] == [tags.description.strip()]
    assert t["ldes"] == [tags.description.strip()]
    assert t["desc"] == [tags.description.strip()[:255]]
    assert t["purl"] == [tags.url]
    assert bytes(t["covr"][0]) == COVER
    assert t["covr"][0].imageformat == MP4Cover.FORMAT_JPEG
    assert "©too" not in t  # the encoder's own tag was stripped
    assert mp4.info.length == pytest.approx(info.duration)


@pytest.mark.parametrize("name", ["mono64.mp3", "aac.m4a", "faststart.m4a"])
def test_tagging_twice_gives_identical_bytes(media, tmp_path, name):
    info = inspect_audio(media / name)
    first, second = tmp_path / "a" / name, tmp_path / "b" / name
    tag_audio(media / name, first, _tags(), info)
    tag_audio(media / name, second, _tags(), info)
    assert _sha(first) == _sha(second)
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no temp left


def _retag_mp3_differently(path: Path) -> None:
    ape = APEv2()  # first: mutagen's APEv2 writer drops an ID3v1 tag behind it
    ape["Title"] = "APE-titel"
    ape.save(path)
    id3 = ID3(path)
    id3.add(TIT2(encoding=3, text="Gammal titel"))
    id3.add(TPE1(encoding=3, text="Någon annan"))
    id3.add(COMM(encoding=3, lang="eng", desc="iTunNORM", text="0000"))
    id3.add(APIC(encoding=3, mime="image/png", type=3, desc="old", data=b"\x89PNG" + b"1" * 5000))
    id3.save(path, v2_version=4, v1=2, padding=lambda _info: 7777)  # v1=2: also write ID3v1


def test_old_tags_do_not_change_the_result_mp3(media, tmp_path):
    plain = tmp_path / "plain.mp3"
    shutil.copyfile(media / "mono64.mp3", plain)
    mutagen.id3.delete(plain)  # no tags at all
    retagged = tmp_path / "retagged.mp3"
    shutil.copyfile(media / "mono64.mp3", retagged)
    _retag_mp3_differently(retagged)
    data = retagged.read_bytes()
    assert data[-128:-125] == b"TAG" and b"APETAGEX" in data  # the setup did what it says
    outputs = []
    for src in (plain, retagged, media / "mono64.mp3"):
        dst = tmp_path / "out" / src.name
        tag_audio(src, dst, _tags(), inspect_audio(src))
        outputs.append(_sha(dst))
    assert len(set(outputs)) == 1
    assert b"APETAGEX" not in dst.read_bytes()
    assert ID3(dst)["TIT2"].text == [_tags().title]


def test_old_tags_do_not_change_the_result_m4a(media, tmp_path):
    plain = tmp_path / "plain.m4a"
    shutil.copyfile(media / "aac.m4a", plain)
    MP4(plain).delete()
    retagged = tmp_path / "retagged.m4a"
    shutil.copyfile(media / "titled.m4a", retagged)
    old = MP4(retagged)
    old.tags["covr"] = [MP4Cover(b"\x89PNG" + b"2" * 9000, MP4Cover.FORMAT_PNG)]
    old.tags["©wrt"] = ["Någon"]
    old.save(padding=lambda _info: 4321)
    outputs = []
    for src in (plain, retagged, media / "aac.m4a"):
        dst = tmp_path / "out" / src.name
        tag_audio(src, dst, _tags(), inspect_audio(src))
        outputs.append(_sha(dst))
    assert len(set(outputs)) == 1
    assert "©wrt" not in MP4(dst).tags


def test_tagging_keeps_the_mpeg_stream_byte_for_byte(media, tmp_path):
    dst, _ = _tagged(media, tmp_path, "mono64.mp3", _tags())
    src_audio = (media / "mono64.mp3").read_bytes()[44:]  # after ffmpeg's 44-byte ID3 tag
    out = dst.read_bytes()
    assert out.endswith(src_audio)
    assert len(out) == ID3(dst).size + len(src_audio)  # the new tag, then the stream


def test_bad_chapters_fail_tagging_with_the_file_named(media, tmp_path):
    info = inspect_audio(media / "mono64.mp3")
    late = _tags(chapters=(Chapter(start=0, title="A"), Chapter(start=99, title="B")))
    dst = tmp_path / "x.mp3"
    with pytest.raises(AudioError) as raised:
        tag_audio(media / "mono64.mp3", dst, late, info)
    swedish, english = str(raised.value).splitlines()
    assert swedish.startswith(f"{media / 'mono64.mp3'}: chapters: kapitlet 'B' börjar vid 99 s")
    assert english.startswith(f"{media / 'mono64.mp3'}: chapters: chapter 'B' starts at 99 s")
    assert not dst.exists()
    assert list(tmp_path.iterdir()) == []  # no half-written temp file


def test_mp3_without_chapters_has_no_chap_frames(media, tmp_path):
    dst, _ = _tagged(media, tmp_path, "stereo128.mp3", _tags(chapters=(), cover=None))
    id3 = MP3(dst).tags
    assert id3.getall("CHAP") == [] and id3.getall("CTOC") == [] and id3.getall("APIC") == []


# ---------------------------------------------------------------------------------------------
# The shipped demo assets (regenerated by demo/make_assets.py)

REPO = Path(__file__).resolve().parent.parent
DEMO_AUDIO = sorted(
    p for p in (REPO / "demo" / "episodes").iterdir() if p.suffix in (".mp3", ".m4a")
)


def _front_matter(path: Path) -> dict:
    _, front, _body = path.read_text(encoding="utf-8").split("---", 2)
    return yaml.safe_load(front)


def _seconds(stamp: str) -> int:
    h, m, s = (int(part) for part in stamp.split(":"))
    return h * 3600 + m * 60 + s


def test_three_demo_episodes_ship():
    assert len(DEMO_AUDIO) == 3
    assert {p.suffix for p in DEMO_AUDIO} == {".mp3", ".m4a"}


@pytest.mark.parametrize("audio", DEMO_AUDIO, ids=lambda p: p.name)
def test_demo_episode_is_valid_small_and_matches_its_sidecar(audio):
    info = inspect_audio(audio)
    assert info.format == audio.suffix[1:]
    assert info.warnings == ()
    assert 3 < info.duration < 15
    assert audio.stat().st_size < 150_000
    front = _front_matter(audio.with_suffix(".md"))
    assert front["episode_type"] in ("full", "trailer", "bonus")
    assert front["publish_at"].tzinfo is not None
    starts = [_seconds(c["start"]) for c in front["chapters"]]
    assert starts == sorted(starts) and starts[-1] < info.duration
    if "transcript" in front:
        vtt = (audio.parent / front["transcript"]).read_text(encoding="utf-8")
        assert vtt.startswith("WEBVTT\n")
        last_end = vtt.strip().splitlines()[-2].split(" --> ")[1]
        assert _seconds(last_end.split(".")[0]) < info.duration


def test_demo_dates_two_published_one_scheduled():
    now = datetime(2026, 12, 1, 8, 0, tzinfo=STOCKHOLM)
    dates = [_front_matter(p.with_suffix(".md"))["publish_at"] for p in DEMO_AUDIO]
    assert sorted(d < now for d in dates) == [False, True, True]


def test_cover_art_is_a_square_rgb_jpeg_podcast_apps_accept():
    cover = REPO / "episodes" / "cover.jpg"
    with Image.open(cover) as img:
        assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (1400, 1400))
    assert cover.stat().st_size < 150_000
