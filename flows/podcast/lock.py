"""One publish run at a time per storage: the lock object `podcast/.lock`.

Created with If-None-Match, so of two runs starting together exactly one wins; a second run
stops cleanly and does nothing. A lock is taken over with If-Match on its ETag (so two runs
cannot both take over) when its run is known to be gone: taken on this host by a process
that no longer exists (a SIGKILL, an OOM kill, a reboot), which is told by the process's
start time and the boot id recorded in the lock, since PIDs are reused; else once it is
older than `lock_stale_seconds` (a run on another machine that stopped). The lock is private
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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from flows.core.errors import ConcurrentWriteError, StorageError
from flows.core.models import STOCKHOLM
from flows.core.storage import CACHE_PRIVATE, Storage

log = logging.getLogger(__name__)

LOCK_KEY = "podcast/.lock"


def process_start(pid: int) -> str | None:
    """What tells this process from a later one with the same PID: `<boot id>:<start time in
    clock ticks since boot>` on Linux, "" where that cannot be read; None when no such process
    runs (a zombie, killed and not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() else _exists_elsewhere(pid)
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{boot}:{fields[19]}"  # field 22 of stat: the start time


def _exists_elsewhere(pid: int) -> str | None:
    """No /proc (macOS, BSD): only whether the PID exists can be told."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:
        pass  # it exists, owned by someone else
    return ""


@dataclass(frozen=True)
class RunLock:
    """The content of `podcast/.lock`: which run holds it, since when, from where."""

    run_id: str
    started_at: datetime
    host: str  # for people: "web-1 pid 4242"
    etag: str = ""  # of the lock object as written or read
    hostname: str = ""  # with pid and process: tells whether the run is gone (older locks: "")
    pid: int = 0
    process: str = ""  # process_start() of the run's process

    def gone(self) -> bool:
        """True when the run took the lock on this host and its process no longer exists
        (or its PID now belongs to a later process); False when it may still run."""
        if not self.pid or self.hostname != socket.gethostname():
            return False
        now = process_start(self.pid)
        return now is None or bool(self.process and now and now != self.process)

    def describe(self) -> str:
        """`2026-03-01 09:00 (run 1a2b…, host web-1)`, for messages."""
        return (
            f"{self.started_at.astimezone(STOCKHOLM):%Y-%m-%d %H:%M:%S} Stockholm time "
            f"(run id {self.run_id}, host {self.host})"
        )

    def to_bytes(self) -> bytes:
        body = {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "host": self.host,
            "hostname": self.hostname,
            "pid": self.pid,
            "process": self.process,
        }
        return (json.dumps(body, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, etag: str) -> RunLock | None:
        """The lock as read back; None when it is not one of ours (unreadable)."""
        try:
            body = json.loads(data.decode("utf-8"))
            started = datetime.fromisoformat(body["started_at"])
            if started.tzinfo is None:
                return None
            return cls(
                str(body["run_id"]),
                started,
                str(body.get("host", "?")),
                etag,
                str(body.get("hostname", "")),
                int(body.get("pid") or 0),
                str(body.get("process", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class LockAttempt:
    """The outcome of `acquire_run_lock`: ours, or held by another run."""

    acquired: bool
    lock: RunLock  # ours when acquired, else the holder's
    took_over: RunLock | None = None  # a stale lock we replaced
    why: str = ""  # why it was taken over: its process is gone, or it is too old

    def held_note(self, now: datetime, stale_seconds: float) -> str:
        """Who holds the lock, for how long, and when it is taken over if never released."""
        age = max(0, int((now - self.lock.started_at).total_seconds() // 60))
        until = (self.lock.started_at + timedelta(seconds=stale_seconds)).astimezone(STOCKHOLM)
        return (
            f"{self.lock.describe()}, {age} min ago; if that run has stopped on another "
            f"machine, its lock is taken over from {until:%Y-%m-%d %H:%M} Stockholm time "
            "(lock_stale_seconds)"
        )


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
    return replace(lock, etag=info.etag)


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
    hostname = socket.gethostname()
    ours = RunLock(
        run_id or uuid.uuid4().hex,
        now,
        host or f"{hostname} pid {os.getpid()}",
        hostname=hostname,
        pid=os.getpid(),
        process=process_start(os.getpid()) or "",
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
        why = _why_take_over(holder, now, stale_seconds)
        if holder is not None and not why:
            return LockAttempt(False, holder)
        try:
            taken = _write_lock(storage, ours, if_match=etag)
        except ConcurrentWriteError:
            continue  # another run took it over (or released it) first: look again
        stale = holder or RunLock("unreadable", now, "?", etag)
        log.warning("Took over the publish lock of %s: %s", stale.describe(), why)
        return LockAttempt(True, taken, took_over=stale, why=why)
    found = storage.get_bytes(LOCK_KEY)
    holder = RunLock.from_bytes(*found) if found else None
    return LockAttempt(False, holder or RunLock("unknown", now, "?"))


def _why_take_over(holder: RunLock | None, now: datetime, stale_seconds: float) -> str:
    """Why the lock found may be taken over, or "" while its run may still be working."""
    if holder is None:
        return "the lock cannot be read"
    if holder.gone():
        return f"its process (pid {holder.pid} on this host) no longer exists"
    age = (now - holder.started_at).total_seconds()
    if age > stale_seconds:
        return f"it is {int(age // 60)} min old, over lock_stale_seconds ({stale_seconds:g} s)"
    if -age > stale_seconds:
        return f"it is dated {int(-age // 60)} min ahead of this machine's clock"
    return ""


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
