"""The drop folder: which files are ready, what their sidecars say, what is refused and why."""

from __future__ import annotations

import errno
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.core.errors import InputError
from flows.core.models import STOCKHOLM, Episode
from flows.podcast.inbox import Candidate, find_number_clashes, read_inbox, refuse_clashes, slugify
from flows.podcast.sidecar import (
    EpisodeMeta,
    clean_text,
    parse_publish_at,
    parse_sidecar,
    parse_timecode,
)


def drop(inbox: Path, name: str, data: bytes | str = b"ID3 not inspected here", age: float = 60):
    """A file in the inbox whose last change was `age` seconds ago."""
    path = inbox / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    moment = time.time() - age
    os.utime(path, (moment, moment))
    return path


@pytest.fixture
def inbox(tmp_path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def scan(inbox: Path, published=(), settle: float = 10, now: float | None = None):
    # ctime cannot be set back, so "settled" files are seen from a later moment.
    return refuse_clashes(read_inbox(inbox, (now or time.time()) + 30, settle), list(published))


# --- sidecars -------------------------------------------------------------------------------

FULL = """---
title: "Öppna data & <AI> i \\"kommunen\\" 🎙"
episode: 3
season: 1
episode_type: bonus
publish_at: 2026-03-01 09:30
explicit: false
guests: [Cecilia Påhittad, David Låtsas]
chapters:
  - {start: "00:00:00", title: Intro}
  - {start: "01:30", title: Del två}
  - {start: 1:02:03, title: Slut}
transcript: avsnitt-3.vtt
image: bild.jpg
---
Vi pratar om **öppna data**.

Andra stycket.
"""


def test_full_sidecar():
    meta = parse_sidecar(FULL, "avsnitt-3.md")
    assert meta.title == 'Öppna data & <AI> i "kommunen" 🎙'
    assert (meta.episode, meta.season, meta.episode_type, meta.explicit) == (3, 1, "bonus", False)
    assert meta.publish_at == datetime(2026, 3, 1, 9, 30, tzinfo=STOCKHOLM)
    assert meta.guests == ("Cecilia Påhittad", "David Låtsas")
    assert [(c.start, c.title) for c in meta.chapters] == [
        (0, "Intro"),
        (90, "Del två"),
        (3723, "Slut"),
    ]
    assert (meta.transcript, meta.image) == ("avsnitt-3.vtt", "bild.jpg")
    assert meta.description == "Vi pratar om **öppna data**.\n\nAndra stycket."
    assert meta.warnings == ()


def test_broken_yaml_names_file_and_line():
    text = "---\ntitle: Hej\nepisode: [3\nseason: 1\n---\n"
    with pytest.raises(InputError, match=r"avsnitt\.md: line \d: broken YAML") as info:
        parse_sidecar(text, "avsnitt.md")
    assert "avsnitt.md: rad " in str(info.value) and "trasig YAML" in str(info.value)
    assert "indentation" in str(info.value)


def test_unclosed_front_matter():
    with pytest.raises(InputError, match="never closed"):
        parse_sidecar("---\ntitle: x\n", "a.md")


@pytest.mark.parametrize(
    ("line", "english"),
    [
        ("publish_at: 2026-13-45", "publish_at (line 2): '2026-13-45' is not a date. Write"),
        ("publish_at: nästa tisdag", "publish_at (line 2): 'nästa tisdag' is not a date"),
        ("episode: -3", "episode (line 2): is -3; it cannot be negative"),
        ("season: -1", "season (line 2): is -1; it cannot be negative"),
        ("episode: tre", "episode (line 2): 'tre' is not a whole number"),
        ("episode: true", "episode (line 2): True is not a whole number"),
        ("explicit: kanske", "explicit (line 2): 'kanske' is not true or false"),
        ("episode_type: special", "episode_type (line 2): 'special' is not one of 'full', "),
        ("guests: {a: 1}", "guests (line 2): {'a': 1} is not a list"),
        ("chapters: [{title: Intro}]", "chapters[1].start (line 2): is missing"),
        ("chapters: [{start: x, title: Intro}]", "chapters[1].start (line 2): 'x' is not a time"),
        ("chapters: [{start: 5, title: B}, {start: 1, title: A}]", "not in time order"),
        ("transcript: ../../etc/passwd.vtt", "must be a plain file name in the same folder"),
        ("image: /etc/cover.jpg", "image (line 2): '/etc/cover.jpg' must be a plain file name"),
        ("transcript: text.docx", "transcript (line 2): 'text.docx' must end with .vtt or .srt"),
        ("title: ''", "title (line 2): is empty"),
    ],
)
def test_bad_values_name_file_line_key_and_fix(line, english):
    with pytest.raises(InputError) as info:
        parse_sidecar(f"---\n{line}\n---\nText\n", "avsnitt-3.md")
    swedish, in_english = str(info.value).splitlines()  # one problem: Swedish, then English
    key = line.split(":")[0]
    assert swedish.startswith(f"avsnitt-3.md: {key}") and "(rad 2): " in swedish
    assert in_english.startswith(f"avsnitt-3.md: {key}") and english in in_english
    assert ", t.ex. `" in swedish and ", e.g. `" in in_english  # the fix shows a line to write


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("publish-at", "unknown key (did you mean 'publish_at'?)"),
        ("titel", "unknown key (did you mean 'title'?)"),
        ("Title", "unknown key (did you mean 'title'?)"),
        ("värd", "unknown key. Correct"),  # nothing close: no guess
    ],
)
def test_unknown_key_refuses_the_sidecar_with_a_suggestion(key, expected):
    with pytest.raises(InputError) as raised:
        parse_sidecar(f"---\nepisode: 3\n{key}: 2026-12-24 07:00\n---\n", "a.md")
    swedish, english = str(raised.value).splitlines()
    assert swedish.startswith(f"a.md: {key} (rad 3): okänd nyckel")
    assert english.startswith(f"a.md: {key} (line 3): ") and expected in english
    assert "Known keys: title, episode" in english


def test_title_of_300_characters_is_refused_clearly():
    with pytest.raises(
        InputError, match=r"title \(line 2\): is 300 characters; at most 255.*Shorten"
    ):
        parse_sidecar(f"---\ntitle: {'å' * 300}\n---\n", "a.md")


def test_control_characters_are_removed_with_a_warning():
    meta = parse_sidecar('---\ntitle: "Hej\\x07 & <du>\\u0000"\n---\nRad\x01 ett\n', "a.md")
    assert meta.title == "Hej & <du>"
    assert meta.description == "Rad ett"
    assert any("control characters" in w for w in meta.warnings)


def test_sidecar_without_front_matter_is_all_description():
    meta = parse_sidecar("Bara en beskrivning.\n", "a.md")
    assert meta.title is None and meta.description == "Bara en beskrivning."
    assert meta.warnings  # told that no front matter was found


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("title: Julspecial\npublish_at: 2026-12-24 07:00\n", "title: Julspecial"),
        ("\n\npublish-at: 2026-12-24 07:00\nJul!\n", "publish-at: 2026-12-24 07:00"),
        ("Titel: Julspecial\n", "Titel: Julspecial"),
        ("chapters:\n  - {start: 0, title: Intro}\n", "chapters:"),
    ],
)
def test_keys_without_front_matter_refuse_the_sidecar(text, line):
    with pytest.raises(InputError) as raised:
        parse_sidecar(text, "jul.md")
    swedish, english = str(raised.value).splitlines()
    assert swedish.startswith("jul.md: rad ") and "inga '---'-rader" in swedish
    assert english.startswith("jul.md: line ")
    assert "has keys but no '---' lines around them: " + repr(line) in english
    assert "Add a line '---' before and after" in english


@pytest.mark.parametrize(
    "text",
    [
        "Bara en beskrivning.\n",
        "Obs: det här är beskrivningen.\n",  # a word and a colon, but no key of ours
        "https://kraftsamling.example/avsnitt\n",
        "---\n---\nTitle: här börjar beskrivningen\n",  # empty front matter: all description
    ],
)
def test_description_lines_with_a_colon_are_still_descriptions(text):
    meta = parse_sidecar(text, "a.md")
    assert meta.title is None and meta.description == text.split("---\n")[-1].strip()


@pytest.mark.parametrize(
    ("chapter", "expected"),
    [
        ("{start: 0, titel: Intro}", "titel (line 4): unknown key (did you mean 'title'?)"),
        ("{strat: 0, title: Intro}", "strat (line 4): unknown key (did you mean 'start'?)"),
        ("{start: 0, title: Intro, url: x}", "url (line 4): unknown key. Correct"),
    ],
)
def test_unknown_keys_in_a_chapter_are_refused_with_a_suggestion(chapter, expected):
    with pytest.raises(InputError) as raised:
        parse_sidecar(f"---\ntitle: A\nchapters:\n  - {chapter}\n---\n", "a.md")
    english = [line for line in str(raised.value).splitlines() if "(line " in line]
    assert any(line.startswith("a.md: chapters[1].") and expected in line for line in english)
    assert all("Known keys: start, title" in line for line in english if "unknown" in line)


@pytest.mark.parametrize("value", ["", " ''", " ~", " null"])
def test_an_empty_publish_at_is_refused_not_now(value):
    with pytest.raises(InputError) as raised:
        parse_sidecar(f"---\ntitle: A\npublish_at:{value}\n---\n", "a.md")
    assert str(raised.value) == (
        "a.md: publish_at (rad 3): är tom. Skriv en tid eller ta bort raden, t.ex. "
        "`publish_at: 2026-03-05 07:00`.\n"
        "a.md: publish_at (line 3): is empty. Give a time or remove the line, e.g. "
        "`publish_at: 2026-03-05 07:00`."
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-01", datetime(2026, 3, 1, 7, 0, tzinfo=STOCKHOLM)),
        ("2026-07-01 09:30", datetime(2026, 7, 1, 9, 30, tzinfo=STOCKHOLM)),
        ("2026-03-01T08:00:00Z", datetime(2026, 3, 1, 8, 0, tzinfo=UTC)),
        (datetime(2026, 3, 1, 8, 0), datetime(2026, 3, 1, 8, 0, tzinfo=STOCKHOLM)),
    ],
)
def test_publish_at(value, expected):
    moment = parse_publish_at(value, "x.md")
    assert moment == expected and moment.utcoffset() is not None


def test_publish_at_from_yaml_date_is_seven_in_stockholm():
    meta = parse_sidecar("---\npublish_at: 2026-06-01\n---\n", "a.md")
    assert meta.publish_at.isoformat() == "2026-06-01T07:00:00+02:00"


def test_timecodes():
    assert parse_timecode("00:12:30", "x") == 750
    assert parse_timecode("12:30", "x") == 750
    assert parse_timecode(12.5, "x") == 12.5
    with pytest.raises(InputError, match="negative"):
        parse_timecode(-1, "x")


@given(st.text(max_size=200))
def test_slug_is_always_safe(name):
    slug = slugify(name)
    assert all(ch in "abcdefghijklmnopqrstuvwxyz0123456789-" for ch in slug)
    assert not slug.startswith("-") and not slug.endswith("-") and ".." not in slug


def test_slugs():
    assert slugify("Avsnitt 3 – Öppna data på Åland") == "avsnitt-3-oppna-data-pa-aland"
    assert slugify("../../etc/passwd") == "etc-passwd"
    assert slugify("ÄÖÅ äöå") == "aoa-aoa"


@given(st.text(max_size=100))
def test_clean_title_has_no_control_characters(text):
    cleaned, _ = clean_text(text, multiline=False)
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in cleaned)


# --- scanning the folder ----------------------------------------------------------------------


def test_audio_with_sidecar_transcript_and_image(inbox):
    drop(inbox, "Avsnitt 3.mp3")
    drop(inbox, "Avsnitt 3.md", FULL.replace("avsnitt-3.vtt", "Avsnitt 3.vtt"))
    drop(inbox, "Avsnitt 3.vtt", "WEBVTT\n")
    drop(inbox, "bild.jpg", b"\xff\xd8")
    drop(inbox, "anteckningar.txt", "left alone")
    result = scan(inbox)
    [cand] = result.candidates
    assert cand.slug == "avsnitt-3" and cand.name == "Avsnitt 3"
    assert [p.name for p in cand.files] == [
        "Avsnitt 3.mp3",
        "Avsnitt 3.md",
        "Avsnitt 3.vtt",
        "bild.jpg",
    ]
    assert result.refused == () and result.waiting == ()


def test_transcript_with_the_audio_name_is_picked_up_without_sidecar(inbox):
    drop(inbox, "ep.m4a")
    drop(inbox, "ep.srt", "1\n00:00:00,000 --> 00:00:01,000\nHej\n")
    [cand] = scan(inbox).candidates
    assert cand.sidecar is None and cand.transcript.name == "ep.srt"
    assert cand.meta == EpisodeMeta()


@pytest.mark.parametrize("name", ["ep.mp3.part", "ep.mp3.crdownload", "ep.mp3.download", "ep.tmp"])
def test_temporary_files_are_left_alone(inbox, name):
    drop(inbox, name)
    result = scan(inbox)
    assert result.candidates == () and result.refused == ()
    assert [p.name for p in result.waiting] == [name]


def test_hidden_files_are_ignored(inbox):
    drop(inbox, "._ep.mp3")  # macOS's companion of ep.mp3 on a shared drive
    drop(inbox, ".moving-ep.json")
    drop(inbox, ".DS_Store")
    assert (
        scan(inbox) == refuse_clashes(read_inbox(inbox, time.time(), 0), []) == type(scan(inbox))()
    )


def test_hidden_audio_is_refused_with_a_note_not_left_for_ever(inbox):
    drop(inbox, ".ep.mp3")
    drop(inbox, ".ep.md", "---\ntitle: x\n---\n")
    [refused] = scan(inbox).refused
    assert [p.name for p in refused.files] == [".ep.mp3", ".ep.md"]
    swedish, english = refused.reason.splitlines()
    assert swedish.startswith(".ep.mp3: namnet börjar med en punkt, så filen är dold")
    assert english.startswith(".ep.mp3: the name starts with a dot, so the file is hidden")
    assert "Rename it so that the name starts with a letter or digit" in english
    assert english.endswith("e.g. `ep.mp3`.")
    # Still being copied (just written): it waits like any other file.
    waiting = read_inbox(inbox, time.time(), 10)
    assert waiting.refused == () and {p.name for p in waiting.waiting} == {".ep.mp3", ".ep.md"}


def test_file_still_being_copied_waits(inbox):
    drop(inbox, "ep.mp3", age=0)
    drop(inbox, "ep.md", "---\ntitle: x\n---\n")
    result = refuse_clashes(read_inbox(inbox, time.time(), 10), [])
    assert result.candidates == () and result.refused == ()
    assert {p.name for p in result.waiting} == {"ep.mp3", "ep.md"}
    # The same files, seen once the settle time has passed, are ready.
    assert [
        c.slug for c in refuse_clashes(read_inbox(inbox, time.time() + 11, 10), []).candidates
    ] == ["ep"]


def test_audio_with_a_partial_twin_waits(inbox):
    drop(inbox, "ep.mp3")
    drop(inbox, "ep.mp3.part")
    result = scan(inbox)
    assert result.candidates == () and {p.name for p in result.waiting} == {
        "ep.mp3",
        "ep.mp3.part",
    }


def test_sidecar_still_being_written_holds_the_episode(inbox):
    drop(inbox, "ep.mp3")
    drop(inbox, "ep.md", "---\ntitle: x\n---\n", age=0)
    result = refuse_clashes(read_inbox(inbox, time.time(), 10), [])
    assert result.candidates == () and len(result.waiting) == 2


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".aiff", ".aif", ".WAV"])
def test_lossless_master_with_a_sidecar_title_is_a_candidate(inbox, suffix):
    drop(inbox, "Avsnitt 9" + suffix, b"RIFF not inspected here")
    drop(inbox, "Avsnitt 9.md", "---\ntitle: Nio\n---\nOm nio.\n")
    result = scan(inbox)
    [cand] = result.candidates
    assert result.refused == ()
    assert cand.is_master and cand.slug == "avsnitt-9" and cand.meta.title == "Nio"
    assert {p.name for p in cand.files} == {"Avsnitt 9" + suffix, "Avsnitt 9.md"}


@pytest.mark.parametrize(
    ("name", "kind"), [("ep.wav", "WAV"), ("ep.flac", "FLAC"), ("ep.aif", "AIFF")]
)
def test_master_without_sidecar_is_refused_with_the_fix(inbox, name, kind):
    drop(inbox, name)
    [refused] = scan(inbox).refused
    swedish, english = refused.reason.splitlines()
    assert swedish.startswith(f"{name}: {kind}-mastern har ingen avsnittstitel. Lägg ep.md")
    assert english.startswith(f"{name}: the {kind} master has no episode title.")
    assert "Add ep.md next to it" in english and "title:" in english
    assert [p.name for p in refused.files] == [name]


def test_master_whose_sidecar_has_no_title_is_refused(inbox):
    drop(inbox, "ep.flac")
    drop(inbox, "ep.md", "---\nepisode: 4\n---\nBeskrivning.\n")
    [refused] = scan(inbox).refused
    assert "Add a 'title:' line to the front matter of ep.md" in refused.reason
    assert {p.name for p in refused.files} == {"ep.flac", "ep.md"}


def test_mp3_without_sidecar_is_still_a_candidate(inbox):
    drop(inbox, "ep.mp3")  # its own tags may carry the title (checked when it is inspected)
    [cand] = scan(inbox).candidates
    assert not cand.is_master and cand.sidecar is None


def test_zero_length_file_is_refused_once_settled(inbox):
    drop(inbox, "tom.mp3", b"")
    [refused] = scan(inbox).refused
    assert refused.reason == (
        "tom.mp3: är tom (0 byte). Kopiera in den igen, t.ex. `inbox/tom.mp3`.\n"
        "tom.mp3: is empty (0 bytes). Copy it again, e.g. `inbox/tom.mp3`."
    )


def test_a_sidecar_that_cannot_be_read_refuses_its_episode_only(inbox, monkeypatch):
    drop(inbox, "ep.mp3")
    drop(inbox, "ep.md", "---\ntitle: A\n---\n")
    drop(inbox, "bra.mp3")
    drop(inbox, "bra.md", "---\ntitle: B\n---\n")
    real_open = os.open

    def failing_open(path, flags, *args, **kwargs):  # a disk error, as the kernel says it
        if Path(path).name == "ep.md":
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)
    result = scan(inbox, settle=0)
    assert [c.slug for c in result.candidates] == ["bra"]
    [refused] = result.refused
    assert refused.reason == (
        "ep.md: går inte att läsa (Input/output error). Lägg in den igen, t.ex. `inbox/ep.md`.\n"
        "ep.md: cannot be read (Input/output error). Drop it again, e.g. `inbox/ep.md`."
    )
    assert {p.name for p in refused.files} == {"ep.mp3", "ep.md"}


def test_broken_sidecar_refuses_the_episode(inbox):
    drop(inbox, "ep.mp3")
    drop(inbox, "ep.md", "---\ntitle: [\n---\n")
    [refused] = scan(inbox).refused
    assert refused.reason.startswith("ep.md: rad 2: trasig YAML")
    assert "\nep.md: line 2: broken YAML" in refused.reason


def test_missing_attachment_is_refused(inbox):
    drop(inbox, "ep.mp3")
    drop(inbox, "ep.md", "---\ntranscript: ep.vtt\n---\n")
    [refused] = scan(inbox).refused
    assert "ep.md: transcript: 'ep.vtt' finns inte i inbox/" in refused.reason
    assert "ep.md: transcript: 'ep.vtt' is not in the inbox. Drop that file" in refused.reason


def test_name_with_path_tricks_stays_in_the_folder(inbox):
    drop(inbox, "ep\\..\\..\\hack.mp3")  # a backslash is an ordinary character on POSIX
    drop(inbox, "..\\..\\x.mp3")  # starts with a dot: hidden, refused with a note
    drop(inbox, "...mp3")
    result = scan(inbox)
    [cand] = result.candidates
    assert cand.slug == "ep-hack"
    assert cand.audio.parent == inbox
    assert result.waiting == ()
    assert sorted(r.files[0].name for r in result.refused) == ["...mp3", "..\\..\\x.mp3"]
    assert all(r.files[0].parent == inbox for r in result.refused)


def test_links_and_special_files_are_refused_with_their_episode(inbox, tmp_path):
    outside = tmp_path / "outside.md"
    outside.write_text("---\ntitle: Utanför\n---\n")
    drop(inbox, "a.mp3")
    (inbox / "a.md").symlink_to(outside)
    (inbox / "b.mp3").mkdir()
    os.mkfifo(inbox / "c.vtt")
    drop(inbox, "c.mp3")
    (inbox / "lös.png").symlink_to(outside)
    (inbox / "mapp").mkdir()  # not an episode file's name: left alone
    result = scan(inbox)
    assert result.candidates == () and result.waiting == ()
    refused = {r.files[0].name: r for r in result.refused}
    assert set(refused) == {"a.mp3", "b.mp3", "c.mp3", "lös.png"}
    assert [p.name for p in refused["a.mp3"].files] == ["a.mp3", "a.md"]
    english = {name: r.reason.splitlines()[1] for name, r in refused.items()}
    assert refused["a.mp3"].reason.startswith("a.md: är en symbolisk länk, ingen vanlig fil")
    assert english["a.mp3"].startswith("a.md: is a symbolic link, not a regular file")
    assert english["b.mp3"].startswith("b.mp3: is a directory, not a regular file")
    assert english["c.mp3"].startswith("c.vtt: is a FIFO (named pipe), not a regular")
    assert "Copy the file itself" in refused["lös.png"].reason


def test_a_link_to_nothing_is_refused_too(inbox, tmp_path):
    (inbox / "borta.mp3").symlink_to(tmp_path / "finns-inte.mp3")
    [refused] = scan(inbox).refused
    assert refused.reason.splitlines()[1].startswith("borta.mp3: is a symbolic link, not a")


def test_name_without_letters_is_refused(inbox):
    drop(inbox, "---.mp3")
    [refused] = scan(inbox).refused
    assert "Rename it" in refused.reason


def test_two_files_with_the_same_slug_are_both_refused(inbox):
    drop(inbox, "Avsnitt 1.mp3")
    drop(inbox, "avsnitt-1.m4a")
    result = scan(inbox)
    assert result.candidates == ()
    assert len(result.refused) == 2
    for refused in result.refused:
        assert "Avsnitt 1.mp3 and avsnitt-1.m4a" in refused.reason


def test_two_files_with_the_same_episode_number_are_both_refused(inbox):
    drop(inbox, "a.mp3")
    drop(inbox, "a.md", "---\nepisode: 4\nseason: 1\n---\n")
    drop(inbox, "b.mp3")
    drop(inbox, "b.md", "---\nepisode: 4\nseason: 1\n---\n")
    drop(inbox, "c.mp3")
    drop(inbox, "c.md", "---\nepisode: 4\nseason: 2\n---\n")  # another season: fine
    result = scan(inbox)
    assert [c.slug for c in result.candidates] == ["c"]
    reasons = {r.slug: r.reason for r in result.refused}
    assert set(reasons) == {"a", "b"}
    assert all("a.mp3 and b.mp3 both claim episode 4 of season 1" in r for r in reasons.values())


def _published(slug: str, episode: int) -> Episode:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    return Episode(
        guid="g-" + slug,
        slug=slug,
        title="t",
        publish_at=moment,
        duration=1,
        size=1,
        mime_type="audio/mpeg",
        sha256="0" * 64,
        audio_key=f"podcast/audio/{slug}-00000000.mp3",
        episode=episode,
        first_published=moment,
        last_updated=moment,
    )


def test_number_already_published_refuses_only_the_newcomer(inbox):
    drop(inbox, "old.mp3")
    drop(inbox, "old.md", "---\nepisode: 2\n---\n")  # a re-drop of the published one
    drop(inbox, "new.mp3")
    drop(inbox, "new.md", "---\nepisode: 2\n---\n")
    result = scan(inbox, published=[_published("old", 2)])
    assert [c.slug for c in result.candidates] == ["old"]
    [refused] = result.refused
    assert refused.slug == "new"
    assert "episode 2 is already published as 'old'" in refused.reason


def test_find_number_clashes_is_pure():
    def cand(slug, number):
        return Candidate(slug, slug, Path(f"/in/{slug}.mp3"), None, EpisodeMeta(episode=number))

    reasons = find_number_clashes([cand("x", 1), cand("y", 1), cand("z", 2)], [])
    assert set(reasons) == {"x", "y"}


def test_missing_inbox_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"drop folder does not exist.*--episodes"):
        refuse_clashes(read_inbox(tmp_path / "nope", time.time(), 0), [])
