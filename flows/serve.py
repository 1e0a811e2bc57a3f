"""Serve every deployment of `prefect.yaml` from one process: `python -m flows serve`.

`prefect.yaml` stays the one source of truth for schedules, parameters and concurrency: the
same entries that `prefect deploy --all` sends to a work pool are turned here into
`RunnerDeployment`s that `prefect.serve` runs in this process (no work pool, no worker).

Served deployments are named `<name>-served` (e.g. `monthly-newsletter-served`). A served
deployment and a deployed one with the same flow and name would be the same record on the
server: whichever started last would overwrite the other (serve strips the work pool, the
next `prefect deploy` takes the runs away from the serve process), and runs could be
picked up twice or not at all. The suffix keeps both ways side by side on one server.

Schedules need a real Prefect server (`prefect server start` or Prefect Cloud) with
`PREFECT_API_URL` pointing at it; the temporary server Prefect starts otherwise has no
scheduler, so `serve_all` refuses to run without one.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml
from prefect import Flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.exceptions import ParameterTypeError
from prefect.schedules import Cron, Schedule
from prefect.settings import get_current_settings
from pydantic import ValidationError

from flows.core.errors import InputError, SettingsError

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

# Found in the working folder (the repository's root), as `prefect deploy` finds it.
PREFECT_YAML = Path("prefect.yaml")
SERVED_SUFFIX = "-served"
# Keys of a prefect.yaml cron schedule entry and the Cron argument each one becomes.
_CRON_KEYS = {"cron", "timezone", "day_or", "active", "parameters", "slug"}


def read_prefect_yaml(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The `deployments:` entries of a prefect.yaml file."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"{Path(path).resolve()} does not exist: `python -m flows serve` reads the "
            "deployments from prefect.yaml. Run it from the repository's root, or name the "
            "file with --prefect-yaml."
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the deployments file ({exc.strerror}).") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc}). Fix the file's syntax.") from None
    entries = document.get("deployments") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{path}: no `deployments:` list. Add one entry per job.")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("entrypoint"):
            raise InputError(
                f"{path}: deployment #{index + 1} needs at least `name` and `entrypoint`."
            )
    return entries


def schedules_of(entry: Mapping[str, Any], where: str) -> list[Schedule]:
    """The entry's cron schedules, each keeping its time zone (08:00 stays 08:00 in summer)."""
    schedules = []
    for item in entry.get("schedules") or []:
        unknown = set(item) - _CRON_KEYS if isinstance(item, dict) else {"?"}
        if "cron" not in item or unknown:
            raise InputError(
                f"{where}: schedule {item!r} is not supported by `python -m flows serve`; "
                f"use a cron schedule with the keys {sorted(_CRON_KEYS)}."
            )
        options = {key: item[key] for key in _CRON_KEYS - {"cron"} if key in item}
        try:
            schedules.append(Cron(item["cron"], **options))
        except ValueError as exc:
            raise InputError(f"{where}: schedule {item['cron']!r} is invalid: {exc}") from None
    return schedules


def concurrency_of(entry: Mapping[str, Any], where: str) -> ConcurrencyLimitConfig | int | None:
    """The entry's `concurrency_limit`: a number or {limit, collision_strategy}."""
    value = entry.get("concurrency_limit")
    if value is None or isinstance(value, int):
        return value
    try:
        return ConcurrencyLimitConfig.model_validate(value)
    except ValidationError as exc:
        raise InputError(
            f"{where}: concurrency_limit {value!r} is invalid ({exc.errors()[0]['msg']}); "
            f"write e.g. {{limit: 1, collision_strategy: ENQUEUE}} or CANCEL_NEW."
        ) from None


def load_entrypoint(entrypoint: str, where: str) -> Flow[..., Any]:
    """Import `path/to/module.py:flow_name` as a module of the installed package."""
    path, _, name = entrypoint.partition(":")
    module_name = ".".join(PurePosixPath(path).with_suffix("").parts)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"{where}: entrypoint {entrypoint!r} does not import ({exc}).") from None
    flow = getattr(module, name, None)
    if not isinstance(flow, Flow):
        raise InputError(f"{where}: entrypoint {entrypoint!r} does not name a Prefect flow.")
    return flow


def merge_parameters(
    configured: Mapping[str, Any], overrides: Mapping[str, Any], accepted: set[str]
) -> dict[str, Any]:
    """Configured parameters with the caller's overrides on top; None means 'not given'."""
    given = {
        key: value for key, value in overrides.items() if value is not None and key in accepted
    }
    return {**configured, **given}


def build_deployments(
    prefect_yaml: Path = PREFECT_YAML, overrides: Mapping[str, Any] | None = None
) -> list[RunnerDeployment]:
    """One served deployment per prefect.yaml entry, named `<name>-served`.

    `overrides` (e.g. {"storage": ..., "public_url": ...}) replace the configured parameter
    of every flow that takes it; None values are ignored, so a CLI can pass its flags as is.
    """
    overrides = dict(overrides or {})
    deployments: list[RunnerDeployment] = []
    taken: set[str] = set()
    for entry in read_prefect_yaml(prefect_yaml):
        where = f"{prefect_yaml}: deployment {entry['name']!r}"
        flow = load_entrypoint(entry["entrypoint"], where)
        accepted = set(flow.parameters.properties)
        taken |= accepted
        parameters = merge_parameters(entry.get("parameters") or {}, overrides, accepted)
        try:
            flow.validate_parameters(parameters)
        except ParameterTypeError as exc:
            problem = " ".join(str(exc).split())  # Prefect's message spans lines
            raise SettingsError(
                f"{where}: parameters do not fit flow {flow.name!r}: {problem}. Fix the value "
                f"in prefect.yaml or the override given to serve."
            ) from None
        deployments.append(
            # Called from sync code, so Prefect returns the deployment, not a coroutine.
            flow.to_deployment(  # type: ignore[arg-type]
                name=f"{entry['name']}{SERVED_SUFFIX}",
                description=entry.get("description"),
                tags=entry.get("tags"),
                parameters=parameters,
                schedules=schedules_of(entry, where),
                concurrency_limit=concurrency_of(entry, where),
            )
        )
    unused = sorted(
        key for key, value in overrides.items() if value is not None and key not in taken
    )
    if unused:
        raise SettingsError(
            f"Override(s) {', '.join(unused)} match no parameter of the flows in {prefect_yaml}; "
            f"check the spelling (parameters use underscores, e.g. public_url)."
        )
    return deployments


def serve_all(
    overrides: Mapping[str, Any] | None = None, prefect_yaml: Path = PREFECT_YAML
) -> None:
    """Serve all deployments with their schedules until interrupted (needs a real server)."""
    deployments = build_deployments(prefect_yaml, overrides)
    if not get_current_settings().api.url:
        raise SettingsError(
            "PREFECT_API_URL is not set: schedules only run against a real Prefect server. "
            "Start one (`prefect server start`) and export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api, or `prefect cloud login`."
        )
    serve(*deployments)
