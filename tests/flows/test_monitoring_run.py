"""Drift monitoring inside the nightly run: recorded in the ledger and the artifact, failing by policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from pql.db import databases
from pql.flows.nightly import nightly
from pql.models.registry import promote
from pql.models.training import train_and_register
from pql.monitoring.drift import MonitoringBreach

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import World


def trained(world: World, monitoring: str = "") -> World:
    world.configure(model={"min_conversions": 10, "bootstrap_rounds": 10})
    if monitoring:
        with Path(world.config).open("a", encoding="utf-8") as config:
            config.write("[monitoring]\n" + monitoring)
    settings = world.settings
    with databases(settings) as dbs:
        outcome = train_and_register(dbs.source, dbs.source_tables, settings)
    assert outcome.status == "trained", outcome.reason
    if not outcome.promoted:  # on this small world it may not beat the points baseline; monitor it anyway
        promote(settings.model_registry_path, outcome.version, settings, reason="monitoring test")
    return world


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_run_records_its_monitoring_in_the_ledger_and_the_artifact(
    world: World, report_of: Callable[[str, str], str]
) -> None:
    summary = nightly(as_of=world.end, config=trained(world).config)
    (run,) = world.table("runs").to_dict("records")
    monitoring = json.loads(run["monitoring_json"])
    assert monitoring["status"] in {"ok", "warn"}
    assert "probability" in monitoring["psi"] or "score" in monitoring["psi"]
    assert summary.monitoring == monitoring
    assert "## Monitoring" in report_of("nightly", summary.flow_run_id)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_breach_under_the_fail_policy_fails_the_run_before_the_write(world: World) -> None:
    strict = trained(world, 'psi_warn = 0.0\npsi_fail = 0.000001\nbreach_policy = "fail"\n')
    state = nightly(as_of=strict.end, config=strict.config, return_state=True)
    assert state.is_failed()
    with pytest.raises(MonitoringBreach):
        state.result()
    assert strict.table("scores").empty or len(strict.table("scores")) == 0
    (run,) = strict.table("runs").to_dict("records")
    assert run["status"] == "failed" and run["error"].startswith("MonitoringBreach")
    assert pd.isna(run["pqls"]) or run["pqls"] is None
