"""Gathering production evaluation for a period: reads through `io`, then the pure computations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from pql.config import Settings
from pql.db import Databases
from pql.outcomes import io
from pql.outcomes.calibration import calibration_table
from pql.outcomes.cohorts import (
    conversions,
    non_pql_outcomes,
    pql_outcomes,
    snapshot_outcomes,
    weekly_run_ids,
)
from pql.outcomes.sla import (
    compliance_by_owner,
    compliance_by_playbook,
    overdue_pqls,
    pql_owners,
    sla_status,
)
from pql.outcomes.uplift import Uplift, uplift_estimate


@dataclass(frozen=True)
class SlaEvaluation:
    """Follow-up of the PQLs that entered in [since, as_of)."""

    as_of: datetime
    since: datetime
    sla_hours: int
    touch_source: str
    status: pd.DataFrame
    by_owner: pd.DataFrame
    by_playbook: pd.DataFrame
    overdue: pd.DataFrame

    @property
    def source_line(self) -> str:
        """Where the first touches came from, as the CLI and the report state it."""
        if self.touch_source == io.ACTIVITIES_SOURCE:
            return f"follow-up from {io.ACTIVITIES_SOURCE}"
        return f"follow-up from {io.LAST_TOUCH_SOURCE} (no activities table)"


@dataclass(frozen=True)
class Evaluation:
    """Everything the report shows for PQLs that entered in [since, until)."""

    since: datetime
    until: datetime
    horizon_days: int
    pql_outcomes: pd.DataFrame
    non_pql_outcomes: pd.DataFrame
    snapshot_outcomes: pd.DataFrame
    calibration: pd.DataFrame
    uplift: Uplift | None
    sla: SlaEvaluation
    runs: pd.DataFrame
    drift: pd.DataFrame

    @property
    def outcomes(self) -> pd.DataFrame:
        """PQL, control and non-PQL outcomes together."""
        return pd.concat([self.pql_outcomes, self.non_pql_outcomes], ignore_index=True)


def evaluate_sla(dbs: Databases, settings: Settings, *, since: datetime, as_of: datetime) -> SlaEvaluation:
    """SLA status of each treated PQL that entered in [since, as_of), compliance per owner and per
    playbook, the overdue list. First touches come from `crm_activities` when it is in use, else from
    `crm_accounts.last_touch_at`; `touch_source` says which."""
    entries = io.pql_entries(dbs.crm, dbs.output_tables, since=since, until=as_of)
    treated = entries[~entries["is_control"]].copy()
    treated["owner"] = pql_owners(
        treated, io.crm_owners(dbs.source, dbs.source_tables), settings.scoring.unowned_queue
    )
    touches, source = io.touches(dbs.source, dbs.source_tables, treated, since=since, until=as_of)
    status = sla_status(treated, touches, sla_hours=settings.outcomes.sla_hours, as_of=as_of)
    return SlaEvaluation(
        as_of=as_of,
        since=since,
        sla_hours=settings.outcomes.sla_hours,
        touch_source=source,
        status=status,
        by_owner=compliance_by_owner(status),
        by_playbook=compliance_by_playbook(status),
        overdue=overdue_pqls(status, io.current_pqls(dbs.crm, dbs.output_tables)),
    )


def drift_history(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run and monitored column from `pql_runs.monitoring_json`: as_of, name, psi."""
    rows = []
    for run in runs.dropna(subset=["monitoring_json"]).itertuples(index=False):
        try:
            psi = json.loads(run.monitoring_json).get("psi", {})
        except (json.JSONDecodeError, AttributeError):
            continue
        rows.extend({"as_of": run.as_of, "name": name, "psi": value} for name, value in psi.items())
    return pd.DataFrame(rows, columns=["as_of", "name", "psi"]).astype({"psi": float})


def evaluate(dbs: Databases, settings: Settings, *, since: datetime, until: datetime) -> Evaluation:
    """Outcomes, calibration, uplift, SLA and monitoring for PQLs and snapshots in [since, until).

    `until` is also the end of observation: conversions and touches up to it are counted.
    """
    zone, horizon = settings.zone, settings.horizon_days
    changes = io.plan_changes(dbs.source, dbs.source_tables, until=until)
    converted = conversions(changes, settings.plans)
    all_entries = io.pql_entries(dbs.crm, dbs.output_tables, until=until)
    entries = all_entries[all_entries["entered_at"] >= pd.Timestamp(since)]
    pqls = pql_outcomes(entries, converted, horizon_days=horizon, observed_until=until, zone=zone)
    runs = io.history_runs(dbs.crm, dbs.output_tables, since=since, until=until)
    snapshots = io.history_rows(dbs.crm, dbs.output_tables, weekly_run_ids(runs, zone))
    snapshot = snapshot_outcomes(
        snapshots, changes, settings.plans, horizon_days=horizon, observed_until=until, zone=zone
    )
    ledger = io.run_ledger(dbs.crm, dbs.output_tables, since=since, until=until)
    return Evaluation(
        since=since,
        until=until,
        horizon_days=horizon,
        pql_outcomes=pqls,
        non_pql_outcomes=non_pql_outcomes(snapshot, all_entries, zone),
        snapshot_outcomes=snapshot,
        calibration=calibration_table(snapshot),
        uplift=uplift_estimate(pqls),
        sla=evaluate_sla(dbs, settings, since=since, as_of=until),
        runs=ledger,
        drift=drift_history(ledger),
    )
