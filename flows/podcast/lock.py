"""One publish run at a time per storage: the lock object `podcast/.lock`.

Created with If-None-Match, so of two runs starting together exactly one wins; a second run
stops cleanly and does nothing. A lock older than `lock_stale_seconds` (a crashed run) is
taken over with If-Match on its ETag, so two runs cannot both take over. The lock is private
and holds which run took it, when and where (`RunLock`). The catalog's own If-Match still
guards its writes; the lock keeps two runs from encoding, uploading and moving the same files.

The lock's time is the wall clock (`flows.podcast.run` passes its wall-clock reading), never a
run's pinned `--now`: a backfill dated last year must not write a lock that looks hours old
to the next scheduled run, nor a run dated next month take over a live lock. A lock dated more
than `lock_stale_seconds` ahead of the clock is stale too (it would otherwise hold off every
run until that day).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime

from flows.core.errors import ConcurrentWriteError, StorageError
from flows.core.models import STOCKHOLM
from flows.core.storage import CACHE_PRIVATE, Storage

log = logging.getLogger(__name__)

LOCK_KEY = "podcast/.lock"


@dataclass(frozen=True)
class RunLock:
    """The content of `podcast/.lock`: which run holds it, since when, from where."""

    run_id: str
    started_at: datetime
    host: str
    etag: str = ""  # of the lock object as written or read

    def describe(self) -> str:
        """`2026-03-01 09:00 (run 1a2b…, host web-1)`, for messages."""
        return (
            f"{self.started_at.astimezone(STOCKHOLM):%Y-%m-%d %H:%M:%S} Stockholm time "
            f"(run id {self.run_id}, host {self.host})"
        )

    def to_bytes(self) -> bytes:
        body = {"run_id": self.run_id, "started_at": self.started_at.isoformat(), "host": self.host}
        return (json.dumps(body, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, etag: str) -> RunLock | None:
        """The lock as read back; None when it is not one of ours (unreadable)."""
        try:
            body = json.loads(data.decode("utf-8"))
            started = datetime.fromisoformat(body["started_at"])
            if started.tzinfo is None:
                return None
            return cls(str(body["run_id"]), started, str(body.get("host", "?")), etag)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class LockAttempt:
    """The outcome of `acquire_run_lock`: ours, or held by another run."""

    acquired: bool
    lock: RunLock  # ours when acquired, else the holder's
    took_over: RunLock | None = None  # a stale lock we replaced


def _write_lock(storage: Storage, lock: RunLock, *, if_match: str | None) -> RunLock:
    info = storage.put_bytes(
        LOCK_KEY,
        lock.to_bytes(),
        content_type="application/json",
        cache_control=CACHE_PRIVATE,
        public=False,
        if_match=if_match,
        if_none_match=if_match is None,
    )
    return RunLock(lock.run_id, lock.started_at, lock.host, info.etag)


def acquire_run_lock(
    storage: Storage,
    now: datetime,
    stale_seconds: float,
    *,
    run_id: str | None = None,
    host: str | None = None,
) -> LockAttempt:
    """Take the publish lock `podcast/.lock`, or find who holds it.

    `now` is the wall clock (not a run's pinned time): it becomes our `started_at`, and
    ages the lock we find. Created with If-None-Match, so of two runs starting together
    exactly one wins. A lock whose `started_at` is more than `stale_seconds` from `now`
    (either way), or one that is not readable, is left by a crashed run and is taken over
    with If-Match on its ETag, so two runs cannot both take over. Raises StorageError when
    storage cannot be reached.
    """
    ours = RunLock(
        run_id or uuid.uuid4().hex,
        now,
        host or f"{socket.gethostname()} pid {os.getpid()}",
    )
    for _ in range(3):  # the holder may release between our write and our read
        try:
            return LockAttempt(True, _write_lock(storage, ours, if_match=None))
        except ConcurrentWriteError:
            pass
        found = storage.get_bytes(LOCK_KEY)
        if found is None:
            continue
        data, etag = found
        holder = RunLock.from_bytes(data, etag)
        if holder is not None and holder.run_id == ours.run_id:
            # Our own create, applied but its answer lost: the client's retry got 412.
            return LockAttempt(True, holder)
        age = (now - holder.started_at).total_seconds() if holder else None
        if holder is not None and age is not None and abs(age) <= stale_seconds:
            return LockAttempt(False, holder)
        try:
            taken = _write_lock(storage, ours, if_match=etag)
        except ConcurrentWriteError:
            continue  # another run took it over (or released it) first: look again
        stale = holder or RunLock("unreadable", now, "?", etag)
        log.warning("Took over the stale publish lock of %s", stale.describe())
        return LockAttempt(True, taken, took_over=stale)
    found = storage.get_bytes(LOCK_KEY)
    holder = RunLock.from_bytes(*found) if found else None
    return LockAttempt(False, holder or RunLock("unknown", now, "?"))


def release_run_lock(storage: Storage, lock: RunLock) -> None:
    """Remove our lock; leave it if another run has taken it over meanwhile.

    Never raises: a lock that cannot be removed is logged, and the next run takes it over
    once it is stale.
    """
    try:
        found = storage.get_bytes(LOCK_KEY)
        if found is None:
            return
        current = RunLock.from_bytes(*found)
        if current is None or current.run_id != lock.run_id:
            log.warning("The publish lock was taken over by another run; left in place.")
            return
        storage.delete(LOCK_KEY)
    except StorageError as exc:
        log.warning(
            "Could not remove the publish lock %s (%s); the next run takes it over once it is "
            "stale, or delete it by hand when no run is active.",
            LOCK_KEY,
            exc,
        )
