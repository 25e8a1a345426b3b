"""Every database read of production evaluation, as SQLAlchemy Core.

The score history can hold one row per account per nightly run, so the reductions that shrink it
(first qualifying row per account, the runs of each week) run in the database. The output tables
live in the CRM database and the contract tables in the source database, which may be different
servers: the joins between them happen in pandas, on per-account rows.

Follow-up touches: the contract's optional `crm_activities` table when it is in use (exists and holds
rows), reduced in the database to each PQL's first activity; otherwise the CRM's
`crm_accounts.last_touch_at`, the only touch visible without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from pql.schema import ID, TIMESTAMP, OutputTables, SourceTables, in_use

ACTIVITIES_SOURCE = "crm_activities"
LAST_TOUCH_SOURCE = "crm_accounts.last_touch_at"
TOUCH_COLUMNS = ["account_id", "touched_at", "touched_by", "activity_type"]
# PQLs sent to the database per statement as a VALUES list: two parameters each, well under the
# parameter limits of SQLite (32,766) and PostgreSQL (65,535).
PQLS_PER_STATEMENT = 2_000


def _frame(engine: sa.Engine, statement: sa.Select, columns: Sequence[str]) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(statement).all()
    values = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    return pd.DataFrame(
        {name: pd.Series(column, dtype=object) for name, column in zip(columns, values, strict=True)}
    )


def _instants(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for column in columns:
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
    return frame


def _booleans(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for column in columns:
        frame[column] = frame[column].fillna(False).astype(bool)
    return frame


def _floats(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for column in columns:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def pql_entries(
    engine: sa.Engine, tables: OutputTables, *, until: datetime, since: datetime | None = None
) -> pd.DataFrame:
    """One row per account that ever qualified before `until`, at its first qualifying run.

    Qualifying means flagged as a PQL or held out as a control PQL. `entered_at` is `first_pql_at`
    of that row (its `as_of` when unset). Accounts that entered before `since` are left out.
    Columns: account_id, entered_at, tier, playbook, routed_to, probability, score, is_control.
    """
    h = tables.history
    ranked = (
        sa.select(
            h.c.account_id,
            sa.func.coalesce(h.c.first_pql_at, h.c.as_of).label("entered_at"),
            h.c.tier,
            h.c.playbook,
            h.c.routed_to,
            h.c.probability,
            h.c.score,
            h.c.is_control,
            sa.func.row_number()
            .over(partition_by=h.c.account_id, order_by=(h.c.as_of, h.c.scored_at))
            .label("rank"),
        )
        .where(sa.or_(h.c.is_pql, h.c.is_control), h.c.as_of < until)
        .subquery("ranked")
    )
    columns = [
        "account_id",
        "entered_at",
        "tier",
        "playbook",
        "routed_to",
        "probability",
        "score",
        "is_control",
    ]
    statement = sa.select(*(ranked.c[name] for name in columns)).where(ranked.c.rank == 1)
    if since is not None:
        statement = statement.where(ranked.c.entered_at >= since)
    frame = _frame(engine, statement.order_by(ranked.c.entered_at, ranked.c.account_id), columns)
    return _floats(_booleans(_instants(frame, "entered_at"), "is_control"), "probability", "score")


def history_runs(
    engine: sa.Engine, tables: OutputTables, *, since: datetime, until: datetime
) -> pd.DataFrame:
    """One row per run in the score history with `since <= as_of < until`: run_id, as_of, scored_at."""
    h = tables.history
    statement = (
        sa.select(h.c.run_id, h.c.as_of, sa.func.max(h.c.scored_at).label("scored_at"))
        .where(h.c.as_of >= since, h.c.as_of < until)
        .group_by(h.c.run_id, h.c.as_of)
        .order_by(h.c.as_of)
    )
    return _instants(_frame(engine, statement, ["run_id", "as_of", "scored_at"]), "as_of", "scored_at")


def history_rows(engine: sa.Engine, tables: OutputTables, run_ids: Sequence[str]) -> pd.DataFrame:
    """Every account's row in the given runs: account_id, as_of, probability, score, tier, is_pql,
    is_control."""
    h = tables.history
    columns = ["account_id", "as_of", "probability", "score", "tier", "is_pql", "is_control"]
    if not run_ids:
        return _instants(pd.DataFrame(columns=columns), "as_of")
    statement = sa.select(*(h.c[name] for name in columns)).where(h.c.run_id.in_(list(run_ids)))
    frame = _frame(engine, statement, columns)
    return _floats(_booleans(_instants(frame, "as_of"), "is_pql", "is_control"), "probability", "score")


def current_pqls(engine: sa.Engine, tables: OutputTables) -> pd.DataFrame:
    """The PQLs sales sees now (`pql_scores.is_pql`): account_id, first_pql_at, routed_to, score, tier,
    playbook, as_of."""
    s = tables.scores
    columns = ["account_id", "first_pql_at", "routed_to", "score", "tier", "playbook", "as_of"]
    statement = sa.select(*(s.c[name] for name in columns)).where(s.c.is_pql).order_by(s.c.account_id)
    return _floats(_instants(_frame(engine, statement, columns), "first_pql_at", "as_of"), "score")


def run_ledger(engine: sa.Engine, tables: OutputTables, *, since: datetime, until: datetime) -> pd.DataFrame:
    """Runs with `since <= as_of < until`, oldest first: run_id, kind, as_of, status, model_version,
    used_fallback, pqls, new_pqls, monitoring_json, started_at."""
    r = tables.runs
    columns = [
        "run_id",
        "kind",
        "as_of",
        "status",
        "model_version",
        "used_fallback",
        "pqls",
        "new_pqls",
        "monitoring_json",
        "started_at",
    ]
    statement = (
        sa.select(*(r.c[name] for name in columns))
        .where(r.c.as_of >= since, r.c.as_of < until)
        .order_by(r.c.as_of, r.c.started_at)
    )
    return _instants(_frame(engine, statement, columns), "as_of", "started_at")


def trailing_pql_volumes(
    engine: sa.Engine, tables: OutputTables, *, before: datetime, runs: int = 28
) -> list[int]:
    """PQL counts of the last `runs` finished, error-free runs with `as_of < before`, newest first.

    A date scored more than once counts once, with its latest run.
    """
    r = tables.runs
    statement = (
        sa.select(r.c.as_of, r.c.pqls, r.c.started_at)
        .where(r.c.as_of < before, r.c.pqls.is_not(None), r.c.finished_at.is_not(None), r.c.error.is_(None))
        .order_by(r.c.as_of.desc(), r.c.started_at.desc())
        .limit(runs * 4)
    )
    frame = _frame(engine, statement, ["as_of", "pqls", "started_at"])
    latest = frame.drop_duplicates("as_of", keep="first").head(runs)
    return [int(value) for value in latest["pqls"]]


def plan_changes(engine: sa.Engine, tables: SourceTables, *, until: datetime) -> pd.DataFrame:
    """Plan changes before `until`: account_id, changed_at, to_plan, trial_ends_at, mrr."""
    p = tables.plan_changes
    columns = ["account_id", "changed_at", "to_plan", "trial_ends_at", "mrr"]
    statement = sa.select(*(p.c[name] for name in columns)).where(p.c.changed_at < until)
    frame = _frame(engine, statement, columns)
    return _floats(_instants(frame, "changed_at", "trial_ends_at"), "mrr")


def crm_owners(engine: sa.Engine, tables: SourceTables) -> pd.DataFrame:
    """The CRM's current owner of each account: account_id, owner."""
    c = tables.crm_accounts
    return _frame(engine, sa.select(c.c.account_id, c.c.owner), ["account_id", "owner"])


def last_touches(
    engine: sa.Engine, tables: SourceTables, *, since: datetime, until: datetime
) -> pd.DataFrame:
    """`crm_accounts.last_touch_at` with `since <= last_touch_at <= until`, as touches (TOUCH_COLUMNS;
    who touched and how is unknown)."""
    c = tables.crm_accounts
    statement = sa.select(c.c.account_id, c.c.last_touch_at).where(
        c.c.last_touch_at >= since, c.c.last_touch_at <= until
    )
    frame = _frame(engine, statement, ["account_id", "touched_at"])
    return _instants(frame.assign(touched_by=None, activity_type=None), "touched_at")[TOUCH_COLUMNS]


def first_activities(
    engine: sa.Engine, tables: SourceTables, pqls: pd.DataFrame, *, until: datetime
) -> pd.DataFrame:
    """Each PQL's first sales activity: the earliest `crm_activities` row on its account at or after its
    `entered_at` and strictly before `until` (an activity not yet logged at `until` is not known then).

    `pqls` has one row per account (account_id, entered_at); they travel to the database as a VALUES
    list, so only one row per touched PQL comes back. Any activity on the account counts, whoever logged
    it; `touched_by` is the activity's owner. Ties at the same instant go to the lowest activity_id.
    Columns: TOUCH_COLUMNS.
    """
    a = tables.crm_activities
    rows = [
        (str(account_id), pd.Timestamp(entered_at).to_pydatetime())
        for account_id, entered_at in zip(pqls["account_id"], pqls["entered_at"], strict=True)
        if pd.notna(entered_at)
    ]
    parts = [pd.DataFrame({name: pd.Series(dtype=object) for name in TOUCH_COLUMNS})]
    for start in range(0, len(rows), PQLS_PER_STATEMENT):
        # A CTE with named columns: SQLite takes VALUES there but not as an aliased FROM item.
        entered = (
            sa.values(sa.column("account_id", ID), sa.column("entered_at", TIMESTAMP), name="pql_entries")
            .data(rows[start : start + PQLS_PER_STATEMENT])
            .cte("pql_entries")
        )
        ranked = (
            sa.select(
                entered.c.account_id,
                a.c.occurred_at.label("touched_at"),
                a.c.owner.label("touched_by"),
                a.c.activity_type,
                sa.func.row_number()
                .over(partition_by=entered.c.account_id, order_by=(a.c.occurred_at, a.c.activity_id))
                .label("rank"),
            )
            .select_from(entered)
            .join(
                a,
                sa.and_(
                    a.c.account_id == entered.c.account_id,
                    a.c.occurred_at >= entered.c.entered_at,
                    a.c.occurred_at < until,
                ),
            )
            .subquery("ranked")
        )
        statement = sa.select(*(ranked.c[name] for name in TOUCH_COLUMNS)).where(ranked.c.rank == 1)
        parts.append(_frame(engine, statement, TOUCH_COLUMNS))
    return _instants(pd.concat(parts, ignore_index=True), "touched_at")


def touches(
    engine: sa.Engine, tables: SourceTables, pqls: pd.DataFrame, *, since: datetime, until: datetime
) -> tuple[pd.DataFrame, str]:
    """The touches that decide each PQL's follow-up (TOUCH_COLUMNS), and where they came from.

    From `crm_activities` when it is in use: each PQL's first activity (`first_activities`); else from
    `crm_accounts.last_touch_at` within `[since, until]` (`last_touches`).
    """
    if in_use(engine, tables.crm_activities):
        return first_activities(engine, tables, pqls, until=until), ACTIVITIES_SOURCE
    return last_touches(engine, tables, since=since, until=until), LAST_TOUCH_SOURCE
