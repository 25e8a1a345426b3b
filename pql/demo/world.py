"""A realistic product-led demo world written into the source tables.

`write_demo_world` samples accounts (heavy-tailed company sizes, industries, countries), simulates
them day by day (team growth, bursty weekday-seasonal usage, trials, conversions driven by a hidden
propensity of recent behaviour and fit, see `pql.demo.simulation`) and writes accounts, users,
events, plan changes and CRM accounts through the database's bulk path.

Memory is bounded by the number of accounts and the chunk size, not by the number of events: events
are written in chunks, each in its own transaction (one transaction of millions of rows would hold
them all in DuckDB's memory until commit). A run first removes the previous demo rows and writes the
accounts last, so an interrupted run never looks like a complete world; the next run replaces it.

Plan conventions: each account's first plan change is at its `created_at`, from no plan to free or
to trial (with `trial_ends_at`, 14 days later); an unconverted trial lapses to free at
`trial_ends_at`; conversion is a change to paid with `mrr` > 0 and is final (no plan change follows
it). An account has at most one trial.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import sqlalchemy as sa

from pql.bulk import bulk_insert
from pql.clock import start_of_day, to_utc_naive, today_in
from pql.config import Settings
from pql.demo.accounts import accounts_frame, crm_accounts_frame, sample_accounts
from pql.demo.catalog import ID_PREFIX, event_kinds
from pql.demo.clock import calendar, from_us
from pql.demo.simulation import PAID, TRIAL, Simulation
from pql.progress import Progress
from pql.schema import SourceTables, create_tables

EVENT_CHUNK_ROWS = 500_000


@dataclass(frozen=True)
class DemoWorldSummary:
    """What was written: row counts per table, the world's time window and how long it took."""

    accounts: int
    users: int
    events: int
    plan_changes: int
    trials: int
    conversions: int
    start: datetime
    end: datetime
    seconds: float


def default_end(settings: Settings) -> datetime:
    """Start of today in the configured time zone (naive UTC): the world ends the day before today."""
    return start_of_day(today_in(settings.zone), settings.zone)


@contextmanager
def _transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    with engine.begin() as conn:
        if conn.dialect.name == "duckdb":
            conn.exec_driver_sql("SET enable_progress_bar = false")  # long deletes and inserts would draw one
        yield conn


def _delete_previous_world(conn: sa.Connection, tables: SourceTables) -> None:
    """Demo rows are recognisable by their account ids; anything else in the tables is left alone."""
    for table in tables.all:
        conn.execute(sa.delete(table).where(table.c.account_id.like(f"{ID_PREFIX}%")))


def write_demo_world(
    engine: sa.Engine,
    tables: SourceTables,
    settings: Settings,
    *,
    accounts: int,
    days: int,
    seed: int,
    end: datetime | None = None,
    progress: Progress | None = None,
) -> DemoWorldSummary:
    """Replace the demo rows of the source tables with a world of `accounts` over the `days` before `end`.

    `end` (naive UTC, exclusive) defaults to the start of today in `settings.zone`. The same `seed` and
    `end` always give the same rows. Missing source tables are created first. `progress` is told the
    days simulated (their events written as they fill a chunk), of `days`.
    """
    if accounts < 1 or days < 1:
        raise ValueError(f"a demo world needs at least one account and one day (got {accounts=}, {days=})")
    started = time.perf_counter()
    if end is None:
        end = default_end(settings)
    elif end.tzinfo is not None:
        end = to_utc_naive(end, settings.zone)
    cal = calendar(end, days, settings.zone)
    rng = np.random.default_rng([seed, 0])
    population = sample_accounts(rng, accounts, cal)
    simulation = Simulation(population, cal, event_kinds(settings.key_event_names), seed)
    create_tables(engine, tables)
    with _transaction(engine) as conn:
        _delete_previous_world(conn, tables)
    events = 0
    for chunk in simulation.event_chunks(EVENT_CHUNK_ROWS, progress):
        with _transaction(engine) as conn:
            events += bulk_insert(conn, tables.events, chunk)
    plans = settings.plans
    plan_changes = simulation.plan_changes_frame(plans.free[0], plans.trial[0], plans.paid[0])
    is_paid, is_trial = simulation.plan == PAID, simulation.plan == TRIAL
    with _transaction(engine) as conn:
        users = bulk_insert(conn, tables.users, simulation.users_frame())
        bulk_insert(conn, tables.plan_changes, plan_changes)
        bulk_insert(
            conn, tables.crm_accounts, crm_accounts_frame(rng, population, is_paid, is_trial, cal.end_us)
        )
        # Accounts last: until they are in, an interrupted run's events belong to no account.
        bulk_insert(conn, tables.accounts, accounts_frame(rng, population))
    return DemoWorldSummary(
        accounts=accounts,
        users=users,
        events=events,
        plan_changes=len(plan_changes),
        trials=int((plan_changes["to_plan"] == plans.trial[0]).sum()),
        conversions=int((plan_changes["to_plan"] == plans.paid[0]).sum()),
        start=from_us(cal.start_us),
        end=end,
        seconds=time.perf_counter() - started,
    )
