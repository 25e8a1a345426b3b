"""The deployments declared in `prefect.yaml`, built for `pql serve`.

`prefect.yaml` is the one source of truth for which flows are deployed and when: `prefect deploy --all`
reads it for a Prefect server and work pool, and `pql serve` builds the same deployments from it here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from prefect import Flow
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron

from pql.config import ConfigError, Settings

PREFECT_YAML = "prefect.yaml"


@dataclass(frozen=True)
class DeclaredSchedule:
    cron: str
    timezone: str


@dataclass(frozen=True)
class DeclaredDeployment:
    """One entry of `deployments:` in prefect.yaml, as far as serving it needs."""

    name: str
    entrypoint: str
    description: str | None = None
    tags: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    concurrency_limit: int | None = None
    schedules: tuple[DeclaredSchedule, ...] = ()

    @property
    def module_and_flow(self) -> tuple[str, str]:
        """`pql/flows/nightly.py:nightly` -> ("pql.flows.nightly", "nightly")."""
        path, _, attribute = self.entrypoint.partition(":")
        module = PurePosixPath(path)
        return ".".join(module.with_suffix("").parts), attribute


def default_prefect_yaml() -> Path:
    """./prefect.yaml when there is one, else the project's own (beside the `flows` package)."""
    here = Path(PREFECT_YAML)
    return here if here.is_file() else Path(__file__).resolve().parents[1] / PREFECT_YAML


def _problem(path: Path, where: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {message}")


def _schedule(path: Path, where: str, raw: Any) -> DeclaredSchedule:
    if not isinstance(raw, dict) or not isinstance(raw.get("cron"), str):
        raise _problem(path, where, 'each schedule needs `cron: "<expression>"` (and `timezone`).')
    if not isinstance(raw.get("timezone"), str):
        raise _problem(path, where, "give the schedule a `timezone` (the one pql.toml sets, e.g. UTC).")
    unknown = sorted(set(raw) - {"cron", "timezone"})
    if unknown:
        raise _problem(
            path, where, f"unsupported schedule key(s) {', '.join(unknown)}; use cron and timezone."
        )
    return DeclaredSchedule(cron=raw["cron"], timezone=raw["timezone"])


def _deployment(path: Path, index: int, raw: Any) -> DeclaredDeployment:
    where = f"deployments[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise _problem(path, where, "each deployment needs a `name`.")
    where = f"deployment {raw['name']!r}"
    entrypoint = raw.get("entrypoint")
    if not isinstance(entrypoint, str) or not entrypoint.partition(":")[0].endswith(".py"):
        raise _problem(path, where, "`entrypoint` must look like pql/flows/nightly.py:nightly.")
    schedules = raw.get("schedules") or []
    return DeclaredDeployment(
        name=raw["name"],
        entrypoint=entrypoint,
        description=raw.get("description"),
        tags=tuple(raw.get("tags") or ()),
        parameters=dict(raw.get("parameters") or {}),
        concurrency_limit=raw.get("concurrency_limit"),
        schedules=tuple(_schedule(path, f"{where}, schedule {i}", item) for i, item in enumerate(schedules)),
    )


def declared_deployments(path: Path) -> list[DeclaredDeployment]:
    """The deployments prefect.yaml declares; a ConfigError naming the file and entry if malformed."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path}: not found. Run `pql serve` from the project directory or pass --file PATH/prefect.yaml."
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    entries = (document or {}).get("deployments")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: no `deployments:` list; declare nightly and retrain there.")
    return [_deployment(path, index, raw) for index, raw in enumerate(entries)]


def flow_of(declared: DeclaredDeployment) -> Flow:
    """The flow object an entrypoint names, imported as a module of the installed project."""
    module_name, attribute = declared.module_and_flow
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"deployment {declared.name!r}: entrypoint {declared.entrypoint} does not name a flow "
            f"of the installed project ({exc})."
        ) from exc
    if not isinstance(found, Flow):
        raise ConfigError(f"deployment {declared.name!r}: {declared.entrypoint} is not a Prefect flow.")
    return found


def _check_timezone(path: Path, declared: DeclaredDeployment, settings: Settings) -> None:
    for schedule in declared.schedules:
        if schedule.timezone != settings.timezone:
            raise ConfigError(
                f"{path}: deployment {declared.name!r} runs '{schedule.cron}' in time zone "
                f"{schedule.timezone!r}, but pql is configured with timezone = {settings.timezone!r}. "
                f"Set `timezone: {settings.timezone}` on that schedule so runs start at the local hour "
                "their as_of is computed in."
            )


def runner_deployments(
    path: Path, settings: Settings, parameters: dict[str, Any] | None = None
) -> list[RunnerDeployment]:
    """The deployments of prefect.yaml, ready for `prefect.serve`; `parameters` are added to each."""
    built = []
    for declared in declared_deployments(path):
        _check_timezone(path, declared, settings)
        try:
            schedules = [Cron(item.cron, timezone=item.timezone) for item in declared.schedules]
        except ValueError as exc:
            raise ConfigError(f"{path}: deployment {declared.name!r}: invalid schedule: {exc}") from exc
        built.append(
            flow_of(declared).to_deployment(
                name=declared.name,
                schedules=schedules,
                parameters={**declared.parameters, **(parameters or {})},
                description=declared.description,
                tags=list(declared.tags),
                concurrency_limit=declared.concurrency_limit,
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return built
