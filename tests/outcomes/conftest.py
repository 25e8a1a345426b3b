"""Builders for production-evaluation tests: history, plan changes and CRM rows written for real."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pql.bulk import bulk_insert
from pql.config import Settings, load_settings
from pql.db import create_engine
from pql.schema import OutputTables, SourceTables, create_tables, output_tables, source_tables

MONDAY = datetime(2025, 1, 6)


def history_row(account_id: str, as_of: datetime, **values: object) -> dict[str, object]:
    """One pql_score_history row with harmless defaults; `values` override any column."""
    row: dict[str, object] = {
        "run_id": f"run-{as_of:%Y%m%d}",
        "account_id": account_id,
        "as_of": as_of,
        "probability": 0.05,
        "score": 20.0,
        "tier": "low",
        "is_pql": False,
        "is_control": False,
        "first_pql_at": None,
        "routed_to": None,
        "playbook": None,
        "model_version": "v-test",
        "scored_at": as_of + timedelta(hours=2),
    }
    row.update(values)
    return row


def frame(rows: Iterable[dict[str, object]], columns: list[str]) -> pd.DataFrame:
    data = pd.DataFrame(list(rows), columns=columns)
    for column in columns:
        if column.endswith("_at") or column == "as_of":
            data[column] = pd.to_datetime(data[column]).astype("datetime64[us]")
    return data


def insert(engine: sa.Engine, table: sa.Table, rows: Iterable[dict[str, object]]) -> None:
    rows = list(rows)
    present = {key for row in rows for key in row}
    columns = [column.key for column in table.columns if column.key in present]
    with engine.begin() as conn:
        bulk_insert(conn, table, frame(rows, columns))


class World:
    """Empty source and output tables on one database, with writers for each."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self.engine = create_engine(url)
        self.source: SourceTables = source_tables(settings.tables)
        self.output: OutputTables = output_tables(settings.tables)
        create_tables(self.engine, self.source)
        create_tables(self.engine, self.output)

    def history(self, rows: Iterable[dict[str, object]]) -> None:
        insert(self.engine, self.output.history, rows)

    def scores(self, rows: Iterable[dict[str, object]]) -> None:
        insert(self.engine, self.output.scores, rows)

    def runs(self, rows: Iterable[dict[str, object]]) -> None:
        insert(self.engine, self.output.runs, rows)

    def plan_changes(self, rows: Iterable[dict[str, object]]) -> None:
        defaults = {"from_plan": None, "trial_ends_at": None, "mrr": None}
        insert(self.engine, self.source.plan_changes, ({**defaults, **row} for row in rows))

    def crm(self, rows: Iterable[dict[str, object]]) -> None:
        defaults = {
            "owner": None,
            "lifecycle_stage": "lead",
            "has_open_opportunity": False,
            "last_touch_at": None,
            "do_not_contact": False,
        }
        insert(self.engine, self.source.crm_accounts, ({**defaults, **row} for row in rows))

    def activities(self, rows: Iterable[dict[str, object]]) -> None:
        """`crm_activities` rows; activity ids are numbered in order unless given."""
        defaults = {"owner": None, "activity_type": "email", "outcome": None}
        insert(
            self.engine,
            self.source.crm_activities,
            ({**defaults, "activity_id": f"act-{number:04d}", **row} for number, row in enumerate(rows)),
        )


@contextmanager
def shared_world(
    tmp_path_factory: pytest.TempPathFactory, **simulation: object
) -> Iterator[tuple[Settings, pd.DataFrame]]:
    """A simulated world in a DuckDB file of its own, for a module's tests to share: settings pointing
    at it, and the history written. Built with no PQL_* variables or pql.toml in sight."""
    folder = tmp_path_factory.mktemp("world")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for name in [name for name in os.environ if name.startswith("PQL_")]:
            patch.delenv(name)
        settings = load_settings(
            None, state_dir=folder, source_url=f"duckdb:///{folder.as_posix()}/world.duckdb"
        )
        world = World(settings.source_database_url, settings)
        try:
            history = simulated_world(world, **simulation)
        finally:
            world.engine.dispose()
    yield settings, history


@pytest.fixture
def world(duckdb_url: str, settings: Settings) -> World:
    """Empty source and output tables in one DuckDB file."""
    built = World(duckdb_url, settings)
    yield built
    built.engine.dispose()


def simulated_world(
    world: World, *, accounts: int, weeks: int, seed: int, control_share: float = 0.1
) -> None:
    """A small production history: weekly runs, PQLs (some held out), conversions, owners and touches.

    Treated PQLs convert at 30%, control PQLs at 15%, other accounts at 3% (within 30 days).
    Returns the history rows written.
    """
    rng = np.random.default_rng(seed)
    owners = ["ana", "bo", "cy", None]
    ids = [f"acc-{i:04d}" for i in range(accounts)]
    runs = [MONDAY + timedelta(days=7 * week) for week in range(weeks)]
    history, plan_changes, crm, ledger = [], [], [], []
    converted: dict[str, datetime] = {}
    for account_id in ids:
        owner = owners[rng.integers(len(owners))]
        plan_changes.append(
            {"account_id": account_id, "changed_at": MONDAY - timedelta(days=60), "to_plan": "free"}
        )
        entered_week = int(rng.integers(weeks)) if rng.random() < 0.3 else None
        control = entered_week is not None and rng.random() < control_share
        rate = 0.03 if entered_week is None else (0.15 if control else 0.30)
        start = runs[entered_week] if entered_week is not None else runs[0]
        if rng.random() < rate:
            converted[account_id] = start + timedelta(days=float(rng.uniform(0, 29)))
            plan_changes.append(
                {
                    "account_id": account_id,
                    "changed_at": converted[account_id],
                    "to_plan": "paid",
                    "mrr": 50.0,
                }
            )
        touch = None
        if entered_week is not None and not control and rng.random() < 0.8:
            touch = start + timedelta(hours=float(rng.uniform(1, 60)))
        crm.append({"account_id": account_id, "owner": owner, "last_touch_at": touch})
        for week, as_of in enumerate(runs):
            if account_id in converted and converted[account_id] < as_of:
                break
            qualified = entered_week is not None and week >= entered_week
            probability = float(np.clip(rng.normal(0.25 if qualified else 0.04, 0.03), 0.001, 0.99))
            history.append(
                history_row(
                    account_id,
                    as_of,
                    probability=probability,
                    score=probability * 100,
                    tier=("high" if qualified else ("medium" if probability > 0.05 else "low")),
                    is_pql=qualified and not control,
                    is_control=qualified and control,
                    first_pql_at=runs[entered_week] if qualified else None,
                    routed_to=(owner or "pql-queue") if qualified and not control else None,
                    playbook="freemium_upgrade" if qualified else None,
                )
            )
    for as_of in runs:
        rows = [row for row in history if row["as_of"] == as_of]
        ledger.append(
            {
                "run_id": f"run-{as_of:%Y%m%d}",
                "kind": "nightly",
                "as_of": as_of,
                "status": "succeeded",
                "model_version": "v-test",
                "used_fallback": False,
                "pqls": sum(bool(row["is_pql"]) for row in rows),
                "started_at": as_of + timedelta(hours=2),
                "finished_at": as_of + timedelta(hours=2, minutes=5),
                "monitoring_json": json.dumps(
                    {
                        "status": "ok",
                        "psi": {"seats": 0.05 + 0.03 * runs.index(as_of), "logins_7d": 0.02, "score": 0.01},
                        "breaches": [],
                    }
                ),
            }
        )
    latest = [row for row in history if row["as_of"] == runs[-1]]
    world.history(history)
    world.plan_changes(plan_changes)
    world.crm(crm)
    world.runs(ledger)
    world.scores(latest)
    return pd.DataFrame(history)
