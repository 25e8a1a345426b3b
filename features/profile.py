"""What the source holds, aggregated in the database: the facts `pql inspect` reports.

Two kinds of query, SQLAlchemy Core with every value a bound parameter, each returning a few rows
however large the tables are:

- the source profile: spans and counts of the contract tables, events per day, event names, `to_plan`
  values, first conversions per day, filled firmographic columns, key-event occurrences;
- point-in-time outcomes at snapshot dates, by the rules of the training labels: an account is eligible
  at `as_of` when it was created before it and is not on a paid plan then (its latest plan change
  before `as_of` is not paid), and converts when it changes into a paid plan in `[as_of, as_of +
  horizon)`. A conversion before `as_of` makes the account ineligible, never a positive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pandas as pd
import sqlalchemy as sa

from pql.config import Settings
from pql.db import DataError
from pql.features.builder import snapshot_instants
from pql.features.catalog import LONGEST_WINDOW_DAYS
from pql.features.sql import count_where, key_event_condition, rows_cte, utc_day
from pql.schema import TIMESTAMP, SourceTables, in_use

TOP_EVENT_NAMES = 30
FIT_COLUMNS = ("employees", "industry", "country")
# The optional sales tables: the column dating each row, and what the table enables when it holds rows.
SALES_TABLES = {
    "crm_activities": ("occurred_at", "the follow-up SLA from the first activity after a PQL"),
    "opportunities": ("created_at", "the hybrid labels (opportunity_created, closed_won, converted_or_won)"),
    "pql_feedback": ("decided_at", "rep feedback in the PQL rules (disqualified / done cool off)"),
}


@dataclass(frozen=True)
class TableSpan:
    """Rows of a timestamped table and the first and last of its timestamps (None when empty)."""

    rows: int
    first: datetime | None
    last: datetime | None


@dataclass(frozen=True)
class SourceProfile:
    """The source tables in numbers."""

    accounts: TableSpan
    users: int
    events: TableSpan
    plan_changes: TableSpan
    events_per_day: dict[date, int]
    event_names: list[tuple[str, int]]
    distinct_event_names: int
    plans: list[tuple[str, int, int]]
    first_conversions_per_day: dict[date, int]
    filled_account_columns: dict[str, int]
    key_event_occurrences: dict[str, int]
    # Per optional sales table, by contract name: its span when in use (holding rows), else None.
    sales: dict[str, TableSpan | None] = field(default_factory=dict)

    @property
    def history_start(self) -> datetime | None:
        """The earliest observed event or plan change."""
        moments = [m for m in (self.events.first, self.plan_changes.first) if m is not None]
        return min(moments) if moments else None


def _present(engine: sa.Engine, tables: SourceTables) -> set[str]:
    inspector = sa.inspect(engine)
    return {table.name for table in tables.all if inspector.has_table(table.name)}


def check_source_tables(engine: sa.Engine, tables: SourceTables) -> None:
    """Raise DataError naming the first contract table that is missing, or accounts when it is empty.

    An empty events table is a product that logs no events (yet): its attributes and conversions can
    still train a model, so it is profiled, not refused."""
    present = _present(engine, tables)
    for table in (tables.accounts, tables.users, tables.events, tables.plan_changes):
        if table.name not in present:
            raise DataError(
                f"The source database has no table {table.name!r}. Run `pql init` to create the contract "
                f"tables, then load your data (`pql load {_contract_name(tables, table)} FILE`)."
            )
    with engine.connect() as conn:
        empty = conn.execute(sa.select(sa.literal(1)).select_from(tables.accounts).limit(1)).first() is None
    if empty:
        raise DataError(
            f"The table {tables.accounts.name!r} is empty: there is nothing to inspect yet. Load it with "
            "`pql load accounts FILE` (or write a simulated world with `pql demo-data`)."
        )


def _contract_name(tables: SourceTables, table: sa.Table) -> str:
    names = ("accounts", "users", "events", "plan_changes", "crm_accounts")
    return next(name for name in names if getattr(tables, name) is table)


def _span(conn: sa.Connection, table: sa.Table, moment: sa.Column) -> TableSpan:
    statement = sa.select(sa.func.count(), sa.func.min(moment), sa.func.max(moment)).select_from(table)
    rows, first, last = conn.execute(statement).one()
    return TableSpan(int(rows), first, last)


def _per_day(conn: sa.Connection, statement: sa.Select) -> dict[date, int]:
    return {pd.Timestamp(day).date(): int(count) for day, count in conn.execute(statement)}


def _events_per_day(tables: SourceTables) -> sa.Select:
    day = utc_day(tables.events.c.occurred_at)
    return sa.select(day.label("day"), sa.func.count()).group_by(day).order_by(day)


def _first_conversions_per_day(tables: SourceTables, settings: Settings) -> sa.Select:
    """Accounts per day of their first change into a paid plan."""
    changes = tables.plan_changes.c
    first = (
        sa.select(changes.account_id, sa.func.min(changes.changed_at).label("first_paid_at"))
        .where(changes.to_plan.in_(settings.plans.paid))
        .group_by(changes.account_id)
        .subquery("first_paid")
    )
    day = utc_day(first.c.first_paid_at)
    return sa.select(day.label("day"), sa.func.count()).group_by(day).order_by(day)


def _event_names(tables: SourceTables, top: int) -> sa.Select:
    name = tables.events.c.event_name
    count = sa.func.count().label("events")
    return sa.select(name, count).group_by(name).order_by(count.desc(), name).limit(top)


def _plans(tables: SourceTables) -> sa.Select:
    changes = tables.plan_changes.c
    count = sa.func.count().label("changes")
    accounts = sa.func.count(sa.distinct(changes.account_id)).label("accounts")
    return sa.select(changes.to_plan, count, accounts).group_by(changes.to_plan).order_by(count.desc())


def _key_event_occurrences(tables: SourceTables, settings: Settings) -> sa.Select:
    events = tables.events.c
    return sa.select(
        *(
            count_where(
                key_event_condition(events.event_name, events.properties if key.where else None, key)
            ).label(f"key_{k}")
            for k, key in enumerate(settings.key_events)
        )
    ).select_from(tables.events)


def source_profile(
    engine: sa.Engine, tables: SourceTables, settings: Settings, top_names: int = TOP_EVENT_NAMES
) -> SourceProfile:
    """Counts, spans and distributions of the source tables, each aggregated by the database."""
    accounts = tables.accounts.c
    with engine.connect() as conn:
        account_span = _span(conn, tables.accounts, accounts.created_at)
        filled = conn.execute(sa.select(*(sa.func.count(accounts[column]) for column in FIT_COLUMNS))).one()
        users = conn.execute(sa.select(sa.func.count()).select_from(tables.users)).scalar_one()
        events = _span(conn, tables.events, tables.events.c.occurred_at)
        changes = _span(conn, tables.plan_changes, tables.plan_changes.c.changed_at)
        per_day = _per_day(conn, _events_per_day(tables))
        names = [(str(name), int(count)) for name, count in conn.execute(_event_names(tables, top_names))]
        distinct_names = conn.execute(
            sa.select(sa.func.count(sa.distinct(tables.events.c.event_name)))
        ).scalar_one()
        plans = [(str(plan), int(n), int(a)) for plan, n, a in conn.execute(_plans(tables))]
        conversions = _per_day(conn, _first_conversions_per_day(tables, settings))
        occurrences = conn.execute(_key_event_occurrences(tables, settings)).one()
        sales = {}
        for name, (moment, _) in SALES_TABLES.items():
            table = getattr(tables, name)
            sales[name] = _span(conn, table, table.c[moment]) if in_use(engine, table) else None
    return SourceProfile(
        accounts=account_span,
        users=int(users),
        events=events,
        plan_changes=changes,
        events_per_day=per_day,
        event_names=names,
        distinct_event_names=int(distinct_names),
        plans=plans,
        first_conversions_per_day=conversions,
        filled_account_columns={
            column: int(count) for column, count in zip(FIT_COLUMNS, filled, strict=True)
        },
        key_event_occurrences={
            key.key: int(count) for key, count in zip(settings.key_events, occurrences, strict=True)
        },
        sales=sales,
    )


@dataclass(frozen=True)
class SnapshotConversions:
    """Converting eligible accounts at each snapshot (the positive rows of the training set)."""

    dates: tuple[datetime, ...]
    converting_rows: dict[datetime, int]
    converting_accounts: int

    @property
    def positive_rows(self) -> int:
        return sum(self.converting_rows.values())


def _snapshots(instants: Sequence[datetime], settings: Settings, window_days: int = 0) -> sa.CTE:
    horizon, window = timedelta(days=settings.horizon_days), timedelta(days=window_days)
    columns = [("as_of", TIMESTAMP), ("window_start", TIMESTAMP), ("horizon_end", TIMESTAMP)]
    return rows_cte("outcome_snapshots", columns, [(m, m - window, m + horizon) for m in instants])


def _paid_at(tables: SourceTables, settings: Settings, snapshots: sa.CTE) -> sa.CTE:
    """(as_of, account_id) of accounts on a paid plan at as_of, decided as the feature builder does:
    the latest plan change strictly before as_of, a paid one first among changes at the same instant."""
    changes = tables.plan_changes.c
    paid = changes.to_plan.in_(settings.plans.paid)
    ever_paid = sa.select(changes.account_id).where(paid).distinct()
    ranked = (
        sa.select(
            snapshots.c.as_of,
            changes.account_id,
            sa.case((paid, 1), else_=0).label("is_paid"),
            sa.func.row_number()
            .over(
                partition_by=(snapshots.c.as_of, changes.account_id),
                order_by=(changes.changed_at.desc(), sa.case((paid, 0), else_=1)),
            )
            .label("recency_rank"),
        )
        .select_from(tables.plan_changes.join(snapshots, changes.changed_at < snapshots.c.as_of))
        # Only an account that ever pays can be paying at a snapshot.
        .where(changes.account_id.in_(ever_paid))
        .cte("ranked_changes")
    )
    r = ranked.c
    return sa.select(r.as_of, r.account_id).where(r.recency_rank == 1, r.is_paid == 1).cte("paid_at")


def _conversions(tables: SourceTables, settings: Settings, snapshots: sa.CTE) -> sa.CTE:
    """(as_of, account_id) of accounts with a change into a paid plan in [as_of, as_of + horizon)."""
    changes = tables.plan_changes.c
    in_horizon = sa.and_(
        changes.changed_at >= snapshots.c.as_of, changes.changed_at < snapshots.c.horizon_end
    )
    return (
        sa.select(snapshots.c.as_of, changes.account_id)
        .select_from(tables.plan_changes.join(snapshots, in_horizon))
        .where(changes.to_plan.in_(settings.plans.paid))
        .group_by(snapshots.c.as_of, changes.account_id)
        .cte("conversions")
    )


def _same_row(cte: sa.CTE, as_of: sa.ColumnElement, account_id: sa.ColumnElement) -> sa.ColumnElement[bool]:
    return sa.and_(cte.c.as_of == as_of, cte.c.account_id == account_id)


def _eligible_conversions(tables: SourceTables, settings: Settings, snapshots: sa.CTE) -> sa.CTE:
    conversions = _conversions(tables, settings, snapshots)
    paid_at = _paid_at(tables, settings, snapshots)
    accounts = tables.accounts.c
    c = conversions.c
    return (
        sa.select(c.as_of, c.account_id)
        .select_from(
            conversions.join(
                tables.accounts, sa.and_(accounts.account_id == c.account_id, accounts.created_at < c.as_of)
            ).outerjoin(paid_at, _same_row(paid_at, c.as_of, c.account_id))
        )
        .where(paid_at.c.account_id.is_(None))
        .cte("eligible_conversions")
    )


def snapshot_conversions(
    engine: sa.Engine, tables: SourceTables, settings: Settings, dates: Sequence[datetime]
) -> SnapshotConversions:
    """Positive rows per snapshot and distinct converting accounts among eligible rows, horizon from
    `settings`: what the training set of these snapshots would hold, without building its features."""
    instants = snapshot_instants(dates)
    converting = _eligible_conversions(tables, settings, _snapshots(instants, settings))
    per_snapshot = sa.select(converting.c.as_of, sa.func.count()).group_by(converting.c.as_of)
    distinct = sa.select(sa.func.count(sa.distinct(converting.c.account_id)))
    with engine.connect() as conn:
        rows = {pd.Timestamp(as_of).to_pydatetime(): int(n) for as_of, n in conn.execute(per_snapshot)}
        accounts = conn.execute(distinct).scalar_one()
    return SnapshotConversions(
        tuple(instants), {moment: rows.get(moment, 0) for moment in instants}, int(accounts)
    )


@dataclass(frozen=True)
class EventOutcomes:
    """Eligible snapshot rows and their conversions, in total and per event name done in the window.

    `per_event` columns: event_name, rows (eligible rows that did it), converting_rows, accounts
    (distinct accounts that did it), converting_accounts (of those, distinct ones that converted in the
    horizon of a snapshot at which they had done it)."""

    rows: int
    converting_rows: int
    per_event: pd.DataFrame
    window_days: int
    snapshots: int


def _eligible_outcomes(tables: SourceTables, settings: Settings, snapshots: sa.CTE) -> sa.CTE:
    """Every eligible (as_of, account_id) with `converted` 1 or 0."""
    accounts = tables.accounts.c
    paid_at = _paid_at(tables, settings, snapshots)
    conversions = _conversions(tables, settings, snapshots)
    grid = tables.accounts.join(snapshots, accounts.created_at < snapshots.c.as_of)
    joined = grid.outerjoin(paid_at, _same_row(paid_at, snapshots.c.as_of, accounts.account_id)).outerjoin(
        conversions, _same_row(conversions, snapshots.c.as_of, accounts.account_id)
    )
    converted = sa.case((conversions.c.account_id.is_not(None), 1), else_=0)
    return (
        sa.select(snapshots.c.as_of, accounts.account_id, converted.label("converted"))
        .select_from(joined)
        .where(paid_at.c.account_id.is_(None))
        .cte("eligible_outcomes")
    )


def event_outcomes(
    engine: sa.Engine,
    tables: SourceTables,
    settings: Settings,
    dates: Sequence[datetime],
    window_days: int = LONGEST_WINDOW_DAYS,
) -> EventOutcomes:
    """Per event name, eligible snapshot rows that did it in `[as_of - window_days, as_of)` and how many
    of them converted in the horizon: one grouped query over (snapshot, account, event name)."""
    instants = snapshot_instants(dates)
    snapshots = _snapshots(instants, settings, window_days)
    outcomes = _eligible_outcomes(tables, settings, snapshots)
    events = tables.events.c
    in_window = sa.and_(
        events.occurred_at >= snapshots.c.window_start, events.occurred_at < snapshots.c.as_of
    )
    did = (
        sa.select(snapshots.c.as_of, events.account_id, events.event_name)
        .select_from(tables.events.join(snapshots, in_window))
        # Constant bounds as well, so engines can prune the scan before the join.
        .where(
            events.account_id.is_not(None),
            events.occurred_at >= instants[0] - timedelta(days=window_days),
            events.occurred_at < instants[-1],
        )
        .group_by(snapshots.c.as_of, events.account_id, events.event_name)
        .cte("did_event")
    )
    o = outcomes.c
    converting_account = sa.case((o.converted == 1, did.c.account_id))
    per_event = (
        sa.select(
            did.c.event_name,
            sa.func.count().label("rows"),
            sa.func.sum(o.converted).label("converting_rows"),
            sa.func.count(sa.distinct(did.c.account_id)).label("accounts"),
            sa.func.count(sa.distinct(converting_account)).label("converting_accounts"),
        )
        .select_from(did.join(outcomes, _same_row(outcomes, did.c.as_of, did.c.account_id)))
        .group_by(did.c.event_name)
    )
    totals = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(o.converted), 0))
    with engine.connect() as conn:
        result = conn.execute(per_event)
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        rows, converting = conn.execute(totals).one()
    frame = frame.astype(
        {
            "event_name": "object",
            "rows": "int64",
            "converting_rows": "int64",
            "accounts": "int64",
            "converting_accounts": "int64",
        }
    )
    return EventOutcomes(int(rows), int(converting), frame, window_days, len(instants))
