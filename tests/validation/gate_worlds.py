"""Test data for the gates: a small, clean source world to break one way at a time, and tiny frames.

Source tables are created without keys or NOT NULL constraints: they belong to the customer, so the
checks cannot count on constraints, and the bad rows the tests insert must be storable.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pql.bulk import bulk_insert
from pql.config import Settings
from pql.db import create_engine
from pql.features.catalog import feature_specs
from pql.schema import SourceTables, source_tables
from pql.scoring.scores import score_of_probability, tiers

AS_OF = datetime(2026, 3, 2)
ACCOUNTS = ("acc_1", "acc_2", "acc_3", "acc_4", "acc_5")
HISTORY_DAYS = 35
OTHER_EVENTS = ("login",)


def loose(tables: SourceTables) -> SourceTables:
    """The same tables and columns, without primary keys, NOT NULL or indexes."""
    md = sa.MetaData()
    copies = [
        sa.Table(table.name, md, *[sa.Column(c.name, c.type, key=c.key) for c in table.columns])
        for table in [*tables.all, tables.account_attributes, *tables.sales]
    ]
    return SourceTables(md, *copies)


@dataclass
class World:
    engine: sa.Engine
    tables: SourceTables
    settings: Settings

    def insert(self, table: str, rows: list[dict]) -> None:
        with self.engine.begin() as conn:
            bulk_insert(conn, getattr(self.tables, table), pd.DataFrame(rows))

    def execute(self, statement: sa.Executable) -> None:
        with self.engine.begin() as conn:
            conn.execute(statement)


def event(
    account: str, name: str, at: datetime, event_id: str | None = None, user: str | None = None
) -> dict:
    return {
        "event_id": event_id or f"e_{account}_{name}_{at:%Y%m%d%H%M%S}",
        "user_id": user or f"u_{account}",
        "account_id": account,
        "event_name": name,
        "occurred_at": at,
        "properties": None,
    }


def clean_rows(settings: Settings) -> dict[str, list[dict]]:
    """Five free accounts created 90 days before AS_OF, each doing every key event and a login
    at noon on each of the 35 days before AS_OF."""
    created = AS_OF - timedelta(days=90)
    names = [*settings.key_event_names, *OTHER_EVENTS]
    return {
        "accounts": [
            {"account_id": a, "name": a, "domain": f"{a}.example", "created_at": created} for a in ACCOUNTS
        ],
        "users": [{"user_id": f"u_{a}", "account_id": a, "created_at": created} for a in ACCOUNTS],
        "plan_changes": [
            {"account_id": a, "changed_at": created, "from_plan": None, "to_plan": "free"} for a in ACCOUNTS
        ],
        "crm_accounts": [{"account_id": a, "owner": "rep_1"} for a in ACCOUNTS],
        "events": [
            event(a, name, AS_OF - timedelta(days=k) + timedelta(hours=12))
            for k in range(1, HISTORY_DAYS + 1)
            for a in ACCOUNTS
            for name in names
        ],
    }


def make_world(url: str, settings: Settings) -> Iterator[World]:
    engine = create_engine(url)
    tables = loose(source_tables(settings.tables))
    tables.metadata.create_all(engine)
    world = World(engine, tables, settings)
    for table, rows in clean_rows(settings).items():
        world.insert(table, rows)
    try:
        yield world
    finally:
        engine.dispose()


def features_frame(settings: Settings, n: int = 20) -> pd.DataFrame:
    """n valid feature rows for AS_OF: every catalog column, free plan, all eligible."""
    columns: dict[str, object] = {"account_id": [f"acc_{i}" for i in range(n)], "as_of": AS_OF}
    for spec in feature_specs(settings):
        if spec.kind == "categorical":
            columns[spec.name] = "free" if spec.name == "plan" else "x"
        elif spec.unit.startswith("share"):
            columns[spec.name] = np.linspace(0, 1, n)
        else:
            columns[spec.name] = np.arange(n, dtype=float)
    columns["is_eligible"] = True
    return pd.DataFrame(columns)


def scores_frame(features: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """A score per feature row with tiers assigned the way scoring does it."""
    probability = np.linspace(0.9, 0.01, len(features))
    eligible = features["is_eligible"].to_numpy(dtype=bool)
    return pd.DataFrame(
        {
            "account_id": features["account_id"].to_numpy(),
            "probability": probability,
            "score": score_of_probability(probability),
            "tier": tiers(probability, eligible, settings),
        }
    )


def output_rows(n: int = 6) -> pd.DataFrame:
    """n rows about to be written: the first half PQLs, routed, explained, with a playbook."""
    is_pql = np.arange(n) < n // 2
    return pd.DataFrame(
        {
            "account_id": [f"acc_{i}" for i in range(n)],
            "score": np.linspace(90, 10, n),
            "is_pql": is_pql,
            "routed_to": np.where(is_pql, "rep_1", None),
            "playbook": np.where(is_pql, "trial_nudge", None),
            "reasons_json": np.where(is_pql, '[{"group": "team_activity"}]', "[]"),
        }
    )
