"""The last notes a producer got in English only, now in Swedish and English (issue 19, point 4).

Every note below is made by the one formatter (`flows.podcast.report.file_note`, or
`flows.core.schema.note` for several problems at once): each line names the file, says what
is wrong and the fix, with an example; the Swedish lines come first, the English below.

- The show's cover art (`flows.podcast.feedgate.check_cover_art`) and the show's own files
  (`flows.podcast.show`: show.yaml missing or not UTF-8, its image missing, a file that
  cannot be read).
- An episode (`flows.podcast.episode`, `flows.podcast.limits`): no title, no description, a
  chapter past the end of the audio, audio named as another format, the episode art, the
  transcript, the limits, the same audio twice.
- A title or description from the audio file's own tags is read as a sidecar's title is
  (`plain_text`), with a note for each change.
- A missing ffmpeg leaves the episode in the inbox (a retry) with a note saying the producer
  need do nothing and what the operator must install.
"""

from __future__ import annotations

import io
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import test_podcast
from mutagen.id3 import COMM, ID3, TIT2
from PIL import Image
from test_podcast import put, run

import flows.podcast.show as show_module
from flows.core.errors import AudioError, InputError
from flows.core.models import Chapter, Episode
from flows.core.schema import EN, SV
from flows.core.storage import LocalStorage
from flows.podcast.feedgate import check_cover_art
from flows.podcast.ffmpeg import MEASURING, FfmpegMissing, run_ffmpeg
from flows.podcast.limits import (
    check_image,
    check_transcript,
    duplicate_note,
    episode_problems,
    late_chapter_note,
    record_problems,
    tag_text,
)
from flows.podcast.show import load_show, read_cover

show_dir, cover_bytes = test_podcast.show_dir, test_podcast.cover_bytes
MOMENT = datetime(2026, 3, 5, 6, 0, tzinfo=UTC)


def both(note: str, source: str, problems: int = 1) -> tuple[str, str]:
    """The Swedish and the English part of a note of `problems` problems (one line each),
    every line checked for the file, a fix and an example."""
    lines = note.splitlines()
    swedish, english = lines[:problems], lines[problems : 2 * problems]
    for line in (*swedish, *english):
        assert line.startswith(f"{source}: ") and line.endswith("`."), note
    assert all(", t.ex. `" in line for line in swedish), note
    assert all(", e.g. `" in line for line in english), note
    assert swedish != english
    return "\n".join(swedish), "\n".join(english)


def image_bytes(width: int, height: int, mode: str = "RGB", fmt: str = "JPEG", **kw: Any) -> bytes:
    out = io.BytesIO()
    color: Any = (0, 0, 0, 0) if mode == "CMYK" else 0 if mode == "P" else (20, 80, 140)
    Image.new(mode, (width, height), color).save(out, fmt, **kw)
    return out.getvalue()


def tone(folder: Path, name: str, frequency: int, *extra: str) -> Path:
    """2 s of tone at `frequency` (its own audio, so no two episodes are duplicates)."""
    import imageio_ffmpeg

    path = folder / name
    source = f"sine=frequency={frequency}:duration=2"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    command += ["-f", "lavfi", "-i", source, "-ac", "1", "-ar", "44100", *extra, str(path)]
    subprocess.run(command, check=True)
    return path


# --- the show's cover art --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "swedish", "english"),
    [
        (
            image_bytes(1400, 1600, fmt="PNG"),
            "omslagsbilden är 1400x1600 px, inte kvadratisk. Beskär den till en kvadrat, "
            "exportera den som en RGB-JPEG eller -PNG på 3000x3000 px och kör igen",
            "the cover art is 1400x1600 px, not square. Crop it to a square, export it as a "
            "3000x3000 px RGB JPEG or PNG and run again",
        ),
        (
            image_bytes(1000, 1000),
            "omslagsbilden är 1000x1000 px, men varje sida ska vara 1400-3000 px. Gör den "
            "större från originalet",
            "the cover art is 1000x1000 px, but each side must be 1400-3000 px. Make it larger "
            "from the original",
        ),
        (
            image_bytes(3200, 3200),
            "varje sida ska vara 1400-3000 px. Skala ned den",
            "each side must be 1400-3000 px. Scale it down",
        ),
        (
            image_bytes(1400, 1400, "CMYK"),
            "omslagsbildens färgläge är CMYK, men Apple kräver RGB. Konvertera den till RGB i "
            "bildprogrammet",
            "the cover art's colour mode is CMYK, but Apple requires RGB. Convert it to RGB in "
            "an image editor",
        ),
        (
            image_bytes(1400, 1400, fmt="PNG", transparency=(0, 0, 0)),
            "omslagsbilden har en genomskinlig färg, men Apple kräver att inget är genomskinligt. "
            "Ta bort genomskinligheten",
            "the cover art has a transparent colour, but Apple requires no transparency. Remove "
            "the transparency",
        ),
        (
            b"<svg/>",
            "omslagsbilden går inte att läsa som bild (",
            "the cover art is not a readable image (",
        ),
    ],
    ids=["not-square", "too-small", "too-large", "cmyk", "transparent", "unreadable"],
)
def test_cover_art_notes_are_in_swedish_and_english(image, swedish, english):
    with pytest.raises(InputError) as raised:
        check_cover_art(image, "episodes/cover.jpg")
    sv, en = both(str(raised.value), "episodes/cover.jpg")
    assert swedish in sv and english in en
    assert sv.endswith("t.ex. `cover.jpg: 3000x3000 px, RGB, JPEG`.")
    assert en.endswith("e.g. `cover.jpg: 3000x3000 px, RGB, JPEG`.")


def test_every_cover_art_problem_is_named_swedish_lines_first():
    with pytest.raises(InputError) as raised:
        check_cover_art(image_bytes(1400, 1400, "P", "GIF"), "cover.gif")
    sv, en = both(str(raised.value), "cover.gif", problems=2)
    assert "omslagsbildens format är GIF, men poddappar kräver JPEG eller PNG" in sv
    assert "omslagsbildens färgläge är P, men Apple kräver RGB" in sv
    assert "the cover art's format is GIF, but podcast apps need JPEG or PNG" in en
    assert "the cover art's colour mode is P, but Apple requires RGB" in en


# --- the show's own files ----------------------------------------------------------------------


def test_a_missing_show_yaml_is_a_note(tmp_path):
    path = tmp_path / "show.yaml"
    with pytest.raises(InputError) as raised:
        load_show(path)
    sv, en = both(str(raised.value), str(path))
    assert "showens metadatafil saknas. Skapa den (se episodes/README.md)" in sv
    assert "the show's metadata file is missing. Create it (see episodes/README.md)" in en


def test_a_show_yaml_that_is_not_utf8_is_a_note(show_dir):
    path = show_dir / "show.yaml"
    path.write_bytes(path.read_text(encoding="utf-8").encode("latin-1"))
    with pytest.raises(InputError) as raised:
        load_show(path)
    sv, en = both(str(raised.value), str(path))
    assert "show.yaml är inte UTF-8-text (byten 0x" in sv and "Spara den som UTF-8" in sv
    assert "show.yaml is not UTF-8 text (byte 0x" in en and "Save it as UTF-8" in en


def test_a_show_image_that_does_not_exist_is_a_note(show_dir):
    (show_dir / "cover.jpg").unlink()
    with pytest.raises(InputError) as raised:
        load_show(show_dir / "show.yaml")
    sv, en = both(str(raised.value), str(show_dir / "show.yaml"))
    assert "bilden 'cover.jpg' (image:) finns inte bredvid show.yaml. Lägg omslagsbilden" in sv
    assert "the image 'cover.jpg' (image:) does not exist next to show.yaml. Put the cover" in en


def _unreadable(monkeypatch, name: str) -> None:
    """Opening `name` fails as a broken disk or a missing permission does."""
    real_open = os.open

    def failing(path: Any, *args: Any, **kwargs: Any) -> int:
        if Path(path).name == name:
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing)


def test_show_files_that_cannot_be_read_get_a_fix_in_both_languages(show_dir, monkeypatch):
    _unreadable(monkeypatch, "show.yaml")
    with pytest.raises(InputError) as raised:
        load_show(show_dir / "show.yaml")
    sv, en = both(str(raised.value), "show.yaml")
    assert "går inte att läsa (Permission denied). Kontrollera filen och mappen den ligger i" in sv
    assert "cannot be read (Permission denied). Check the file and its folder, and run" in en
    monkeypatch.undo()
    show = load_show(show_dir / "show.yaml")
    _unreadable(monkeypatch, "cover.jpg")
    with pytest.raises(InputError) as raised:
        read_cover(show, show_dir)
    sv, en = both(str(raised.value), "cover.jpg")
    assert "Kontrollera omslagsbilden och kör igen" in sv
    assert "Check the cover art file and run again" in en


def test_cover_art_that_is_neither_jpeg_nor_png_is_a_note(show_dir, monkeypatch):
    show = load_show(show_dir / "show.yaml")
    (show_dir / "cover.jpg").write_bytes(b"GIF89a" + b"\0" * 64)
    monkeypatch.setattr(show_module, "check_cover_art", lambda data, source: None)
    with pytest.raises(InputError) as raised:
        read_cover(show, show_dir)
    sv, en = both(str(raised.value), str(show_dir / "cover.jpg"))
    assert "omslagsbilden är ingen JPEG- eller PNG-fil. Exportera den" in sv
    assert "the cover art is not a JPEG or PNG file. Export it as a 3000x3000 px" in en


# --- an episode's own files --------------------------------------------------------------------


def test_transcript_notes_are_in_swedish_and_english(tmp_path):
    cases = {
        "latin.srt": ("1\n00:00:00,000 --> 00:00:01,000\nÅ\n".encode("latin-1"),
                      "transkriptet är inte UTF-8-text. Spara det som UTF-8",
                      "the transcript is not UTF-8 text. Save it as UTF-8 and drop it again"),
        "utan.vtt": (b"00:00.000 --> 00:01.000\nHej\n",
                     "ett WebVTT-transkript måste börja med raden 'WEBVTT'. Exportera det igen",
                     "a WebVTT transcript must start with the line 'WEBVTT'. Export it again"),
        "tom.srt": (b"  \n", "transkriptet är tomt. Exportera det igen",
                    "the transcript is empty. Export it again from the transcription tool"),
    }  # fmt: skip
    for name, (data, swedish, english) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError) as raised:
            check_transcript(tmp_path / name)
        sv, en = both(str(raised.value), name)
        assert swedish in sv and english in en


def test_a_transcript_over_the_limit_names_size_limit_and_fix(tmp_path):
    path = tmp_path / "stor.vtt"
    path.write_bytes(b"WEBVTT\n\n" + b"x" * 5_000_000)
    with pytest.raises(InputError) as raised:
        check_transcript(path)
    sv, en = both(str(raised.value), "stor.vtt")
    assert "är 5 000 008 byte; högst 5 000 000 tillåts. Kontrollera att det är rätt fil" in sv
    assert "is 5,000,008 bytes; at most 5,000,000 are allowed. Check that it is the right" in en


def test_episode_art_notes_are_in_swedish_and_english(tmp_path):
    (tmp_path / "bild.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError) as raised:
        check_image(tmp_path / "bild.jpg")
    sv, en = both(str(raised.value), "bild.jpg")
    assert "avsnittsbilden går inte att läsa som JPEG eller PNG. Exportera den igen" in sv
    assert "the episode image is not a readable JPEG or PNG. Export it again as a square" in en
    (tmp_path / "bild.gif").write_bytes(image_bytes(1400, 1400, "P", "GIF"))
    with pytest.raises(InputError) as raised:
        check_image(tmp_path / "bild.gif")
    sv, en = both(str(raised.value), "bild.gif")
    assert "avsnittsbilden är GIF, inte JPEG eller PNG" in sv
    assert "the episode image is GIF, not JPEG or PNG" in en
    (tmp_path / "bred.png").write_bytes(image_bytes(1600, 900, fmt="PNG"))
    extension, mime, [warning] = check_image(tmp_path / "bred.png")
    assert (extension, mime) == (".png", "image/png")
    sv, en = both(warning, "bred.png")
    assert "avsnittsbilden är 1600x900 px; Apple vill ha en kvadratisk bild på 1400-3000 px" in sv
    assert "Beskär den till en kvadrat på 1400-3000 px nästa gång" in sv
    assert "the episode art is 1600x900 px; Apple wants square episode art of 1400-3000 px" in en
    assert "Crop it to a square of 1400-3000 px next time, e.g. `3000x3000 px`." in en


def test_limit_notes_name_the_field_size_limit_fix_and_an_example():
    found = episode_problems("T" * 300, "x" * 4_001, [], ["G" * 300])
    lines = [problem.render(lang) for lang in (SV, EN) for problem in found]
    assert lines[0] == (
        "title: är 300 tecken; högst 255 tillåts. Korta titeln i sidofilen ('title:' i dess "
        "front matter), t.ex. `title: Öppna data i kommunen`."
    )
    assert lines[3].startswith("title: is 300 characters; at most 255 are allowed. Shorten")
    assert "description: är 4 001 tecken; högst 4 000 tillåts. Korta beskrivningen" in lines[1]
    assert lines[5] == (
        "guests[1]: is 300 characters; at most 255 are allowed. Write only the guest's name, "
        "e.g. `- Anna Exempelsson`."
    )
    record = Episode(
        guid="g", slug="a", title="A", publish_at=MOMENT, duration=0, size=0,
        mime_type="audio/mpeg", sha256="0" * 64, audio_key="podcast/audio/a.mp3",
        first_published=MOMENT, last_updated=MOMENT,
    )  # fmt: skip
    size, duration = record_problems(record)
    assert size.render(SV).startswith("size: är 0 byte. Släpp avsnittet igen")
    assert duration.render(EN).startswith("duration: is 0 seconds. Publish the episode again")


def test_a_chapter_past_the_end_is_a_note_at_its_key():
    note = late_chapter_note("ep.md", 1, Chapter(start=99, title="Slut"), 2.0)
    sv, en = both(note, "ep.md")
    assert sv.startswith(
        "ep.md: chapters[2].start: kapitlet 'Slut' börjar vid 99 s, men ljudet är bara 2.0 s "
        "långt. Rätta kapitlets starttid"
    )
    assert en.startswith(
        "ep.md: chapters[2].start: chapter 'Slut' starts at 99 s but the audio is only 2.0 s "
        "long. Fix the chapter's start time"
    )


def test_the_same_audio_is_refused_with_a_note_and_an_example():
    first = Episode(
        guid="g", slug="forsta", title="Första", publish_at=MOMENT, duration=60, size=1000,
        mime_type="audio/mpeg", sha256="0" * 64, audio_key="podcast/audio/forsta.mp3",
        first_published=MOMENT, last_updated=MOMENT,
    )  # fmt: skip
    sv, en = both(duplicate_note("kopia.mp3", first), "kopia.mp3")
    assert "är samma ljud (samma SHA-256) som det publicerade avsnittet 'forsta'" in sv
    assert "Ett nytt avsnitt behöver sitt eget ljud" in sv and sv.endswith("`inbox/kopia.mp3`.")
    assert "is the same audio (the same SHA-256) as the published episode 'forsta'" in en
    assert "A new episode needs its own audio; drop the right file again" in en


# --- text from the audio file's own tags --------------------------------------------------------


def test_tag_text_is_read_as_plain_text_with_a_note_for_each_change():
    title, [entity, tag] = tag_text("ep.mp3", "ep", "title", "Tom &amp; Jerry <b>live</b>")
    assert title == "Tom & Jerry live"
    sv, en = both(entity, "ep.mp3")
    assert sv.startswith("ep.mp3: titeln i filens egna taggar innehöll HTML-koder")
    assert "Rätta det i ljudfilens taggar, eller skriv titeln i en sidofil ep.md" in sv
    assert en.startswith("ep.mp3: the title in the file's own tags contained HTML codes")
    assert "Correct it in the audio file's tags, or give the title in a sidecar ep.md" in en
    assert en.endswith("e.g. `title: Tom & Jerry live`.")
    assert "contained HTML tags" in tag
    text, [_, bidi] = tag_text("ep.mp3", "ep", "description", "Rad ett\u202e\nRad två &amp; tre")
    assert text == "Rad ett\nRad två & tre"  # the lines kept: a description is Markdown
    assert "beskrivningen i filens egna taggar innehöll osynliga tecken" in bidi
    assert tag_text("ep.mp3", "ep", "title", "Q&A <3") == ("Q&A <3", [])


def test_a_tag_code_that_stands_for_no_character_is_refused_with_a_note():
    with pytest.raises(InputError) as raised:
        tag_text("ep.mp3", "ep", "title", "Avsnitt &#0;")
    sv, en = both(str(raised.value), "ep.mp3")
    assert "titeln i filens egna taggar: '&#0;' ser ut som en HTML-kod" in sv
    assert "the title in the file's own tags: '&#0;' looks like an HTML code" in en
    assert "or give the title in a sidecar ep.md, e.g. `ep.md`." in en


# --- a whole run ---------------------------------------------------------------------------------


@pytest.fixture
def dropped(show_dir, tmp_path) -> Path:
    """An inbox holding one episode per note; each has its own audio."""
    folder = tmp_path / "audio"
    folder.mkdir()
    put(show_dir, "utan.mp3", tone(folder, "utan.mp3", 300, "-b:a", "64k"))
    put(show_dir, "kort.mp3", tone(folder, "kort.mp3", 400, "-b:a", "64k"))
    put(show_dir, "kort.md", "---\ntitle: Kort\n---\n")
    put(show_dir, "x-kopia.mp3", show_dir / "inbox" / "kort.mp3")
    put(show_dir, "x-kopia.md", "---\ntitle: Kopia\n---\nText.\n")
    put(show_dir, "sent.mp3", tone(folder, "sent.mp3", 500, "-b:a", "64k"))
    chapters = '[{start: "00:00:00", title: Intro}, {start: "00:01:39", title: Slut}]'
    put(show_dir, "sent.md", f"---\ntitle: Sent\nchapters: {chapters}\n---\nText.\n")
    put(show_dir, "fel.mp3", tone(folder, "fel.wav", 600))
    put(show_dir, "fel.md", "---\ntitle: Fel namn\n---\nText.\n")
    tagged = tone(folder, "taggad.mp3", 700, "-b:a", "64k")
    tags = ID3(tagged)
    tags.add(TIT2(encoding=3, text="Tom &amp; Jerry"))
    tags.add(COMM(encoding=3, lang="swe", desc="", text="Om <b>data</b>"))
    tags.save(tagged)
    put(show_dir, "taggad.mp3", tagged)
    return show_dir


def test_a_run_gives_each_episode_its_note_in_both_languages(dropped, tmp_path):
    report = run(dropped, LocalStorage(tmp_path / "storage"))
    outcome = {o.name: o for o in report.outcomes}

    sv, en = both(outcome["utan.mp3"].reason, "utan.mp3")
    assert outcome["utan.mp3"].status == "failed"
    assert "har ingen titel: varken en sidofil eller filens egna taggar ger någon" in sv
    assert "Lägg utan.md bredvid den med en rad 'title:'" in sv
    assert "has no title: neither a sidecar nor the file's own tags give one" in en
    assert "Add utan.md next to it with a 'title:' line" in en

    assert outcome["kort.mp3"].status == "published"
    [warning] = [w for w in outcome["kort.mp3"].warnings if "description" in w]
    sv, en = both(warning, "kort.mp3")
    assert "har ingen beskrivning; apparna visar bara titeln. Skriv några meningar" in sv
    assert "has no description; apps will show only the title. Write a few sentences" in en

    assert outcome["x-kopia.mp3"].status == "failed"
    sv, en = both(outcome["x-kopia.mp3"].reason, "x-kopia.mp3")
    assert "är samma ljud som kort.mp3" in sv and "is the same audio as kort.mp3" in en

    assert outcome["sent.mp3"].status == "failed"
    sv, en = both(outcome["sent.mp3"].reason, "sent.md")
    assert "chapters[2].start: kapitlet 'Slut' börjar vid 99 s, men ljudet är bara" in sv
    assert "chapters[2].start: chapter 'Slut' starts at 99 s but the audio is only" in en

    assert outcome["fel.mp3"].status == "published"
    [warning] = [w for w in outcome["fel.mp3"].warnings if "WAV" in w]
    sv, en = both(warning, "fel.mp3")
    assert "innehåller WAV-ljud, vad namnet än säger, och behandlades som WAV" in sv
    assert "Döp den till fel.wav nästa gång" in sv
    assert "holds WAV audio, whatever its name says, and was treated as WAV" in en
    assert "Name it fel.wav next time" in en

    assert outcome["taggad.mp3"].status == "published"
    assert outcome["taggad.mp3"].title == "Tom & Jerry"
    warnings = "\n".join(outcome["taggad.mp3"].warnings)
    assert "taggad.mp3: titeln i filens egna taggar innehöll HTML-koder" in warnings, warnings
    assert "taggad.mp3: the title in the file's own tags contained HTML codes" in warnings
    assert "taggad.mp3: beskrivningen i filens egna taggar innehöll HTML-taggar" in warnings
    assert "taggad.mp3: the description in the file's own tags contained HTML tags" in warnings


# --- a missing ffmpeg --------------------------------------------------------------------------


def test_an_ffmpeg_that_cannot_start_is_ffmpeg_missing(tmp_path):
    with pytest.raises(FfmpegMissing) as raised:
        run_ffmpeg([str(tmp_path / "no-ffmpeg")], subject=tmp_path / "ep.wav", doing=MEASURING,
                   timeout=5)  # fmt: skip
    assert isinstance(raised.value, AudioError)
    sv, en = both(str(raised.value), str(tmp_path / "ep.wav"))
    assert "gick inte att starta för att mäta ljudnivån" in sv
    assert "cannot start ffmpeg" in en and "Reinstall imageio-ffmpeg" in en


def test_a_missing_ffmpeg_leaves_the_episode_in_the_inbox_for_the_operator(
    show_dir, tmp_path, monkeypatch, caplog
):
    audio = tone(tmp_path, "ep.mp3", 800, "-b:a", "64k")
    put(show_dir, "ep.mp3", audio)
    put(show_dir, "ep.md", "---\ntitle: Ett\n---\nText.\n")
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "gone" / "ffmpeg"))
    report = run(show_dir, LocalStorage(tmp_path / "storage"))
    [outcome] = report.outcomes
    assert outcome.status == "retry" and outcome.moved_to == ""
    assert {p.name for p in (show_dir / "inbox").iterdir()} == {"ep.mp3", "ep.md"}
    assert not (show_dir / "failed").exists() or not any((show_dir / "failed").iterdir())
    lines = outcome.reason.splitlines()
    sv, en = both("\n".join(lines[:2]), "ep.mp3")
    assert "kunde inte förberedas: ffmpeg saknas på servern, så filerna ligger kvar" in sv
    assert "Du behöver inte göra något: en tekniker måste installera ffmpeg" in sv
    assert "could not be prepared: ffmpeg is missing on the server, so the files stay" in en
    assert "Nothing to do for you: an operator must install ffmpeg" in en
    # Then the operator's own note: which ffmpeg, and how to reinstall it.
    assert lines[2].startswith(f"ffmpeg {tmp_path / 'gone' / 'ffmpeg'}: finns inte")
    assert "IMAGEIO_FFMPEG_EXE" in lines[3]
    assert "(left in the inbox)" in report.summary()
    assert any("ffmpeg is missing; ep.mp3 stays in the inbox" in r.message for r in caplog.records)
