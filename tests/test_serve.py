"""flows.serve: prefect.yaml becomes the served deployments of `python -m flows serve`.

No server: the deployments are built and inspected, never served.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT
from prefect.server.schemas.schedules import CronSchedule
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.core.errors import InputError, SettingsError
from flows.newsletter.flow import newsletter
from flows.podcast.flow import publish_episodes, regenerate_feed
from flows.serve import SERVED_SUFFIX, build_deployments, serve_all

PREFECT_YAML = REPO_ROOT / "prefect.yaml"
ENTRIES = {d["name"]: d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}
FLOWS = {
    "monthly-newsletter": newsletter,
    "publish-episodes": publish_episodes,
    "regenerate-feed": regenerate_feed,
}


@pytest.fixture(scope="module")
def served():
    """The served deployments by their prefect.yaml name."""
    return {d.name.removesuffix(SERVED_SUFFIX): d for d in build_deployments()}


def write_yaml(tmp_path: Path, **changes) -> Path:
    """A prefect.yaml holding only regenerate-feed, with `changes` applied to it."""
    entry = copy.deepcopy(ENTRIES["regenerate-feed"]) | changes
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump({"deployments": [entry]}))
    return path


def test_one_served_deployment_per_job_with_names_apart_from_deployed_ones(served):
    assert set(served) == set(ENTRIES) == set(FLOWS)
    for name, deployment in served.items():
        assert deployment.name == f"{name}-served"
        assert deployment.name not in ENTRIES  # never the record `prefect deploy` made
        assert deployment.flow_name == FLOWS[name].name
        assert deployment.entrypoint.endswith(ENTRIES[name]["entrypoint"])
        assert deployment.description == ENTRIES[name]["description"]
        assert deployment.work_pool_name is None  # served here, not by a worker


def test_parameters_are_prefect_yamls_and_fit_the_flow_signature(served):
    for name, deployment in served.items():
        assert deployment.parameters == ENTRIES[name]["parameters"]
        validated = FLOWS[name].validate_parameters(deployment.parameters)
        assert {key: validated[key] for key in deployment.parameters} == deployment.parameters


def test_schedules_keep_cron_and_stockholm_time(served):
    for name, deployment in served.items():
        got = [(s.schedule.cron, s.schedule.timezone, s.active) for s in deployment.schedules]
        want = [(s["cron"], s["timezone"], True) for s in ENTRIES[name]["schedules"]]
        assert got == want
        assert all(timezone == "Europe/Stockholm" for _, timezone, _ in got)


def test_served_newsletter_fires_at_eight_in_winter_and_summer(served):
    sent = served["monthly-newsletter"].schedules[0].schedule
    schedule = CronSchedule(cron=sent.cron, timezone=sent.timezone)
    dates = asyncio.run(schedule.get_dates(n=2, start=datetime(2026, 2, 15, tzinfo=UTC)))
    # March 1st is UTC+1, April 1st UTC+2: 08:00 in Stockholm both times.
    assert [d.astimezone(UTC).hour for d in dates] == [7, 6]


def test_one_run_at_a_time_with_the_configured_collision_strategy(served):
    for name, deployment in served.items():
        configured = ENTRIES[name]["concurrency_limit"]
        assert deployment.concurrency_limit == configured["limit"] == 1
        strategy = deployment.concurrency_options.collision_strategy
        assert strategy.value == configured["collision_strategy"]
    assert served["monthly-newsletter"].concurrency_options.collision_strategy.value == "ENQUEUE"


def test_overrides_replace_parameters_of_every_flow_that_takes_them(tmp_path):
    deployments = build_deployments(
        overrides={"storage": str(tmp_path), "public_url": "https://ex.example/", "episodes": None}
    )
    by_name = {d.name: d for d in deployments}
    for deployment in deployments:
        assert deployment.parameters["storage"] == str(tmp_path)
        assert deployment.parameters["public_url"] == "https://ex.example/"
    # None means "not given": the configured drop folder stays.
    assert by_name["publish-episodes-served"].parameters["episodes"] == "episodes"
    # Parameters nobody overrode stay as configured.
    news = by_name["monthly-newsletter-served"].parameters
    assert news["posts"] == ENTRIES["monthly-newsletter"]["parameters"]["posts"]


def test_an_override_only_reaches_flows_that_accept_it():
    by_name = {d.name: d for d in build_deployments(overrides={"episodes": "elsewhere"})}
    assert by_name["regenerate-feed-served"].parameters["episodes"] == "elsewhere"
    assert "episodes" not in by_name["monthly-newsletter-served"].parameters


def test_a_misspelt_override_is_refused():
    with pytest.raises(SettingsError, match=r"publicurl.*public_url"):
        build_deployments(overrides={"publicurl": "https://ex.example/"})


def test_an_override_of_the_wrong_type_names_the_deployment():
    with pytest.raises(SettingsError, match=r"monthly-newsletter.*storage"):
        build_deployments(overrides={"storage": {"not": "a string"}})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"entrypoint": "flows/nothing_here.py:flow"}, "nothing_here.*does not import"),
        ({"entrypoint": "flows/core/settings.py:Settings"}, "does not name a Prefect flow"),
        ({"schedules": [{"interval": 3600}]}, "not supported.*cron"),
        ({"schedules": [{"cron": "61 * * * *", "timezone": "Europe/Stockholm"}]}, "invalid"),
        ({"concurrency_limit": {"limit": 1, "collision_strategy": "QUEUE"}}, "CANCEL_NEW"),
        ({"parameters": {"storage": ["not", "a", "string"]}}, "regenerate-feed.*storage"),
    ],
    ids=["missing-module", "not-a-flow", "interval", "bad-cron", "bad-strategy", "bad-param"],
)
def test_a_bad_prefect_yaml_entry_is_named(tmp_path, changes, message):
    path = write_yaml(tmp_path, **changes)
    with pytest.raises((InputError, SettingsError), match=message):
        build_deployments(path)


def test_a_plain_number_limit_and_no_schedule_are_accepted(tmp_path):
    path = write_yaml(tmp_path, concurrency_limit=1, schedules=None)
    (deployment,) = build_deployments(path)
    assert deployment.concurrency_limit == 1
    assert not deployment.schedules


def test_a_missing_or_empty_file_is_named(tmp_path):
    with pytest.raises(InputError, match=r"nowhere\.yaml"):
        build_deployments(tmp_path / "nowhere.yaml")
    empty = tmp_path / "prefect.yaml"
    empty.write_text("name: x\n")
    with pytest.raises(InputError, match="no `deployments:`"):
        build_deployments(empty)


def test_serve_refuses_without_a_real_server():
    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        pytest.raises(SettingsError, match="PREFECT_API_URL"),
    ):
        serve_all()
