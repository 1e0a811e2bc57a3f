"""What a publish run says: notes on producers' files, and one `EpisodeOutcome` per episode
gathered in a `PublishReport`.

`file_note` words every note a producer gets about a file (audio, drop folder, loudness): what
is wrong, the fix and a short example, the Swedish line first and the English below, by the
same formatter as the sidecar's own messages (`flows.core.schema.note`).

`PublishReport.summary()` is what the CLI prints; the Prefect flow makes its artifact table
from the outcomes and uses the summary's first line (the totals, warnings counted) as its
description. A published episode with warnings also gets `published/<name>.notes.txt` beside
its audio (`flows.podcast.files`). Pure data: nothing here reads or writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from flows.core.schema import Problem, Text, note

NOTES_SUFFIX = ".notes.txt"  # beside a published episode's audio, when it has warnings
# `flows.podcast.inbox.file_kind`'s words in Swedish, for the notes on special files.
SV_KINDS = {
    "a symbolic link": "en symbolisk länk", "a directory": "en mapp",
    "a FIFO (named pipe)": "en FIFO (namngiven pipe)", "a device": "en enhetsfil",
    "a socket": "en socket", "a special file": "en specialfil", "a regular file": "en vanlig fil",
}  # fmt: skip
_INDENT = "\n            "  # a note's further lines, aligned under its first in the summary


def _aligned(text: str) -> str:
    """A note's further lines aligned under its first in the summary."""
    return text.replace("\n", _INDENT)


def file_note(source: object, what: Text, fix: Text, example: str = "", detail: str = "") -> str:
    """A note on one file a producer can act on: what is wrong, the fix and an example,
    Swedish first and English below; `detail` (ffmpeg's own lines) follows once, after both.

    >>> print(file_note("a.mp3", ("är tom", "is empty"), ("Kopiera den", "Copy it"), "a.mp3"))
    a.mp3: är tom. Kopiera den, t.ex. `a.mp3`.
    a.mp3: is empty. Copy it, e.g. `a.mp3`.
    """
    text = note(str(source), [Problem((), None, what, fix, example)])
    return f"{text}\n{detail}" if detail else text


@dataclass(frozen=True)
class EpisodeOutcome:
    """One line of the report."""

    name: str
    slug: str
    status: str  # published | replaced | updated | unchanged | removed | failed | retry
    title: str = ""
    guid: str = ""
    url: str = ""
    reason: str = ""
    moved_to: str = ""
    warnings: tuple[str, ...] = ()
    loudness: dict[str, float] | None = None  # the published audio's figures
    audio_note: str = ""  # e.g. "WAV master -> MP3 128 kbps (linear, 1 encode)"

    @property
    def loudness_text(self) -> str:
        """`-16.2 LUFS, -1.6 dBTP, LRA 3.1 LU`, or "" when not measured."""
        if not self.loudness:
            return ""
        figures = self.loudness
        return (
            f"{figures['integrated_lufs']:.1f} LUFS, {figures['true_peak_dbtp']:.1f} dBTP, "
            f"LRA {figures.get('lra_lu', 0.0):.1f} LU"
        )

    @property
    def notes_file(self) -> str:
        """`published/<name>.notes.txt` beside the published audio when there are warnings
        (`flows.podcast.files` writes it), else ""."""
        if not (self.warnings and self.moved_to) or self.status in ("failed", "retry"):
            return ""
        moved = PurePosixPath(self.moved_to)
        return str(moved.with_name(moved.stem + NOTES_SUFFIX))


@dataclass
class PublishReport:
    """What a run did; `summary()` is what the CLI prints."""

    storage: str
    outcomes: list[EpisodeOutcome] = field(default_factory=list)
    waiting: tuple[str, ...] = ()
    uploads: int = 0  # objects actually written to storage
    feed: str = ""
    feed_error: str = ""
    locked_by: str = ""  # another run held the lock: this run did nothing
    notes: tuple[str, ...] = ()  # run-level remarks (e.g. a stale lock taken over)

    @property
    def failed(self) -> list[EpisodeOutcome]:
        return [o for o in self.outcomes if o.status in ("failed", "retry")]

    def count(self, *statuses: str) -> int:
        return sum(1 for o in self.outcomes if o.status in statuses)

    @property
    def warned(self) -> list[EpisodeOutcome]:
        """Episodes published (or updated) with warnings: each has a notes file."""
        return [o for o in self.outcomes if o.warnings and o.status not in ("failed", "retry")]

    def summary(self) -> str:
        """One line per episode, then totals."""
        if self.locked_by:
            return (
                f"Another run is publishing to {self.storage} since {self.locked_by}; "
                "this run did nothing. Run again when it has finished."
            )
        lines = []
        for o in self.outcomes:
            if o.status in ("failed", "retry"):
                where = f" -> {o.moved_to}" if o.moved_to else " (left in the inbox)"
                lines.append(f"  {o.status:<9} {o.name}{where}: {_aligned(o.reason)}")
                continue
            lines.append(f"  {o.status:<9} {o.name}: {o.title!r} {o.url}")
            if o.status == "removed":
                lines.append(f"            {o.reason}")
            if o.loudness:
                how = f" ({o.audio_note})" if o.audio_note else ""
                lines.append(f"            loudness: {o.loudness_text}{how}")
            lines.extend(f"            warning: {_aligned(w)}" for w in o.warnings)
            if o.notes_file:
                lines.append(f"            notes for the producer: {o.notes_file}")
        for name in self.waiting:
            lines.append(
                f"  waiting   {name}: still being copied, left for the next run / kopieras "
                "fortfarande, tas vid nästa körning"
            )
        totals = (
            f"Episodes to {self.storage}: {self.count('published')} published, "
            f"{self.count('replaced', 'updated')} updated, {self.count('unchanged')} unchanged, "
            + (f"{self.count('removed')} removed from the feed, " if self.count("removed") else "")
            + f"{len(self.failed)} failed, {len(self.waiting)} waiting; "
            + (f"{len(self.warned)} with warnings (see their notes); " if self.warned else "")
            + f"{self.uploads} object(s) uploaded."
        )
        if not lines:
            totals = f"Nothing new in the inbox. {totals}"
        tail = list(self.notes)
        if self.feed:
            tail.append(self.feed)
        if self.feed_error:
            tail.append(f"Feed not updated: {self.feed_error}")
        return "\n".join([totals, *lines, *tail])
