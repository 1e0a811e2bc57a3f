"""The drop folder after a run: each episode's files moved to `published/` or `failed/`.

`settle_files` moves the files of every published episode to `published/` and those of every
refused one to `failed/`, with an `<name>.error.txt` saying what is wrong and how to fix it
(Swedish and English). Files of episodes that storage could not take stay in the inbox and
are retried by the next run. Producers' files are never deleted or overwritten: a taken name
gets a number (`name-2.mp3`).

Each group moves through a journal (`inbox/.moving-<slug>.json`, hidden, so the scan never
sees it): written whole first (`flows.core.fsio`), then carried out, then deleted. A run
killed halfway leaves the journal, and the next run completes it (`complete_moves`), so no
sidecar or transcript is left alone in the inbox.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from flows.core.fsio import atomic_write
from flows.core.models import STOCKHOLM
from flows.podcast.episode import Failed, Prepared
from flows.podcast.inbox import slugify

MOVE_JOURNAL = ".moving-{}.json"  # in the inbox: hidden, so the scan never sees it
_JOURNAL_TMP = ".tmp"  # a journal being written: `.moving-<slug>.json.tmp<random>`


def _free_names(folder: Path, files: Sequence[Path], extra_suffix: str | None) -> dict[Path, Path]:
    """Targets in `folder` for a group of files, numbered (`name-2.mp3`) if a name is taken."""
    number = 1
    while True:
        tag = "" if number == 1 else f"-{number}"
        targets = {f: folder / f"{f.stem}{tag}{f.suffix}" for f in files}
        names = list(targets.values())
        if extra_suffix is not None:
            names.append(folder / f"{files[0].stem}{tag}{extra_suffix}")
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


def _do_moves(journal: Path, document: dict[str, Any]) -> None:
    """Carry out a journal's moves (those not done yet), its error file, then delete it.

    Paths are relative to the journal's folder, so a copied drop folder still works.
    """
    here = journal.parent
    for source_name, target_name in document["moves"]:
        source, target = here / source_name, here / target_name
        # lexists: a refused link is moved as itself, even when it points to nothing.
        if not os.path.lexists(source):
            continue  # moved before the crash
        if os.path.lexists(target):  # taken meanwhile (by hand): never overwrite it
            target = _free_names(target.parent, [target], None)[target]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))
    if document.get("error_file"):
        error_file = here / document["error_file"]
        if not error_file.exists():
            error_file.write_text(document["error_text"], encoding="utf-8")
    journal.unlink()


def move_group(files: Sequence[Path], folder: Path, error_text: str | None = None) -> Path:
    """Move a group of files (audio first) into `folder`; never overwrites, never deletes.

    With `error_text`, `<name>.error.txt` is written beside them. Returns the audio's path.
    The moves are first written to a journal (`inbox/.moving-<slug>.json`): a run killed
    halfway leaves it, and the next run completes it (`complete_moves`), so no sidecar or
    transcript is left alone in the inbox.
    """
    folder.mkdir(parents=True, exist_ok=True)
    present = [f for f in files if os.path.lexists(f)]
    targets = _free_names(folder, present, ".error.txt" if error_text is not None else None)
    audio_target = targets.get(files[0], folder / files[0].name)
    journal = _journal_path(files)

    def relative(path: Path) -> str:
        return os.path.relpath(path, journal.parent)

    document = {
        "moves": [[relative(source), relative(target)] for source, target in targets.items()],
        "error_file": None,
        "error_text": error_text,
    }
    if error_text is not None:
        document["error_file"] = relative(folder / f"{audio_target.stem}.error.txt")
    _write_journal(journal, document)
    _do_moves(journal, document)
    return audio_target


def moves_left(inbox: Path) -> bool:
    """Whether a run killed while moving files left a journal (`complete_moves` finishes it)."""
    return any(Path(inbox).glob(MOVE_JOURNAL.format("*")))


def complete_moves(inbox: Path) -> list[str]:
    """Finish the file moves of a run that was killed while moving (its journals).

    Call it holding the publish lock, before scanning. Returns what it did, for the report;
    a journal that cannot be read is left in place and named.
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
        _do_moves(journal, document)
        names = ", ".join(
            Path(os.path.normpath(Path(inbox.name) / target)).as_posix() for _, target in moves
        )
        done.append(f"Finished moving the files of an interrupted run: {names}.")
    return done


def error_text(failed: Failed, now: datetime) -> str:
    """The content of `<name>.error.txt`: what is wrong and how to fix it, Swedish + English."""
    return (
        "Avsnittet kunde inte publiceras. / The episode could not be published.\n"
        "\n"
        f"Fil / File: {failed.name}\n"
        f"Tid / Time: {now.astimezone(STOCKHOLM):%Y-%m-%d %H:%M} (Stockholm)\n"
        "\n"
        "Vad är fel och hur du rättar det / What is wrong and how to fix it:\n"
        f"  {failed.reason}\n"
        "\n"
        "Rätta felet och lägg sedan ljudfilen (och .md-filen) i inbox/ igen, med det\n"
        "ursprungliga filnamnet (utan -2, -3 …). Inget som redan är publicerat har ändrats.\n"
        "Fix the problem, then drop the audio (and its .md sidecar) in inbox/ again under its\n"
        "original name (without -2, -3 …). Nothing already published was changed.\n"
    )


def settle_files(
    show_dir: Path,
    published: Sequence[Prepared],
    failed: Sequence[Failed],
    now: datetime,
) -> dict[str, str]:
    """Move published episodes to published/ and refused ones to failed/ (with error files).

    `retry` failures stay in the inbox. Returns {audio file name: where it went}.
    """
    moved: dict[str, str] = {}
    for prep in published:
        cand = prep.candidate
        target = move_group(cand.files, show_dir / "published")
        moved[cand.audio.name] = str(target.relative_to(show_dir))
    for fail in failed:
        if fail.retry or not fail.files:
            continue
        target = move_group(fail.files, show_dir / "failed", error_text(fail, now))
        moved[fail.name] = str(target.relative_to(show_dir))
    return moved
