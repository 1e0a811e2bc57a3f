"""prefect.yaml: each deployment imports, validates its parameters, schedules in Stockholm time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from conftest import REPO_ROOT
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.flows import load_flow_from_entrypoint
from prefect.server.schemas.schedules import CronSchedule

DEPLOYMENTS = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
EXPECTED = {"monthly-newsletter", "publish-episodes", "regenerate-feed"}


def load_entrypoint(entrypoint: str):
    """Load the flow the way a worker does, from the repository's root."""
    path, _, name = entrypoint.partition(":")
    return load_flow_from_entrypoint(f"{REPO_ROOT / path}:{name}")


def test_one_deployment_per_job():
    assert {d["name"] for d in DEPLOYMENTS} == EXPECTED


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_entrypoint_imports_and_parameters_validate(deployment):
    flow = load_entrypoint(deployment["entrypoint"])
    assert hasattr(flow, "validate_parameters"), f"{deployment['entrypoint']} is not a flow"
    given = deployment.get("parameters", {})
    validated = flow.validate_parameters(given)
    assert {name: validated[name] for name in given} == given


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_wrong_parameter_type_is_refused(deployment):
    flow = load_entrypoint(deployment["entrypoint"])
    with pytest.raises(Exception, match="storage"):
        flow.validate_parameters({"storage": {"not": "a string"}})


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_one_run_at_a_time_and_stockholm_schedules(deployment):
    limit = ConcurrencyLimitConfig.model_validate(deployment["concurrency_limit"])
    assert limit.limit == 1
    assert deployment["schedules"], "every job runs on a schedule"
    for entry in deployment["schedules"]:
        assert entry["timezone"] == "Europe/Stockholm"
        schedule = CronSchedule(cron=entry["cron"], timezone=entry["timezone"])
        start = datetime(2026, 3, 20, tzinfo=UTC)
        dates = asyncio.run(schedule.get_dates(n=2, start=start, end=start + timedelta(days=62)))
        assert dates, f"{deployment['name']}: schedule {entry['cron']!r} never fires"


def test_newsletter_keeps_eight_oclock_across_daylight_saving():
    entry = next(d for d in DEPLOYMENTS if d["name"] == "monthly-newsletter")["schedules"][0]
    schedule = CronSchedule(cron=entry["cron"], timezone=entry["timezone"])
    dates = asyncio.run(schedule.get_dates(n=2, start=datetime(2026, 2, 15, tzinfo=UTC)))
    # March 1st is winter time (UTC+1), April 1st summer time (UTC+2): both 08:00 locally.
    assert [d.astimezone(UTC).hour for d in dates] == [7, 6]
    assert [d.hour for d in dates] == [8, 8]
