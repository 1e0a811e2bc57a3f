"""The drop folder after a run: each episode's files moved to `published/` or `failed/`.

`settle_files` moves the files of every published episode to `published/` and those of every
refused one to `failed/`, with an `<name>.error.txt` saying what is wrong and how to fix it
(Swedish and English). A published episode with warnings (loudness off target, a low bitrate,
a title changed to plain text …) gets `<name>.notes.txt` beside it, with each warning and its
fix: the producer reads it where the file went, not only in the run's console. Files of
episodes that storage could not take stay in the inbox and are retried by the next run.
Producers' files are never deleted or overwritten: a taken name gets a number (`name-2.mp3`).

Each group moves through a journal (`inbox/.moving-<slug>.json`, hidden, so the scan never
sees it): written whole first (`flows.core.fsio`), then carried out, then deleted. A run
killed halfway leaves the journal, and the next run completes it (`complete_moves`), so no
sidecar or transcript is left alone in the inbox. A move that fails (a folder that cannot be
written) keeps its journal and is named in the report with the fix; it never stops the run,
and the next run tries again.

Only regular files are copied when the drop folder is on another file system (a mount point).
A refused link, FIFO, device or folder is moved with a rename only: across file systems it
stays where it is, still refused and never read, and the note says so (a person removes it).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from flows.core.fsio import atomic_write
from flows.core.models import STOCKHOLM
from flows.podcast.episode import Failed, Prepared
from flows.podcast.inbox import file_kind, slugify
from flows.podcast.report import NOTES_SUFFIX, SV_KINDS, file_note

MOVE_JOURNAL = ".moving-{}.json"  # in the inbox: hidden, so the scan never sees it
_JOURNAL_TMP = ".tmp"  # a journal being written: `.moving-<slug>.json.tmp<random>`


def _visible(path: Path) -> tuple[str, str]:
    """(stem, suffix) of a file as it is put in published/ or failed/: a hidden name loses
    its leading dots there, so the producer sees the file and its note.

    >>> _visible(Path(".avsnitt.mp3")), _visible(Path("...mp3")), _visible(Path("a.b.mp3"))
    (('avsnitt', '.mp3'), ('utan-namn', '.mp3'), ('a.b', '.mp3'))
    """
    if not path.name.startswith("."):
        return path.stem, path.suffix
    name = path.name.lstrip(".")
    stem, dot, suffix = name.rpartition(".")
    return (stem, f".{suffix}") if stem else ("utan-namn", f"{dot}{suffix}" if dot else f".{name}")


def _free_names(folder: Path, files: Sequence[Path], extra_suffix: str | None) -> dict[Path, Path]:
    """Targets in `folder` for a group of files, numbered (`name-2.mp3`) if a name is taken."""
    number = 1
    while True:
        tag = "" if number == 1 else f"-{number}"
        targets = {f: folder / f"{_visible(f)[0]}{tag}{_visible(f)[1]}" for f in files}
        names = list(targets.values())
        if extra_suffix is not None:
            names.append(folder / f"{_visible(files[0])[0]}{tag}{extra_suffix}")
        if not any(os.path.lexists(path) for path in names):
            return targets
        number += 1


def _journal_path(files: Sequence[Path]) -> Path:
    """`inbox/.moving-<slug>.json` for a group (named after its audio file)."""
    audio = files[0]
    return audio.parent / MOVE_JOURNAL.format(slugify(audio.stem) or "episode")


def _write_journal(path: Path, document: dict[str, Any]) -> None:
    """Write the journal whole or not at all.

    Its temporary file is `.moving-<slug>.json.tmp…`, which `complete_moves` clears away.
    """
    data = json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")
    atomic_write(path, data, prefix=path.name + _JOURNAL_TMP)


def _at(here: Path, name: str) -> Path:
    """A journal's path `name` (relative to `here`, the inbox as the run named it), resolved
    the way `os.path.relpath` wrote it: `..` by name, never through a link.

    The kernel would take `inbox/..` to the parent of the link's target when the inbox is a
    symlink (allowed); by name it is the episodes folder, where published/ and failed/ are.
    """
    return Path(os.path.normpath(here / name))


class MoveFailed(Exception):
    """A journal's move that could not be done; its journal stays for the next run."""

    def __init__(self, journal: Path, what: str, exc: OSError, *, kept: bool = True) -> None:
        self.journal, self.what, self.exc, self.kept = journal, what, exc, kept
        super().__init__(self.note())

    def note(self) -> str:
        """`.moving-x.json in inbox/: could not move …`: the file, the cause and the fix."""
        inbox = self.journal.parent
        cause = self.exc.strerror or str(self.exc)
        if self.exc.filename:
            cause = f"{cause}: {_shown(inbox, Path(self.exc.filename))}"
        if not self.kept:  # nothing was moved yet, and no journal was left
            return (
                f"Could not {self.what} ({cause}); the files stay in {inbox.name}/. Fix that "
                "and the next run moves them."
            )
        return (
            f"{self.journal.name} in {inbox.name}/: could not {self.what} ({cause}); the files "
            f"it names stay where they are. Fix that and the next run finishes the moves, or "
            f"move the files it names by hand, then delete {inbox.name}/{self.journal.name}."
        )


def _shown(inbox: Path, path: Path) -> str:
    """A path as a person finds it: relative to the episodes folder (`failed/x.mp3`)."""
    return Path(os.path.relpath(os.path.normpath(path), inbox.parent)).as_posix()


def _left_note(here: Path, source: Path, target: Path, mode: int, exc: OSError) -> str:
    """Why a refused link, FIFO, device or folder stayed in the inbox, and the fix."""
    cause = exc.strerror or str(exc)
    if exc.errno == errno.EXDEV:
        cause += f": {here.name}/ is on another file system than {target.parent.name}/"
    kind, into = file_kind(mode), target.parent.name
    sv_kind = SV_KINDS.get(kind, kind)
    return file_note(
        source.name,
        (
            f"lämnades kvar i {here.name}/: den är {sv_kind} (ingen vanlig fil) och kunde inte "
            f"flyttas till {into}/ ({cause}); den läses aldrig",
            f"was left in {here.name}/: it is {kind}, not a regular file, and could not be "
            f"moved to {into}/ ({cause}). It stays refused and is never read",
        ),
        (f"Ta bort den ur {here.name}/ för hand", f"Remove it from {here.name}/ by hand"),
    )


def _move(source: Path, target: Path, mode: int) -> None:
    """Move one entry; only a regular file is ever copied (across file systems).

    A link, FIFO, device or folder is renamed or left where it is (OSError): copying would
    open a FIFO or device, or walk a folder's links.
    """
    if stat.S_ISREG(mode):
        shutil.move(str(source), str(target))
    else:
        os.rename(source, target)


def _do_moves(journal: Path, document: dict[str, Any]) -> list[str]:
    """Carry out a journal's moves (those not done yet), its error file, then delete it.

    Paths are relative to the journal's folder, so a copied drop folder still works; `..` in
    them is taken by name (`_at`), as `os.path.relpath` wrote it. Returns notes on the
    entries left in the inbox (not regular files, not movable by a rename). Raises
    MoveFailed, leaving the journal for the next run, when a move or write fails.
    """
    here = journal.parent
    left: list[str] = []
    moved = False
    for source_name, target_name in document["moves"]:
        source, target = _at(here, source_name), _at(here, target_name)
        # lstat: a refused link is moved as itself, even when it points to nothing.
        try:
            mode = source.lstat().st_mode
        except FileNotFoundError:
            continue  # moved before the crash
        if os.path.lexists(target):  # taken meanwhile (by hand): never overwrite it
            target = _free_names(target.parent, [target], None)[target]
        what = f"move {_shown(here, source)} to {_shown(here, target)}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MoveFailed(journal, what, exc) from exc
        try:
            _move(source, target, mode)
        except OSError as exc:
            if stat.S_ISREG(mode):
                raise MoveFailed(journal, what, exc) from exc
            left.append(_left_note(here, source, target, mode, exc))
        else:
            moved = True
    # Nothing moved and an error file of that name is there already: an entry left in the
    # inbox before (refused again each run), whose note stands; no new error file each run.
    known = document.get("error_seen")
    repeat = left and not moved and known and os.path.lexists(_at(here, known))
    if document.get("error_file") and not repeat:
        error_file = _at(here, document["error_file"])
        text = "\n".join([document["error_text"], *left]) + ("\n" if left else "")
        try:
            if not error_file.exists():
                error_file.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise MoveFailed(journal, f"write {_shown(here, error_file)}", exc) from exc
    try:
        journal.unlink()
    except OSError as exc:
        raise MoveFailed(journal, f"delete {_shown(here, journal)}", exc) from exc
    return left


def move_group(
    files: Sequence[Path],
    folder: Path,
    error_text: str | None = None,
    *,
    suffix: str = ".error.txt",
) -> tuple[Path, list[str]]:
    """Move a group of files (audio first) into `folder`; never overwrites, never deletes.

    With `error_text`, `<name><suffix>` is written beside them (`<name>.error.txt`, or
    `<name>.notes.txt` for a published episode's warnings). Returns the audio's path
    and notes on entries left in the inbox (a link, FIFO or folder that a rename cannot move
    across file systems; the notes are in the error file too). The moves are first written
    to a journal (`inbox/.moving-<slug>.json`): a run killed halfway leaves it, and the next
    run completes it (`complete_moves`), so no sidecar or transcript is left alone in the
    inbox. Raises MoveFailed (the journal stays for the next run) when a move fails.
    """
    journal = _journal_path(files)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        what = f"move {files[0].name} to {folder.name}/"
        raise MoveFailed(journal, what, exc, kept=False) from exc
    present = [f for f in files if os.path.lexists(f)]
    targets = _free_names(folder, present, suffix if error_text is not None else None)
    audio_target = targets.get(files[0], folder / files[0].name)

    def relative(path: Path) -> str:
        return os.path.relpath(path, journal.parent)

    document = {
        "moves": [[relative(source), relative(target)] for source, target in targets.items()],
        "error_file": None,
        "error_text": error_text,
    }
    if error_text is not None:
        document["error_file"] = relative(folder / f"{audio_target.stem}{suffix}")
        document["error_seen"] = relative(folder / f"{files[0].stem}{suffix}")
    try:
        _write_journal(journal, document)
    except OSError as exc:
        what = f"write {journal.name} in {journal.parent.name}/"
        raise MoveFailed(journal, what, exc, kept=False) from exc
    return audio_target, _do_moves(journal, document)


def moves_left(inbox: Path) -> bool:
    """Whether a run killed while moving files left a journal (`complete_moves` finishes it)."""
    return any(Path(inbox).glob(MOVE_JOURNAL.format("*")))


def complete_moves(inbox: Path) -> list[str]:
    """Finish the file moves of a run that was killed while moving (its journals).

    Call it holding the publish lock, before scanning. Returns what it did, for the report;
    a journal that cannot be read, or whose moves fail, is left in place and named with the
    fix (the next run tries it again): it never stops the run.
    """
    done: list[str] = []
    for leftover in sorted(Path(inbox).glob(MOVE_JOURNAL.format("*") + _JOURNAL_TMP + "*")):
        leftover.unlink()  # killed while writing the journal: nothing was moved yet
    for journal in sorted(Path(inbox).glob(MOVE_JOURNAL.format("*"))):
        try:
            document = json.loads(journal.read_text(encoding="utf-8"))
            moves = [(str(a), str(b)) for a, b in document["moves"]]
        except (OSError, ValueError, KeyError, TypeError):
            done.append(
                f"{journal} is not a readable move journal; left in place. Move the files "
                "it names by hand, then delete it."
            )
            continue
        try:
            left = _do_moves(journal, document)
        except MoveFailed as exc:
            done.append(exc.note())
            continue
        names = ", ".join(
            Path(os.path.normpath(Path(inbox.name) / target)).as_posix() for _, target in moves
        )
        done.append(f"Finished moving the files of an interrupted run: {names}.")
        done.extend(left)
    return done


def error_text(failed: Failed, now: datetime) -> str:
    """The content of `<name>.error.txt`: what is wrong and how to fix it, Swedish + English."""
    reason = failed.reason.replace("\n", "\n  ")  # every line of a note indented alike
    return (
        "Avsnittet kunde inte publiceras. / The episode could not be published.\n"
        "\n"
        f"Fil / File: {failed.name}\n"
        f"Tid / Time: {now.astimezone(STOCKHOLM):%Y-%m-%d %H:%M} (Stockholm)\n"
        "\n"
        "Vad är fel och hur du rättar det / What is wrong and how to fix it:\n"
        f"  {reason}\n"
        "\n"
        "Rätta felet och lägg sedan ljudfilen (och .md-filen) i inbox/ igen, med det\n"
        "ursprungliga filnamnet (utan -2, -3 …). Inget som redan är publicerat har ändrats.\n"
        "Fix the problem, then drop the audio (and its .md sidecar) in inbox/ again under its\n"
        "original name (without -2, -3 …). Nothing already published was changed.\n"
    )


def notes_text(prepared: Prepared) -> str:
    """The content of `published/<name>.notes.txt`: the episode was published, and each of
    its warnings with the fix (Swedish and English); "" without warnings. No time in it: the
    same files give the same notes, also when a crashed run's moves are finished later."""
    if not prepared.warnings:
        return ""
    notes = "\n".join("  " + w.replace("\n", "\n  ") for w in prepared.warnings)
    return (
        "Avsnittet publicerades, men läs anmärkningarna. / The episode was published; read "
        "the notes.\n"
        "\n"
        f"Fil / File: {prepared.candidate.audio.name}\n"
        "\n"
        "Anmärkningar och vad du kan göra / Notes and what you can do:\n"
        f"{notes}\n"
        "\n"
        "Avsnittet ligger redan i flödet. Vill du rätta något: lägg in den rättade filen i\n"
        "inbox/ med samma filnamn, så ersätts ljudet och avsnittet behåller sin plats.\n"
        "The episode is already in the feed. To fix something, drop the corrected file in\n"
        "inbox/ under the same name: the audio is replaced and the episode keeps its place.\n"
    )


def settle_files(
    show_dir: Path,
    published: Sequence[Prepared],
    failed: Sequence[Failed],
    now: datetime,
) -> tuple[dict[str, str], dict[str, str]]:
    """Move published episodes to published/ (with a notes file when they have warnings)
    and refused ones to failed/ (with error files).

    `retry` failures stay in the inbox. Returns ({audio file name: where it went}, {audio
    file name: a note}): the note names what stayed in the inbox and why, with the fix. A
    group whose move fails keeps its journal (the next run finishes it) and gets a note; the
    other groups are moved all the same.
    """
    moved: dict[str, str] = {}
    notes: dict[str, str] = {}
    groups: list[tuple[str, tuple[Path, ...], str, str | None]]
    groups = [
        (p.candidate.audio.name, p.candidate.files, "published", notes_text(p) or None)
        for p in published
    ]
    groups += [
        (f.name, f.files, "failed", error_text(f, now)) for f in failed if not f.retry and f.files
    ]
    for name, files, folder, text in groups:
        suffix = NOTES_SUFFIX if folder == "published" else ".error.txt"
        try:
            target, left = move_group(files, show_dir / folder, text, suffix=suffix)
        except MoveFailed as exc:
            notes[name] = exc.note()
            continue
        if left:
            notes[name] = " ".join(left)
        if not (left and os.path.lexists(files[0])):  # else the audio itself stayed behind
            moved[name] = str(target.relative_to(show_dir))
    return moved, notes
