"""A person's decision before anything is sent.

The newsletter flow waits at a gate for a typed Prefect run input (`Decision`). Under a
deployment the run is *suspended* (no worker process is held while a reviewer takes days;
the resumed run starts from the top, so everything before the gate is idempotent); run
directly it is *paused* (the process stays and polls). Prefect 3 has no command to resume
a run, so `python -m flows approve <YYYY-MM>` finds the waiting run by its pause key and
resumes it with the decision; the Prefect UI's Resume form does the same.
"""

from __future__ import annotations

from uuid import UUID

from prefect.input import RunInput

from flows.core.errors import KraftsamlingError


class Decision(RunInput):
    """The reviewer's decision on a newsletter issue."""

    approve: bool
    comment: str = ""


def pause_key(month: str) -> str:
    """The key that names the approval gate of one issue.

    >>> pause_key("2026-12")
    'approve-newsletter-2026-12'
    """
    return f"approve-newsletter-{month}"


class NoWaitingRunError(KraftsamlingError):
    """No newsletter run is waiting for a decision on that issue."""


def await_decision(month: str, timeout_seconds: int, poll_seconds: int = 5) -> Decision | None:
    """Wait at the gate; None when nobody decided in time. Call only inside a flow run.

    The default `wait_for_decision` of `release.release_issue`.
    """
    from prefect.context import FlowRunContext
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run, suspend_flow_run

    context = FlowRunContext.get()
    under_deployment = bool(context and context.flow_run and context.flow_run.deployment_id)
    try:
        if under_deployment:
            # Exits the process now; on resume the flow starts again and this returns.
            return suspend_flow_run(
                wait_for_input=Decision, timeout=timeout_seconds, key=pause_key(month)
            )
        return pause_flow_run(
            wait_for_input=Decision,
            timeout=timeout_seconds,
            poll_interval=poll_seconds,
            key=pause_key(month),
        )
    except FlowPauseTimeout:
        return None


def find_waiting_run(month: str) -> UUID:
    """The id of the paused newsletter run that waits for a decision on `month`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
            )
        )
    waiting = [
        run for run in runs if run.state and run.state.state_details.pause_key == pause_key(month)
    ]
    if not waiting:
        raise NoWaitingRunError(
            f"No newsletter run is waiting for approval of {month}. Start one with "
            f"`python -m flows newsletter --month {month} --send ...`, and make sure "
            "PREFECT_API_URL points at the same Prefect server as that run."
        )
    return max(waiting, key=lambda run: run.expected_start_time or run.created).id


def resume_with_decision(month: str, *, approve: bool, comment: str = "") -> UUID:
    """Resume the waiting run of `month` with a decision; returns its id."""
    from prefect.flow_runs import resume_flow_run

    run_id = find_waiting_run(month)
    resume_flow_run(run_id, run_input=Decision(approve=approve, comment=comment).model_dump())
    return run_id
