"""Write-back to the CRM database: one transaction per run, idempotent per `as_of`.

`write_run` replaces `pql_scores` with the run's rows (a run scores every account, so this is the
upsert by account_id and also removes accounts that left the source), writes the run's rows to
`pql_score_history` and records the run in `pql_runs`, all in one transaction: a failure anywhere
leaves the previous state as it was.

History keeps one row per account per `as_of`: re-running a date replaces that date's history rows
(the earlier run stays in `pql_runs`, marked `superseded`), so trends and outcome tracking never
count a date twice. Sales-owned tables are never touched here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pql.bulk import bulk_insert
from pql.db import DataError, redacted
from pql.schema import OutputTables, readable_columns
from pql.scoring.rules import LEFT_LIST, NEW

SUCCEEDED = "succeeded"
SUPERSEDED = "superseded"
ROW_COLUMNS = ("account_id", "probability", "score", "tier", "is_pql")
RUN_REQUIRED = ("run_id", "as_of", "started_at", "model_version")
_FROM_RUN = ("as_of", "run_id", "model_version", "scored_at")


def _require_table(bind: sa.Engine | sa.Connection, table: sa.Table) -> None:
    if not sa.inspect(bind).has_table(table.name):
        raise DataError(
            f"table {table.name} does not exist in {redacted(bind.engine.url)}. "
            "Run `pql init` to create the output tables."
        )


def _select_all(conn: sa.Connection, table: sa.Table) -> sa.Select:
    """SELECT of every column of `table` the database holds (see `pql.schema.readable_columns`)."""
    return sa.select(*readable_columns(conn, table))


def _frame(conn: sa.Connection, query: sa.Select, table: sa.Table) -> pd.DataFrame:
    """The rows of `query` with every column of `table`; one the query could not read is all null."""
    keys = [column.key for column in query.selected_columns]
    frame = pd.DataFrame(conn.execute(query).fetchall(), columns=keys)
    for key in keys:
        if isinstance(table.c[key].type, sa.DateTime):
            frame[key] = pd.to_datetime(frame[key]).astype("datetime64[us]")
        elif isinstance(table.c[key].type, sa.Boolean):
            frame[key] = frame[key].astype(object).where(frame[key].notna(), False).astype(bool)
    return frame.assign(**{column.key: None for column in table.columns if column.key not in keys})


def current_scores(engine: sa.Engine, tables: OutputTables) -> pd.DataFrame:
    """Every row of `pql_scores` (the list sales sees now), by account_id."""
    _require_table(engine, tables.scores)
    with engine.connect() as conn:
        query = _select_all(conn, tables.scores).order_by(tables.scores.c.account_id)
        return _frame(conn, query, tables.scores)


def previous_scores(engine: sa.Engine, tables: OutputTables, as_of: datetime) -> pd.DataFrame:
    """The state left by the latest run strictly before `as_of` (history rows; empty if none).

    This, not `current_scores`, is the previous state for the PQL rules: a re-run of the same date
    then starts from the same state as the first run did.
    """
    _require_table(engine, tables.history)
    runs, history = tables.runs, tables.history
    latest = (
        sa.select(runs.c.run_id)
        .where(
            runs.c.as_of < as_of,
            runs.c.status != SUPERSEDED,
            sa.exists().where(history.c.run_id == runs.c.run_id),
        )
        .order_by(runs.c.as_of.desc(), runs.c.started_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    with engine.connect() as conn:
        query = _select_all(conn, history).where(history.c.run_id == latest).order_by(history.c.account_id)
        return _frame(conn, query, history)


def pql_list(
    engine: sa.Engine, tables: OutputTables, *, owner: str | None = None, top: int | None = None
) -> pd.DataFrame:
    """Current PQLs, best first; only those routed to `owner` when given; at most `top` rows.

    A PQL is always eligible (`scoring.rules`), so ineligible accounts are never listed."""
    _require_table(engine, tables.scores)
    scores = tables.scores
    with engine.connect() as conn:
        query = _select_all(conn, scores).where(scores.c.is_pql.is_(True))
        if owner is not None:
            query = query.where(scores.c.routed_to == owner)
        query = query.order_by(scores.c.score.desc(), scores.c.probability.desc(), scores.c.account_id)
        if top is not None:
            query = query.limit(top)
        return _frame(conn, query, scores)


def _checked_rows(rows: pd.DataFrame) -> None:
    missing = [name for name in ROW_COLUMNS if name not in rows.columns]
    if missing:
        raise DataError(f"rows to write ({len(rows)}) lack column(s) {', '.join(missing)}.")
    duplicated = int(rows["account_id"].duplicated().sum())
    if duplicated:
        raise DataError(
            f"rows to write: {duplicated} account_id value(s) appear more than once; "
            "pql_scores holds one row per account. Nothing was written."
        )


def _table_frame(rows: pd.DataFrame, table: sa.Table, run: Mapping[str, Any]) -> pd.DataFrame:
    """The rows with exactly the table's columns; run-level values filled from `run`."""
    n = len(rows)
    filled = {
        "as_of": pd.Timestamp(run["as_of"]),
        "scored_at": pd.Timestamp(run.get("scored_at", run["started_at"])),
        "run_id": run["run_id"],
        "model_version": run["model_version"],
    }
    data: dict[str, Any] = {}
    for column in table.columns:
        key = column.key
        if key in _FROM_RUN:
            data[key] = pd.Series([filled[key]]).repeat(n).reset_index(drop=True)
        elif key in rows.columns:
            data[key] = rows[key].reset_index(drop=True)
        elif key == "is_control":
            data[key] = pd.Series(np.zeros(n, dtype=bool))
    frame = pd.DataFrame(data)
    for key in frame.columns:
        if isinstance(table.c[key].type, sa.DateTime):
            frame[key] = pd.to_datetime(frame[key]).astype("datetime64[us]")
    return frame


def _run_values(rows: pd.DataFrame, run: Mapping[str, Any], table: sa.Table, update_current: bool) -> dict:
    unknown = sorted(set(run) - {column.key for column in table.columns} - {"scored_at"})
    if unknown:
        raise ValueError(f"run has keys that are not pql_runs columns: {', '.join(unknown)}")
    values = {"kind": "nightly" if update_current else "backfill", "status": SUCCEEDED}
    values |= {"accounts_scored": len(rows), "pqls": int(rows["is_pql"].sum())}
    if "pql_status" in rows:
        status = rows["pql_status"]
        values |= {"new_pqls": int(status.eq(NEW).sum()), "dropped_pqls": int(status.isin(LEFT_LIST).sum())}
    values |= {key: value for key, value in run.items() if key != "scored_at"}
    for key, value in values.items():
        if key.endswith("_json") and value is not None and not isinstance(value, str):
            values[key] = json.dumps(value, sort_keys=True, default=str)
    return values


def _runs_with_history(conn: sa.Connection, tables: OutputTables, as_of: datetime, exclude: str) -> list[str]:
    """Earlier runs of the same `as_of` whose history rows this run replaces."""
    runs, history = tables.runs, tables.history
    query = sa.select(runs.c.run_id).where(
        runs.c.as_of == as_of, runs.c.run_id != exclude, sa.exists().where(history.c.run_id == runs.c.run_id)
    )
    return list(conn.execute(query).scalars())


def _replace_current(conn: sa.Connection, scores: sa.Table, frame: pd.DataFrame) -> None:
    """Make `scores` hold exactly `frame`'s rows, inside the caller's transaction.

    DuckDB maintains its primary-key index row by row on delete, so there the rows are staged in a
    temporary table and the list is updated in place (set-based UPDATE, INSERT and DELETE); other
    engines delete every row and bulk-insert the new ones.
    """
    if conn.dialect.name != "duckdb":
        conn.execute(sa.delete(scores))
        bulk_insert(conn, scores, frame)
        return
    staged = sa.Table(
        f"pql_staged_{uuid.uuid4().hex}",
        sa.MetaData(),
        *(sa.Column(c.name, c.type, key=c.key) for c in scores.columns),
        prefixes=["TEMPORARY"],
    )
    staged.create(conn)
    bulk_insert(conn, staged, frame)
    key, staged_key = scores.c.account_id, staged.c.account_id
    conn.execute(sa.delete(scores).where(~sa.exists().where(staged_key == key)))
    changed = {c.key: staged.c[c.key] for c in scores.columns if c.key != "account_id"}
    conn.execute(sa.update(scores).where(key == staged_key).values(changed))
    columns = [c.key for c in scores.columns]
    new = sa.select(*(staged.c[k] for k in columns)).where(~sa.exists().where(key == staged_key))
    conn.execute(sa.insert(scores).from_select(columns, new))
    staged.drop(conn)


def write_run(
    engine: sa.Engine,
    tables: OutputTables,
    rows: pd.DataFrame,
    run: Mapping[str, Any],
    *,
    update_current: bool = True,
) -> None:
    """Write one run in ONE transaction: replace pql_scores (when `update_current`), replace this
    `as_of`'s history rows with the run's, and upsert the run's pql_runs row.

    `rows` are the run's accounts (one per account_id) with pql_scores columns; as_of, run_id,
    model_version and scored_at (default: started_at) come from `run`, which needs run_id, as_of,
    started_at and model_version and may carry any other pql_runs column.
    """
    with engine.begin() as conn:
        write_run_on(conn, tables, rows, run, update_current=update_current)


def write_run_on(
    conn: sa.Connection,
    tables: OutputTables,
    rows: pd.DataFrame,
    run: Mapping[str, Any],
    *,
    update_current: bool = True,
) -> None:
    """`write_run` inside the caller's transaction, so other writes of the run commit or roll back with it."""
    missing = [key for key in RUN_REQUIRED if run.get(key) is None]
    if missing:
        raise ValueError(f"run lacks {', '.join(missing)}")
    _checked_rows(rows)
    for table in (tables.scores, tables.history, tables.runs):
        _require_table(conn, table)
    run_values = _run_values(rows, run, tables.runs, update_current)
    as_of, run_id = pd.Timestamp(run["as_of"]).to_pydatetime(), run["run_id"]
    runs, history = tables.runs, tables.history

    if update_current:
        newest = conn.execute(sa.select(sa.func.max(tables.scores.c.as_of))).scalar()
        if newest is not None and newest > as_of:
            raise DataError(
                f"pql_scores already holds as_of {newest}, newer than this run's {as_of}; writing it "
                "would roll the sales list back. Score past dates with `pql backfill START END`, "
                "which writes history and leaves the current list alone."
            )
        _replace_current(conn, tables.scores, _table_frame(rows, tables.scores, run))
    replaced = [run_id, *_runs_with_history(conn, tables, as_of, exclude=run_id)]
    conn.execute(sa.update(runs).where(runs.c.run_id.in_(replaced[1:])).values(status=SUPERSEDED))
    conn.execute(sa.delete(history).where(history.c.run_id.in_(replaced)))
    bulk_insert(conn, history, _table_frame(rows, history, run))
    exists = conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id == run_id)).first()
    if exists:
        conn.execute(sa.update(runs).where(runs.c.run_id == run_id).values(run_values))
    else:
        conn.execute(sa.insert(runs).values(run_values))
