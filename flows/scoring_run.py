"""One scoring run: every account scored as of one instant and, unless a dry run, written to the CRM.

The nightly flow runs it for today; the backfill flow runs it once per past date.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow

from pql.db import databases
from pql.flows import tasks
from pql.flows.summary import RunSummary


@flow(name="pql-scoring-run", flow_run_name="{kind}-{as_of:%Y-%m-%d}")
def scoring_run(
    as_of: datetime,
    kind: str = "nightly",
    update_current: bool = True,
    dry_run: bool = False,
    config: str | None = None,
) -> RunSummary:
    """Validate, build features, score, explain, apply the PQL rules, validate, write, alert, report."""
    settings = tasks.settings_from(config)
    run = tasks.new_run(kind, as_of, dry_run=dry_run)
    with databases(settings) as dbs, tasks.recorded(dbs, settings, run) as step:
        checks = step(tasks.validate_source, dbs, settings, run)
        features = step(tasks.build_features, dbs, settings, as_of)
        model = step(tasks.load_model, dbs, settings)
        features, checks = step(tasks.validate_features, features, settings, checks, run, model)
        crm, previous = step(tasks.read_crm, dbs, as_of), step(tasks.read_previous, dbs, as_of)
        rows = step(tasks.score_accounts, features, model, crm, previous, settings, as_of)
        rows, checks = step(tasks.validate_output, rows, features, settings, checks, run)
        monitoring = step(tasks.monitor_drift, dbs, features, rows, model, settings, as_of)
        names = step(tasks.read_account_names, dbs, rows)
        changes = step(tasks.planned_changes, dbs, rows, settings) if dry_run else None
        if not dry_run:
            step(tasks.write_scores, dbs, rows, model, checks, monitoring, run, update_current, step.lock)
    # Posted once the write has committed and the run lock is free: a slow or failing webhook can neither
    # undo the write, mark the run failed nor hold up the next run.
    alerts = step(tasks.send_alerts, rows, settings, run)
    # The run is complete once written; its report comes after, so a failure to publish cannot mark it failed.
    return step(tasks.publish_report, rows, model, checks, settings, run, names, changes, monitoring, alerts)
