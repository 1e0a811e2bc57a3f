"""A person's decision before anything is sent.

The newsletter flow waits at a gate for a typed Prefect run input (`Decision`). Under a
deployment the run is *suspended* (no worker process is held while a reviewer takes days;
the resumed run starts from the top, so everything before the gate is idempotent); run
directly it is *paused* (the process stays and polls). Prefect 3 has no command to resume
a run, so `python -m flows approve <YYYY-MM>` finds the waiting run by its pause key and
resumes it with the decision; the Prefect UI's Resume form does the same. The form carries
a description (the issue, how many recipients, what each choice does) and an explicit
choice with no default: Submit on an untouched form is refused by the server, not read as a
rejection. Each edition's issue has its own gate (`pause_key`), so two editions of one month
can wait at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from prefect.input import RunInput
from pydantic import Field, model_validator

from flows.core.errors import KraftsamlingError
from flows.newsletter.edition import SWEDISH, Edition

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

FORM = "the Resume form"
CLI = "python -m flows approve"


class Decision(RunInput):
    """Approve or reject the newsletter issue: choose one, Submit without a choice is refused."""

    # `decision` has no default, so an untouched Resume form is refused, never read as a
    # rejection; `Decision(approve=True)` (the older field) still works.

    decision: Literal["approve", "reject"] = Field(
        description="approve: the issue is published and sent now; reject: nothing is sent"
    )
    comment: str = Field(default="", description="a comment for the run's record")
    decided_by: str = Field(
        default="", title="Your name", description="optional: shown in the run's record"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_approve(cls, data: Any) -> Any:
        if isinstance(data, dict) and "approve" in data and "decision" not in data:
            data = dict(data)
            data["decision"] = "approve" if data.pop("approve") is True else "reject"
        return data

    @property
    def approve(self) -> bool:
        """True when the issue is approved.

        >>> Decision(decision="approve").approve, Decision(approve=False).decision
        (True, 'reject')
        """
        return self.decision == "approve"

    def record(self, month: str) -> str:
        """What was decided and by whom, in one line.

        >>> Decision(decision="reject", comment="Fel datum").record("2027-01")
        'Issue 2027-01 rejected by the Resume form: Fel datum'
        >>> Decision(decision="approve", decided_by="Anna").record("2027-01")
        'Issue 2027-01 approved by Anna (no comment)'
        >>> Decision(decision="approve", decided_by="anna@example.org").record("2027-01")
        'Issue 2027-01 approved by the Resume form (no comment)'
        """
        said = f": {self.comment}" if self.comment else " (no comment)"
        verdict = "approved" if self.approve else "rejected"
        who = self.decided_by.strip()
        who = who if who and "@" not in who else FORM  # a name, never an address
        return f"Issue {month} {verdict} by {who}{said}"


def form_description(month: str, recipients: int, reviewers: int) -> str:
    """The Resume form's description: which issue, to how many, what each choice does.

    >>> print(form_description("2027-01", 3, 1))  # doctest: +ELLIPSIS
    Newsletter 2027-01 ... 3 recipient address(es) ...
    """
    return (
        f"Newsletter {month} (test copy to {reviewers} reviewer(s)) awaits your decision. "
        f"Choose `approve` to publish the web copy and send the issue to {recipients} "
        "recipient address(es) now, or `reject` to send nothing (the draft stays; fix it and "
        "send it for review again). Submit with no choice is refused."
    )


def pause_key(month: str, edition: Edition = SWEDISH) -> str:
    """The key that names the approval gate of one edition's issue.

    >>> pause_key("2026-12")
    'approve-newsletter-2026-12'
    >>> pause_key("2026-12", SWEDISH.model_copy(update={"name": "en"}))
    'approve-newsletter-en-2026-12'
    """
    return f"approve-newsletter-{edition.label(month)}"


class NoWaitingRunError(KraftsamlingError):
    """No newsletter run is waiting for a decision on that issue."""


def await_decision(
    month: str,
    timeout_seconds: int,
    poll_seconds: int = 5,
    *,
    description: str | None = None,
    edition: Edition = SWEDISH,
) -> Decision | None:
    """Wait at the edition's gate; None when nobody decided in time. Call only inside a
    flow run.

    The gate of `release.release_issue`; `description` is shown on the Resume form.
    """
    key = pause_key(month, edition)
    from prefect.context import FlowRunContext
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run, suspend_flow_run

    form = Decision.with_initial_data(description=description) if description else Decision
    context = FlowRunContext.get()
    under_deployment = bool(context and context.flow_run and context.flow_run.deployment_id)
    try:
        if under_deployment:
            # Exits the process now; on resume the flow starts again and this returns.
            return suspend_flow_run(wait_for_input=form, timeout=timeout_seconds, key=key)
        return pause_flow_run(
            wait_for_input=form,
            timeout=timeout_seconds,
            poll_interval=poll_seconds,
            key=key,
        )
    except FlowPauseTimeout:
        return None


def _started(run: FlowRun) -> float:
    """When a run started (or was created), for picking the newest."""
    moment = run.expected_start_time or run.created
    return moment.timestamp() if moment is not None else 0.0


def find_waiting_run(month: str, edition: Edition = SWEDISH) -> UUID:
    """The id of the paused newsletter run that waits for a decision on the edition's
    issue of `month`."""
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
    key = pause_key(month, edition)
    waiting = [run for run in runs if run.state and run.state.state_details.pause_key == key]
    if not waiting:
        raise NoWaitingRunError(
            f"No newsletter run is waiting for approval of {edition.label(month)}. Start one with "
            f"`python -m flows newsletter --month {month} --send ...`, and make sure "
            "PREFECT_API_URL points at the same Prefect server as that run."
        )
    return max(waiting, key=_started).id


def resume_with_decision(
    month: str, *, approve: bool, comment: str = "", edition: Edition = SWEDISH
) -> UUID:
    """Resume the run waiting for a decision on the edition's issue of `month`; returns
    its id."""
    from prefect.flow_runs import resume_flow_run

    run_id = find_waiting_run(month, edition)
    decision = Decision(
        decision="approve" if approve else "reject", comment=comment, decided_by=CLI
    )
    resume_flow_run(run_id, run_input=decision.model_dump())
    return run_id
