"""`pql serve` against a real Prefect API: it serves the deployments and executes their runs, and a
Prefect server turns the schedules of prefect.yaml into runs at 02:00 (nightly) and weekly (retrain)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings

from pql.config import Settings
from pql.flows.deployments import runner_deployments
from pql.flows.server import local_server

if TYPE_CHECKING:
    from conftest import World

pytestmark = pytest.mark.slow

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"
# Prefect 3.8.8's scheduler inserts runs with an ORM bulk insert that SQLAlchemy 2.1 refuses
# ("Can't evaluate bulk DML statement; please supply a bulk_dml decorated function").
SCHEDULER_BROKEN = sa.__version__.startswith("2.1")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` (a server or a process we do not control) until it holds or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def served(world: World) -> Iterator[subprocess.Popen[str]]:
    """`pql serve` in its own process, registered with this session's Prefect API."""
    # Poll for runs every second rather than every ten, to keep the test short.
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from pql.cli import app; app()", "--config", world.config, "serve"],
        env=env,
        cwd=world.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.usefixtures("prefect_api")
def test_pql_serve_executes_a_run_of_its_nightly_deployment(
    world: World, served: subprocess.Popen[str]
) -> None:
    def registered() -> bool:
        with get_client(sync_client=True) as client:
            try:
                client.read_deployment_by_name("pql-nightly/nightly")
            except ObjectNotFound:
                return False
        return True

    _wait_for(registered, 180, "pql serve to register its deployments")
    parameters = {"as_of": world.end.isoformat()}
    run = run_deployment("pql-nightly/nightly", parameters=parameters, timeout=300, poll_interval=1)
    assert run.state is not None and run.state.is_completed(), run.state
    assert len(world.table("scores")) > 300


def _scheduled_runs(deployment_ids: dict[str, UUID]) -> dict[str, list[FlowRun]]:
    with get_client(sync_client=True) as client:
        return {
            name: client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[key])))
            for name, key in deployment_ids.items()
        }


@pytest.mark.xfail(SCHEDULER_BROKEN, reason="Prefect 3.8.8's scheduler fails on SQLAlchemy 2.1", strict=True)
def test_a_prefect_server_schedules_the_nightly_run_at_two_and_the_retrain_weekly(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server runs in its own process with its own database, scheduling every second.
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "1")
    with (
        local_server(_free_port(), tmp_path / "server.log") as api_url,
        temporary_settings({PREFECT_API_URL: api_url}),
    ):
        ids = {item.name: item.apply() for item in runner_deployments(PREFECT_YAML, settings)}

        def scheduled() -> bool:
            log = (tmp_path / "server.log").read_text(errors="replace")
            assert "services/scheduler.py" not in log, (
                f"the Prefect server's scheduler failed:\n{log[-2000:]}"
            )
            return all(_scheduled_runs(ids)[name] for name in ("nightly", "retrain"))

        _wait_for(scheduled, 60, "the server to schedule runs")
        runs = _scheduled_runs(ids)
    zone = ZoneInfo(settings.timezone)
    nightly = sorted(run.expected_start_time.astimezone(zone) for run in runs["nightly"])
    retrain = sorted(run.expected_start_time.astimezone(zone) for run in runs["retrain"])
    assert all((moment.hour, moment.minute) == (2, 0) for moment in nightly)
    assert {(later.date() - earlier.date()).days for earlier, later in pairwise(nightly)} == {1}
    assert {moment.weekday() for moment in retrain} == {retrain[0].weekday()}
    assert {(later - earlier).days for earlier, later in pairwise(retrain)} == {7}
    assert not runs["backfill"]  # run by hand only
