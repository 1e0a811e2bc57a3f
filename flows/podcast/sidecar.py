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

The values are read by `flows.podcast.sidecar_values`: times (`publish_at`: Stockholm time,
an offset or a zone; a year outside 2000-2099 refused) and plain text. Titles, guests and
chapter titles are plain text: an HTML entity (`&amp;`) is read as its character, HTML tags
and the controls that reverse the direction of text are removed, each change a warning.
Episode and season numbers start at 1 (Apple's rule; 0 is refused). Warnings (`EpisodeMeta.
warnings`) are notes like the errors, Swedish and English, with the line and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
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
from flows.core.models import Chapter
from flows.core.schema import (
    Loc,
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
from flows.podcast.sidecar_values import (
    BIDI_CONTROLS,
    CHANGES,
    plain_text,
    publish_time,
    timecode,
)

TRANSCRIPT_TYPES = {".vtt": "text/vtt", ".srt": "application/x-subrip"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_TITLE = 255  # ID3 and the feed take more, but apps cut titles far sooner
MAX_NUMBER = 65535  # episode and season numbers: MP4 stores them in 16 bits


class _SidecarLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text, so `publish_time` gives the error message
    (PyYAML itself raises a bare ValueError for a date like 2026-13-45)."""


_SidecarLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_SURROGATE = re.compile("[\ud800-\udfff]")


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
    contact: str | None = None  # told of this episode by email (flows.notify)
    image: str | None = None  # a file name next to the audio
    warnings: tuple[str, ...] = ()


# --- the values -----------------------------------------------------------------------------


def clean_text(text: str, *, multiline: bool) -> tuple[str, bool]:
    """Text without control characters (tab/newline kept when multiline) and without the
    controls that reverse the direction of text (`BIDI_CONTROLS`); True if any removed.

    >>> clean_text("A\\x07B\\u202e", multiline=False)
    ('AB', True)
    """
    # The one character policy (CR/CRLF become LF), and no direction overrides: a title
    # from the audio file's own tags passes here too.
    cleaned = BIDI_CONTROLS.sub("", text_policy.multiline(text))
    if not multiline:
        cleaned = re.sub(r"[\t\n]+", " ", cleaned)
    return cleaned.strip(), cleaned.strip() != text.strip()


def parse_timecode(value: Any, where: str) -> float:
    """`timecode`, with InputError naming `where`.

    >>> parse_timecode("01:02:03.5", "x")
    3723.5
    """
    return _or_input_error(timecode, value, where, ("start",))


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


def _plain_line(value: str) -> str:
    """A title or name as plain text (`plain_text`), on one line."""
    return clean_text(plain_text(_one_line(value))[0], multiline=False)[0]


def _from_one(value: int) -> int:
    """Episode and season numbers count from 1: Apple Podcasts refuses 0."""
    if value == 0:
        raise Wrong(
            ("är 0; podd-apparna räknar från 1", "is 0; podcast apps count from 1"),
            ("Skriv 1 för det första, eller ta bort raden (en trailer behöver inget nummer)",
             "Use 1 for the first, or leave the line out (a trailer needs no number)"),
        )  # fmt: skip
    return value


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
    StrictStr, BeforeValidator(_number_as_text), AfterValidator(_plain_line), Field(min_length=1)
]
Number = Annotated[
    StrictInt, BeforeValidator(_digits), Field(ge=0, le=MAX_NUMBER), AfterValidator(_from_one)
]


class ChapterEntry(BaseModel):
    """One chapter in a sidecar's `chapters:` list."""

    model_config = ConfigDict(extra="forbid")

    start: Annotated[float, BeforeValidator(timecode)] = Field(
        description="När kapitlet börjar: `HH:MM:SS` (gärna inom citattecken), `MM:SS` "
        "eller sekunder.",
        examples=['"00:04:30"'],
    )
    title: Annotated[
        StrictStr, BeforeValidator(_chapter_title), AfterValidator(_plain_line), Field(min_length=1)
    ] = Field(description="Kapitlets rubrik.", examples=["Vad är öppna data?"])


class SidecarFront(BaseModel):
    """The front matter of a sidecar: every key a producer may write, and what it may be."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[Line, Field(max_length=MAX_TITLE)] | None = Field(
        None,
        description=f"Avsnittets titel, högst {MAX_TITLE} tecken (apparna visar ungefär 60). "
        "Krävs för WAV/FLAC/AIFF; annars tas den från ljudfilens taggar. Vanlig text: "
        "`&amp;` läses som `&`, och HTML-taggar tas bort.",
        examples=["Öppna data i kommunen – var börjar man?"],
    )
    episode: Number | None = Field(
        None, description=f"Avsnittsnummer: ett heltal 1–{MAX_NUMBER}.", examples=["12"]
    )
    season: Number | None = Field(
        None, description=f"Säsong: ett heltal 1–{MAX_NUMBER}.", examples=["2"]
    )
    episode_type: Literal["full", "trailer", "bonus"] = Field(
        "full", description="`full`, `trailer` eller `bonus`.", examples=["full"]
    )
    publish_at: Annotated[datetime | None, BeforeValidator(publish_time)] = Field(
        None,
        description="När avsnittet syns i flödet, i svensk tid; bara ett datum betyder kl. "
        "07:00, och en annan tidszon skrivs efter tiden (`+01:00`, `Europe/London`). Utan "
        "raden: nu. En tid som inte finns (natten då klockan ställs fram), en okänd tidszon "
        "och ett år före 2000 eller efter 2099 stoppas.",
        examples=["2026-03-05 07:00"],
    )
    explicit: StrictBool | None = Field(
        None,
        description="`true` om avsnittet är olämpligt för barn; utan raden gäller showens "
        "inställning.",
        examples=["false"],
    )
    guests: Annotated[
        list[Annotated[StrictStr, AfterValidator(_plain_line), Field(min_length=1)]],
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
    contact: Annotated[StrictStr, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = Field(
        None,
        description="E-postadress som får besked om just det här avsnittet (publicerat, "
        "refuserat, varningar), utöver `producers:` i show.yaml.",
        examples=["reporter@kraftsamling.example"],
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
    front, node = _front_keys(front_lines or [], source)
    lines = yaml_lines(node, first_line=2)
    try:
        fields = SidecarFront.model_validate(front)
    except ValidationError as exc:
        raise InputError(note(source, problems(exc, SidecarFront, lines))) from None
    body = "\n".join(body_lines)
    description = clean_text(body, multiline=True)[0]
    found = _text_warnings(front, lines)
    if not text.strip():
        found.append(Problem((), None, *_EMPTY))
    elif front_lines is None:
        found.append(Problem((), 1, *_NO_FRONT))
    last = len(text.splitlines())
    if description and BIDI_CONTROLS.search(body):
        found.append(Problem(("description",), last, *CHANGES["bidi"]))
    if description and clean_text(BIDI_CONTROLS.sub("", body), multiline=True)[1]:
        found.append(Problem(("description",), last, *_CONTROLS))
    warnings = (note(source, found),) if found else ()
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
        contact=fields.contact,
        warnings=warnings,
    )


_CONTROLS: tuple[Text, Text] = (
    (
        "innehöll styrtecken eller radbrytningar; de togs bort",
        "contained control characters or line breaks; they were removed",
    ),
    ("Skriv den som vanlig text", "Write it as plain text"),
)
_EMPTY: tuple[Text, Text, str] = (
    (
        "är tom; titel och beskrivning tas från ljudfilens taggar",
        "is empty; the title and description come from the audio file's own tags",
    ),
    (
        "Skriv titel och beskrivning i den, eller ta bort den",
        "Write the title and description in it, or remove it",
    ),
    "title: Öppna data i kommunen",
)
_NO_FRONT: tuple[Text, Text, str] = (
    ("har inga '---'-rader; hela filen blir beskrivningen",
     "no front matter ('---' lines); the whole file is the description"),
    ("Titel och datum skrivs mellan två rader '---' överst",
     "Give a title or date between two '---' lines at the top"),
    "title: Öppna data i kommunen",
)  # fmt: skip


def _text_warnings(front: dict[str, Any], lines: dict[Loc, int]) -> list[Problem]:
    """What was changed in the title, guests and chapter titles to make them plain text on
    one line: one warning per change, at the key's line."""
    written: list[tuple[Loc, Any]] = [(("title",), front.get("title"))]
    written += [(("guests", n), name) for n, name in enumerate(_names(front.get("guests")))]
    chapters = front.get("chapters") or []
    written += [(("chapters", n, "title"), c.get("title")) for n, c in enumerate(chapters)]
    found = []
    for loc, value in written:
        if not isinstance(value, str):
            continue
        text, made = _plain_line(value), plain_text(value)[1]
        kinds = [CHANGES[kind] for kind in made]
        if clean_text(BIDI_CONTROLS.sub("", value), multiline=False)[1]:
            kinds.insert(0, _CONTROLS)
        example = f"- {text}" if loc[0] == "guests" else f"title: {text}"
        found += [Problem(loc, lines.get(loc), what, fix, example[:80]) for what, fix in kinds]
    return found
