"""The producers' drop folder: which files are ready, what their sidecars say.

`scan_inbox` only reads the folder (names, sizes, times, sidecar text); it never moves or
changes a file. It sorts what it sees into:

- candidates: an audio file that has settled, with its parsed sidecar (`<name>.md`) and the
  transcript and image the sidecar names. Audio is `<name>.mp3` / `<name>.m4a` (published as
  it is, after a loudness check) or a lossless master `<name>.wav` / `.flac` / `.aiff` /
  `.aif` (encoded to a loudness-normalised MP3 by `flows.podcast.loudness`; the master is kept
  privately);
- refused: a group of files that cannot become an episode, with the reason and the fix
  (empty file, broken sidecar, a master without a sidecar title, a clash with another file);
- waiting: files still being copied (temporary suffixes, or changed in the last
  `settle_seconds`), left alone for a later run.

Everything else in the folder (notes, stray images, dotfiles, folders) is left alone.

The drop folder is a boundary: only regular files inside it are read. A symlink, FIFO,
device or directory with an episode file's name (audio, sidecar, transcript, chapters,
image) is refused and never read; with the stem of an audio file it refuses that episode.
Files are opened with O_NOFOLLOW (`open_regular`), so a file swapped for a link after the
scan is refused too. The drop folder itself may be a symlink or a mount point.

A master needs a sidecar with a title. MP3 and M4A exports carry title tags that we can use
when there is no sidecar; WAV/FLAC/AIFF masters from an editor seldom do, and the file name
("avsnitt3_final_v2.wav") is no title to put in a feed that apps cache for good. So a
master without `<name>.md`, or with one that has no `title:`, is refused before anything is
encoded, with the fix in the message.

A sidecar is YAML front matter between `---` lines, then a Markdown body (the description):

    ---
    title: Öppna data i kommunen
    episode: 3
    publish_at: 2026-03-01 07:00
    chapters:
      - {start: "00:00:00", title: Intro}
    ---
    Vi pratar om öppna data.
"""

from __future__ import annotations

import difflib
import errno
import math
import os
import re
import stat
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from flows.core.errors import InputError
from flows.core.models import STOCKHOLM, Chapter, Episode

LOSSY_SUFFIXES = (".mp3", ".m4a")  # published as they are (measured, maybe re-encoded)
MASTER_SUFFIXES = (".wav", ".flac", ".aiff", ".aif")  # lossless masters, encoded to MP3
AUDIO_SUFFIXES = LOSSY_SUFFIXES + MASTER_SUFFIXES
TRANSCRIPT_TYPES = {".vtt": "text/vtt", ".srt": "application/x-subrip"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CHAPTERS_SUFFIXES = (".json",)  # Podcasting 2.0 chapters; never read, but never a link either
# An episode's files: a link, FIFO or folder with one of these names is refused, never read.
DROP_SUFFIXES = (*AUDIO_SUFFIXES, ".md", *TRANSCRIPT_TYPES, *CHAPTERS_SUFFIXES, *IMAGE_SUFFIXES)
TEMP_SUFFIXES = (".part", ".tmp", ".crdownload", ".download", ".partial", ".filepart")
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

# C0/C1 control characters except tab and newline (kept in descriptions only).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
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


@dataclass(frozen=True)
class Candidate:
    """An audio file that has settled, ready to be inspected, tagged and published."""

    name: str  # the file name's stem as dropped, e.g. "Avsnitt 3"
    slug: str
    audio: Path
    sidecar: Path | None
    meta: EpisodeMeta
    transcript: Path | None = None
    image: Path | None = None

    @property
    def is_master(self) -> bool:
        """Named as a lossless master (`.wav`/`.flac`/`.aiff`); the content decides later."""
        return self.audio.suffix.lower() in MASTER_SUFFIXES

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file of this episode in the inbox (moved together after the run)."""
        found = [self.audio, self.sidecar, self.transcript, self.image]
        return tuple(path for path in found if path is not None)


@dataclass(frozen=True)
class Refused:
    """Files that cannot become an episode; the reason names the file and the fix."""

    name: str
    files: tuple[Path, ...]
    reason: str
    slug: str = ""


@dataclass(frozen=True)
class ScanResult:
    """What the inbox holds right now."""

    candidates: tuple[Candidate, ...] = ()
    refused: tuple[Refused, ...] = ()
    waiting: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()


# --- pure helpers ----------------------------------------------------------------------------


def slugify(name: str) -> str:
    """A URL- and key-safe slug from a file name: lower-case ASCII, digits and dashes.

    >>> slugify("Avsnitt 3 – Öppna data på Åland")
    'avsnitt-3-oppna-data-pa-aland'
    >>> slugify("../../etc/passwd")
    'etc-passwd'
    """
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:80].strip("-")


def clean_text(text: str, *, multiline: bool) -> tuple[str, bool]:
    """Text without control characters (tab/newline kept when multiline); True if any removed.

    >>> clean_text("A\\x07B", multiline=False)
    ('AB', True)
    """
    cleaned = _CONTROL.sub("", text)
    if not multiline:
        cleaned = re.sub(r"[\t\r\n]+", " ", cleaned)
    else:
        cleaned = cleaned.replace("\r\n", "\n").replace("\r", "\n")
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
    if front.get("publish_at") is not None:
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


def find_number_clashes(candidates: list[Candidate], published: list[Episode]) -> dict[str, str]:
    """Candidates that claim an episode number (in the same season) that someone else has.

    Returns {slug: reason}. A number already published for another slug refuses the
    newcomer; two newcomers claiming the same free number are both refused.
    """
    if not any(cand.meta.episode is not None for cand in candidates):
        return {}  # the common case: nothing claims a number, so the catalog is not walked
    taken = {(ep.season, ep.episode): ep.slug for ep in published if ep.episode is not None}
    reasons: dict[str, str] = {}
    claims: dict[tuple[int | None, int], list[Candidate]] = {}
    for cand in candidates:
        number = cand.meta.episode
        if number is None:
            continue
        key = (cand.meta.season, number)
        label = f"episode {number}" + (f" of season {key[0]}" if key[0] is not None else "")
        owner = taken.get(key)
        if owner is not None and owner != cand.slug:
            reasons[cand.slug] = (
                f"{cand.audio.name}: {label} is already published as {owner!r}. "
                "Give this file another episode number in its sidecar, or use the same "
                f"file name as {owner!r} to replace that episode."
            )
            continue
        claims.setdefault(key, []).append(cand)
    for (season, number), group in claims.items():
        if len(group) > 1:
            names = " and ".join(c.audio.name for c in group)
            label = f"episode {number}" + (f" of season {season}" if season is not None else "")
            for cand in group:
                reasons[cand.slug] = (
                    f"{names} both claim {label}. Give each file its own number in its "
                    "sidecar and drop them again."
                )
    return reasons


def master_title_reason(audio: Path, sidecar: Path | None, kind: str | None = None) -> str:
    """Why a lossless master without a sidecar title is refused, and the fix.

    >>> master_title_reason(Path("Avsnitt 3.aif"), None).split(" (")[0]
    'Avsnitt 3.aif: the AIFF master has no episode title. Add Avsnitt 3.md next to it'
    """
    suffix = audio.suffix.lower()
    kind = kind or {".aif": "aiff"}.get(suffix, suffix.lstrip("."))  # by content when known
    where = (
        f"Add {audio.stem}.md next to it"
        if sidecar is None
        else f"Add a 'title:' line to the front matter of {sidecar.name}"
    )
    return (
        f"{audio.name}: the {kind.upper()} master has no episode title. {where} "
        "(---, then 'title: …', then ---; see episodes/README.md) and drop the files again."
    )


# --- reading the folder -----------------------------------------------------------------------

_FILE_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISSOCK, "a socket"),
)
# O_NOFOLLOW: a link swapped in after the check is not followed; O_NONBLOCK, O_NOCTTY: a
# FIFO or terminal swapped in neither hangs the run nor becomes its terminal (a regular file
# reads the same).
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY


def not_readable(path: Path, folder: Path) -> str | None:
    """Why `path` may not be read from the drop folder `folder` (None: it may be read).

    Only a regular file whose resolved path lies inside the resolved folder is read; the
    folder itself may be a symlink or a mount point. Looks at the entry, never through it.
    Raises FileNotFoundError.
    """
    place = Path(folder).absolute().name
    mode = path.lstat().st_mode
    if not stat.S_ISREG(mode):
        what = next((word for is_kind, word in _FILE_KINDS if is_kind(mode)), "a special file")
        return (
            f"{path.name} is {what}, not a regular file, so it was not read. "
            f"Copy the file itself (not a link to it) into {place}/."
        )
    if not path.resolve().is_relative_to(Path(folder).resolve()):
        return (
            f"{path.name} is outside {place}/ (its path leads through a link or '..'), so it "
            f"was not read. Copy the file itself into {place}/."
        )
    return None


def open_regular(path: Path, folder: Path) -> BinaryIO:
    """Open a file of the drop folder `folder` for reading, never through a link.

    Checked with `not_readable`, opened without following a link, and checked again on the
    open file, so a file swapped for a link, FIFO or folder after the scan is refused too.
    Raises InputError (the reason names the file and the fix) or FileNotFoundError.
    """
    problem = not_readable(path, folder)
    if problem is not None:
        raise InputError(problem)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno != errno.ELOOP:  # ELOOP: the name is a link now
            raise
    else:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return os.fdopen(fd, "rb")
        os.close(fd)
    raise InputError(
        not_readable(path, folder)
        or f"{path.name} changed while it was read. Copy it into {folder.name}/ again."
    )


def read_regular(path: Path, folder: Path) -> bytes:
    """The bytes of a drop-folder file, read as `open_regular` opens it."""
    with open_regular(path, folder) as handle:
        return handle.read()


def is_temporary(path: Path) -> bool:
    """Dotfiles and partial downloads/copies, which must never be touched."""
    name = path.name
    return name.startswith((".", "~")) or name.lower().endswith(TEMP_SUFFIXES)


def _settling(path: Path, now: float, settle_seconds: float) -> bool:
    """True while a file may still be written: changed within the last `settle_seconds`.

    ctime counts too: `cp -p` or rsync keep the original mtime, but the copy is new."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return True
    return now - max(info.st_mtime, info.st_ctime) < settle_seconds


def _temporary_twin(path: Path, names: set[str]) -> bool:
    """`x.mp3` while `x.mp3.part` (or similar) exists: the copy is not finished."""
    return any(path.name + suffix in names for suffix in TEMP_SUFFIXES)


def scan_inbox(
    inbox: Path,
    now: float,
    settle_seconds: float,
    published: list[Episode] | None = None,
) -> ScanResult:
    """Sort the inbox into candidates, refused groups and files still being written.

    `now` is a POSIX timestamp (passed in, never read here); `published` is the catalog's
    episodes, used to refuse an episode number that another slug already has.
    """
    return refuse_clashes(read_inbox(inbox, now, settle_seconds), published or [])


def read_inbox(inbox: Path, now: float, settle_seconds: float) -> ScanResult:
    """The first half of `scan_inbox`: the folder alone, before slug and number clashes.

    Its candidates may still clash; pass the result to `refuse_clashes`. A caller that
    finds nothing here need not read the catalog at all.
    """
    inbox = Path(inbox)
    if not inbox.is_dir():
        raise InputError(
            f"{inbox}: the drop folder does not exist. Create it or pass --episodes DIR "
            "(the folder that holds inbox/ and show.yaml)."
        )
    # Entries named like an episode's files that are not regular files in the inbox: each
    # is refused (with its episode, if it has one) and never read.
    special: dict[Path, str] = {}
    entries: list[Path] = []
    for path in sorted(inbox.iterdir(), key=lambda p: p.name):
        if path.name.startswith((".", "~")):
            continue  # hidden files (e.g. macOS "._x.mp3") are never ours to touch
        try:
            problem = not_readable(path, inbox)
        except FileNotFoundError:
            continue  # removed while we looked
        if problem is None:
            entries.append(path)
        elif path.suffix.lower() in DROP_SUFFIXES:
            special[path] = problem
        # else: a folder of old files, a link to notes: not an episode's, left alone
    names = {p.name for p in entries}
    by_lower = {p.name.lower(): p for p in [*entries, *special]}
    claimed: set[Path] = set()  # in a group already: waiting, refused or a candidate
    waiting: list[Path] = []
    refused: list[Refused] = []
    candidates: list[Candidate] = []

    for path in sorted([*entries, *special], key=lambda p: p.name):
        suffix = path.suffix.lower()
        if path in claimed:
            continue
        if is_temporary(path):
            waiting.append(path)
            continue
        if suffix not in AUDIO_SUFFIXES:
            continue
        sidecar = by_lower.get(path.stem.lower() + ".md")
        group = [path] + ([sidecar] if sidecar else [])
        # A link, FIFO or folder with this episode's name (its audio, sidecar, transcript,
        # chapters or image) refuses the episode: the producer meant it as part of it.
        odd = [p for p in special if p.stem.lower() == path.stem.lower()]
        files = list(dict.fromkeys(p for p in [*group, *odd] if p == path or p not in claimed))
        claimed.update(files)
        regular = [p for p in group if p not in special]
        if _temporary_twin(path, names) or any(_settling(p, now, settle_seconds) for p in regular):
            waiting.extend(regular)
            continue
        name, slug = path.stem, slugify(path.stem)
        if odd:
            reason = special.get(path) or special.get(sidecar) or special[odd[0]]
            refused.append(Refused(name, tuple(files), reason, slug))
            continue
        if path.lstat().st_size == 0:
            refused.append(
                Refused(name, tuple(group), f"{path.name} is empty (0 bytes). Copy it again.", slug)
            )
            continue
        if not slug:
            refused.append(
                Refused(
                    name,
                    tuple(group),
                    f"{path.name}: the file name has no letters or digits to name the episode "
                    "by. Rename it, e.g. avsnitt-3.mp3.",
                )
            )
            continue
        try:
            if sidecar is not None:
                text = read_regular(sidecar, inbox).decode("utf-8")
                meta = parse_sidecar(text, sidecar.name)
            else:
                meta = EpisodeMeta()
        except UnicodeDecodeError:
            refused.append(
                Refused(
                    name,
                    tuple(group),
                    f"{sidecar.name} is not UTF-8 text. Save it as UTF-8 and drop it again.",
                    slug,
                )
            )
            continue
        except InputError as exc:
            refused.append(Refused(name, tuple(group), str(exc), slug))
            continue
        if suffix in MASTER_SUFFIXES and meta.title is None:
            refused.append(Refused(name, tuple(group), master_title_reason(path, sidecar), slug))
            continue
        try:
            transcript = _attached(inbox, by_lower, meta.transcript, "transcript", sidecar)
            if transcript is None:  # <name>.vtt / <name>.srt next to the audio is picked up too
                transcript = next(
                    (
                        by_lower[n]
                        for s in TRANSCRIPT_TYPES
                        if (n := path.stem.lower() + s) in by_lower
                    ),
                    None,
                )
            image = _attached(inbox, by_lower, meta.image, "image", sidecar)
        except InputError as exc:
            refused.append(Refused(name, tuple(group), str(exc), slug))
            continue
        extras = [p for p in (transcript, image) if p is not None]
        claimed.update(extras)
        linked = [p for p in extras if p in special]
        if linked:  # the sidecar names a link (or FIFO, folder …) as its transcript or image
            refused.append(Refused(name, tuple(group + linked), special[linked[0]], slug))
            continue
        if any(_settling(p, now, settle_seconds) for p in extras):
            waiting.extend(group + extras)
            continue
        candidates.append(Candidate(name, slug, path, sidecar, meta, transcript, image))
    # Alone (a stray link named like an image or transcript): refused with its note.
    refused.extend(Refused(p.stem, (p,), why) for p, why in special.items() if p not in claimed)
    return ScanResult(tuple(candidates), tuple(refused), tuple(waiting))


def refuse_clashes(found: ScanResult, published: list[Episode]) -> ScanResult:
    """`found` (from `read_inbox`) with clashing candidates moved to refused: two files with
    one slug, or an episode number that another slug has (`published`: the catalog's)."""
    candidates = list(found.candidates)
    refused = list(found.refused)
    # Two files that would publish under one slug: neither can win.
    by_slug: dict[str, list[Candidate]] = {}
    for cand in candidates:
        by_slug.setdefault(cand.slug, []).append(cand)
    clashes = find_number_clashes(
        [c for c in candidates if len(by_slug[c.slug]) == 1], published or []
    )
    kept: list[Candidate] = []
    for cand in candidates:
        group = by_slug[cand.slug]
        if len(group) > 1:
            names_text = " and ".join(c.audio.name for c in group)
            reason = (
                f"{names_text} would both be published as {cand.slug!r}. Rename one of them "
                "(letters, digits and dashes decide the episode's address) and drop it again."
            )
            refused.append(Refused(cand.name, cand.files, reason, cand.slug))
        elif cand.slug in clashes:
            refused.append(Refused(cand.name, cand.files, clashes[cand.slug], cand.slug))
        else:
            kept.append(cand)
    return ScanResult(tuple(kept), tuple(refused), found.waiting, found.warnings)


def _attached(
    inbox: Path, by_lower: dict[str, Path], name: str | None, key: str, sidecar: Path | None
) -> Path | None:
    """The file a sidecar names, found next to the audio (case-insensitively)."""
    if name is None:
        return None
    found = by_lower.get(name.lower())
    if found is None or found.parent != inbox:
        where = sidecar.name if sidecar is not None else "sidecar"
        raise InputError(
            f"{where}: {key} {name!r} is not in the inbox. Drop that file next to the audio "
            f"or remove the {key} line."
        )
    return found
