"""How a command runs its jobs: on the Prefect server when one is configured, else directly.

- **On a Prefect server** (`PREFECT_API_URL` in the environment, a `.env`, `prefect.toml`,
  `pyproject.toml` or the active Prefect profile, as Prefect itself reads it): each job runs
  as its Prefect flow (`flows.*.flow`), with run history, artifacts and task retries in the
  server's UI. A short command turns off the flow-run heartbeat, a thread that is joined in
  1 s steps when the flow ends: it only tells the server that a long run is still alive.
- **Directly** (no server configured): the same jobs as plain functions (`flows.podcast.jobs`,
  `flows.newsletter.job`), with the same outputs, locks, journals and reports, and without
  importing Prefect. Starting Prefect's temporary server would cost ~6.5 s a command for
  a run history nobody can see once the command ends. A failed run still tells the
  KRAFTSAMLING_NOTIFY_FAILURES addresses (`notify.notify_failed_run`, the path of the
  flows' failure hooks).

A command that waits for a person (`newsletter --send` without `--approve`) always runs as a
flow: the approval gate is a Prefect pause, on the configured server or, with none, on
Prefect's temporary server (which `approve`, from another terminal, reaches through the same
`PREFECT_HOME`).
"""

from __future__ import annotations

import os
import socket
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from flows.core.clock import system_clock

if TYPE_CHECKING:
    from flows.newsletter.build import IssueResult
    from flows.podcast.feedpublish import FeedResult
    from flows.podcast.report import PublishReport

R = TypeVar("R")


# --- is a Prefect server configured? -----------------------------------------------------------


def configured_api_url() -> str | None:
    """The Prefect API this process would talk to, None when none is configured.

    When Prefect is already imported (a test harness, `serve`) its own settings answer;
    otherwise the same sources are read without importing Prefect (~1 s).
    """
    if "prefect.settings" in sys.modules:
        from prefect.settings import get_current_settings

        return get_current_settings().api.url or None
    return read_api_url(os.environ, Path.cwd())


def read_api_url(environ: Mapping[str, str], cwd: Path) -> str | None:
    """`PREFECT_API_URL` as Prefect 3 resolves it, read without Prefect: the environment,
    then `.env`, `prefect.toml` (`[api] url`) and `pyproject.toml` (`[tool.prefect.api]`) in
    `cwd`, then the active profile of `profiles.toml`."""
    dotenv = _dotenv(cwd / ".env")
    prefect_toml = _toml(cwd / "prefect.toml")
    tool = _toml(cwd / "pyproject.toml").get("tool", {}).get("prefect", {})
    found = (
        environ.get("PREFECT_API_URL")
        or dotenv.get("PREFECT_API_URL")
        or prefect_toml.get("api", {}).get("url")
        or tool.get("api", {}).get("url")
    )
    if found:
        return str(found)
    if any(environ.get(name) for name in _TEST_MODE):
        return None  # Prefect's test mode reads no profile
    profiles = _toml(_profiles_path(environ, dotenv, prefect_toml, tool))
    active = environ.get("PREFECT_PROFILE") or profiles.get("active")
    profile = profiles.get("profiles", {}).get(active, {})
    return str(profile.get("PREFECT_API_URL") or "") or None


# Any of these set (to anything) puts Prefect in its test mode, which reads no profile.
_TEST_MODE = (
    "PREFECT_TEST_MODE",
    "PREFECT_UNIT_TEST_MODE",
    "PREFECT_TESTING_UNIT_TEST_MODE",
    "PREFECT_TESTING_TEST_MODE",
)


def _profiles_path(
    environ: Mapping[str, str],
    dotenv: Mapping[str, str],
    prefect_toml: Mapping[str, Any],
    tool: Mapping[str, Any],
) -> Path:
    """Where Prefect reads its profiles (`prefect.settings.sources._get_profiles_path`).
    When there is no such file Prefect uses its packaged profiles, which set no API."""
    named = (
        environ.get("PREFECT_PROFILES_PATH")
        or dotenv.get("PREFECT_PROFILES_PATH")
        or prefect_toml.get("profiles_path")
        or tool.get("profiles_path")
    )
    if named:
        return Path(str(named)).expanduser()
    home = Path(environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    return home / "profiles.toml"


def _toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError):
        return {}  # absent or unreadable: Prefect warns about a broken one itself


def _dotenv(path: Path) -> dict[str, str]:
    """`KEY=value` lines of a `.env` file (comments, `export` and quotes as dotenv reads them)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    values = {}
    for line in lines:
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("'\"")
    return values


# --- the two ways to run -------------------------------------------------------------------------


class Jobs(Protocol):
    """The jobs a command runs, the same parameters in either mode."""

    mode: str

    def publish_episodes(self, **params: Any) -> PublishReport: ...

    def regenerate_feed(self, **params: Any) -> FeedResult: ...

    def newsletter(self, **params: Any) -> IssueResult: ...

    def group(self, name: str, body: Callable[[], R]) -> R:
        """`body()`, which calls several jobs, as one run (a parent flow run)."""
        ...


def direct_run_name(moment: datetime | None = None) -> str:
    """How a direct run is named in a failure email: when and where it ran.

    >>> from datetime import UTC, datetime
    >>> direct_run_name(datetime(2026, 12, 1, 7, 0, tzinfo=UTC)).startswith("2026-12-01 08:00:00")
    True
    """
    from flows.core.models import STOCKHOLM

    moment = (moment or system_clock()).astimezone(STOCKHOLM)
    return f"{moment:%Y-%m-%d %H:%M:%S} on {socket.gethostname()} (pid {os.getpid()})"


def notifying(flow_name: str, job: Callable[..., R], params: Mapping[str, Any]) -> R:
    """`job(**params)`; when it fails, the failure addresses are told, as a flow's
    `on_failure` / `on_crashed` hooks tell them, and the error goes on to the caller."""
    run_name = direct_run_name()
    try:
        return job(**params)
    except (Exception, KeyboardInterrupt) as exc:
        from flows.notify import notify_failed_run

        notify_failed_run(flow_name, run_name, exc)
        raise


class Direct:
    """The jobs as plain functions: no Prefect, no server, no run history."""

    mode = "direct"

    def publish_episodes(self, **params: Any) -> PublishReport:
        from flows.podcast import jobs

        return notifying("publish-episodes", jobs.publish_episodes, params)

    def regenerate_feed(self, **params: Any) -> FeedResult:
        from flows.podcast import jobs

        return notifying("regenerate-feed", jobs.regenerate_feed, params)

    def newsletter(self, **params: Any) -> IssueResult:
        from flows.newsletter import job

        if params.get("send") and params.get("approve") is None:
            raise ValueError("waiting for a decision needs a Prefect flow run: use OnPrefect")
        return notifying("newsletter", job.newsletter, params)

    def group(self, name: str, body: Callable[[], R]) -> R:
        return body()


def _typed(flow: Any) -> Any:
    """`flow` without Prefect's validation of its parameters: a command passes them typed
    already (argparse), and the check imports pydantic.v1 (~0.1 s). Deployments, which pass
    JSON, keep it."""
    return flow.with_options(validate_parameters=False)


class OnPrefect:
    """The jobs as Prefect flows: on the configured server, else Prefect's temporary one."""

    mode = "prefect"

    def publish_episodes(self, **params: Any) -> PublishReport:
        from flows.podcast.flow import publish_episodes

        report: PublishReport = _typed(publish_episodes)(**params)
        return report

    def regenerate_feed(self, **params: Any) -> FeedResult:
        from flows.podcast.flow import regenerate_feed

        result: FeedResult = _typed(regenerate_feed)(**params)
        return result

    def newsletter(self, **params: Any) -> IssueResult:
        from flows.newsletter.flow import newsletter

        issue: IssueResult = _typed(newsletter)(**params)
        return issue

    def group(self, name: str, body: Callable[[], R]) -> R:
        from prefect import flow

        return flow(name=name, log_prints=False)(body)()


def choose(*, waits_for_a_person: bool = False) -> Jobs:
    """On Prefect when a server is configured or the command waits for a person; else
    directly."""
    if waits_for_a_person or configured_api_url():
        return OnPrefect()
    return Direct()


@contextmanager
def prefect_session(*, heartbeat: bool) -> Iterator[None]:
    """Prefect set up for a command: without the flow-run heartbeat
    unless `heartbeat` (a run that waits for days keeps it, so the server sees it alive).
    The heartbeat is how a server with a "zombie run" automation tells a crashed run: a
    short command that dies ends with its own error, and a run it leaves "Running" is
    rare and harmless; scheduled runs (workers, `serve`) keep their heartbeats."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if heartbeat:
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
