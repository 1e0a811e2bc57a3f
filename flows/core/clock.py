"""The one place the wall clock is read.

Entry points (the flows, the command line) read it once for the run's start and pass `now`
down, so a run can be pinned (`--now`) and every function below is repeatable. Steps that
record when something really happened (a send, a run lock, a catalog backup) take a `Clock`
argument that defaults to `system_clock`; tests pass a fixed one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from flows.core.models import STOCKHOLM

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """Now, timezone-aware, in Europe/Stockholm."""
    return datetime.now(STOCKHOLM)
