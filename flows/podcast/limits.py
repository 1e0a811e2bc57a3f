"""What podcast apps accept in one episode: sizes checked before anything is uploaded.

One episode must never hold the others. A description of 10 MB once went into the catalog
and then every feed was refused ("CData section too big"). So:

- `episode_problems` and `transcript_problem` are called by the episode's prepare step
  (`flows.podcast.episode`), before any upload: a refused episode goes to failed/ with a
  note (`refusal`) in Swedish and English naming the field, its size, the limit and the fix.
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
from flows.core.schema import EN, Problem, note
from flows.core.text import one_line
from flows.podcast.sidecar import MAX_TITLE

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


def too_long(loc: tuple[str | int, ...], size: int, limit: int, fix: tuple[str, str]) -> Problem:
    """A text of `size` characters where at most `limit` are allowed.

    >>> too_long(("title",), 300, 255, ("Korta", "Shorten")).render(1)
    'title: is 300 characters; at most 255 are allowed. Shorten.'
    """
    what = (
        f"är {_n(size, 0)} tecken; högst {_n(limit, 0)} tillåts",
        f"is {_n(size, 1)} characters; at most {_n(limit, 1)} are allowed",
    )
    return Problem(loc, None, what, fix)


def _too_many(loc: tuple[str], count: int, limit: int, fix: tuple[str, str]) -> Problem:
    what = (
        f"har {_n(count, 0)} poster; högst {_n(limit, 0)} tillåts",
        f"has {_n(count, 1)} entries; at most {_n(limit, 1)} are allowed",
    )
    return Problem(loc, None, what, fix)


def episode_problems(
    title: str, description: str, chapters: Sequence[Chapter], guests: Sequence[str]
) -> list[Problem]:
    """What in an episode's text is beyond what podcast apps accept (empty: all fits)."""
    found: list[Problem] = []
    if len(title) > TITLE_MAX_CHARS:
        found.append(too_long(("title",), len(title), TITLE_MAX_CHARS, _FIX_TITLE))
    if len(description) > DESCRIPTION_MAX_CHARS:
        found.append(
            too_long(("description",), len(description), DESCRIPTION_MAX_CHARS, _FIX_DESCRIPTION)
        )
    if len(chapters) > CHAPTERS_MAX:
        found.append(_too_many(("chapters",), len(chapters), CHAPTERS_MAX, _FIX_CHAPTERS))
    for number, chapter in enumerate(chapters):
        if len(chapter.title) > CHAPTER_TITLE_MAX_CHARS:
            loc = ("chapters", number, "title")
            found.append(
                too_long(loc, len(chapter.title), CHAPTER_TITLE_MAX_CHARS, _FIX_CHAPTER_TITLE)
            )
    if len(guests) > GUESTS_MAX:
        found.append(_too_many(("guests",), len(guests), GUESTS_MAX, _FIX_GUESTS))
    for number, name in enumerate(guests):
        if len(name) > GUEST_NAME_MAX_CHARS:
            found.append(too_long(("guests", number), len(name), GUEST_NAME_MAX_CHARS, _FIX_GUEST))
    return found


def transcript_problem(size: int) -> Problem | None:
    """A transcript file of `size` bytes over the limit, or None.

    >>> transcript_problem(12_000_000).render(1)
    'is 12,000,000 bytes; at most 5,000,000 are allowed. Check that it is the right file; \
export it again as WebVTT or SRT without word-by-word timings.'
    """
    if size <= TRANSCRIPT_MAX_BYTES:
        return None
    what = (
        f"är {_n(size, 0)} byte; högst {_n(TRANSCRIPT_MAX_BYTES, 0)} tillåts",
        f"is {_n(size, 1)} bytes; at most {_n(TRANSCRIPT_MAX_BYTES, 1)} are allowed",
    )
    return Problem((), None, what, _FIX_TRANSCRIPT)


def check_transcript(path: Path) -> None:
    """Refuse a transcript file over the size limit, not UTF-8, or empty (InputError)."""
    problem = transcript_problem(path.stat().st_size)
    if problem is not None:
        raise InputError(refusal(path.name, [problem]))
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(
            f"{path.name}: the transcript is not UTF-8 text. Save it as UTF-8 and drop it again."
        ) from None
    if path.suffix.lower() == ".vtt" and not text.startswith("WEBVTT"):
        raise InputError(
            f"{path.name}: a WebVTT transcript must start with the line 'WEBVTT'. "
            "Export it again as WebVTT (.vtt)."
        )
    if not text.strip():
        raise InputError(f"{path.name}: the transcript is empty. Export it again.")


def check_image(path: Path) -> tuple[str, str, list[str]]:
    """Extension, MIME type and warnings of an episode image (JPEG/PNG, ideally square)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            fmt, (width, height) = image.format, image.size
    except (UnidentifiedImageError, OSError):
        raise InputError(
            f"{path.name}: the episode image is not a readable JPEG or PNG. Export it again."
        ) from None
    if fmt not in IMAGE_TYPES:
        raise InputError(f"{path.name}: the episode image is {fmt}; use JPEG or PNG.")
    warnings = []
    if width != height or not 1400 <= width <= 3000:
        warnings.append(
            f"{path.name}: Apple wants square episode art of 1400-3000 px; this is "
            f"{width}x{height}."
        )
    extension, mime = IMAGE_TYPES[fmt]
    return extension, mime, warnings


def duplicate_note(name: str, first: Episode, first_name: str = "") -> str:
    """Why `name` is refused: its audio is the same as an episode's (same SHA-256).

    `first` is the catalog's record, or the record this run is publishing from `first_name`.

    >>> print(duplicate_note("b.mp3", _example(), "a.mp3").splitlines()[1])
    b.mp3: is the same audio as a.mp3, published as the episode 'a' ('A') in the same run. \
A new episode needs its own audio; drop the right file again, or remove the copy.
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
    return note(name, [Problem((), None, what, fix)])


def refusal(source: str, found: Sequence[Problem]) -> str:
    """The note for a refused episode: every problem, Swedish lines first, then English."""
    return note(source, found)


_REPUBLISH = ("Släpp avsnittet igen", "Publish the episode again (drop its audio again)")


def _missing(loc: tuple[str], what: str) -> Problem:
    return Problem(loc, None, (what, what), _REPUBLISH)


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
    if not one_line(episode.title):
        found.append(_missing(("title",), "is empty"))
    if not episode.guid.strip():
        found.append(_missing(("guid",), "is empty"))
    if not episode.mime_type.strip():
        found.append(_missing(("mime_type",), "is empty"))
    if episode.size < 1:
        found.append(_missing(("size",), f"is {episode.size} bytes"))
    if episode.duration < 1:
        found.append(_missing(("duration",), f"is {episode.duration} seconds"))
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
