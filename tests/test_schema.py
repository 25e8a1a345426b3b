"""The contract and output tables are created alike on every supported engine."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from pql.bulk import bulk_insert
from pql.config import load_settings
from pql.db import create_engine, redacted
from pql.schema import create_tables, output_tables, source_tables


def test_all_tables_are_created_and_creation_is_repeatable(any_db_url: str) -> None:
    settings = load_settings()
    engine = create_engine(any_db_url)
    try:
        for tables in (source_tables(settings.tables), output_tables(settings.tables)):
            create_tables(engine, tables)
            create_tables(engine, tables)
        names = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"accounts", "users", "events", "plan_changes", "crm_accounts"} <= names
    assert {"pql_scores", "pql_score_history", "pql_runs", "pql_quarantine"} <= names


def test_configured_physical_names_are_used_while_code_keeps_contract_keys(duckdb_url: str) -> None:
    settings = load_settings(
        tables={"events": {"name": "product_events", "columns": {"occurred_at": "ts", "event_name": "name"}}}
    )
    tables = source_tables(settings.tables)
    engine = create_engine(duckdb_url)
    frame = pd.DataFrame(
        {
            "event_id": ["e1"],
            "user_id": ["u1"],
            "account_id": ["a1"],
            "event_name": ["login"],
            "occurred_at": [pd.Timestamp("2025-01-01 12:00")],
            "properties": [None],
        }
    )
    try:
        create_tables(engine, tables)
        with engine.begin() as conn:
            bulk_insert(conn, tables.events, frame)
        with engine.connect() as conn:
            physical = conn.execute(sa.text("SELECT ts, name FROM product_events")).one()
            by_key = conn.execute(sa.select(tables.events.c.occurred_at, tables.events.c.event_name)).one()
    finally:
        engine.dispose()
    assert physical == by_key


def test_bulk_insert_rolls_back_with_its_transaction(any_db_url: str) -> None:
    tables = source_tables(load_settings().tables)
    engine = create_engine(any_db_url)
    frame = pd.DataFrame(
        {"account_id": ["a1", "a2"], "created_at": pd.to_datetime(["2025-01-01", "2025-01-02"])}
    )
    try:
        create_tables(engine, tables)
        try:
            with engine.begin() as conn:
                bulk_insert(conn, tables.accounts, frame)
                raise RuntimeError("injected failure after the insert")
        except RuntimeError:
            pass
        with engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(tables.accounts)).scalar_one()
    finally:
        engine.dispose()
    assert count == 0


def test_redacted_urls_hide_the_password() -> None:
    assert "s3cret" not in redacted("postgresql+psycopg://pql:s3cret@db.internal:5432/crm")
