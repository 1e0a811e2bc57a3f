"""What a publish run did: one `EpisodeOutcome` per episode, gathered in a `PublishReport`.

`PublishReport.summary()` is what the CLI prints; the Prefect flow makes its artifact table
from the outcomes. Pure data: nothing here reads or writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
                reason = o.reason.replace("\n", "\n            ")  # a note's lines aligned
                lines.append(f"  {o.status:<9} {o.name}{where}: {reason}")
                continue
            lines.append(f"  {o.status:<9} {o.name}: {o.title!r} {o.url}")
            if o.status == "removed":
                lines.append(f"            {o.reason}")
            if o.loudness:
                how = f" ({o.audio_note})" if o.audio_note else ""
                lines.append(f"            loudness: {o.loudness_text}{how}")
            lines.extend(f"            warning: {w}" for w in o.warnings)
        for name in self.waiting:
            lines.append(f"  waiting   {name}: still being copied, left for the next run")
        totals = (
            f"Episodes to {self.storage}: {self.count('published')} published, "
            f"{self.count('replaced', 'updated')} updated, {self.count('unchanged')} unchanged, "
            + (f"{self.count('removed')} removed from the feed, " if self.count("removed") else "")
            + f"{len(self.failed)} failed, {len(self.waiting)} waiting; "
            f"{self.uploads} object(s) uploaded."
        )
        if not lines:
            totals = f"Nothing new in the inbox. {totals}"
        tail = list(self.notes)
        if self.feed:
            tail.append(self.feed)
        if self.feed_error:
            tail.append(f"Feed not updated: {self.feed_error}")
        return "\n".join([totals, *lines, *tail])
