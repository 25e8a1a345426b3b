"""What a scoring run did, in one value: returned by the flows, printed by the CLI, published as the
run's Prefect artifact."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pql.config import TIERS, Settings
from pql.models.registry import REPORT_FILE
from pql.models.storage import existing_file, joined
from pql.scoring.diff import entered_and_left
from pql.scoring.model_protocol import ScoringModel
from pql.scoring.rules import LEFT_LIST, NEW

TOP_PQLS = 10


@dataclass(frozen=True)
class RunSummary:
    """Counts, tiers, validation, model and the best PQLs of one scoring run (one `as_of`).

    `tiers` counts the eligible accounts per tier; `ineligible` the accounts scored but not tiered."""

    kind: str
    as_of: datetime
    run_id: str | None
    flow_run_id: str | None
    model_version: str
    used_fallback: bool
    model_report: str | None
    accounts_scored: int
    pqls: int
    new_pqls: int
    dropped_pqls: int
    tiers: dict[str, int]
    validation: dict[str, Any]
    top_pqls: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False
    changes: pd.DataFrame | None = field(default=None, repr=False)
    monitoring: dict[str, Any] = field(default_factory=dict)
    ineligible: int = 0
    model_warnings: list[str] = field(default_factory=list)
    data_docs: str | None = None  # the run's Great Expectations Data Docs (index.html), if written
    # One line on the webhook alerts (`flows.alerts.AlertsOutcome.line`); None when none were due.
    alerts: str | None = None


def model_report(model: ScoringModel, settings: Settings) -> str | None:
    """The path of the model's evaluation report, when the registry holds one."""
    report = existing_file(joined(settings.model_registry_path, model.version), REPORT_FILE)
    if report is None:
        return None
    return str(report.resolve()) if isinstance(report, Path) else report


def best_pqls(rows: pd.DataFrame, limit: int = TOP_PQLS) -> pd.DataFrame:
    """The `limit` best PQLs of a run's rows, best first (score, then probability, then id)."""
    pqls = rows[rows["is_pql"].astype(bool)]
    order = pqls.sort_values(["score", "probability", "account_id"], ascending=[False, False, True])
    return order.head(limit)


def top_pqls(rows: pd.DataFrame, names: dict[str, str]) -> list[dict[str, Any]]:
    """The best PQLs with what a rep needs to act on them."""
    return [
        {
            "account_id": str(row["account_id"]),
            "name": names.get(str(row["account_id"])),
            "routed_to": row.get("routed_to"),
            "score": float(row["score"]),
            "tier": row["tier"],
            "playbook": row.get("playbook"),
            "reasons": row.get("reasons_text") or "",
        }
        for row in best_pqls(rows).to_dict("records")
    ]


def run_summary(
    *,
    kind: str,
    as_of: datetime,
    rows: pd.DataFrame,
    model: ScoringModel,
    validation: dict[str, Any],
    settings: Settings,
    names: dict[str, str],
    run_id: str | None = None,
    flow_run_id: str | None = None,
    changes: pd.DataFrame | None = None,
    monitoring: dict[str, Any] | None = None,
    model_warnings: list[str] | None = None,
    data_docs: str | None = None,
    alerts: str | None = None,
) -> RunSummary:
    """The summary of a run that produced `rows` (the output of `scoring.rows.pql_rows`).

    New and dropped PQLs are counted against the previous run's list; for a dry run, which passes
    `changes` (from `scoring.diff.changes_frame`), against the current list it would replace.
    """
    if changes is not None:
        new, dropped = entered_and_left(changes)
    else:
        status = rows["pql_status"] if "pql_status" in rows else pd.Series(dtype=object)
        new, dropped = int(status.eq(NEW).sum()), int(status.isin(LEFT_LIST).sum())
    counts = rows["tier"].value_counts()  # ineligible rows have no tier: not counted
    untiered = rows["ineligible_reason"] if "ineligible_reason" in rows else pd.Series(dtype=object)
    return RunSummary(
        kind=kind,
        as_of=as_of,
        run_id=run_id,
        flow_run_id=flow_run_id,
        model_version=model.version,
        used_fallback=bool(model.is_fallback),
        model_report=model_report(model, settings),
        accounts_scored=len(rows),
        pqls=int(rows["is_pql"].astype(bool).sum()),
        new_pqls=new,
        dropped_pqls=dropped,
        tiers={tier: int(counts.get(tier, 0)) for tier in TIERS},
        validation=validation,
        top_pqls=top_pqls(rows, names),
        dry_run=changes is not None,
        monitoring=monitoring or {},
        changes=changes,
        ineligible=int(untiered.notna().sum()),
        model_warnings=list(model_warnings or []),
        data_docs=data_docs,
        alerts=alerts,
    )
