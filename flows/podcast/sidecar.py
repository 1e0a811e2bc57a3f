"""What a producer writes beside the audio: the sidecar `<name>.md`, parsed into `EpisodeMeta`.

A sidecar is YAML front matter between `---` lines, then a Markdown body (the description):

    ---
    title: Öppna data i kommunen
    episode: 3
    publish_at: 2026-03-01 07:00
    chapters:
      - {start: "00:00:00", title: Intro}
    ---
    Vi pratar om öppna data.

`parse_sidecar` only parses text (the caller reads the file). The front matter's keys, types
and ranges are declared by `SidecarFront` (and `ChapterEntry` for a chapter); its fields'
descriptions are the key table of episodes/README.md (generated with cog). Everything wrong
in a sidecar is refused at once with one InputError that names, for each problem, the line,
the key and the fix, in Swedish and English (`flows.core.schema.note`). An unknown key is
refused with a "did you mean" hint, since a misspelt `publish-at` would otherwise be ignored
and the episode published at once. The transcript and image a sidecar names must be plain
file names next to the audio (`TRANSCRIPT_TYPES`, `IMAGE_SUFFIXES`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from flows.core import text as text_policy
from flows.core.errors import InputError
from flows.core.models import STOCKHOLM, Chapter
from flows.core.schema import (
    Problem,
    Text,
    Wrong,
    did_you_mean,
    load_yaml,
    note,
    problems,
    yaml_lines,
    yaml_problem,
)

TRANSCRIPT_TYPES = {".vtt": "text/vtt", ".srt": "application/x-subrip"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_TITLE = 255  # ID3 and the feed take more, but apps cut titles far sooner
MAX_NUMBER = 65535  # episode and season numbers: MP4 stores them in 16 bits
DEFAULT_RELEASE_TIME = time(7, 0)  # a publish date without a time means 07:00 Stockholm


class _SidecarLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text, so `publish_time` gives the error message
    (PyYAML itself raises a bare ValueError for a date like 2026-13-45)."""


_SidecarLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_SURROGATE = re.compile("[\ud800-\udfff]")
_TIMECODE = re.compile(r"\d+(:\d{1,2}){0,2}(\.\d+)?")


@dataclass(frozen=True)
class EpisodeMeta:
    """What a sidecar says about an episode (all optional except where noted)."""

    title: str | None = None
    description: str = ""
    episode: int | None = None
    season: int | None = None
    episode_type: Literal["full", "trailer", "bonus"] = "full"
    publish_at: datetime | None = None  # timezone-aware; None: keep the published one / now
    explicit: bool | None = None  # None: the show's setting
    guests: tuple[str, ...] = ()
    chapters: tuple[Chapter, ...] = ()
    transcript: str | None = None  # a file name next to the audio
    image: str | None = None  # a file name next to the audio
    warnings: tuple[str, ...] = ()


# --- the values -----------------------------------------------------------------------------


def clean_text(text: str, *, multiline: bool) -> tuple[str, bool]:
    """Text without control characters (tab/newline kept when multiline); True if any removed.

    >>> clean_text("A\\x07B", multiline=False)
    ('AB', True)
    """
    cleaned = text_policy.multiline(text)  # the one character policy; CR/CRLF become LF
    if not multiline:
        cleaned = re.sub(r"[\t\n]+", " ", cleaned)
    return cleaned.strip(), cleaned.strip() != text.strip()


def timecode(value: Any) -> float:
    """Seconds from `HH:MM:SS(.mmm)`, `MM:SS` or a number of seconds; Wrong if it is none.

    >>> timecode("01:02:03.5"), timecode(90)
    (3723.5, 90.0)
    """
    fix = ("Skriv den som HH:MM:SS", "Write it as HH:MM:SS")
    shown = repr(value)[:60]
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        if not math.isfinite(seconds):  # YAML's .nan / .inf
            raise Wrong((f"{shown} är ingen tid", f"{shown} is not a time"), fix, '"00:12:30"')
    elif isinstance(value, str) and _TIMECODE.fullmatch(value.strip()):
        seconds = 0.0
        for part in value.strip().split(":"):
            seconds = seconds * 60 + float(part)
    else:
        raise Wrong((f"{shown} är ingen tid", f"{shown} is not a time"), fix, '"00:12:30"')
    if seconds < 0:
        what = (f"{shown} är negativ", f"{shown} is negative")
        raise Wrong(what, ("Skriv en tid från 00:00:00", "Use a time from 00:00:00"), '"00:00:00"')
    return seconds


def parse_timecode(value: Any, where: str) -> float:
    """`timecode`, with InputError naming `where`.

    >>> parse_timecode("01:02:03.5", "x")
    3723.5
    """
    return _or_input_error(timecode, value, where, ("start",))


def publish_time(value: Any) -> datetime:
    """A timezone-aware publish time; naive means Stockholm, a date alone 07:00 Stockholm.

    A Stockholm time that does not exist (the hour skipped when the clocks go forward) is
    Wrong: the producer meant some time, and no one can tell which.

    >>> publish_time("2026-03-01").isoformat()
    '2026-03-01T07:00:00+01:00'
    >>> publish_time("2026-07-01 09:30").isoformat()
    '2026-07-01T09:30:00+02:00'
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        # An empty `publish_at:` must not mean "now": the producer meant a time.
        raise Wrong(
            ("är tom", "is empty"),
            ("Skriv en tid eller ta bort raden", "Give a time or remove the line"),
        )
    moment = _moment(value)
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        return moment
    local = moment.replace(tzinfo=STOCKHOLM)
    real = local.astimezone(UTC).astimezone(STOCKHOLM)
    if real.replace(tzinfo=None) != moment:  # in the gap: 02:30 on spring-forward night
        raise Wrong(
            (
                f"{moment:%Y-%m-%d %H:%M} finns inte i svensk tid: klockan ställs fram en "
                "timme den natten",
                f"{moment:%Y-%m-%d %H:%M} does not exist in Stockholm: the clocks go forward "
                "an hour that night",
            ),
            ("Välj en tid som finns", "Choose a time that exists"),
            f"{real:%Y-%m-%d %H:%M}",
        )
    return local


def _moment(value: Any) -> datetime:
    """A date (at 07:00) or a date and time, maybe naive; Wrong if it is neither."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, DEFAULT_RELEASE_TIME)
    text = value.strip() if isinstance(value, str) else ""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.combine(date.fromisoformat(text), DEFAULT_RELEASE_TIME)
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        shown = repr(value)[:60]
        raise Wrong(
            (f"{shown} är inget datum", f"{shown} is not a date"),
            (
                "Skriv ett datum, ett datum och en tid (svensk tid) eller en tid med tidszon",
                "Write a date, a date and a time (Stockholm time) or a time with an offset",
            ),
        ) from None


def parse_publish_at(value: Any, where: str) -> datetime:
    """`publish_time`, with InputError naming `where`.

    >>> parse_publish_at("2026-03-01", "x").isoformat()
    '2026-03-01T07:00:00+01:00'
    """
    return _or_input_error(publish_time, value, where, ("publish_at",))


def _or_input_error(parse: Callable[[Any], Any], value: Any, where: str, loc: tuple[str]) -> Any:
    try:
        return parse(value)
    except Wrong as wrong:
        raise InputError(note(where, [Problem(loc, None, wrong.what, wrong.fix)])) from None


def _one_line(value: str) -> str:
    """A title or name: no lone surrogates (from a YAML escape "\\ud800": no tag, feed or
    JSON can hold them), no control characters, no line breaks."""
    if found := _SURROGATE.search(value):
        near = value[max(0, found.start() - 20) : found.end() + 20]
        raise Wrong(
            (
                f"innehåller ett ensamt surrogattecken (nära {near!r}), som inte är text",
                f"contains a lone surrogate character (near {near!r}), which is not text",
            ),
            (
                "Ta bort \\uD800-\\uDFFF-koden eller skriv tecknet självt",
                "Remove the \\uD800-\\uDFFF escape, or write the character itself",
            ),
        )
    return clean_text(value, multiline=False)[0]


def _number_as_text(value: Any) -> Any:
    """A title may be a number (`title: 2026`); true/false and lists are not text."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _digits(value: Any) -> Any:
    """An episode or season number may be quoted ("3")."""
    if isinstance(value, str) and value.strip().isdigit():
        try:
            return int(value.strip())
        except ValueError:  # digits int() does not read, such as "²"
            return value
    return value


def _names(value: Any) -> Any:
    """`guests: Anna` is one guest; an empty `guests:` (or "", 0, false) none."""
    value = value or []
    return [value] if isinstance(value, str) else value


def _chapter_title(value: Any) -> Any:
    """A chapter title may be a number, but not 0 (an empty title, as before)."""
    return _number_as_text(value) if value else value


def _in_time_order(chapters: list[ChapterEntry]) -> list[ChapterEntry]:
    starts = [c.start for c in chapters]
    if starts != sorted(starts) or len(set(starts)) != len(starts):
        raise Wrong(
            (
                "kapitlen är inte i tidsordning med olika starttider",
                "the chapters are not in time order with different start times",
            ),
            ("Sortera dem efter start", "Sort them by start"),
        )
    return chapters


def _file_name(kind: str, suffixes: Sequence[str]) -> Callable[[str], str]:
    """A validator: a plain file name next to the audio, ending with one of `suffixes`."""

    def check(value: str) -> str:
        name = _one_line(value)
        if not name:
            raise Wrong(
                ("är tom", "is empty"),
                (f"Skriv {kind}ens filnamn", f"Write the {kind}'s file name"),
            )
        # Only a plain name in the inbox: never a path that could leave the folder.
        if "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
            raise Wrong(
                (
                    f"{name!r} ska vara ett filnamn i samma mapp som ljudet (inga mappar, "
                    "ingen '..')",
                    f"{name!r} must be a plain file name in the same folder as the audio (no "
                    "folders, no '..')",
                ),
                (
                    "Lägg filen bredvid ljudet och skriv dess namn",
                    "Put the file next to the audio and write its name",
                ),
            )
        if not name.lower().endswith(tuple(suffixes)):
            ends = (" eller ".join(suffixes), " or ".join(suffixes))
            raise Wrong(
                (f"{name!r} ska sluta på {ends[0]}", f"{name!r} must end with {ends[1]}"),
                ("Konvertera filen eller rätta namnet", "Convert the file or fix the name"),
            )
        return name

    return check


# --- the schema -------------------------------------------------------------------------------

Line = Annotated[
    StrictStr, BeforeValidator(_number_as_text), AfterValidator(_one_line), Field(min_length=1)
]
Number = Annotated[StrictInt, BeforeValidator(_digits), Field(ge=0, le=MAX_NUMBER)]


class ChapterEntry(BaseModel):
    """One chapter in a sidecar's `chapters:` list."""

    model_config = ConfigDict(extra="forbid")

    start: Annotated[float, BeforeValidator(timecode)] = Field(
        description="När kapitlet börjar: `HH:MM:SS` (gärna inom citattecken), `MM:SS` "
        "eller sekunder.",
        examples=['"00:04:30"'],
    )
    title: Annotated[
        StrictStr, BeforeValidator(_chapter_title), AfterValidator(_one_line), Field(min_length=1)
    ] = Field(description="Kapitlets rubrik.", examples=["Vad är öppna data?"])


class SidecarFront(BaseModel):
    """The front matter of a sidecar: every key a producer may write, and what it may be."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[Line, Field(max_length=MAX_TITLE)] | None = Field(
        None,
        description=f"Avsnittets titel, högst {MAX_TITLE} tecken (apparna visar ungefär 60). "
        "Krävs för WAV/FLAC/AIFF; annars tas den från ljudfilens taggar.",
        examples=["Öppna data i kommunen – var börjar man?"],
    )
    episode: Number | None = Field(
        None, description=f"Avsnittsnummer: ett heltal 0–{MAX_NUMBER}.", examples=["12"]
    )
    season: Number | None = Field(
        None, description=f"Säsong: ett heltal 0–{MAX_NUMBER}.", examples=["2"]
    )
    episode_type: Literal["full", "trailer", "bonus"] = Field(
        "full", description="`full`, `trailer` eller `bonus`.", examples=["full"]
    )
    publish_at: Annotated[datetime | None, BeforeValidator(publish_time)] = Field(
        None,
        description="När avsnittet syns i flödet, i svensk tid; bara ett datum betyder kl. "
        "07:00. Utan raden: nu. En tid som inte finns (natten då klockan ställs fram) "
        "stoppas.",
        examples=["2026-03-05 07:00"],
    )
    explicit: StrictBool | None = Field(
        None,
        description="`true` om avsnittet är olämpligt för barn; utan raden gäller showens "
        "inställning.",
        examples=["false"],
    )
    guests: Annotated[
        list[Annotated[StrictStr, AfterValidator(_one_line), Field(min_length=1)]],
        BeforeValidator(_names),
    ] = Field(
        [],
        description="Gästernas namn, som en lista.",
        examples=["[Cecilia Påhittad, David Låtsas]"],
    )
    chapters: Annotated[  # an empty `chapters:` is no chapters
        list[ChapterEntry], BeforeValidator(lambda v: v or []), AfterValidator(_in_time_order)
    ] = Field(
        [],
        description="Kapitel i tidsordning, vart och ett med `start` och `title` (se nedan).",
        examples=['[{start: "00:00:00", title: Inledning}]'],
    )
    transcript: (
        Annotated[StrictStr, AfterValidator(_file_name("transkription", tuple(TRANSCRIPT_TYPES)))]
        | None
    ) = Field(
        None,
        description="Transkriptionens filnamn (`.vtt` eller `.srt`) bredvid ljudet; en fil "
        "som heter som ljudfilen tas med ändå.",
        examples=["avsnitt-12.vtt"],
    )
    image: Annotated[StrictStr, AfterValidator(_file_name("bild", IMAGE_SUFFIXES))] | None = Field(
        None,
        description="Egen avsnittsbild (`.jpg`/`.png`, kvadratisk 1400–3000 px) bredvid ljudet.",
        examples=["avsnitt-12.jpg"],
    )


KNOWN_KEYS = tuple(SidecarFront.model_fields)


# --- the file ---------------------------------------------------------------------------------


def is_near_key(key: str, known: Sequence[str]) -> bool:
    """Whether `key` is one of `known` or close to one (a misspelling, another case).

    >>> is_near_key("Publish-At", KNOWN_KEYS), is_near_key("Obs", KNOWN_KEYS)
    (True, False)
    """
    return key.lower() in known or bool(did_you_mean(key, known))


# `key: value` (or `key:` that opens a list), as a front-matter line would be written.
_KEY_LINE = re.compile(r"\s*([^\W\d][\w-]*)\s*:(?:\s|$)")


def keys_without_front_matter(lines: Sequence[str]) -> Problem | None:
    """Why a sidecar without `---` lines is refused when it starts like front matter.

    Without the `---` lines the whole file is the description, so `title:` and `publish_at:`
    would be ignored and the episode published at once. A first line that reads as
    `key: value` with a key of ours (or close to one) is taken as such a sidecar.
    """
    first = next(((n, line) for n, line in enumerate(lines, 1) if line.strip()), None)
    if first is None:
        return None
    number, line = first
    found = _KEY_LINE.match(line)
    if found is None or not is_near_key(found.group(1), KNOWN_KEYS):
        return None
    return Problem(
        (),
        number,
        (
            f"{line.strip()!r} ser ut som en inställning, men filen har inga '---'-rader; "
            "hela filen blir då beskrivningen och inställningarna ignoreras (avsnittet skulle "
            "publiceras direkt)",
            f"has keys but no '---' lines around them: {line.strip()!r} would be part of the "
            "description and those keys ignored (the episode would be published at once)",
        ),
        (
            "Lägg till en rad '---' före och efter 'nyckel: värde'-raderna och lägg in filerna "
            "igen. Är raden beskrivningen, sätt två rader '---' ovanför den",
            "Add a line '---' before and after the 'key: value' lines, then drop the files "
            "again. If that line is the description, put two lines '---' above it",
        ),
    )


def _refused(source: str, line: int, what: Text, fix: Text) -> InputError:
    """A problem of the whole file (not of one key) as the error that refuses it."""
    return InputError(note(source, [Problem((), line, what, fix)]))


def _front_matter(lines: list[str], source: str) -> tuple[list[str] | None, list[str]]:
    """The front matter's lines (None without `---`) and the description's; InputError
    when the front matter is never closed or its keys lack the `---` lines."""
    if not lines or lines[0].strip() != "---":
        problem = keys_without_front_matter(lines)
        if problem is not None:
            raise InputError(note(source, [problem]))
        return None, lines
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        raise _refused(
            source,
            1,
            (
                "front matter börjar med '---' men avslutas aldrig",
                "the front matter starts with '---' but is never closed",
            ),
            (
                "Lägg till en rad med bara '---' efter sista 'nyckel: värde'-raden",
                "Add a line with only '---' after the last 'key: value' line",
            ),
        )
    return lines[1:end], lines[end + 1 :]


def _front_keys(front_lines: list[str], source: str) -> tuple[dict[str, Any], yaml.Node | None]:
    """The front matter as a dict and its YAML node (for line numbers); InputError."""
    try:
        loaded, node = load_yaml("\n".join(front_lines), _SidecarLoader)
    except yaml.YAMLError as exc:
        raise InputError(note(source, [yaml_problem(exc, first_line=2)])) from None
    if loaded is None:
        return {}, None
    if not isinstance(loaded, dict):
        kind = type(loaded).__name__
        raise _refused(
            source,
            2,
            (
                f"front matter ska vara 'nyckel: värde'-rader, inte {kind}",
                f"the front matter must be 'key: value' lines, got {kind}",
            ),
            ("Se exemplet i episodes/README.md", "See the example in episodes/README.md"),
        )
    return {str(key): value for key, value in loaded.items()}, node


def _refuse_surrogates(text: str, source: str) -> None:
    """A lone surrogate anywhere in the file (a str can hold one; no tag, feed or JSON can)."""
    if found := _SURROGATE.search(text):
        try:
            _one_line(text[max(0, found.start() - 20) : found.end() + 20])
        except Wrong as wrong:
            line = text.count("\n", 0, found.start()) + 1
            raise _refused(source, line, wrong.what, wrong.fix) from None


def parse_sidecar(text: str, source: str = "sidecar.md") -> EpisodeMeta:
    """Parse a sidecar: YAML front matter between `---` lines, then a Markdown description.

    Unknown keys, broken YAML and wrong values raise one InputError that names, for each
    problem, the line, the key and the fix (Swedish, then English).
    """
    text = text.lstrip("\ufeff")
    _refuse_surrogates(text, source)
    front_lines, body_lines = _front_matter(text.splitlines(), source)
    warnings: list[str] = []
    if front_lines is None:
        warnings.append(
            f"{source}: no front matter ('---' lines); the whole file is the description."
        )
    front, node = _front_keys(front_lines or [], source)
    try:
        fields = SidecarFront.model_validate(front)
    except ValidationError as exc:
        found = problems(exc, SidecarFront, yaml_lines(node, first_line=2))
        raise InputError(note(source, found)) from None
    if fields.title and clean_text(str(front["title"]), multiline=False)[1]:
        warnings.append(f"{source}: control characters or line breaks removed from title.")
    description, changed = clean_text("\n".join(body_lines), multiline=True)
    if changed and description:
        warnings.append(f"{source}: control characters removed from the description.")
    return EpisodeMeta(
        title=fields.title,
        description=description,
        episode=fields.episode,
        season=fields.season,
        episode_type=fields.episode_type,
        publish_at=fields.publish_at,
        explicit=fields.explicit,
        guests=tuple(fields.guests),
        chapters=tuple(Chapter(start=c.start, title=c.title) for c in fields.chapters),
        transcript=fields.transcript,
        image=fields.image,
        warnings=tuple(warnings),
    )
