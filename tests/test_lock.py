"""The publish lock after a killed run (issue 20, point 1): taken over at once when its
process is gone, PIDs being reused; otherwise its age and takeover time are said."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from flows.core.storage import LocalStorage
from flows.podcast.lock import LOCK_KEY, RunLock, acquire_run_lock, process_start

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PRIVATE = {"content_type": "application/json", "cache_control": "no-store", "public": False}
HOLD = (
    "import sys, time\n"
    "from datetime import datetime, UTC\n"
    "from flows.core.storage import LocalStorage\n"
    "from flows.podcast.lock import acquire_run_lock\n"
    "attempt = acquire_run_lock(LocalStorage(sys.argv[1]), datetime.now(UTC), 7200)\n"
    "print(attempt.acquired, flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_lock_of_a_run_killed_with_sigkill_is_taken_over_at_once(tmp_path) -> None:
    storage = LocalStorage(tmp_path)
    run = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert run.stdout is not None and run.stdout.readline().strip() == "True"
    held = acquire_run_lock(storage, datetime.now(UTC), 7200)
    assert not held.acquired  # alive: held off, told for how long and until when
    note = held.held_note(datetime.now(UTC), 7200)
    assert f"pid {run.pid}" in note and "0 min ago" in note and "taken over from" in note

    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    taken = acquire_run_lock(storage, datetime.now(UTC), 7200)
    assert taken.acquired and taken.took_over is not None
    assert taken.why == f"its process (pid {run.pid} on this host) no longer exists"


def test_a_reused_pid_does_not_keep_a_dead_runs_lock(tmp_path) -> None:
    # The lock names a live PID (ours) but another process start: the PID was reused.
    storage = LocalStorage(tmp_path)
    mine = acquire_run_lock(storage, NOW, 7200, run_id="earlier").lock
    assert mine.process == process_start(os.getpid()) and mine.process
    boot, ticks = mine.process.rsplit(":", 1)
    reused = replace(mine, process=f"{boot}:{int(ticks) - 1}")
    storage.put_bytes(LOCK_KEY, reused.to_bytes(), **PRIVATE)
    taken = acquire_run_lock(storage, NOW, 7200)
    assert taken.acquired and "no longer exists" in taken.why


def test_a_lock_from_another_host_waits_until_stale(tmp_path) -> None:
    storage = LocalStorage(tmp_path)
    other = RunLock("other", NOW, "web-2 pid 1", hostname="web-2", pid=1, process="x:1")
    storage.put_bytes(LOCK_KEY, other.to_bytes(), **PRIVATE)
    assert socket.gethostname() != "web-2"
    assert not acquire_run_lock(storage, NOW + timedelta(minutes=5), 7200).acquired
    later = acquire_run_lock(storage, NOW + timedelta(hours=3), 7200)
    assert later.acquired and "over lock_stale_seconds" in later.why


def test_a_process_that_is_gone_has_no_start() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_start(child.pid) is None
    assert process_start(os.getpid())
