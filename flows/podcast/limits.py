"""What podcast apps accept in one episode: sizes checked before anything is uploaded.

One episode must never hold the others. A description of 10 MB once went into the catalog
and then every feed was refused ("CData section too big"). So:

- `episode_problems` and `transcript_problem` are called by the episode's prepare step
  (`flows.podcast.episode`), before any upload: a refused episode goes to failed/ with a
  note (`refusal`) in Swedish and English naming the field, its size, the limit and the fix.
- `check_transcript`, `check_image`, `duplicate_note` and the notes of the episode step
  (`no_title_note`, `late_chapter_note`, `tag_text`, ...) word what a producer reads about
  an episode's own files, by the one formatter (`flows.podcast.report.file_note`).
- `record_problems` screens a catalog record before its item goes into the feed
  (`flows.podcast.feedpublish`): the same limits, and the parts every item needs. A record
  written before these limits existed is then left out of the feed, or keeps its last good
  item, instead of blocking the whole feed.

Each figure says where it comes from. Pure: values in, `Problem`s out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flows.core.errors import InputError
from flows.core.models import Chapter, Episode
from flows.core.schema import EN, Problem, Text, Wrong, note
from flows.core.text import one_line
from flows.podcast.report import file_note
from flows.podcast.sidecar import MAX_TITLE, clean_text
from flows.podcast.sidecar_values import CHANGES, plain_text

# Titles: ID3 and RSS take more, but apps cut a title after about 60 characters and hosts
# (Buzzsprout, Podigee, Spotify for Creators) cap it near 255; the sidecar schema already uses it.
TITLE_MAX_CHARS = MAX_TITLE
# Descriptions, as the producer writes them (Markdown): Apple Podcasts allows 4,000 bytes in a
# show's <description> and apps show little more; Podigee and Julep cap an episode's at 4,000
# characters. Far below lxml's ceiling of 10,000,000 bytes for one text node (the "CData
# section too big" that blocked the feed).
DESCRIPTION_MAX_CHARS = 4_000
# The description's HTML in a catalog record: Markdown within the limit above stays well under
# this (escaping makes "&" five characters, a list item adds nine); a larger one was not made by
# this program and is screened out of the feed.
DESCRIPTION_HTML_MAX_CHARS = 8 * DESCRIPTION_MAX_CHARS
# Chapters: the ID3v2 chapter table (CTOC, ID3v2 Chapter Frame Addendum 1.0) counts its
# entries in one byte, so an MP3 cannot carry more than 255. A chapter title is a title.
CHAPTERS_MAX = 255
CHAPTER_TITLE_MAX_CHARS = MAX_TITLE
# Guests (podcast:person): no limit in the Podcasting 2.0 namespace; 50 is far beyond a panel,
# and a name is a title.
GUESTS_MAX = 50
GUEST_NAME_MAX_CHARS = MAX_TITLE
# Transcripts (.vtt/.srt): no limit documented by Apple or the Podcasting 2.0 namespace. A
# four-hour conversation is about 40,000 words: under 2 MB even with one cue per word. Apps
# download the whole file, often on a phone; 5 MB leaves room and refuses the wrong file.
TRANSCRIPT_MAX_BYTES = 5_000_000
# Episode art: Apple's figures for artwork (1400-3000 px, square; JPEG or PNG); a warning only.
IMAGE_TYPES = {"JPEG": (".jpg", "image/jpeg"), "PNG": (".png", "image/png")}

_FIX_TITLE = (
    "Korta titeln i sidofilen ('title:' i dess front matter)",
    "Shorten the title in the sidecar ('title:' in its front matter)",
)
_FIX_DESCRIPTION = (
    "Korta beskrivningen, texten under front matter i sidofilen (den ersätter beskrivningen "
    "i ljudfilens taggar), och släpp avsnittet igen",
    "Shorten the description, the text below the front matter of the sidecar (it replaces "
    "the one in the audio file's tags), and drop the episode again",
)
_FIX_CHAPTERS = (
    "Slå ihop kapitel i sidofilens 'chapters:'",
    "Merge chapters in the sidecar's 'chapters:'",
)
_FIX_CHAPTER_TITLE = ("Korta kapitlets rubrik", "Shorten the chapter's title")
_FIX_GUESTS = ("Korta listan 'guests:' i sidofilen", "Shorten the 'guests:' list in the sidecar")
_FIX_GUEST = ("Skriv bara gästens namn", "Write only the guest's name")
_EXAMPLE_TITLE = "title: Öppna data i kommunen"
_EXAMPLE_CHAPTER = '{start: "00:04:30", title: Vad är öppna data?}'
_FIX_TRANSCRIPT = (
    "Kontrollera att det är rätt fil; exportera den igen som WebVTT eller SRT utan ord-för-ord-"
    "tider",
    "Check that it is the right file; export it again as WebVTT or SRT without word-by-word "
    "timings",
)


def _n(value: int, lang: int) -> str:
    """A count for a message: 10 000 in Swedish, 10,000 in English.

    >>> _n(10_000_000, 0), _n(10_000_000, 1)
    ('10 000 000', '10,000,000')
    """
    return f"{value:,}" if lang == EN else f"{value:,}".replace(",", " ")


def too_long(
    loc: tuple[str | int, ...], size: int, limit: int, fix: Text, example: str = ""
) -> Problem:
    """A text of `size` characters where at most `limit` are allowed.

    >>> too_long(("title",), 300, 255, ("Korta", "Shorten"), "title: Kort").render(1)
    'title: is 300 characters; at most 255 are allowed. Shorten, e.g. `title: Kort`.'
    """
    what = (
        f"är {_n(size, 0)} tecken; högst {_n(limit, 0)} tillåts",
        f"is {_n(size, 1)} characters; at most {_n(limit, 1)} are allowed",
    )
    return Problem(loc, None, what, fix, example)


def _too_many(loc: tuple[str], count: int, limit: int, fix: Text, example: str) -> Problem:
    what = (
        f"har {_n(count, 0)} poster; högst {_n(limit, 0)} tillåts",
        f"has {_n(count, 1)} entries; at most {_n(limit, 1)} are allowed",
    )
    return Problem(loc, None, what, fix, example)


def episode_problems(
    title: str, description: str, chapters: Sequence[Chapter], guests: Sequence[str]
) -> list[Problem]:
    """What in an episode's text is beyond what podcast apps accept (empty: all fits)."""
    found: list[Problem] = []
    if len(title) > TITLE_MAX_CHARS:
        found.append(too_long(("title",), len(title), TITLE_MAX_CHARS, _FIX_TITLE, _EXAMPLE_TITLE))
    if len(description) > DESCRIPTION_MAX_CHARS:
        size, limit = len(description), DESCRIPTION_MAX_CHARS
        example = "Vi pratar om öppna data i kommunen."
        found.append(too_long(("description",), size, limit, _FIX_DESCRIPTION, example))
    if len(chapters) > CHAPTERS_MAX:
        count, fix = len(chapters), _FIX_CHAPTERS
        found.append(_too_many(("chapters",), count, CHAPTERS_MAX, fix, _EXAMPLE_CHAPTER))
    for number, chapter in enumerate(chapters):
        if len(chapter.title) > CHAPTER_TITLE_MAX_CHARS:
            size, limit = len(chapter.title), CHAPTER_TITLE_MAX_CHARS
            fix = _FIX_CHAPTER_TITLE
            found.append(too_long(("chapters", number, "title"), size, limit, fix, "title: Intro"))
    if len(guests) > GUESTS_MAX:
        example = "guests: [Anna Exempelsson, Bo Testström]"
        found.append(_too_many(("guests",), len(guests), GUESTS_MAX, _FIX_GUESTS, example))
    for number, name in enumerate(guests):
        if len(name) > GUEST_NAME_MAX_CHARS:
            size, limit, example = len(name), GUEST_NAME_MAX_CHARS, "- Anna Exempelsson"
            found.append(too_long(("guests", number), size, limit, _FIX_GUEST, example))
    return found


def transcript_problem(size: int) -> Problem | None:
    """A transcript file of `size` bytes over the limit, or None.

    >>> transcript_problem(12_000_000).render(1)
    'is 12,000,000 bytes; at most 5,000,000 are allowed. Check that it is the right file; \
export it again as WebVTT or SRT without word-by-word timings, e.g. `transcript: avsnitt-3.vtt`.'
    """
    if size <= TRANSCRIPT_MAX_BYTES:
        return None
    what = (
        f"är {_n(size, 0)} byte; högst {_n(TRANSCRIPT_MAX_BYTES, 0)} tillåts",
        f"is {_n(size, 1)} bytes; at most {_n(TRANSCRIPT_MAX_BYTES, 1)} are allowed",
    )
    return Problem((), None, what, _FIX_TRANSCRIPT, "transcript: avsnitt-3.vtt")


def check_transcript(path: Path) -> None:
    """Refuse a transcript file over the size limit, not UTF-8, or empty (InputError)."""
    problem = transcript_problem(path.stat().st_size)
    if problem is not None:
        raise InputError(refusal(path.name, [problem]))
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        what = ("transkriptet är inte UTF-8-text", "the transcript is not UTF-8 text")
        fix = ("Spara det som UTF-8 och lägg in det igen", "Save it as UTF-8 and drop it again")
        raise InputError(file_note(path.name, what, fix, "UTF-8")) from None
    if path.suffix.lower() == ".vtt" and not text.startswith("WEBVTT"):
        what = (
            "ett WebVTT-transkript måste börja med raden 'WEBVTT'",
            "a WebVTT transcript must start with the line 'WEBVTT'",
        )
        fix = (
            "Exportera det igen som WebVTT (.vtt), eller döp det till .srt om det är SRT",
            "Export it again as WebVTT (.vtt), or name it .srt if it is SRT",
        )
        raise InputError(file_note(path.name, what, fix, "WEBVTT"))
    if not text.strip():
        what = ("transkriptet är tomt", "the transcript is empty")
        fix = (
            "Exportera det igen från transkriberingsverktyget och lägg in det igen",
            "Export it again from the transcription tool and drop it again",
        )
        raise InputError(file_note(path.name, what, fix, f"{path.stem}.vtt"))


_FIX_IMAGE: Text = (
    "Exportera den igen som en kvadratisk JPEG eller PNG på 1400-3000 px och lägg in den igen",
    "Export it again as a square JPEG or PNG of 1400-3000 px and drop it again",
)


def check_image(path: Path) -> tuple[str, str, list[str]]:
    """Extension, MIME type and warnings of an episode image (JPEG/PNG, ideally square)."""
    from PIL import Image, UnidentifiedImageError

    example = f"{path.stem}.jpg"
    try:
        with Image.open(path) as image:
            fmt, (width, height) = image.format, image.size
    except (UnidentifiedImageError, OSError):
        what = ("avsnittsbilden går inte att läsa som JPEG eller PNG",
                "the episode image is not a readable JPEG or PNG")  # fmt: skip
        raise InputError(file_note(path.name, what, _FIX_IMAGE, example)) from None
    if fmt not in IMAGE_TYPES:
        what = (f"avsnittsbilden är {fmt}, inte JPEG eller PNG",
                f"the episode image is {fmt}, not JPEG or PNG")  # fmt: skip
        raise InputError(file_note(path.name, what, _FIX_IMAGE, example))
    warnings = []
    if width != height or not 1400 <= width <= 3000:
        what = (
            f"avsnittsbilden är {width}x{height} px; Apple vill ha en kvadratisk bild på "
            "1400-3000 px, annars kan apparna beskära den eller visa showens bild i stället",
            f"the episode art is {width}x{height} px; Apple wants square episode art of "
            "1400-3000 px, or apps may crop it or show the show's art instead",
        )
        fix = ("Beskär den till en kvadrat på 1400-3000 px nästa gång",
               "Crop it to a square of 1400-3000 px next time")  # fmt: skip
        warnings.append(file_note(path.name, what, fix, "3000x3000 px"))
    extension, mime = IMAGE_TYPES[fmt]
    return extension, mime, warnings


def duplicate_note(name: str, first: Episode, first_name: str = "") -> str:
    """Why `name` is refused: its audio is the same as an episode's (same SHA-256).

    `first` is the catalog's record, or the record this run is publishing from `first_name`.

    >>> print(duplicate_note("b.mp3", _example(), "a.mp3").splitlines()[1])
    b.mp3: is the same audio as a.mp3, published as the episode 'a' ('A') in the same run. \
A new episode needs its own audio; drop the right file again, or remove the copy, \
e.g. `inbox/b.mp3`.
    """
    if first_name:
        what = (
            f"är samma ljud som {first_name}, som publiceras som avsnittet {first.slug!r} "
            f"({first.title!r}) i samma körning",
            f"is the same audio as {first_name}, published as the episode {first.slug!r} "
            f"({first.title!r}) in the same run",
        )
    else:
        what = (
            f"är samma ljud (samma SHA-256) som det publicerade avsnittet {first.slug!r} "
            f"({first.title!r})",
            f"is the same audio (the same SHA-256) as the published episode {first.slug!r} "
            f"({first.title!r})",
        )
    fix = (
        "Ett nytt avsnitt behöver sitt eget ljud; släpp rätt fil igen, eller ta bort kopian",
        "A new episode needs its own audio; drop the right file again, or remove the copy",
    )
    return file_note(name, what, fix, f"inbox/{name}")


def refusal(source: str, found: Sequence[Problem]) -> str:
    """The note for a refused episode: every problem, Swedish lines first, then English."""
    return note(source, found)


# --- the notes of the episode step (`flows.podcast.episode`) -----------------------------------

_SV_KEYS = {"title": "titeln", "description": "beskrivningen"}


def no_title_note(audio: str, stem: str, sidecar: str | None) -> str:
    """Why an episode with no title at all is refused (neither its sidecar nor its tags).

    >>> print(no_title_note("a.mp3", "a", None).splitlines()[1])
    a.mp3: has no title: neither a sidecar nor the file's own tags give one. Add a.md next to \
it with a 'title:' line between two '---' lines at the top (see episodes/README.md) and drop \
the files again, e.g. `title: Öppna data i kommunen`.
    """
    where = (
        (f"Lägg {stem}.md bredvid den med en rad 'title:'",
         f"Add {stem}.md next to it with a 'title:' line")
        if sidecar is None
        else (f"Skriv en rad 'title:' i {sidecar}", f"Add a 'title:' line to {sidecar}")
    )  # fmt: skip
    what = ("har ingen titel: varken en sidofil eller filens egna taggar ger någon",
            "has no title: neither a sidecar nor the file's own tags give one")  # fmt: skip
    fix = (
        f"{where[0]} mellan två rader '---' överst (se episodes/README.md) och lägg in "
        "filerna igen",
        f"{where[1]} between two '---' lines at the top (see episodes/README.md) and drop the "
        "files again",
    )
    return file_note(audio, what, fix, _EXAMPLE_TITLE)


def late_chapter_note(source: str, number: int, chapter: Chapter, duration: float) -> str:
    """Why an episode is refused whose chapter `number` (from 0) starts after its audio ends.

    >>> print(late_chapter_note("a.md", 1, Chapter(start=99, title="Slut"), 60).splitlines()[1])
    a.md: chapters[2].start: chapter 'Slut' starts at 99 s but the audio is only 60.0 s long. \
Fix the chapter's start time so it falls within the audio, or remove the chapter, \
e.g. `start: "00:04:30"`.
    """
    what = (
        f"kapitlet {chapter.title!r} börjar vid {chapter.start:g} s, men ljudet är bara "
        f"{duration:.1f} s långt",
        f"chapter {chapter.title!r} starts at {chapter.start:g} s but the audio is only "
        f"{duration:.1f} s long",
    )
    fix = (
        "Rätta kapitlets starttid så att den ligger inom ljudet, eller ta bort kapitlet",
        "Fix the chapter's start time so it falls within the audio, or remove the chapter",
    )
    problem = Problem(("chapters", number, "start"), None, what, fix, 'start: "00:04:30"')
    return note(source, [problem])


def no_description_note(audio: str, stem: str) -> str:
    """The warning for an episode published without a description."""
    what = (
        "har ingen beskrivning; apparna visar bara titeln",
        "has no description; apps will show only the title",
    )
    fix = (
        f"Skriv några meningar om avsnittet under raderna '---' i {stem}.md nästa gång",
        f"Write a few sentences about the episode below the '---' lines of {stem}.md next time",
    )
    return file_note(audio, what, fix, "Vi pratar om öppna data i kommunen.")


def misnamed_note(audio: str, stem: str, kind: str, extension: str) -> str:
    """The warning for audio whose name says another format than its content (`kind`).

    >>> print(misnamed_note("a.mp3", "a", "wav", ".wav").splitlines()[1])
    a.mp3: holds WAV audio, whatever its name says, and was treated as WAV. Name it a.wav next \
time, e.g. `a.wav`.
    """
    kind = kind.upper()
    what = (
        f"innehåller {kind}-ljud, vad namnet än säger, och behandlades som {kind}",
        f"holds {kind} audio, whatever its name says, and was treated as {kind}",
    )
    fix = (f"Döp den till {stem}{extension} nästa gång", f"Name it {stem}{extension} next time")
    return file_note(audio, what, fix, f"{stem}{extension}")


def tag_text(audio: str, stem: str, key: str, value: str) -> tuple[str, list[str]]:
    """The title or description (`key`) of the audio file's own tags read as a sidecar's title
    is (`plain_text`): the text, and a warning for each change made. A code that stands for
    no character is refused (InputError), as in a sidecar.

    >>> text, [warning] = tag_text("a.mp3", "a", "title", "Tom &amp; Jerry")
    >>> text, warning.splitlines()[1][:62]
    ('Tom & Jerry', "a.mp3: the title in the file's own tags contained HTML codes (")
    """
    multiline, sv_key = key == "description", _SV_KEYS[key]
    sidecar = (
        f"rätta det i ljudfilens taggar, eller skriv {sv_key} i en sidofil {stem}.md",
        f"correct it in the audio file's tags, or give the {key} in a sidecar {stem}.md",
    )
    where = (f"{sv_key} i filens egna taggar", f"the {key} in the file's own tags")
    try:
        text, made = plain_text(value)
    except Wrong as wrong:
        what = (f"{where[0]}: {wrong.what[0]}", f"{where[1]}: {wrong.what[1]}")
        fix = (f"{wrong.fix[0]}; {sidecar[0]}", f"{wrong.fix[1]}; {sidecar[1]}")
        raise InputError(file_note(audio, what, fix, f"{stem}.md")) from None
    text = clean_text(text, multiline=multiline)[0]
    example = f"{stem}.md" if multiline else f"title: {text[:60]}"
    fix = (f"{sidecar[0][0].upper()}{sidecar[0][1:]}", f"{sidecar[1][0].upper()}{sidecar[1][1:]}")
    warnings = [
        file_note(audio, (f"{where[0]} {what[0]}", f"{where[1]} {what[1]}"), fix, example)
        for what, _ in (CHANGES[kind] for kind in made)
    ]
    return text, warnings


# --- catalog records ------------------------------------------------------------------------------


_REPUBLISH = ("Släpp avsnittet igen", "Publish the episode again (drop its audio again)")


def _missing(loc: tuple[str], what: Text) -> Problem:
    return Problem(loc, None, what, _REPUBLISH)


def record_problems(episode: Episode) -> list[Problem]:
    """Why a catalog record cannot become a feed item (empty: it can).

    The limits of `episode_problems`, the HTML description's own ceiling, and what
    `flows.podcast.feedgate` requires of every item: a title, a guid, an audio type, a
    positive size and duration.
    """
    found = episode_problems(
        episode.title,
        episode.description,
        episode.chapters,
        episode.guests,
    )
    html = len(episode.description_html)
    if html > DESCRIPTION_HTML_MAX_CHARS:
        loc = ("description_html",)
        found.append(too_long(loc, html, DESCRIPTION_HTML_MAX_CHARS, _FIX_DESCRIPTION))
    empty = ("är tom", "is empty")
    if not one_line(episode.title):
        found.append(_missing(("title",), empty))
    if not episode.guid.strip():
        found.append(_missing(("guid",), empty))
    if not episode.mime_type.strip():
        found.append(_missing(("mime_type",), empty))
    if episode.size < 1:
        found.append(_missing(("size",), (f"är {episode.size} byte", f"is {episode.size} bytes")))
    if episode.duration < 1:
        seconds = episode.duration
        found.append(_missing(("duration",), (f"är {seconds} sekunder", f"is {seconds} seconds")))
    return found


def record_note(found: Sequence[Problem]) -> str:
    """The problems of a record, in English on one line, for the feed's report."""
    return "; ".join(problem.render(EN).rstrip(".") for problem in found)


def _example(**changes: Any) -> Episode:
    """A small record for the doctests."""
    moment = datetime(2026, 3, 5, 6, 0, tzinfo=UTC)
    values: dict[str, Any] = {
        "guid": "g", "slug": "a", "title": "A", "publish_at": moment, "duration": 60,
        "size": 1000, "mime_type": "audio/mpeg", "sha256": "0" * 64,
        "audio_key": "podcast/audio/a-00000000.mp3", "first_published": moment,
        "last_updated": moment,
    }  # fmt: skip
    return Episode(**{**values, **changes})
