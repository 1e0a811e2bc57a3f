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

`parse_sidecar` only parses text (the caller reads the file). The keys it knows are
`KNOWN_KEYS`; an unknown key refuses the episode with a "did you mean" hint, since a misspelt
`publish-at` would otherwise be ignored and the episode published at once. Broken YAML and
wrong values raise InputError naming the file, the key (or line) and the fix. The transcript
and image a sidecar names must be plain file names next to the audio (`TRANSCRIPT_TYPES`,
`IMAGE_SUFFIXES`).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

import yaml

from flows.core import text as text_policy
from flows.core.errors import InputError
from flows.core.models import STOCKHOLM, Chapter

TRANSCRIPT_TYPES = {".vtt": "text/vtt", ".srt": "application/x-subrip"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
EPISODE_TYPES = ("full", "trailer", "bonus")
KNOWN_KEYS = (
    "title",
    "episode",
    "season",
    "episode_type",
    "publish_at",
    "explicit",
    "guests",
    "chapters",
    "transcript",
    "image",
)
CHAPTER_KEYS = ("start", "title")
MAX_TITLE = 255  # ID3 and the feed take more, but apps cut titles far sooner
MAX_NUMBER = 65535  # episode and season numbers: MP4 stores them in 16 bits
DEFAULT_RELEASE_TIME = time(7, 0)  # a publish date without a time means 07:00 Stockholm


class _SidecarLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text, so `parse_publish_at` gives the error message
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
    episode_type: str = "full"
    publish_at: datetime | None = None  # timezone-aware; None: keep the published one / now
    explicit: bool | None = None  # None: the show's setting
    guests: tuple[str, ...] = ()
    chapters: tuple[Chapter, ...] = ()
    transcript: str | None = None  # a file name next to the audio
    image: str | None = None  # a file name next to the audio
    warnings: tuple[str, ...] = ()


# --- the fields -----------------------------------------------------------------------------


def clean_text(text: str, *, multiline: bool) -> tuple[str, bool]:
    """Text without control characters (tab/newline kept when multiline); True if any removed.

    >>> clean_text("A\\x07B", multiline=False)
    ('AB', True)
    """
    cleaned = text_policy.multiline(text)  # the one character policy; CR/CRLF become LF
    if not multiline:
        cleaned = re.sub(r"[\t\n]+", " ", cleaned)
    return cleaned.strip(), cleaned.strip() != text.strip()


def parse_timecode(value: Any, where: str) -> float:
    """Seconds from `HH:MM:SS(.mmm)`, `MM:SS` or a number of seconds.

    >>> parse_timecode("01:02:03.5", "x")
    3723.5
    >>> parse_timecode(90, "x")
    90.0
    """
    if isinstance(value, bool):
        raise InputError(f"{where}: start must be a time like 00:12:30, got {value!r}.")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds):  # YAML's .nan / .inf
            raise InputError(
                f'{where}: start {value!r} is not a time. Write it as HH:MM:SS, e.g. "00:12:30".'
            )
    elif isinstance(value, str) and re.fullmatch(r"\d+(:\d{1,2}){0,2}(\.\d+)?", value.strip()):
        seconds = 0.0
        for part in value.strip().split(":"):
            seconds = seconds * 60 + float(part)
    else:
        raise InputError(
            f'{where}: start {value!r} is not a time. Write it as HH:MM:SS, e.g. "00:12:30".'
        )
    if seconds < 0:
        raise InputError(f"{where}: start {value!r} is negative. Use a time from 00:00:00.")
    return seconds


def parse_publish_at(value: Any, where: str) -> datetime:
    """A timezone-aware publish time; naive means Stockholm, a date alone 07:00 Stockholm.

    >>> parse_publish_at("2026-03-01", "x").isoformat()
    '2026-03-01T07:00:00+01:00'
    >>> parse_publish_at("2026-07-01 09:30", "x").isoformat()
    '2026-07-01T09:30:00+02:00'
    """
    fix = "Write it as 2026-03-01 or 2026-03-01 07:00 (Stockholm time) or with an offset."
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, DEFAULT_RELEASE_TIME)
    elif isinstance(value, str):
        text = value.strip()
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                moment = datetime.combine(date.fromisoformat(text), DEFAULT_RELEASE_TIME)
            else:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"{where}: publish_at {value!r} is not a date. {fix}") from None
    else:
        raise InputError(f"{where}: publish_at {value!r} is not a date. {fix}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=STOCKHOLM)
    return moment


def _int_field(data: dict[str, Any], key: str, where: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        else:
            raise InputError(f"{where}: {key} must be a whole number like 3, got {value!r}.")
    if value < 0:
        raise InputError(
            f"{where}: {key} is {value}; it cannot be negative. Use 1, 2, 3 … (or leave it out)."
        )
    if value > MAX_NUMBER:  # MP4 track/disc numbers are 16-bit
        raise InputError(f"{where}: {key} is {value}; at most {MAX_NUMBER} is allowed.")
    return value


def _file_name_field(data: dict[str, Any], key: str, where: str, suffixes: tuple[str, ...]):
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: {key} must be a file name, got {value!r}.")
    name = value.strip()
    # Only a plain name in the inbox: never a path that could leave the folder.
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise InputError(
            f"{where}: {key} {name!r} must be a plain file name in the same folder as the "
            "audio (no folders, no '..'). Put the file next to the audio and write its name."
        )
    if not name.lower().endswith(suffixes):
        raise InputError(
            f"{where}: {key} {name!r} must end with {' or '.join(suffixes)}. "
            "Convert the file or fix the name."
        )
    return name


def _refuse_surrogates(value: Any, source: str, key: str) -> None:
    """Refuse lone surrogates (e.g. from a YAML escape "\\ud800"): no tag, feed or JSON can
    hold them."""
    if isinstance(value, dict):
        for item in value.values():
            _refuse_surrogates(item, source, key)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_surrogates(item, source, key)
    elif isinstance(value, str) and (found := _SURROGATE.search(value)):
        near = value[max(0, found.start() - 20) : found.end() + 20]
        raise InputError(
            f"{source}: {key} contains a lone surrogate character (near {near!r}), which is "
            "not text. Remove the \\uD800-\\uDFFF escape, or write the character itself."
        )


def did_you_mean(key: str, known: Sequence[str]) -> str:
    """A hint for a misspelt key, or "" when no known key is close.

    >>> did_you_mean("publish-at", ["title", "publish_at"])
    " (did you mean 'publish_at'?)"
    """
    close = difflib.get_close_matches(key.lower(), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_near_key(key: str, known: Sequence[str]) -> bool:
    """Whether `key` is one of `known` or close to one (a misspelling, another case).

    >>> is_near_key("Publish-At", KNOWN_KEYS), is_near_key("Obs", KNOWN_KEYS)
    (True, False)
    """
    return key.lower() in known or bool(difflib.get_close_matches(key.lower(), list(known), n=1))


# `key: value` (or `key:` that opens a list), as a front-matter line would be written.
_KEY_LINE = re.compile(r"\s*([^\W\d][\w-]*)\s*:(?:\s|$)")


def keys_without_front_matter(lines: Sequence[str], source: str) -> str | None:
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
    return (
        f"{source} has keys but no '---' lines around them: line {number} reads "
        f"{line.strip()!r}, so the whole file would be the description and those keys "
        "ignored (the episode would be published at once). To fix it, add a line '---' "
        "before and after the 'key: value' lines, then drop the files again. If that line "
        "is the description, put two lines '---' above it."
    )


def unknown_keys_reason(
    source: str, unknown: Sequence[str], read: Sequence[str], known: Sequence[str]
) -> str:
    """Why a file with keys the project does not know is refused, and the fix.

    >>> unknown_keys_reason("a.md", ["titel"], ["titel"], ["title"]).split(", so")[0]
    "a.md: unknown key 'titel' (did you mean 'title'?)"
    """
    named = ", ".join(f"{key!r}{did_you_mean(key, known)}" for key in unknown)
    return (
        f"{source}: unknown key{'s' if len(unknown) > 1 else ''} {named}, so the episode "
        f"was not published (a misspelt key would be ignored). Keys read: {', '.join(read)}. "
        f"Known keys: {', '.join(known)}. Correct the spelling and drop the files again."
    )


def parse_sidecar(text: str, source: str = "sidecar.md") -> EpisodeMeta:
    """Parse a sidecar: YAML front matter between `---` lines, then a Markdown description.

    Unknown keys, broken YAML and wrong values raise InputError naming the file, the key
    (or line) and the fix.
    """
    text = text.lstrip("\ufeff")
    _refuse_surrogates(text, source, "the file")
    lines = text.splitlines()
    warnings: list[str] = []
    front: dict[str, Any] = {}
    body_lines = lines
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
        if end is None:
            raise InputError(
                f"{source}: the front matter starts with '---' on line 1 but is never closed. "
                "Add a line with only '---' after the last 'key: value' line."
            )
        try:
            loaded = yaml.load("\n".join(lines[1:end]), Loader=_SidecarLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" at line {mark.line + 2}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InputError(
                f"{source}: broken YAML{line}: {problem}. Check the indentation and put "
                "quotes around values that contain ':' or '#'."
            ) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise InputError(
                f"{source}: the front matter must be 'key: value' lines, got "
                f"{type(loaded).__name__}. See episodes/README.md for an example."
            )
        front = {str(key): value for key, value in loaded.items()}
        for key, value in front.items():
            _refuse_surrogates(value, source, key)
        body_lines = lines[end + 1 :]
    else:
        problem = keys_without_front_matter(lines, source)
        if problem is not None:
            raise InputError(problem)
        warnings.append(
            f"{source}: no front matter ('---' lines); the whole file is the description."
        )

    # A misspelt key ("publish-at") would be ignored and the episode published at once.
    unknown = [key for key in front if key not in KNOWN_KEYS]
    if unknown:
        raise InputError(unknown_keys_reason(source, unknown, list(front), KNOWN_KEYS))

    title: str | None = None
    if front.get("title") is not None:
        raw_title = front["title"]
        if not isinstance(raw_title, str | int | float) or isinstance(raw_title, bool):
            raise InputError(f"{source}: title must be text, got {raw_title!r}.")
        title, changed = clean_text(str(raw_title), multiline=False)
        if changed and title:
            warnings.append(f"{source}: control characters or line breaks removed from title.")
        if not title:
            raise InputError(f"{source}: title is empty. Write the episode's title.")
        if len(title) > MAX_TITLE:
            raise InputError(
                f"{source}: title is {len(title)} characters; at most {MAX_TITLE} are allowed "
                "(apps show about 60). Shorten it and put the rest in the description."
            )

    episode_type = front.get("episode_type", "full")
    if episode_type not in EPISODE_TYPES:
        raise InputError(
            f"{source}: episode_type {episode_type!r} is not one of {', '.join(EPISODE_TYPES)}."
        )

    publish_at = None
    if "publish_at" in front:
        # An empty `publish_at:` must not mean "now": the producer meant a time.
        if front["publish_at"] is None or str(front["publish_at"]).strip() == "":
            raise InputError(
                f"{source}: publish_at is empty. Give a time (e.g. publish_at: 2026-03-01 "
                "07:00) or remove the line."
            )
        publish_at = parse_publish_at(front["publish_at"], source)

    explicit = front.get("explicit")
    if explicit is not None and not isinstance(explicit, bool):
        raise InputError(f"{source}: explicit must be true or false, got {explicit!r}.")

    guests_raw = front.get("guests") or []
    if isinstance(guests_raw, str):
        guests_raw = [guests_raw]
    if not isinstance(guests_raw, list) or not all(
        isinstance(g, str) and g.strip() for g in guests_raw
    ):
        raise InputError(
            f"{source}: guests must be a list of names, e.g. guests: [Anna Exempel, Bo Prov]."
        )
    guests = tuple(clean_text(g, multiline=False)[0] for g in guests_raw)
    if not all(guests):
        raise InputError(
            f"{source}: a guest's name is empty once control characters are removed. "
            "Write each guest's name as plain text."
        )

    chapters_raw = front.get("chapters") or []
    if not isinstance(chapters_raw, list):
        raise InputError(
            f"{source}: chapters must be a list of '- start: \"00:00:00\"' / 'title: …' items."
        )
    chapters: list[Chapter] = []
    for number, item in enumerate(chapters_raw, start=1):
        where = f"{source}: chapter {number}"
        if isinstance(item, dict):
            # A misspelt `titel:` would otherwise read as "needs a title", naming no key.
            unknown = [str(key) for key in item if key not in CHAPTER_KEYS]
            if unknown:
                read = [str(key) for key in item]
                raise InputError(unknown_keys_reason(where, unknown, read, CHAPTER_KEYS))
        if not isinstance(item, dict) or "start" not in item or not item.get("title"):
            raise InputError(
                f'{where} needs a start and a title, e.g. {{start: "00:05:00", title: Del 2}}.'
            )
        chapter_title, _ = clean_text(str(item["title"]), multiline=False)
        if not chapter_title:
            raise InputError(f"{where}: the title is empty.")
        chapters.append(Chapter(start=parse_timecode(item["start"], where), title=chapter_title))
    starts = [c.start for c in chapters]
    if starts != sorted(starts) or len(set(starts)) != len(starts):
        raise InputError(
            f"{source}: chapters must be in time order with different start times. "
            "Sort them by start."
        )

    description, changed = clean_text("\n".join(body_lines), multiline=True)
    if changed and description:
        warnings.append(f"{source}: control characters removed from the description.")

    return EpisodeMeta(
        title=title,
        description=description,
        episode=_int_field(front, "episode", source),
        season=_int_field(front, "season", source),
        episode_type=episode_type,
        publish_at=publish_at,
        explicit=explicit,
        guests=guests,
        chapters=tuple(chapters),
        transcript=_file_name_field(front, "transcript", source, tuple(TRANSCRIPT_TYPES)),
        image=_file_name_field(front, "image", source, IMAGE_SUFFIXES),
        warnings=tuple(warnings),
    )
