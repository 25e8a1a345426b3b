"""The data-quality gates the flows call, one per stage. Each returns a `StageResult`; none raises on
a failed check (`results.raise_for_failures` does, once the run has recorded them).

Source-side gates validate aggregates computed in the database over the run's window; frame gates
validate the run's own frames (features, scores, output rows) and can quarantine rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa

from pql.config import FEEDBACK_DECISIONS, LONGEST_WINDOW_DAYS, TIERS, Settings
from pql.db import DataError, redacted
from pql.schema import ADDED_LATER, OutputTables, SourceTables, in_use, stored_columns
from pql.validation import frames, queries
from pql.validation.checks import check_policies
from pql.validation.gx_runner import BatchRun, StageSuite, load_suite, run_batch, run_query
from pql.validation.results import StageResult, evaluate

# The events window the features read: daily volumes, repeated event ids, key events, known names.
WINDOW_DAYS = LONGEST_WINDOW_DAYS
CHECKED_DAYS = 7  # the days whose volume is checked against the 21 days before them
NEW_DAYS = 1  # the newest events: row-level checks
OUTPUT_COLUMNS = ("account_id", "score", "is_pql", "routed_to", "playbook", "reasons_json")
SCORE_COLUMNS = ("account_id", "probability", "score", "tier")
NO_EVENTS_NOTE = (
    "the table is empty: the event checks were skipped; engagement features (activity, active users, "
    "breadth, key events, recency, momentum) are 0 or empty for every account, so the model learns "
    "from lifecycle, fit, attribute and user-count features only"
)


@contextmanager
def _connected(engine: sa.Engine, what: str) -> Iterator[sa.Connection]:
    """A read connection; an unreachable database is a DataError naming it (not a stack trace)."""
    try:
        conn = engine.connect()
    except sa.exc.DBAPIError as exc:
        raise DataError(
            f"{what} database {redacted(engine.url)} is unreachable: {exc.orig}. "
            "Check the URL in the settings and that the server is up."
        ) from exc
    with conn:
        if conn.dialect.name == "duckdb":
            conn.exec_driver_sql("SET enable_progress_bar = false")  # long scans would draw one on stdout
        yield conn


def _columns_batch(
    suite: StageSuite, conn: sa.Connection, tables: Sequence[sa.Table]
) -> tuple[BatchRun, bool]:
    """The `columns` batch for `tables` as they exist in the database, and whether all were present."""
    expected = {table.name: [column.name for column in table.columns] for table in tables}
    found = {table.name: stored_columns(conn, table) for table in tables}
    frame = frames.columns_frame(expected, found)
    return run_batch(frame, suite.batches["columns"]), bool(frame["present"].all())


def _stage(
    suite: StageSuite,
    batches: list[BatchRun],
    settings: Settings,
    *,
    complete: bool = True,
    rows: pd.DataFrame | None = None,
    examples: Mapping[str, Sequence[str]] | None = None,
    notes: Sequence[str] = (),
) -> StageResult:
    """Evaluate under the settings' policies; when `complete` is False, every check not run is skipped."""
    ran = {check for batch in batches for check in batch.suite.checks}
    skipped = [] if complete else [c for b in suite.batches.values() for c in b.checks if c not in ran]
    policies = check_policies(settings)
    return evaluate(
        suite.stage,
        suite.version,
        batches,
        policies,
        rows=rows,
        skipped=skipped,
        examples=examples,
        notes=notes,
    )


def validate_events(
    engine: sa.Engine, tables: SourceTables, settings: Settings, as_of: datetime, *, now: datetime
) -> StageResult:
    """The events before as_of, validated on database aggregates.

    Daily volumes and repeated event ids cover the 28-day window the features read (one aggregate
    each); the other row-level checks (ids, accounts, names, properties) cover the newest day,
    [as_of - 1 day, as_of): the data a nightly run adds, at a 28th of the cost of the whole window.

    `now` is the run's start (naive UTC, read once by the caller): an event later than `now` plus
    `validation.future_tolerance_minutes` is in the future. (Events between as_of and now are not:
    a nightly run starts after midnight, a backfill long after its as_of.)

    An events table with no row at all is a source without an event log yet (accounts and plan changes
    only): the stage passes, its event checks skipped, with a note saying what that means for scoring.
    A table whose events stopped still has its older rows, and fails `events.window_not_empty`.
    """
    suite = load_suite("events")
    validation = settings.validation
    new_since = as_of - timedelta(days=NEW_DAYS)
    window_start = as_of - timedelta(days=WINDOW_DAYS)
    future_after = now + timedelta(minutes=validation.future_tolerance_minutes)
    with _connected(engine, "source") as conn:
        columns, complete = _columns_batch(suite, conn, [tables.events])
        if not complete:
            return _stage(suite, [columns], settings, complete=False)
        if not queries.has_events(conn, tables):
            return _stage(suite, [columns], settings, complete=False, notes=[NO_EVENTS_NOTE])
        daily = queries.events_daily_counts(conn, tables, as_of, WINDOW_DAYS)
        names = queries.event_names(conn, tables, as_of, WINDOW_DAYS, new_since)
        counts = queries.new_events_counts(
            conn, tables, new_since, as_of, future_after, window_start=window_start
        )
        properties = frames.property_numbers(queries.newest_properties(conn, tables, new_since, as_of))
        counts.insert(0, "window_events", int(daily["events"].sum()))
        parameters = {
            "max_duplicate_event_rate": validation.max_duplicate_event_rate,
            "volume_spike_ratio": validation.volume_spike_ratio,
            "known_event_names": frames.known_event_names(names, settings.key_event_names),
        }
        volume = frames.daily_volume(
            daily, as_of, checked_days=CHECKED_DAYS, baseline_days=WINDOW_DAYS - CHECKED_DAYS
        )
        batches = [
            columns,
            run_batch(counts, suite.batches["counts"], parameters),
            run_batch(frames.new_event_names(names), suite.batches["names"], parameters),
            run_batch(frames.key_event_counts(names, settings.key_event_names), suite.batches["key_events"]),
            run_batch(volume, suite.batches["days"], parameters),
            run_batch(properties, suite.batches["properties"]),
        ]
        examples = {
            check: queries.events_examples(
                conn, tables, check, new_since, as_of, future_after, window_start=window_start
            )
            for check in batches[1].failed_checks()
        }
    return _stage(suite, batches, settings, examples=examples)


def validate_plan_changes(
    engine: sa.Engine, tables: SourceTables, settings: Settings, as_of: datetime
) -> StageResult:
    """Plan changes before as_of: known plan names, and changes consistent with the accounts."""
    suite = load_suite("plan_changes")
    plans = settings.plans
    known = sorted({*plans.free, *plans.trial, *plans.paid})
    with _connected(engine, "source") as conn:
        columns, complete = _columns_batch(suite, conn, [tables.plan_changes])
        if not complete:
            return _stage(suite, [columns], settings, complete=False)
        batches = [
            columns,
            run_query(
                conn, queries.plan_names(tables, as_of), suite.batches["plans"], {"known_plans": known}
            ),
            run_batch(
                queries.plan_change_counts(conn, tables, as_of, plans.paid, plans.trial),
                suite.batches["ordering"],
            ),
        ]
        examples = {
            check: queries.plan_change_examples(conn, tables, check, as_of, plans.paid, plans.trial)
            for check in batches[2].failed_checks()
        }
    return _stage(suite, batches, settings, examples=examples)


SALES_BATCHES = {"crm_activities": "activities", "opportunities": "opportunities", "pql_feedback": "feedback"}
# What running without each table means, said in its note.
SALES_WITHOUT = {
    "crm_activities": "the follow-up SLA falls back to crm_accounts.last_touch_at",
    "opportunities": "no sales labels (opportunity_created, closed_won), no open-opportunity ineligibility",
    "pql_feedback": "no rep feedback in the PQL rules",
}


def _sales_note(table: sa.Table, key: str) -> str:
    return f"{table.name}: not in use (absent or empty), its checks were skipped; {SALES_WITHOUT[key]}"


def validate_sales(
    engine: sa.Engine, tables: SourceTables, settings: Settings, as_of: datetime, *, now: datetime
) -> StageResult:
    """The optional sales tables that are in use (`in_use`: present and holding rows), on database
    aggregates: rows before as_of (activities by occurred_at, opportunities by created_at, decisions by
    decided_at) that contradict the accounts or themselves, and rows anywhere in a table dated later
    than `now` plus `validation.future_tolerance_minutes`. A table not in use is skipped with a note."""
    suite = load_suite("sales")
    future_after = now + timedelta(minutes=settings.validation.future_tolerance_minutes)
    keys = list(SALES_BATCHES)
    with _connected(engine, "source") as conn:
        used = [key for key in keys if in_use(engine, getattr(tables, key))]
        notes = [_sales_note(getattr(tables, key), key) for key in keys if key not in used]
        if not used:
            return _stage(suite, [], settings, complete=False, notes=notes)
        columns, complete = _columns_batch(suite, conn, [getattr(tables, key) for key in used])
        if not complete:
            return _stage(suite, [columns], settings, complete=False, notes=notes)
        conditions = queries.sales_conditions(tables, as_of, future_after, FEEDBACK_DECISIONS)
        names = [SALES_BATCHES[key] for key in used]
        batches = [columns] + [
            run_batch(queries.sales_counts(conn, conditions, name), suite.batches[name]) for name in names
        ]
        failed = {check for batch in batches for check in batch.failed_checks()}
        examples = {check: queries.sales_examples(conn, conditions, check, names) for check in failed}
    return _stage(suite, batches, settings, complete=False, examples=examples, notes=notes)


def validate_accounts(engine: sa.Engine, tables: SourceTables, settings: Settings) -> StageResult:
    """The accounts table (unique, non-null ids; created_at) and the columns of crm_accounts."""
    suite = load_suite("accounts")
    with _connected(engine, "source") as conn:
        columns, complete = _columns_batch(suite, conn, [tables.accounts, tables.crm_accounts])
        if not complete:
            return _stage(suite, [columns], settings, complete=False)
        stats = run_batch(queries.account_counts(conn, tables), suite.batches["stats"])
        examples = {check: queries.account_examples(conn, tables, check) for check in stats.failed_checks()}
    return _stage(suite, [columns, stats], settings, examples=examples)


def validate_crm_tables(engine: sa.Engine, tables: OutputTables, settings: Settings) -> StageResult:
    """The pipeline's tables in the CRM database, where they exist, have every column it writes.

    A table that does not exist yet is fine (`create_tables` makes it), and so is a column added by a
    later release (`create_tables` adds it when a run opens, before anything is written; a dry run
    only reads); a table with other columns is not.
    """
    suite = load_suite("crm")
    with _connected(engine, "CRM") as conn:
        found = {table.name: stored_columns(conn, table) for table in tables.all}
    existing = [table for table in tables.all if found[table.name] is not None]
    expected = {
        table.name: [column.name for column in table.columns if not column.info.get(ADDED_LATER)]
        for table in existing
    }
    batch = run_batch(frames.columns_frame(expected, found), suite.batches["columns"])
    return _stage(suite, [batch], settings)


def _frame_columns(
    suite: StageSuite, frame: pd.DataFrame, table: str, needed: Sequence[str]
) -> tuple[BatchRun, bool]:
    columns = frames.columns_frame({table: list(needed)}, {table: set(frame.columns)})
    return run_batch(columns, suite.batches["columns"]), bool(columns["present"].all())


def validate_feature_frame(
    features: pd.DataFrame, settings: Settings, specs: Sequence[frames.Spec], used: Sequence[str]
) -> StageResult:
    """The feature frame: unique (account_id, as_of), ids present, known plans, value ranges
    (quarantinable per row) and per-column null shares.

    `specs` describe every feature column (the catalog's); `used` are the columns the scoring model
    reads: they must be present, and only they are held to null-share limits (a firmographic column the
    source never fills, which the model left out, is no warning). Value ranges are checked on every
    feature."""
    suite = load_suite("features")
    features = features.reset_index(drop=True)
    read = [spec for spec in specs if spec.name in set(used)]
    needed = ["account_id", "as_of", "plan", "is_eligible", *used]
    columns, complete = _frame_columns(suite, features, "features", list(dict.fromkeys(needed)))
    if not complete:
        return _stage(suite, [columns], settings, complete=False)
    column_sets = frames.feature_column_sets(specs, suite.extra["column_sets"])
    checked = features.join(frames.range_extremes(features, column_sets))
    batches = [
        columns,
        run_batch(checked, suite.batches["rows"]),
        run_batch(
            frames.null_shares(features, read, suite.extra["null_share_limits"]),
            suite.batches["null_shares"],
        ),
    ]
    return _stage(suite, batches, settings, rows=features)


def validate_scores(scores: pd.DataFrame, features: pd.DataFrame, settings: Settings) -> StageResult:
    """The score frame: scores in range, known tiers, a tier on eligible rows only, exactly one per
    eligible account of `features`, and a tier distribution that follows `scoring.tier_policy`."""
    suite = load_suite("scores")
    scores = scores.reset_index(drop=True)
    columns, complete = _frame_columns(suite, scores, "scores", SCORE_COLUMNS)
    if not complete:
        return _stage(suite, [columns], settings, complete=False)
    scoring = settings.scoring
    order = list(TIERS)
    if scoring.tier_policy == "quantile":
        tolerance: dict[str, Any] = suite.extra["tier_share_tolerance"]
        tiers = run_batch(
            frames.tier_shares(
                scores,
                features,
                order,
                scoring.tier_quantiles,
                relative=tolerance["relative"],
                accounts=tolerance["accounts"],
            ),
            suite.batches["tier_shares"],
        )
    else:
        tiers = run_batch(
            frames.tier_bounds(scores, features, order, scoring.tier_probabilities),
            suite.batches["tier_bounds"],
        )
    batches = [
        columns,
        run_batch(scores, suite.batches["rows"], {"tiers": order}),
        run_batch(frames.score_eligibility(scores, features), suite.batches["eligibility"]),
        run_batch(frames.score_coverage(scores, features), suite.batches["coverage"]),
        tiers,
    ]
    return _stage(suite, batches, settings, rows=scores)


def validate_output(rows: pd.DataFrame, settings: Settings) -> StageResult:
    """The rows about to be written to pql_scores: unique accounts; every PQL routed, explained and
    given a playbook (quarantinable per row)."""
    suite = load_suite("output")
    rows = rows.reset_index(drop=True)
    columns, complete = _frame_columns(suite, rows, "output", OUTPUT_COLUMNS)
    if not complete:
        return _stage(suite, [columns], settings, complete=False)
    pqls = rows[rows["is_pql"].astype("boolean").fillna(False).to_numpy(dtype=bool)]
    batches = [columns, run_batch(rows, suite.batches["rows"]), run_batch(pqls, suite.batches["pqls"])]
    return _stage(suite, batches, settings, rows=rows)
