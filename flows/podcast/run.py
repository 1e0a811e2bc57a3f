"""The podcast publish run: audio dropped in `episodes/inbox/` becomes tagged episodes in
storage and records in the catalog. One run loop; how its steps execute is passed in.

Plan, then execute:

0. `locked_run`: one publish run at a time per storage (`flows.podcast.lock`). A second run
   stops cleanly and does nothing; a crashed run's stale lock is taken over. The lock is
   dated and aged by the wall clock (`scan_time`), never by the run's `now`, which may be a
   pinned `--now` for a backfill. Holding it, a
   run first finishes the file moves of a run killed while moving (`complete_moves`), and
   after taking over a stale lock it rebuilds the feed even if it publishes nothing. First of
   all the show's own files are checked (`read_show_files`: show.yaml and the cover art; a
   problem there stops the run before any upload), and whether the live feed is what the
   catalog gives now (`feed_staleness`, three requests whatever the catalog's size). An
   inbox with nothing to do and a current feed takes no lock (a no-op run writes nothing);
   a stale feed is rebuilt under the lock, even with an empty inbox.
1. `plan_run`: read show.yaml and the cover, scan the inbox (pure sorting of files into
   candidates, refused and waiting), and load the catalog only if the inbox holds work.
2. `run_episodes`, the one run loop: the candidates in batches of `upload_concurrency`;
   each batch's episodes are prepared (`flows.podcast.episode.try_prepare`: checked against
   `flows.podcast.limits`, encoded, tagged; bad input, or a copy of an episode's audio,
   becomes a `Failed`; so does the second of two identical files of one run) and each
   prepared episode uploaded
   (`upload_episode`; a storage failure leaves its files in the inbox for the next run).
3. `commit_catalog`: ONE catalog update for all good episodes, conditional on the ETag the
   plan read, so a concurrent run is detected instead of overwritten.
4. `finish`: the feed regenerated from the new catalog (an episode the feed leaves out is
   reported failed, with its fix), then `settle_files` moves each episode's files to
   `published/` or `failed/` (`flows.podcast.files`), and the report.

The loop takes `Steps`: how prepare, upload and commit are executed. `publish` passes
`ThreadSteps` (a thread pool) unless told otherwise; the Prefect flow passes `TaskSteps`
(`flows.podcast.flow`: the same functions as tasks, with retries and states). Either way the
side effects come in the same order: lock, moves left over, uploads, catalog, feed, moves.

An episode that an operator removed from the feed (`removed_at` in the catalog) stays
removed when its audio is dropped again: the drop is recorded, and the report says
"removed" with the way back (an operator restores it, see the README).
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from flows.core.clock import system_clock
from flows.core.errors import CatalogError, KraftsamlingError, StorageError
from flows.core.models import STOCKHOLM, Episode
from flows.core.settings import Settings
from flows.core.storage import Storage
from flows.core.storage import public_url as object_url
from flows.podcast.catalog import (
    Catalog,
    heal_backup,
    load_catalog,
    prune_backups,
    save_catalog,
    upsert,
)
from flows.podcast.episode import (
    Failed,
    Prepared,
    RunContext,
    internal_failure,
    storage_failure,
    try_prepare,
    upload_episode,
)
from flows.podcast.feed import resolve_public_url
from flows.podcast.feedpublish import FeedResult, feed_staleness, publish_feed
from flows.podcast.files import complete_moves, moves_left, settle_files
from flows.podcast.inbox import Candidate, ScanResult, read_inbox, refuse_clashes
from flows.podcast.limits import duplicate_note
from flows.podcast.lock import RunLock, acquire_run_lock, release_run_lock
from flows.podcast.report import EpisodeOutcome, PublishReport
from flows.podcast.show import read_show_files

log = logging.getLogger(__name__)

T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True)
class Plan:
    """What one run will work on."""

    context: RunContext
    catalog: Catalog
    scan: ScanResult
    show_dir: Path


# --- 0. one run at a time ----------------------------------------------------------------------


def inbox_has_work(settings: Settings, scan_time: float) -> bool:
    """Whether the inbox holds anything to publish or to refuse (read-only).

    A run with nothing to do takes no lock, so a no-op run writes nothing at all. Its own
    scan uses the same `scan_time`, so it cannot find a file this scan did not (a newer file
    counts as still being copied).
    """
    inbox = Path(settings.episodes_dir) / "inbox"
    scan = read_inbox(inbox, scan_time, settings.settle_seconds)
    if scan.candidates or scan.refused:
        return True
    # A run killed while moving files left a journal: finishing it is work (under the lock).
    return moves_left(inbox)


def locked_run(
    storage: Storage,
    settings: Settings,
    clock: datetime,
    scan_time: float,
    work: Callable[[bool], PublishReport],
    *,
    now: datetime | None = None,
    run_id: str | None = None,
) -> PublishReport:
    """Run `work` holding the publish lock; if another run holds it, do nothing and say so.

    `clock` is the wall clock at the run's start: the lock's `started_at` and the time its
    holder's age is measured against (never the run's `now`, see `publish`).
    First the show's own files are checked (`read_show_files`), and whether the live feed
    is what the catalog gives at `now` (`feed_staleness`: three requests, whatever the
    catalog's size). With nothing in the inbox to work on and a current feed, `work` runs
    without the lock (it only reads). Holding the lock, the file moves of a run killed
    halfway are finished first (`complete_moves`). `work(repair_feed)` is told to rebuild
    the feed even if this run changes nothing when the feed is stale, or when a stale lock
    was taken over: the run before crashed, maybe between its catalog and its feed
    (`publish_feed` uploads nothing when the feed is current).
    """
    show, _, _ = read_show_files(settings)
    has_work = inbox_has_work(settings, scan_time)
    stale = feed_staleness(storage, show, Path(settings.episodes_dir), settings, now or clock)
    if not has_work and not stale:
        return work(False)
    run_id = run_id or uuid.uuid4().hex
    try:
        attempt = acquire_run_lock(storage, clock, settings.lock_stale_seconds, run_id=run_id)
    except StorageError:
        # Our create may have been applied with its answer lost: remove it if it is ours
        # (release only deletes a lock with our run id), so later runs are not held off.
        release_run_lock(storage, RunLock(run_id, clock, "?"))
        raise
    if not attempt.acquired:
        held = attempt.held_note(clock, settings.lock_stale_seconds)
        return PublishReport(storage.describe(), locked_by=held)
    try:
        finished = complete_moves(Path(settings.episodes_dir) / "inbox")
        report = work(attempt.took_over is not None or bool(stale))
    finally:
        release_run_lock(storage, attempt.lock)
    notes = list(finished)
    if stale:
        notes.append(f"The live feed was checked against the catalog: {stale}.")
    if attempt.took_over is not None:
        notes.append(
            f"Took over the publish lock of {attempt.took_over.describe()}: {attempt.why}. "
            "That run stopped without finishing; its file moves were finished and its "
            "episodes published again where needed."
        )
    report.notes = (*report.notes, *notes)
    return report


# --- 1. the plan ------------------------------------------------------------------------------


def plan_run(
    settings: Settings,
    storage: Storage,
    now: datetime,
    scan_time: float,
    workdir: Path,
    *,
    need_catalog: bool = False,
) -> Plan:
    """Read show.yaml, the inbox and the catalog; decide which files to work on.

    `now` is the run's time (catalog dates, default publish time); `scan_time` is the wall
    clock as a POSIX timestamp, for telling whether a file is still being copied. The
    catalog is read only when the inbox holds something to work on (or `need_catalog`):
    the 15-minute run with an empty inbox reads no catalog, however long it is, and its
    plan carries an empty, unread `Catalog` (etag None) that nothing writes.
    """
    show_dir = Path(settings.episodes_dir)
    show, cover, cover_mime = read_show_files(settings)
    found = read_inbox(show_dir / "inbox", scan_time, settings.settle_seconds)
    if found.candidates or found.refused or need_catalog:
        catalog = load_catalog(storage)
    else:
        catalog = Catalog([], None)
    scan = refuse_clashes(found, catalog.episodes)
    context = RunContext(
        settings=settings,
        show=show,
        cover=cover,
        cover_mime=cover_mime,
        base_url=resolve_public_url(show, settings),
        workdir=workdir,
        now=now,
        published={ep.slug: ep for ep in catalog.episodes},
    )
    return Plan(context, catalog, scan, show_dir)


# --- 2. the run loop ----------------------------------------------------------------------------


class Pending(Protocol[T_co]):
    """A step under way: a thread pool's `Future` or a Prefect task's `PrefectFuture`."""

    def result(self) -> T_co: ...


class Steps(Protocol):
    """How `run_episodes` executes its steps: each returns at once with a `Pending`, so the
    loop decides what runs together; `commit` runs to its end."""

    def prepare(self, candidate: Candidate, context: RunContext) -> Pending[Prepared | Failed]:
        """`try_prepare` (bad input comes back as a `Failed`)."""
        ...

    def upload(self, storage: Storage, prepared: Prepared) -> Pending[int]:
        """`upload_episode`; its result raises StorageError when storage failed."""
        ...

    def commit(
        self, storage: Storage, base: Catalog, records: list[Episode], now: datetime
    ) -> CatalogUpdate:
        """`commit_catalog`."""
        ...


class ThreadSteps:
    """The plain run's steps: prepare and upload in a thread pool, the commit in the
    caller's thread."""

    def __init__(self, pool: Executor) -> None:
        self.pool = pool

    def prepare(self, candidate: Candidate, context: RunContext) -> Pending[Prepared | Failed]:
        return self.pool.submit(try_prepare, candidate, context)

    def upload(self, storage: Storage, prepared: Prepared) -> Pending[int]:
        return self.pool.submit(upload_episode, storage, prepared)

    def commit(
        self, storage: Storage, base: Catalog, records: list[Episode], now: datetime
    ) -> CatalogUpdate:
        return commit_catalog(storage, base, records, now)


def run_episodes(
    plan: Plan, storage: Storage, steps: Steps, *, repair_feed: bool = False
) -> PublishReport:
    """The one run loop: prepare and upload the plan's candidates, then `finish`.

    At most `upload_concurrency` episodes at a time: a batch is prepared together, each
    episode's upload starts as soon as its preparation is read, and the next batch starts
    when every upload of this one has ended (ffmpeg jobs are bounded separately, see
    `flows.podcast.episode`). Failures never stop the loop: a `Failed` from preparing, or a
    StorageError from uploading, becomes that episode's line in the report.
    """
    failures = refused_as_failed(plan)
    prepared: list[Prepared] = []
    first_with: dict[str, Prepared] = {}  # audio SHA-256 -> the first episode with it
    uploads = 0
    candidates = list(plan.scan.candidates)
    step = plan.context.settings.upload_concurrency
    for start in range(0, len(candidates), step):
        batch = [steps.prepare(c, plan.context) for c in candidates[start : start + step]]
        started: list[tuple[Prepared, Pending[int]]] = []
        for pending in batch:
            result = pending.result()
            if isinstance(result, Prepared):
                result = first_of_its_audio(result, first_with)
            if isinstance(result, Failed):
                failures.append(result)
            else:
                started.append((result, steps.upload(storage, result)))
        for result, upload in started:
            try:
                uploads += upload.result()
            except StorageError as exc:
                failures.append(storage_failure(result, exc))
            except Exception as exc:  # a bug: this episode waits, the others go on
                failures.append(internal_failure(result.candidate, "upload", exc))
            else:
                prepared.append(result)
    now = plan.context.now
    return finish(
        plan,
        storage,
        prepared,
        failures,
        uploads,
        lambda base, records: steps.commit(storage, base, records, now),
        repair_feed=repair_feed,
    )


def first_of_its_audio(prepared: Prepared, first_with: dict[str, Prepared]) -> Prepared | Failed:
    """`prepared`, or a `Failed` naming the episode of this run that has the same audio.

    Two identical files dropped under two names would become two episodes of one audio; the
    first in the run's order is published, the other refused. (A copy of an episode already
    in the catalog is refused by `try_prepare`.)
    """
    record = prepared.record
    first = first_with.setdefault(record.source_sha256 or record.sha256, prepared)
    if first is prepared:
        return prepared
    cand = prepared.candidate
    reason = duplicate_note(cand.audio.name, first.record, first.candidate.audio.name)
    return Failed(cand.audio.name, cand.slug, cand.files, reason)


# --- 3. the catalog -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogUpdate:
    """The catalog after the run and what happened to each slug."""

    catalog: Catalog
    changes: dict[str, str]  # slug -> new | unchanged | replaced | updated
    guids: dict[str, str]  # slug -> guid

    @property
    def changed(self) -> bool:
        return any(change != "unchanged" for change in self.changes.values())


def apply_records(base: Catalog, records: Iterable[Episode], now: datetime) -> CatalogUpdate:
    """Upsert each record (pure)."""
    catalog, changes = base, dict[str, str]()
    for record in records:
        catalog, changes[record.slug] = upsert(catalog, record, now)
    guids = {slug: catalog.by_slug(slug).guid for slug in changes}  # type: ignore[union-attr]
    return CatalogUpdate(catalog, changes, guids)


def commit_catalog(
    storage: Storage,
    base: Catalog,
    records: Sequence[Episode],
    now: datetime,
    *,
    saved_at: datetime | None = None,
) -> CatalogUpdate:
    """One catalog update for all good episodes, conditional on `base`'s ETag (CatalogError
    when another run changed it). `now` dates the records; backups are named by the wall
    clock (`saved_at`), so a backfill's is never the oldest and pruned at once."""
    update = apply_records(base, records, now)
    if not update.changed:
        heal_backup(storage, base, saved_at)
        return update
    saved = save_catalog(storage, update.catalog, saved_at)
    return CatalogUpdate(saved, update.changes, update.guids)


# --- 4. feed, files, report ------------------------------------------------------------------


def removed_reason(candidate: Candidate, record: Episode) -> str:
    """What a re-drop of an episode that an operator removed from the feed tells the producer."""
    when = record.removed_at.astimezone(STOCKHOLM) if record.removed_at else None
    since = f" on {when:%Y-%m-%d %H:%M}" if when else ""
    return (
        f"{candidate.audio.name}: the episode {record.slug!r} was removed from the feed by an "
        f"operator{since}. This drop was recorded, but the episode stays out of the feed: ask "
        'an operator to restore it (see README): they set its "removed_at" back to null in '
        "podcast/catalog.json."
    )


def refused_as_failed(plan: Plan) -> list[Failed]:
    """The scan's refusals, in the shape of per-episode failures."""
    return [Failed(r.files[0].name, r.slug, r.files, r.reason) for r in plan.scan.refused]


def publish_feed_step(
    plan: Plan, storage: Storage, catalog: Catalog, now: datetime
) -> tuple[FeedResult | None, str]:
    """Regenerate the feed from the new catalog: (what it did, or None; the error)."""
    try:
        result = publish_feed(
            storage, plan.context.show, plan.show_dir, catalog, plan.context.settings, now
        )
    except KraftsamlingError as exc:
        return None, str(exc)
    except Exception as exc:  # a bug: the catalog stands, the next run rebuilds the feed
        log.error("unexpected error at step feed", exc_info=exc)
        return None, f"feed: an internal error ({type(exc).__name__}: {exc}); retried next run"
    return result, ""


def left_out_of_feed(
    good: Sequence[Prepared], update: CatalogUpdate | None, feed: FeedResult | None
) -> tuple[list[Prepared], list[Failed]]:
    """This run's episodes that are in the feed, and the ones it left out as failures: an
    episode in the catalog but not in the feed is not "published" (its fix is in the note)."""
    out = {u.guid: u for u in feed.left_out} if feed and update else {}
    if not out or update is None:
        return list(good), []
    kept, failed = [], []
    for prep in good:
        unfit = out.get(update.guids[prep.candidate.slug])
        if unfit is None:
            kept.append(prep)
            continue
        cand = prep.candidate
        reason = (
            f"{cand.audio.name}: recorded in the catalog as {cand.slug!r}, but left out of the "
            f"feed: {unfit.reason}."
        )
        failed.append(Failed(cand.audio.name, cand.slug, cand.files, reason))
    return kept, failed


def prune_catalog_backups(storage: Storage, keep: int) -> None:
    """Keep the newest `keep` catalog backups; a failure only warns (the catalog is saved,
    and the next run that changes it prunes again)."""
    try:
        deleted = prune_backups(storage, keep)
    except StorageError as exc:
        log.warning("Old catalog backups were not pruned (the next run tries again): %s", exc)
        return
    if deleted:
        log.info("Pruned %d old catalog backup(s), keeping the newest %d.", len(deleted), keep)


def finish(
    plan: Plan,
    storage: Storage,
    prepared: Sequence[Prepared],
    failures: Sequence[Failed],
    uploads: int,
    commit: Any,
    *,
    repair_feed: bool = False,
) -> PublishReport:
    """Catalog, feed, files and report: the common tail of `publish` and the flow.

    `commit(base, records)` performs the catalog update (a plain call or a Prefect task).
    The feed is rebuilt whenever episodes reached the catalog (changed or not), and with
    `repair_feed` (a crashed run's lock was taken over) also when none did; the plan must
    then have read the catalog (`plan_run(need_catalog=True)`).
    """
    context, now = plan.context, plan.context.now
    failures = list(failures)
    report = PublishReport(storage.describe(), uploads=uploads)
    update, good, not_committed = _commit_good(plan, prepared, commit)
    failures += not_committed
    if update is not None and update.changed:
        prune_catalog_backups(storage, context.settings.catalog_backups_keep)
    feed: FeedResult | None = None
    if update is not None:
        # Also when the catalog did not change: a run that crashed between its catalog and
        # its feed leaves a stale feed, and a re-drop must repair it. publish_feed uploads
        # nothing when the live feed is already what the catalog gives.
        feed, report.feed_error = publish_feed_step(plan, storage, update.catalog, now)
    elif repair_feed and not prepared:
        # Nothing was committed (and no commit failed): the catalog as planned is current.
        feed, report.feed_error = publish_feed_step(plan, storage, plan.catalog, now)
    report.feed = feed.summary() if feed else ""
    good, left_out = left_out_of_feed(good, update, feed)
    failures += left_out

    moved, move_notes = settle_files(plan.show_dir, good, failures, now)
    report.outcomes += [
        _published_outcome(prep, update, context.base_url, moved, move_notes) for prep in good
    ]
    report.outcomes += [_failed_outcome(fail, moved, move_notes) for fail in failures]
    report.waiting = tuple(
        sorted({p.name for p in plan.scan.waiting if not p.name.startswith(".")})
    )
    return report


def _commit_good(
    plan: Plan, prepared: Sequence[Prepared], commit: Any
) -> tuple[CatalogUpdate | None, list[Prepared], list[Failed]]:
    """Commit the prepared episodes: (the update, the episodes in it, failures to retry).

    When the commit fails every prepared episode becomes a failure to retry, and none is in.
    """
    good = list(prepared)
    if not good:
        return None, good, []
    try:
        return commit(plan.catalog, [p.record for p in good]), good, []
    except (CatalogError, StorageError) as exc:
        reason = f"the catalog was not updated: {exc}"
        failed = [
            Failed(p.candidate.audio.name, p.candidate.slug, p.candidate.files, reason, True)
            for p in good
        ]
        return None, [], failed
    except Exception as exc:  # a bug: nothing committed, every episode waits in the inbox
        return None, [], [internal_failure(p.candidate, "catalog", exc) for p in good]


def _published_outcome(
    prep: Prepared,
    update: CatalogUpdate | None,
    base_url: str,
    moved: dict[str, str],
    move_notes: dict[str, str],
) -> EpisodeOutcome:
    """What the report says about an episode that reached the catalog."""
    slug = prep.candidate.slug
    change = update.changes[slug] if update else "unchanged"
    record = (update.catalog.by_slug(slug) if update else None) or prep.record
    status, reason = ("published" if change == "new" else change), ""
    if record.removed_at is not None:
        # Recorded, but an operator took it out of the feed and it stays out.
        status, reason = "removed", removed_reason(prep.candidate, record)
        log.warning(reason)
    return EpisodeOutcome(
        name=prep.candidate.audio.name,
        slug=slug,
        status=status,
        title=prep.record.title,
        guid=update.guids[slug] if update else "",
        url=object_url(base_url, record.audio_key),
        reason=reason,
        moved_to=moved.get(prep.candidate.audio.name, ""),
        warnings=tuple(w for w in (*prep.warnings, move_notes.get(prep.candidate.audio.name)) if w),
        loudness=prep.record.loudness,
        audio_note=prep.audio_note,
    )


def _failed_outcome(
    fail: Failed, moved: dict[str, str], move_notes: dict[str, str]
) -> EpisodeOutcome:
    """What the report says about an episode that failed (or is to be retried)."""
    return EpisodeOutcome(
        name=fail.name,
        slug=fail.slug,
        status="retry" if fail.retry else "failed",
        reason=" ".join(r for r in (fail.reason, move_notes.get(fail.name)) if r),
        moved_to=moved.get(fail.name, ""),
    )


# --- the whole run -----------------------------------------------------------------------------


def publish(
    settings: Settings,
    storage: Storage,
    now: datetime,
    scan_time: float | None = None,
    *,
    run_id: str | None = None,
    steps: Steps | None = None,
) -> PublishReport:
    """The whole run, holding the publish lock: plan, then `run_episodes` with `steps`.

    Two times: `now` is the run's time (what is due, catalog dates; a pinned `--now` for a
    backfill), `scan_time` the wall clock read once at the start (the flow passes it). The
    wall clock tells files still being copied and dates and ages the publish lock, so a
    backfill with a past or future `now` neither looks stale to the next scheduled run nor
    takes over a live lock. A caller that passes no `scan_time` (tests that play out hours
    through `now` alone) has its lock dated by `now`, and its scan by the system clock.

    Without `steps`, prepare and upload run in a thread pool (`ThreadSteps`) of twice
    `upload_concurrency` threads, so one batch's uploads overlap its preparation.
    Does not raise for failed episodes: check `report.failed` (the flow turns them into
    PublishIncompleteError). When another run holds the lock, nothing is done and
    `report.locked_by` says who.
    """
    scanned = system_clock().timestamp() if scan_time is None else scan_time
    clock = now if scan_time is None else datetime.fromtimestamp(scan_time, UTC)

    def work(repair_feed: bool) -> PublishReport:
        with tempfile.TemporaryDirectory(prefix="kraftsamling-publish-") as folder:
            plan = plan_run(settings, storage, now, scanned, Path(folder), need_catalog=repair_feed)
            if steps is not None:
                return run_episodes(plan, storage, steps, repair_feed=repair_feed)
            # Leaving the pool waits for its threads: none is left writing in `folder`.
            with ThreadPoolExecutor(
                max_workers=2 * settings.upload_concurrency, thread_name_prefix="publish"
            ) as pool:
                return run_episodes(plan, storage, ThreadSteps(pool), repair_feed=repair_feed)

    return locked_run(storage, settings, clock, scanned, work, now=now, run_id=run_id)
