"""Reading `pql_feedback` point-in-time, in SQL, next to the CRM snapshot."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from pql.config import load_settings
from pql.db import create_engine
from pql.schema import SourceTables, create_tables, source_tables
from pql.scoring.crm import SNAPSHOT_COLUMNS, crm_snapshot, feedback_snapshot

AS_OF = datetime(2026, 5, 10)
HOUR = timedelta(hours=1)


@pytest.fixture
def source(any_db_url: str) -> Iterator[tuple[sa.Engine, SourceTables]]:
    """The contract tables, with two CRM accounts and an empty pql_feedback."""
    engine = create_engine(any_db_url)
    tables = source_tables(load_settings(None).tables)
    create_tables(engine, tables)
    with engine.begin() as conn:
        conn.execute(
            tables.crm_accounts.insert(),
            [
                {"account_id": "a", "owner": "ana", "has_open_opportunity": False, "do_not_contact": False},
                {"account_id": "b", "owner": "bo", "has_open_opportunity": False, "do_not_contact": False},
            ],
        )
    yield engine, tables
    engine.dispose()


def decide(engine: sa.Engine, tables: SourceTables, *rows: tuple[str, datetime, str, str | None]) -> None:
    """Feedback rows: (account_id, decided_at, decision, owner)."""
    values = [
        {"account_id": a, "decided_at": at, "decision": d, "owner": by, "reason": f"{d} note"}
        for a, at, d, by in rows
    ]
    with engine.begin() as conn:
        conn.execute(tables.pql_feedback.insert(), values)


def decisions(frame: pd.DataFrame) -> dict[str, tuple[str, pd.Timestamp]]:
    return {row.account_id: (row.sales_decision, row.sales_decided_at) for row in frame.itertuples()}


def test_the_latest_decision_strictly_before_as_of_is_read(source: tuple[sa.Engine, SourceTables]) -> None:
    engine, tables = source
    decide(
        engine,
        tables,
        ("a", AS_OF - 48 * HOUR, "accepted", "ana"),
        ("a", AS_OF - 2 * HOUR, "done", "ana"),
        ("b", AS_OF - HOUR, "disqualified", "bo"),
    )
    read = feedback_snapshot(engine, tables, AS_OF)
    assert decisions(read) == {
        "a": ("done", pd.Timestamp(AS_OF - 2 * HOUR)),
        "b": ("disqualified", pd.Timestamp(AS_OF - HOUR)),
    }
    assert read.set_index("account_id").loc["b", ["sales_decided_by", "sales_note"]].tolist() == [
        "bo",
        "disqualified note",
    ]


def test_a_decision_at_or_after_as_of_is_not_read(source: tuple[sa.Engine, SourceTables]) -> None:
    engine, tables = source
    decide(
        engine,
        tables,
        ("a", AS_OF - HOUR, "accepted", "ana"),
        ("a", AS_OF, "disqualified", "ana"),
        ("b", AS_OF + HOUR, "done", "bo"),
    )
    assert decisions(feedback_snapshot(engine, tables, AS_OF)) == {
        "a": ("accepted", pd.Timestamp(AS_OF - HOUR))
    }


def test_two_decisions_at_the_same_instant_resolve_the_same_way_every_time(
    source: tuple[sa.Engine, SourceTables],
) -> None:
    engine, tables = source
    at = AS_OF - HOUR
    decide(
        engine,
        tables,
        ("a", at, "accepted", "ana"),
        ("a", at, "disqualified", "bo"),
        ("b", at, "done", None),
        ("b", at, "accepted", "ana"),
    )
    read = feedback_snapshot(engine, tables, AS_OF)
    assert {a: d for a, (d, _) in decisions(read).items()} == {"a": "disqualified", "b": "done"}


def test_an_unknown_decision_is_ignored(source: tuple[sa.Engine, SourceTables]) -> None:
    engine, tables = source
    decide(engine, tables, ("a", AS_OF - 2 * HOUR, "accepted", "ana"), ("a", AS_OF - HOUR, "snoozed", "ana"))
    assert decisions(feedback_snapshot(engine, tables, AS_OF)) == {
        "a": ("accepted", pd.Timestamp(AS_OF - 2 * HOUR))
    }


def test_a_decision_is_read_whatever_its_case_and_surrounding_spaces(
    source: tuple[sa.Engine, SourceTables],
) -> None:
    engine, tables = source
    decide(engine, tables, ("a", AS_OF - HOUR, "Disqualified", "ana"), ("b", AS_OF - HOUR, " DONE ", "bo"))
    assert decisions(feedback_snapshot(engine, tables, AS_OF)) == {
        "a": ("disqualified", pd.Timestamp(AS_OF - HOUR)),
        "b": ("done", pd.Timestamp(AS_OF - HOUR)),
    }


def test_the_crm_snapshot_carries_each_account_s_decision_and_accounts_only_sales_decided_on(
    source: tuple[sa.Engine, SourceTables],
) -> None:
    engine, tables = source
    decide(engine, tables, ("a", AS_OF - HOUR, "accepted", "ana"), ("z", AS_OF - HOUR, "done", "ana"))
    snapshot = crm_snapshot(engine, tables, AS_OF).set_index("account_id")
    assert snapshot.loc["a", "owner"] == "ana" and snapshot.loc["a", "sales_decision"] == "accepted"
    assert pd.isna(snapshot.loc["b", "sales_decision"])
    assert snapshot.loc["z", "sales_decision"] == "done" and pd.isna(snapshot.loc["z", "owner"])


def test_without_feedback_rows_the_crm_snapshot_is_what_it_was(
    source: tuple[sa.Engine, SourceTables],
) -> None:
    engine, tables = source
    assert crm_snapshot(engine, tables, AS_OF).columns.tolist() == list(SNAPSHOT_COLUMNS)
    assert crm_snapshot(engine, tables).columns.tolist() == list(SNAPSHOT_COLUMNS)
