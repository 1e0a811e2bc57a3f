"""The producers' drop folder: which files are ready, what their sidecars say.

`read_inbox` (then `refuse_clashes`) only reads the folder (names, sizes, times, sidecar
text); it never moves or changes a file. It sorts what it sees into:

- candidates: an audio file that has settled, with its parsed sidecar (`<name>.md`) and the
  transcript and image the sidecar names. Audio is `<name>.mp3` / `<name>.m4a` (published as
  it is, after a loudness check) or a lossless master `<name>.wav` / `.flac` / `.aiff` /
  `.aif` (encoded to a loudness-normalised MP3 by `flows.podcast.encode`; the master is kept
  privately);
- refused: a group of files that cannot become an episode, with the reason and the fix
  (empty file, broken sidecar, a master without a sidecar title, a clash with another file);
- waiting: files still being copied (temporary suffixes, or changed in the last
  `settle_seconds`), left alone for a later run.

Everything else in the folder (notes, stray images, dotfiles, folders) is left alone, but a
hidden file named like audio (`.avsnitt.mp3`, `...mp3`; not macOS's `._x.mp3`) is refused
with a note once settled, not left unseen for ever. Every reason is a note: the file, what
is wrong, the fix and an example, in Swedish and English (`flows.podcast.report.file_note`).

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

The sidecar (`<name>.md`) is parsed by `flows.podcast.sidecar`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from flows.core.errors import InputError
from flows.core.models import Episode
from flows.core.schema import Problem, Text, note
from flows.podcast.report import SV_KINDS, file_note
from flows.podcast.sidecar import IMAGE_SUFFIXES, TRANSCRIPT_TYPES, EpisodeMeta, parse_sidecar
from flows.podcast.sidecar_values import sidecar_text

LOSSY_SUFFIXES = (".mp3", ".m4a")  # published as they are (measured, maybe re-encoded)
MASTER_SUFFIXES = (".wav", ".flac", ".aiff", ".aif")  # lossless masters, encoded to MP3
AUDIO_SUFFIXES = LOSSY_SUFFIXES + MASTER_SUFFIXES
CHAPTERS_SUFFIXES = (".json",)  # Podcasting 2.0 chapters; never read, but never a link either
# An episode's files: a link, FIFO or folder with one of these names is refused, never read.
DROP_SUFFIXES = (*AUDIO_SUFFIXES, ".md", *TRANSCRIPT_TYPES, *CHAPTERS_SUFFIXES, *IMAGE_SUFFIXES)
TEMP_SUFFIXES = (".part", ".tmp", ".crdownload", ".download", ".partial", ".filepart")
NOT_OURS = ("._", ".moving-")  # hidden files that are never a producer's episode
_HIDDEN: tuple[Text, Text] = (
    ("namnet börjar med en punkt, så filen är dold (i Finder och Utforskaren) och publiceras "
     "aldrig", "the name starts with a dot, so the file is hidden (in Finder and Explorer) "
     "and would never be published"),
    ("Byt namn på filen så att namnet börjar med en bokstav eller siffra, och lägg in den "
     "igen (den ligger i failed/ utan punkten)", "Rename it so that the name starts with a "
     "letter or digit, and drop it in again (it is in failed/ without the dot)"),
)  # fmt: skip
_AGAIN: Text = ("Lägg in den igen", "Drop it again")


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
        sv, en = _number_label(*key)
        owner = taken.get(key)
        if owner is not None and owner != cand.slug:
            what = (f"{sv} är redan publicerat som {owner!r}",
                    f"{en} is already published as {owner!r}")  # fmt: skip
            fix = (f"Ge filen ett annat avsnittsnummer i sin .md-fil, eller samma filnamn som "
                   f"{owner!r} för att ersätta det avsnittet", "Give this file another episode "
                   f"number in its sidecar, or use the same file name as {owner!r} to replace "
                   "that episode")  # fmt: skip
            reasons[cand.slug] = file_note(cand.audio.name, what, fix, f"episode: {number + 1}")
            continue
        claims.setdefault(key, []).append(cand)
    for (season, number), group in claims.items():
        if len(group) > 1:
            names = [c.audio.name for c in group]
            sv, en = _number_label(season, number)
            what = (f"{' och '.join(names)} gör båda anspråk på {sv}",
                    f"{' and '.join(names)} both claim {en}")  # fmt: skip
            fix = ("Ge varje fil ett eget nummer i sin .md-fil och lägg in dem igen",
                   "Give each file its own number in its sidecar and drop them again")  # fmt: skip
            for cand in group:
                reasons[cand.slug] = file_note(cand.audio.name, what, fix, f"episode: {number}")
    return reasons


def _number_label(season: int | None, number: int) -> Text:
    """`avsnitt 4 i säsong 1`, `episode 4 of season 1`."""
    if season is None:
        return f"avsnitt {number}", f"episode {number}"
    return f"avsnitt {number} i säsong {season}", f"episode {number} of season {season}"


def master_title_reason(audio: Path, sidecar: Path | None, kind: str | None = None) -> str:
    """Why a lossless master without a sidecar title is refused, and the fix.

    >>> master_title_reason(Path("Avsnitt 3.aif"), None).splitlines()[1].split(" (")[0]
    'Avsnitt 3.aif: the AIFF master has no episode title. Add Avsnitt 3.md next to it'
    """
    suffix = audio.suffix.lower()
    kind = (kind or {".aif": "aiff"}.get(suffix, suffix.lstrip("."))).upper()  # by content
    where = (
        (f"Lägg {audio.stem}.md bredvid den", f"Add {audio.stem}.md next to it")
        if sidecar is None
        else (f"Skriv en rad 'title:' i inställningarna i {sidecar.name}",
              f"Add a 'title:' line to the front matter of {sidecar.name}")
    )  # fmt: skip
    return file_note(
        audio.name,
        (f"{kind}-mastern har ingen avsnittstitel", f"the {kind} master has no episode title"),
        (
            f"{where[0]} (---, sedan 'title: …', sedan ---; se episodes/README.md) och lägg in "
            "filerna igen",
            f"{where[1]} (---, then 'title: …', then ---; see episodes/README.md) and drop "
            "the files again",
        ),
        "title: Öppna data i kommunen",
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


def file_kind(mode: int) -> str:
    """What a directory entry is, in words, from its `lstat` mode.

    >>> file_kind(stat.S_IFIFO)
    'a FIFO (named pipe)'
    """
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((word for is_kind, word in _FILE_KINDS if is_kind(mode)), "a special file")


def not_readable(path: Path, folder: Path) -> str | None:
    """Why `path` may not be read from the drop folder `folder` (None: it may be read).

    Only a regular file whose resolved path lies inside the resolved folder is read; the
    folder itself may be a symlink or a mount point. Looks at the entry, never through it.
    Raises FileNotFoundError.
    """
    place = Path(folder).absolute().name
    mode = path.lstat().st_mode
    copy = (f"Kopiera in själva filen (inte en länk till den) i {place}/",
            f"Copy the file itself (not a link to it) into {place}/")  # fmt: skip
    if not stat.S_ISREG(mode):
        kind = file_kind(mode)
        what = (f"är {SV_KINDS.get(kind, kind)}, ingen vanlig fil, så den lästes inte",
                f"is {kind}, not a regular file, so it was not read")  # fmt: skip
        return file_note(path.name, what, copy, f"{place}/{path.name}")
    if not path.resolve().is_relative_to(Path(folder).resolve()):
        what = (f"ligger utanför {place}/ (vägen dit går via en länk eller '..'), så den "
                "lästes inte", f"is outside {place}/ (its path leads through a link or "
                "'..'), so it was not read")  # fmt: skip
        return file_note(path.name, what, copy, f"{place}/{path.name}")
    return None


def unreadable(path: Path, exc: OSError, fix: Text | str = _AGAIN) -> InputError:
    """The error for a file that vanished or cannot be read: it fails its episode only.

    >>> str(unreadable(Path("a.mp3"), FileNotFoundError(2, "No such file"))).splitlines()[1]
    'a.mp3: cannot be read (No such file). Drop it again, e.g. `inbox/a.mp3`.'
    """
    cause = exc.strerror or exc
    fix = (fix, fix) if isinstance(fix, str) else fix
    what = (f"går inte att läsa ({cause})", f"cannot be read ({cause})")
    return InputError(file_note(path.name, what, fix, f"inbox/{path.name}"))


def open_regular(path: Path, folder: Path, *, fix: Text | str = _AGAIN) -> BinaryIO:
    """Open a file of the drop folder `folder` for reading, never through a link.

    Checked with `not_readable`, opened without following a link, and checked again on the
    open file, so a file swapped for a link, FIFO or folder after the scan is refused too.
    Raises InputError, naming the file and the fix: also for a file that vanished or cannot
    be opened (`unreadable`, with `fix`), so only its episode fails.
    """
    try:
        problem = not_readable(path, folder)
    except OSError as exc:  # gone since the scan, or a folder on the way cannot be read
        raise unreadable(path, exc, fix) from None
    if problem is not None:
        raise InputError(problem)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno != errno.ELOOP:  # ELOOP: the name is a link now
            raise unreadable(path, exc, fix) from None
    else:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return os.fdopen(fd, "rb")
        os.close(fd)
    changed = ("ändrades medan den lästes", "changed while it was read")
    again = (f"Kopiera in den i {folder.name}/ igen", f"Copy it into {folder.name}/ again")
    raise InputError(
        not_readable(path, folder) or file_note(path.name, changed, again, f"inbox/{path.name}")
    )


def read_chunk(handle: BinaryIO, path: Path, size: int = -1, fix: Text | str = _AGAIN) -> bytes:
    """`handle.read(size)` of a file opened with `open_regular`; a read error (a disk or
    network share failing) is an InputError naming `path` (`unreadable`)."""
    try:
        return handle.read(size)
    except OSError as exc:
        raise unreadable(path, exc, fix) from None


def read_regular(path: Path, folder: Path, *, fix: Text | str = _AGAIN) -> bytes:
    """The bytes of a drop-folder file, read as `open_regular` opens it. Raises InputError
    naming the file and `fix` (`unreadable`) when it vanished or cannot be read."""
    with open_regular(path, folder, fix=fix) as handle:
        return read_chunk(handle, path, fix=fix)


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


def read_inbox(inbox: Path, now: float, settle_seconds: float) -> ScanResult:
    """The folder alone, before slug and number clashes (`refuse_clashes` does those).

    Its candidates may still clash; pass the result to `refuse_clashes`. A caller that
    finds nothing here need not read the catalog at all.
    """
    inbox = Path(inbox)
    if not inbox.is_dir():
        what = ("mappen för inlämning finns inte", "the drop folder does not exist")
        fix = (
            "Skapa den, eller ge --episodes MAPP (mappen med inbox/ och show.yaml)",
            "Create it or pass --episodes DIR (the folder that holds inbox/ and show.yaml)",
        )
        raise InputError(file_note(inbox, what, fix, "--episodes episodes"))  # fmt: skip
    entries, special, hidden = _inbox_entries(inbox)
    sorting = _Sorting(inbox, now, settle_seconds, entries, special)
    for path in hidden:
        sorting.refuse_hidden(path)
    for path in sorted([*entries, *special], key=lambda p: p.name):
        if path in sorting.claimed:
            continue
        if is_temporary(path):
            sorting.waiting.append(path)
        elif path.suffix.lower() in AUDIO_SUFFIXES:
            sorting.sort_audio(path)
    # Alone (a stray link named like an image or transcript): refused with its note.
    sorting.refused.extend(
        Refused(p.stem, (p,), why) for p, why in special.items() if p not in sorting.claimed
    )
    return ScanResult(tuple(sorting.candidates), tuple(sorting.refused), tuple(sorting.waiting))


def is_hidden_audio(name: str) -> bool:
    """A hidden file named like audio that a producer may have dropped (never macOS's `._`
    companions or our journals).

    >>> is_hidden_audio(".avsnitt.mp3"), is_hidden_audio("...mp3"), is_hidden_audio("._a.mp3")
    (True, True, False)
    """
    low = name.lower()
    return low.startswith(".") and not low.startswith(NOT_OURS) and low.endswith(AUDIO_SUFFIXES)


def _inbox_entries(inbox: Path) -> tuple[list[Path], dict[Path, str], list[Path]]:
    """The regular files of the inbox (hidden ones left out); the entries named like an
    episode's files that are not regular files, each with its note: those are refused (with
    their episode, if they have one) and never read; and the hidden regular audio files."""
    special: dict[Path, str] = {}
    entries: list[Path] = []
    hidden: list[Path] = []
    for path in sorted(inbox.iterdir(), key=lambda p: p.name):
        if path.name.startswith((".", "~")):
            # Hidden files (macOS "._x.mp3", our journals) are never ours to touch, but for
            # audio a producer hid by its name: it is refused with a note, not left unseen.
            if is_hidden_audio(path.name) and path.is_file() and not path.is_symlink():
                hidden.append(path)
            continue
        try:
            problem = not_readable(path, inbox)
        except FileNotFoundError:
            continue  # removed while we looked
        if problem is None:
            entries.append(path)
        elif path.suffix.lower() in DROP_SUFFIXES:
            special[path] = problem
        # else: a folder of old files, a link to notes: not an episode's, left alone
    return entries, special, hidden


@dataclass
class _Sorting:
    """`read_inbox` under way: the folder's entries and the groups sorted so far."""

    inbox: Path
    now: float
    settle_seconds: float
    entries: list[Path]
    special: dict[Path, str]  # not a regular file -> why it is refused
    claimed: set[Path] = field(default_factory=set)  # in a group already
    waiting: list[Path] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.names = {p.name for p in self.entries}
        self.by_lower = {p.name.lower(): p for p in [*self.entries, *self.special]}

    def settling(self, path: Path) -> bool:
        return _settling(path, self.now, self.settle_seconds)

    def sort_audio(self, path: Path) -> None:
        """Sort one audio file with its sidecar and attachments: waiting, refused or a
        candidate (or nothing, when it was removed while we looked)."""
        sidecar = self.by_lower.get(path.stem.lower() + ".md")
        twins = [p for p in self.entries if p.name.lower() == f"{path.stem.lower()}.md"]
        group = [path, *dict.fromkeys([*([sidecar] if sidecar else []), *twins])]
        odd, files = self.claim(path, group)
        regular = [p for p in group if p not in self.special]
        if _temporary_twin(path, self.names) or any(self.settling(p) for p in regular):
            self.waiting.extend(regular)
            return
        name, slug = path.stem, slugify(path.stem)
        if odd:
            reason = (
                self.special.get(path)
                or (self.special.get(sidecar) if sidecar else None)
                or self.special[odd[0]]
            )
            self.refused.append(Refused(name, tuple(files), reason, slug))
            return
        try:
            empty = path.lstat().st_size == 0
        except FileNotFoundError:
            return  # removed since we looked: nothing to publish or to move
        try:
            if len(twins) > 1:  # `ep.md` and `EP.md`: which one the producer meant is unknown
                names = [p.name for p in twins]
                raise InputError(file_note(path.name, *_twins(names), f"{path.stem}.md"))
            meta = _checked_meta(self.inbox, path, sidecar, empty=empty, slug=slug)
            transcript, image = self.attachments(path, sidecar, meta)
        except InputError as exc:
            self.refused.append(Refused(name, tuple(group), str(exc), slug))
            return
        self.add_settled(Candidate(name, slug, path, sidecar, meta, transcript, image), group)

    def refuse_hidden(self, path: Path) -> None:
        """A hidden file named like audio (and its hidden sidecar): refused once settled."""
        sidecar = path.with_name(path.name[: -len(path.suffix)] + ".md") if path.suffix else None
        group = [path] + ([sidecar] if sidecar and sidecar.is_file() else [])
        if any(self.settling(p) for p in group):
            self.waiting.extend(group)
            return
        visible = path.name.lstrip(".")
        example = visible if "." in visible else f"avsnitt-12.{visible}"
        reason = file_note(path.name, *_HIDDEN, example)
        self.refused.append(Refused(path.name, tuple(group), reason, slugify(path.stem)))

    def claim(self, path: Path, group: list[Path]) -> tuple[list[Path], list[Path]]:
        """Claim an audio file's group: (the odd entries with its name, all files claimed).

        A link, FIFO or folder with this episode's name (its audio, sidecar, transcript,
        chapters or image) refuses the episode: the producer meant it as part of it."""
        odd = [p for p in self.special if p.stem.lower() == path.stem.lower()]
        files = list(dict.fromkeys(p for p in [*group, *odd] if p == path or p not in self.claimed))
        self.claimed.update(files)
        return odd, files

    def add_settled(self, candidate: Candidate, group: list[Path]) -> None:
        """A candidate, unless its transcript or image is a link or still being copied."""
        extras = [p for p in (candidate.transcript, candidate.image) if p is not None]
        self.claimed.update(extras)
        linked = [p for p in extras if p in self.special]
        if linked:  # the sidecar names a link (or FIFO, folder …) as its transcript or image
            reason = self.special[linked[0]]
            self.refused.append(
                Refused(candidate.name, tuple(group + linked), reason, candidate.slug)
            )
        elif any(self.settling(p) for p in extras):
            self.waiting.extend(group + extras)
        else:
            self.candidates.append(candidate)

    def attachments(
        self, path: Path, sidecar: Path | None, meta: EpisodeMeta
    ) -> tuple[Path | None, Path | None]:
        """The transcript and image of an episode: named by its sidecar, or (a transcript)
        `<name>.vtt` / `<name>.srt` next to the audio. InputError when a named one is missing."""
        transcript = _attached(self.inbox, self.by_lower, meta.transcript, "transcript", sidecar)
        named = [self.by_lower.get(path.stem.lower() + suffix) for suffix in TRANSCRIPT_TYPES]
        transcript = transcript or next((p for p in named if p is not None), None)
        image = _attached(self.inbox, self.by_lower, meta.image, "image", sidecar)
        return transcript, image


def _twins(names: list[str]) -> tuple[Text, Text]:
    """What is wrong with two sidecars of one audio file, and the fix."""
    return ((f"har två .md-filer, {' och '.join(names)}; bara en kan gälla",
             f"has two sidecars, {' and '.join(names)}; only one can count"),
            ("Behåll en av dem och lägg in filerna igen",
             "Keep one of them and drop the files again"))  # fmt: skip


def _checked_meta(
    inbox: Path, path: Path, sidecar: Path | None, *, empty: bool, slug: str
) -> EpisodeMeta:
    """The sidecar of the audio at `path`, read and parsed; InputError (the reason and the
    fix) when the audio is empty or unnameable, the sidecar unreadable, or a master untitled."""
    if empty:
        what = ("är tom (0 byte)", "is empty (0 bytes)")
        fix = ("Kopiera in den igen", "Copy it again")
        raise InputError(file_note(path.name, what, fix, f"inbox/{path.name}"))
    if not slug:
        what = (
            "filnamnet har inga bokstäver eller siffror att döpa avsnittet efter",
            "the file name has no letters or digits to name the episode by",
        )
        fix, example = ("Byt namn på filen", "Rename it"), f"avsnitt-3{path.suffix.lower()}"
        raise InputError(file_note(path.name, what, fix, example))  # fmt: skip
    meta = EpisodeMeta()
    if sidecar is not None:
        text, warning = sidecar_text(read_regular(sidecar, inbox), sidecar.name)
        meta = parse_sidecar(text, sidecar.name)
        if warning:
            meta = replace(meta, warnings=(warning, *meta.warnings))
    if path.suffix.lower() in MASTER_SUFFIXES and meta.title is None:
        raise InputError(master_title_reason(path, sidecar))
    return meta


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
            what = (
                f"{' och '.join(c.audio.name for c in group)} skulle båda publiceras som "
                f"{cand.slug!r}",
                f"{' and '.join(c.audio.name for c in group)} would both be published as "
                f"{cand.slug!r}",
            )
            fix = (
                "Byt namn på en av dem (bokstäver, siffror och bindestreck bestämmer "
                "avsnittets adress) och lägg in den igen",
                "Rename one of them (letters, digits and dashes decide the episode's "
                "address) and drop it again",
            )
            reason = file_note(cand.audio.name, what, fix, f"{cand.slug}-2{cand.audio.suffix}")
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
        what = (f"{name!r} finns inte i inbox/", f"{name!r} is not in the inbox")
        fix = (f"Lägg den filen bredvid ljudet, eller ta bort raden {key}",
               f"Drop that file next to the audio or remove the {key} line")  # fmt: skip
        raise InputError(note(where, [Problem((key,), None, what, fix, f"{key}: {name}")]))
    return found
