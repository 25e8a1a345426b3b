"""Retries, the run lock and secrets, on real nightly runs: a transient error is retried, a validation
or configuration error is not; a second run against the same CRM is refused while the first writes;
no password of a database URL reaches output, logs, artifacts, the ledger or the run folder."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import sqlalchemy as sa
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from sqlalchemy.engine import make_url

from pql.config import ConfigError
from pql.flows import tasks
from pql.flows.locking import RunLockBusy
from pql.flows.nightly import nightly
from pql.validation import ValidationFailed

if TYPE_CHECKING:
    from conftest import World

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def _connection_lost() -> sa.exc.OperationalError:
    return sa.exc.OperationalError(
        "SELECT ...", {}, psycopg.OperationalError("server closed the connection unexpectedly")
    )


def _counting(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, fail_first: Exception | None = None
) -> list[int]:
    """Count calls of owner.name (still calling it), failing the first call with `fail_first` if given."""
    real, calls = getattr(owner, name), []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if fail_first is not None and len(calls) == 1:
            raise fail_first
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_a_transient_database_error_is_retried_and_the_run_succeeds(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting(monkeypatch, tasks, "features_for", fail_first=_connection_lost())
    state = nightly(as_of=world.end, config=world.config, return_state=True)
    assert state.is_completed()
    assert len(calls) == 2
    assert world.table("runs")["status"].tolist() == ["succeeded"]


def test_a_validation_failure_is_not_retried(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch, tasks.validation, "validate_events")
    state = nightly(as_of=world.end + timedelta(days=40), config=world.config, return_state=True)
    with pytest.raises(ValidationFailed):
        state.result()
    assert len(calls) == 1


def test_a_configuration_error_inside_a_task_is_not_retried(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path(world.config).write_text(
        Path(world.config).read_text() + '[validation.policies]\n"events.no_such_check" = "fail"\n'
    )
    calls = _counting(monkeypatch, tasks.validation, "validate_events")
    state = nightly(as_of=world.end, config=world.config, return_state=True)
    with pytest.raises(ConfigError, match="no_such_check"):
        state.result()
    assert len(calls) == 1


def test_a_second_run_against_the_same_crm_is_refused_while_the_first_writes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_inside, first_may_finish = threading.Event(), threading.Event()
    real = tasks.features_for

    def held_by_the_first(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "first":
            first_inside.set()
            first_may_finish.wait(timeout=120)
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks, "features_for", held_by_the_first)
    states: dict[str, Any] = {}

    def first_run() -> None:
        states["first"] = nightly(as_of=world.end, config=world.config, return_state=True)

    first = threading.Thread(target=first_run, name="first")
    first.start()
    try:
        assert first_inside.wait(timeout=120)
        second = nightly(as_of=world.end, config=world.config, return_state=True)
    finally:
        first_may_finish.set()
        first.join(timeout=300)
    assert second.is_failed()
    with pytest.raises(RunLockBusy, match=r"another pql run is writing to the CRM .*pql nightly run"):
        second.result()
    assert states["first"].is_completed()
    assert world.table("runs")["status"].tolist() == ["succeeded"]


def _everything_recorded(world: World, captured: str) -> str:
    """Console output, Prefect logs, artifacts, flow and task runs, the ledger and the run folder."""
    with get_client(sync_client=True) as client:
        logs = [log.message for log in client.read_logs()]
        artifacts = [str(artifact.data) for artifact in client.read_artifacts()]
        flow_runs = [json.dumps(run.parameters, default=str) for run in client.read_flow_runs()]
        task_runs = [run.model_dump_json() for run in client.read_task_runs()]
    ledger = world.table("runs").astype(str).to_json()
    files = [path.read_text(errors="replace") for path in (world.root / ".pql").rglob("*") if path.is_file()]
    return "\n".join([captured, *logs, *artifacts, *flow_runs, *task_runs, ledger, *files])


@pytest.mark.postgres
def test_the_crm_password_is_nowhere_after_a_run(
    world: World, postgres_url: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    world.crm_url = make_url(postgres_url).set(password=password).render_as_string(hide_password=False)
    world.configure()
    summary = nightly(as_of=world.end, config=world.config)
    out, err = capfd.readouterr()
    recorded = _everything_recorded(world, out + err + caplog.text)
    assert password not in recorded
    assert summary.run_id in recorded and str(summary.flow_run_id) in recorded


def test_the_source_password_is_nowhere_after_a_run_that_could_not_reach_it(
    world: World, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    world.source_url = f"postgresql+psycopg://pql:{password}@127.0.0.1:1/product"
    world.configure()
    state = nightly(as_of=world.end, config=world.config, return_state=True)
    assert state.is_failed()
    (run,) = world.table("runs").to_dict("records")
    assert run["status"] == "failed" and "unreachable" in run["error"]
    out, err = capfd.readouterr()
    recorded = _everything_recorded(world, out + err + caplog.text)
    assert password not in recorded
    assert "postgresql+psycopg://pql:***@127.0.0.1:1/product" in recorded  # recorded, masked


def test_the_crm_url_can_come_from_a_prefect_secret_block(world: World) -> None:
    name = f"pql-crm-{uuid.uuid4().hex[:8]}"
    Secret(value=world.crm_url).save(name)
    crm_url, world.crm_url = world.crm_url, f"prefect_secret://{name}"
    world.configure()
    world.crm_url = crm_url
    summary = nightly(as_of=world.end, config=world.config)
    assert world.table("runs")["run_id"].tolist() == [summary.run_id]


def test_a_missing_secret_block_is_a_configuration_error(world: World) -> None:
    world.crm_url = "prefect_secret://pql-no-such-block"
    world.configure()
    state = nightly(as_of=world.end, config=world.config, return_state=True)
    with pytest.raises(ConfigError, match="no Prefect Secret block named 'pql-no-such-block'"):
        state.result()
