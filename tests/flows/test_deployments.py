"""prefect.yaml is the one declaration of the deployments: `pql serve` builds exactly what it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from pql.config import ConfigError, Settings, load_settings
from pql.flows.backfill import backfill
from pql.flows.deployments import DeclaredSchedule, declared_deployments, runner_deployments
from pql.flows.nightly import nightly
from pql.flows.retrain import retrain

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"


def test_prefect_yaml_schedules_the_nightly_run_at_two_every_day() -> None:
    declared = {item.name: item for item in declared_deployments(PREFECT_YAML)}
    assert declared["nightly"].schedules == (DeclaredSchedule(cron="0 2 * * *", timezone="UTC"),)
    assert declared["nightly"].entrypoint == "pql/flows/nightly.py:nightly"


def test_prefect_yaml_schedules_the_retrain_once_a_week() -> None:
    declared = {item.name: item for item in declared_deployments(PREFECT_YAML)}
    (schedule,) = declared["retrain"].schedules
    minute, hour, day_of_month, month, day_of_week = schedule.cron.split()
    assert (day_of_month, month) == ("*", "*") and day_of_week.isdigit()
    assert minute.isdigit() and hour.isdigit()


def test_pql_serve_builds_the_deployments_and_schedules_prefect_yaml_declares(settings: Settings) -> None:
    declared = declared_deployments(PREFECT_YAML)
    built = runner_deployments(PREFECT_YAML, settings)
    assert [deployment.name for deployment in built] == [item.name for item in declared]
    for item, deployment in zip(declared, built, strict=True):
        # pql/flows/nightly.py:nightly is imported as the installed module pql.flows.nightly
        assert deployment.entrypoint == item.entrypoint.replace("/", ".").replace(".py:", ".")
        schedules = [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules]
        assert schedules == [(s.cron, s.timezone) for s in item.schedules]
        assert deployment.concurrency_limit == item.concurrency_limit
        assert deployment.tags == list(item.tags)
        assert deployment.description == item.description


def test_the_deployments_run_the_project_flows(settings: Settings) -> None:
    built = {d.name: d.flow_name for d in runner_deployments(PREFECT_YAML, settings)}
    assert built == {"nightly": nightly.name, "retrain": retrain.name, "backfill": backfill.name}


def test_served_runs_read_the_settings_file_pql_serve_was_given(settings: Settings) -> None:
    built = runner_deployments(PREFECT_YAML, settings, parameters={"config": "/srv/pql/pql.toml"})
    assert all(deployment.parameters["config"] == "/srv/pql/pql.toml" for deployment in built)


def test_pql_serve_refuses_schedules_in_another_time_zone_than_pql_is_configured_with() -> None:
    paris = load_settings(None, timezone="Europe/Paris")
    with pytest.raises(ConfigError, match=r"deployment 'nightly' runs '0 2 \* \* \*' in time zone 'UTC'"):
        runner_deployments(PREFECT_YAML, paris)


def test_a_schedule_without_a_time_zone_is_refused(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "prefect.yaml"
    path.write_text(
        "deployments:\n  - name: nightly\n    entrypoint: pql/flows/nightly.py:nightly\n"
        "    schedules:\n      - cron: '0 2 * * *'\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="give the schedule a `timezone`"):
        runner_deployments(path, settings)


def test_an_entrypoint_outside_the_project_is_refused(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "prefect.yaml"
    path.write_text("deployments:\n  - name: x\n    entrypoint: elsewhere/thing.py:thing\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="does not name a flow of the installed project"):
        runner_deployments(path, settings)


def test_a_missing_prefect_yaml_says_where_it_was_looked_for(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(ConfigError, match="not found"):
        runner_deployments(tmp_path / "prefect.yaml", settings)
