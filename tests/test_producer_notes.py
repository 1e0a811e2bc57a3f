"""Every note a producer gets is one they can act on (issue 19, points 4-6 and 7a).

- Point 4: every note (audio, masters, ffmpeg, loudness, the drop folder) is in Swedish and
  in English, by the sidecar's own formatter: each line names the file, what is wrong, the
  fix and an example. Loudness and bitrate warnings reach `published/<name>.notes.txt` and
  the run's report (whose first line, the artifact's description, counts them).
- Point 5: what used to be accepted without a word gets a refusal or a warning: episode 0,
  a publish date before 2000 (or after 2099), an unknown time zone, a hidden or dots-only
  audio name, direction controls in a title.
- Point 6: a literal entity in a title means its character, and every reader shows the same.
- Point 7a: tags carry the description as plain text, not Markdown.
"""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import lxml.etree
import podcastparser
import pytest
from conftest import REPO_ROOT
from PIL import Image

from flows.core.errors import AudioError, InputError
from flows.core.models import STOCKHOLM
from flows.core.settings import Settings
from flows.core.storage import LocalStorage
from flows.podcast.audio import inspect_audio
from flows.podcast.catalog import load_catalog
from flows.podcast.feed import _example_episode, build_feed
from flows.podcast.ffmpeg import MEASURING, run_ffmpeg
from flows.podcast.inbox import read_inbox, refuse_clashes
from flows.podcast.loudness import (
    Loudness,
    LoudnessTarget,
    check_lossy,
    probe_master,
    recommendation_warnings,
)
from flows.podcast.report import EpisodeOutcome, PublishReport
from flows.podcast.run import publish
from flows.podcast.show import load_show
from flows.podcast.sidecar import parse_sidecar
from flows.podcast.sidecar_values import plain_text, sidecar_text
from flows.podcast.tags import EpisodeTags, build_id3_frames, build_mp4_atoms, markdown_to_text

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
FEED_NOW = datetime(2027, 1, 1, tzinfo=UTC)  # after the example episode's publish time
SHOW = load_show(REPO_ROOT / "episodes" / "show.yaml")


def bilingual(note: str, source: str) -> tuple[str, str]:
    """The Swedish and English line of a one-problem note, each checked for the file, a fix
    and an example (`flows.core.schema.note`'s form: "file: what. Fix, e.g. `example`.")."""
    swedish, english = note.splitlines()[:2]
    assert swedish.startswith(f"{source}: ") and english.startswith(f"{source}: "), note
    assert ", t.ex. `" in swedish and swedish.endswith("`."), swedish
    assert ", e.g. `" in english and english.endswith("`."), english
    assert swedish != english
    return swedish, english


def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def quiet_mp3(tmp_path_factory) -> Path:
    """3 s of quiet tone (about -32 LUFS) as a 32 kbps mono MP3: two warnings."""
    path = tmp_path_factory.mktemp("notes") / "tyst.mp3"
    tone = "sine=frequency=440:duration=3,volume=0.02"
    _ffmpeg("-f", "lavfi", "-i", tone, "-ac", "1", "-ar", "44100", "-b:a", "32k", str(path))
    return path


@pytest.fixture
def show_dir(tmp_path) -> Path:
    folder = tmp_path / "episodes"
    (folder / "inbox").mkdir(parents=True)
    (folder / "show.yaml").write_bytes((REPO_ROOT / "episodes" / "show.yaml").read_bytes())
    cover = io.BytesIO()
    Image.new("RGB", (1400, 1400), (200, 40, 40)).save(cover, "JPEG")
    (folder / "cover.jpg").write_bytes(cover.getvalue())
    return folder


def run(show_dir: Path, tmp_path: Path):
    settings = Settings.load(episodes_dir=str(show_dir), settle_seconds=0)
    return publish(settings, LocalStorage(tmp_path / "storage"), T0)


# --- point 4: every note in both languages ------------------------------------------------


@pytest.mark.parametrize(
    ("data", "swedish", "english"),
    [
        (b"", "filen är tom (0 byte)", "the file is empty (0 bytes)"),
        (b"\x00\x13\x37" * 400, "ingen ljudfil vi kan publicera", "not an audio file we can"),
        (b"RIFF" + b"\0" * 200, "innehåller WAV-ljud, inte MP3", "this is a WAV file, not MP3"),
    ],
)
def test_audio_refusals_are_notes_in_swedish_and_english(tmp_path, data, swedish, english):
    path = tmp_path / "ep.mp3"
    path.write_bytes(data)
    with pytest.raises(AudioError) as raised:
        inspect_audio(path)
    sv, en = bilingual(str(raised.value), str(path))
    assert swedish in sv and english in en


def test_master_refusals_are_notes_in_swedish_and_english(tmp_path):
    path = tmp_path / "ep.wav"
    path.write_bytes(b"not a wav at all" * 10)
    with pytest.raises(AudioError) as raised:
        probe_master(path)
    sv, en = bilingual(str(raised.value), str(path))
    assert "ingen WAV-, FLAC- eller AIFF-fil" in sv and "not a WAV, FLAC or AIFF file" in en
    assert "Exportera mastern igen" in sv and "Export the master again" in en


def test_an_ffmpeg_failure_is_a_note_then_ffmpegs_own_lines(tmp_path):
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('boom here\\n'); sys.exit(3)"]
    with pytest.raises(AudioError) as raised:
        run_ffmpeg(failing, subject=tmp_path / "ep.wav", doing=MEASURING, timeout=30)
    lines = str(raised.value).splitlines()
    sv, en = bilingual("\n".join(lines[:2]), str(tmp_path / "ep.wav"))
    assert "ffmpeg misslyckades med att mäta ljudnivån (slutstatus 3)" in sv
    assert "ffmpeg failed measuring loudness (exit status 3)" in en
    assert lines[2:] == ["ffmpeg said:", "    boom here"]  # once, after both languages


def test_loudness_and_bitrate_warnings_are_notes_in_both_languages():
    quiet = Loudness(integrated_lufs=-30.0, true_peak_dbtp=-0.2, lra=4.0, threshold=-40.0)
    level, peak = check_lossy(Path("tyst.mp3"), quiet, LoudnessTarget())
    sv, en = bilingual(level, "tyst.mp3")
    assert "14.0 LU tystare än målet -16 LUFS" in sv and "höj nivån 14.0 dB" in sv
    assert "14.0 LU quieter than the -16 LUFS target" in en and en.endswith("`tyst.wav`.")
    sv, en = bilingual(peak, "tyst.mp3")
    assert "toppar på -0.2 dBTP" in sv and "above the -1 dBTP ceiling" in en
    [bitrate, rate] = recommendation_warnings(22_050, 1, 32_000, "tyst.mp3")
    sv, en = bilingual(bitrate, "tyst.mp3")
    assert "32 kbit/s är lägre än de 64 kbit/s" in sv and "Export at 64 kbps or more" in en
    sv, en = bilingual(rate, "tyst.mp3")
    assert "22050 Hz" in sv and "Export at 44100 or 48000 Hz" in en


def test_drop_folder_notes_are_in_both_languages(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("Avsnitt 1.mp3", "avsnitt-1.m4a", "tom.mp3", "a.mp3", "b.mp3"):
        (inbox / name).write_bytes(b"" if name == "tom.mp3" else b"ID3 not read here")
    for name in ("a.md", "b.md"):
        (inbox / name).write_text("---\nepisode: 4\n---\n", encoding="utf-8")
    (inbox / "c.mp3").symlink_to(inbox / "a.mp3")
    result = refuse_clashes(read_inbox(inbox, 4_000_000_000, 0), [])
    reasons = {r.files[0].name: r.reason for r in result.refused}
    sv, en = bilingual(reasons["Avsnitt 1.mp3"], "Avsnitt 1.mp3")
    assert "skulle båda publiceras som 'avsnitt-1'" in sv and "would both be published" in en
    sv, en = bilingual(reasons["tom.mp3"], "tom.mp3")
    assert "är tom (0 byte)" in sv and "is empty (0 bytes)" in en
    sv, en = bilingual(reasons["a.mp3"], "a.mp3")
    assert "gör båda anspråk på avsnitt 4" in sv and "both claim episode 4" in en
    sv, en = bilingual(reasons["c.mp3"], "c.mp3")
    assert "är en symbolisk länk" in sv and "is a symbolic link, not a regular file" in en


def test_warnings_reach_a_notes_file_beside_the_audio_and_the_report(show_dir, tmp_path, quiet_mp3):
    (show_dir / "inbox" / "tyst.mp3").write_bytes(quiet_mp3.read_bytes())
    (show_dir / "inbox" / "tyst.md").write_text("---\ntitle: Tyst\n---\nText.\n", "utf-8")
    report = run(show_dir, tmp_path)
    [outcome] = report.outcomes
    assert outcome.status == "published" and outcome.notes_file == "published/tyst.notes.txt"
    notes = (show_dir / "published" / "tyst.notes.txt").read_text(encoding="utf-8")
    assert notes.startswith("Avsnittet publicerades, men läs anmärkningarna.")
    assert "LU tystare än målet -16 LUFS" in notes and "LU quieter than the -16 LUFS" in notes
    assert "32 kbit/s är lägre än" in notes and "bitrate 32 kbps is below" in notes
    summary = report.summary()
    assert "1 with warnings (see their notes)" in summary.splitlines()[0]  # the artifact's line
    assert "notes for the producer: published/tyst.notes.txt" in summary
    [episode] = load_catalog(LocalStorage(tmp_path / "storage")).episodes
    assert any("LU quieter than" in w for w in episode.warnings)


def test_the_summary_aligns_every_line_of_a_note():
    note = "a.mp3: svenska. Gör så, t.ex. `x`.\na.mp3: English. Do this, e.g. `x`."
    outcome = EpisodeOutcome(
        "a.mp3", "a", "published", warnings=(note,), moved_to="published/a.mp3"
    )
    report = PublishReport("storage", outcomes=[outcome], waiting=("b.mp3",))
    lines = report.summary().splitlines()
    assert "1 with warnings" in lines[0]
    assert "            warning: a.mp3: svenska. Gör så, t.ex. `x`." in lines
    assert "            a.mp3: English. Do this, e.g. `x`." in lines
    assert "            notes for the producer: published/a.notes.txt" in lines
    assert any("kopieras fortfarande" in line for line in lines)


# --- point 5: accepted without a word no more ------------------------------------------------


def _refused(sidecar: str) -> tuple[str, str]:
    with pytest.raises(InputError) as raised:
        parse_sidecar(sidecar, "ep.md")
    swedish, english = str(raised.value).splitlines()[:2]
    return swedish, english


def test_episode_and_season_zero_are_refused():
    sv, en = _refused("---\nepisode: 0\n---\n")
    assert sv.startswith("ep.md: episode (rad 2): är 0; podd-apparna räknar från 1")
    assert en.startswith("ep.md: episode (line 2): is 0; podcast apps count from 1")
    assert "e.g. `episode: 12`" in en
    sv, en = _refused("---\nseason: 0\n---\n")
    assert "season (line 2): is 0" in en
    assert parse_sidecar("---\nepisode: 1\nseason: 1\n---\n").episode == 1


@pytest.mark.parametrize(
    "value", ["1970-01-01", "1999-12-31 23:00", "0001-01-01 00:00", "2206-03-05", "1970-01-01Z"]
)
def test_a_publish_date_before_2000_or_after_2099_is_refused(value):
    sv, en = _refused(f"---\npublish_at: {value}\n---\n")
    assert "ep.md: publish_at (line 2): year " in en and "2000-2099" in en
    assert "inga poddar" in sv and "e.g. `publish_at: 2026-03-05 07:00`" in en


def test_a_time_that_does_not_exist_in_stockholm_is_refused():  # was already refused
    _, en = _refused("---\npublish_at: 2027-03-28 02:30\n---\n")
    assert "does not exist in Stockholm" in en and "e.g. `publish_at: 2027-03-28 03:30`" in en


@pytest.mark.parametrize(
    ("value", "english"),
    [
        ("2026-03-05 07:00 Europe/Stokholm", "unknown time zone 'Europe/Stokholm' (did you mean "),
        ("2026-03-05 07:00 CEST", "unknown time zone 'CEST'"),
        ("2026-03-05T07:00+25:00", "no time zone has the offset +25:00"),
        ("2026-03-05 07:00 -13:30", "no time zone has the offset -13:30"),
    ],
)
def test_an_unknown_time_zone_is_refused_not_read_as_local_time(value, english):
    sv, en = _refused(f"---\npublish_at: {value}\n---\n")
    assert english in en and "publish_at (rad 2)" in sv


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-05 07:00 Europe/Stockholm", "2026-03-05T07:00:00+01:00"),
        ("2026-07-05 07:00 Europe/London", "2026-07-05T07:00:00+01:00"),
        ("2026-03-05 07:00 +02:00", "2026-03-05T07:00:00+02:00"),
        ("2026-03-05 07:00 UTC", "2026-03-05T07:00:00+00:00"),
    ],
)
def test_a_named_zone_or_offset_is_kept(value, expected):
    sidecar = f"---\npublish_at: {value}\n---\n"
    assert parse_sidecar(sidecar).publish_at.isoformat() == expected


def test_hidden_and_dots_only_audio_get_a_note_and_go_to_failed_visible(show_dir, tmp_path):
    for name in ("...mp3", ".avsnitt.mp3", "._avsnitt.mp3"):
        (show_dir / "inbox" / name).write_bytes(b"ID3 never read")
    report = run(show_dir, tmp_path)
    assert {o.name: o.status for o in report.outcomes} == {
        "...mp3": "failed",
        ".avsnitt.mp3": "failed",
    }
    failed = {p.name for p in (show_dir / "failed").iterdir()}
    assert failed == {"utan-namn.mp3", "utan-namn.error.txt", "avsnitt.mp3", "avsnitt.error.txt"}
    text = (show_dir / "failed" / "avsnitt.error.txt").read_text(encoding="utf-8")
    assert "namnet börjar med en punkt" in text and "the name starts with a dot" in text
    assert {p.name for p in (show_dir / "inbox").iterdir()} == {"._avsnitt.mp3"}  # macOS's


@pytest.mark.parametrize("control", ["\u202e", "\u202d", "\u2066", "\u2067", "\u2068"])
def test_direction_controls_are_removed_from_a_title_with_a_warning(control):
    meta = parse_sidecar(f'---\ntitle: "Avsnitt {control}3: data"\n---\n', "ep.md")
    assert meta.title == "Avsnitt 3: data"
    [warning] = meta.warnings
    sv, en = warning.splitlines()
    assert sv.startswith("ep.md: title (rad 2): innehöll osynliga tecken som vänder")
    assert en.startswith("ep.md: title (line 2): contained invisible controls that reverse")
    assert en.endswith("e.g. `title: Avsnitt 3: data`.")


def test_direction_controls_never_reach_the_feed():
    meta = parse_sidecar('---\ntitle: "\u202eevil"\nguests: ["A\u202eB"]\n---\nx\u202ey\n')
    episode = _example_episode(title=meta.title, description=meta.description, guests=meta.guests)
    xml = build_feed(SHOW, [episode], public_url="https://cdn.example/", now=FEED_NOW)
    assert b"<item>" in xml and "\u202e".encode() not in xml


# --- point 6: a literal entity in a title ------------------------------------------------------


def _readers(title: str) -> dict[str, str]:
    """What feedparser, podcastparser and the feed's own XML say the title is."""
    xml = build_feed(
        SHOW, [_example_episode(title=title)], public_url="https://cdn.example/", now=FEED_NOW
    )
    root = lxml.etree.fromstring(xml, lxml.etree.XMLParser(resolve_entities=False))
    return {
        "feedparser": feedparser.parse(io.BytesIO(xml)).entries[0].title,
        "podcastparser": podcastparser.parse("f.xml", io.BytesIO(xml))["episodes"][0]["title"],
        "xml": root.findtext("channel/item/title"),
    }


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ('"<>&amp;"', "<>&"),
        ("Frågor &#38; svar", "Frågor & svar"),
        ("R&amp;amp;D", "R&D"),
        ("Om <b>fet</b> text", "Om fet text"),
        ("Q&A & R&D", "Q&A & R&D"),  # no entity: nothing to read, no warning
    ],
)
def test_a_literal_entity_in_a_title_means_its_character_and_every_reader_agrees(written, meant):
    meta = parse_sidecar(f"---\ntitle: {written}\n---\n", "ep.md")
    assert meta.title == meant
    assert set(_readers(meta.title).values()) == {meant}
    if meant != written:
        [warning] = meta.warnings
        assert "ep.md: title (line 2): contained HTML " in warning
    else:
        assert meta.warnings == ()


@pytest.mark.parametrize("code", ["&#b;", "&#0;", "&#xD800;", "&#1;"])
def test_a_code_that_names_no_character_is_refused(code):
    _, en = _refused(f'---\ntitle: "Avsnitt {code}"\n---\n')
    assert f"'{code}' looks like an HTML code but stands for no character" in en


def test_plain_text_is_what_every_reader_shows():
    text, made = plain_text("<>&amp;")
    assert (text, made) == ("<>&", ("entity",))
    assert set(_readers(text).values()) == {"<>&"}


# --- point 7a: tags carry plain text ------------------------------------------------------------


def test_the_id3_comment_and_mp4_description_are_plain_text():
    markdown = (
        "Vi pratar om **öppna data** och *AI*.\n\n"
        "- ett [exempel](https://kraftsamling.example/a)\n- två\n\n"
        "Läs mer: <https://kraftsamling.example>"
    )
    plain = (
        "Vi pratar om öppna data och AI.\n\n"
        "- ett exempel (https://kraftsamling.example/a)\n- två\n\n"
        "Läs mer: https://kraftsamling.example"
    )
    assert markdown_to_text(markdown) == plain
    tags = EpisodeTags(title="T", artist="A", album="B", description=markdown)
    comm = next(f for f in build_id3_frames(tags, 3.0) if f.FrameID == "COMM")
    assert comm.text == [plain]
    atoms = build_mp4_atoms(tags)
    assert atoms["ldes"] == [plain] and atoms["©cmt"] == [plain] and atoms["desc"] == [plain]


# --- further bad inputs --------------------------------------------------------------------------


def test_a_sidecar_in_utf16_is_read_with_a_warning_and_windows_1252_is_refused():
    text, warning = sidecar_text("---\ntitle: Åland\n---\n".encode("utf-16"), "ep.md")
    assert text == "---\ntitle: Åland\n---\n" and "UTF-16" in warning
    with pytest.raises(InputError) as raised:
        sidecar_text("---\ntitle: Åland\n---\n".encode("cp1252"), "ep.md")
    sv, en = str(raised.value).splitlines()
    assert sv.startswith("ep.md: rad 2: är inte UTF-8-text (byten 0xC5, kanske 'Å'")
    assert en.startswith("ep.md: line 2: is not UTF-8 text")


def test_an_empty_sidecar_says_so():
    [warning] = parse_sidecar("", "ep.md").warnings
    assert "ep.md: is empty; the title and description come from the audio" in warning


def test_a_publish_time_in_another_zone_keeps_its_instant():
    meta = parse_sidecar("---\npublish_at: 2026-03-05 07:00 America/New_York\n---\n")
    assert meta.publish_at.astimezone(STOCKHOLM).isoformat() == "2026-03-05T13:00:00+01:00"


def test_two_sidecars_that_differ_only_in_case_refuse_the_episode(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "ep.mp3").write_bytes(b"ID3 not read here")
    (inbox / "ep.md").write_text("---\ntitle: A\n---\n", encoding="utf-8")
    (inbox / "EP.MD").write_text("---\ntitle: B\n---\n", encoding="utf-8")
    [refused] = read_inbox(inbox, 4_000_000_000, 0).refused
    assert sorted(p.name for p in refused.files) == ["EP.MD", "ep.md", "ep.mp3"]  # none left
    sv, en = bilingual(refused.reason, "ep.mp3")
    assert "har två .md-filer" in sv and "has two sidecars" in en and "Keep one of them" in en


def test_a_wav_with_a_damaged_header_says_so(tmp_path):
    path = tmp_path / "trasig.wav"
    fmt = b"fmt " + (16).to_bytes(4, "little") + b"\0" * 16  # format 0, 0 channels
    path.write_bytes(b"RIFF" + (36).to_bytes(4, "little") + b"WAVE" + fmt + b"data\0\0\0\0")
    with pytest.raises(AudioError) as raised:
        probe_master(path)
    sv, en = bilingual(str(raised.value), str(path))
    assert "trasig" in sv and ("damaged" in en or "cannot be read" in en)
