"""The contract and output tables are created alike on every supported engine, and output tables of
an earlier release are upgraded in place."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from earlier_schema import AS_OF, create_earlier_tables

from pql.bulk import bulk_insert
from pql.config import load_settings
from pql.db import create_engine, redacted
from pql.schema import create_tables, in_use, output_tables, source_tables, stored_columns


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


def test_output_tables_of_the_earlier_release_are_upgraded_in_place(any_db_url: str) -> None:
    tables = output_tables(load_settings().tables)
    engine = create_engine(any_db_url)
    try:
        create_earlier_tables(engine, tables, ["kept"])
        create_tables(engine, tables)
        create_tables(engine, tables)
        with engine.begin() as conn:
            for table in (tables.scores, tables.history):
                conn.execute(sa.insert(table), [_untiered_row(table, "paid")])
        with engine.connect() as conn:
            read = {
                table.name: conn.execute(
                    sa.select(table.c.account_id, table.c.tier, table.c.ineligible_reason).order_by(
                        table.c.account_id
                    )
                ).all()
                for table in (tables.scores, tables.history)
            }
    finally:
        engine.dispose()
    expected = [("kept", "high", None), ("paid", None, "on a paid plan")]
    assert read == {"pql_scores": expected, "pql_score_history": expected}


def _untiered_row(table: sa.Table, account_id: str) -> dict[str, object]:
    """A row of `table` for an account on a paid plan: no tier, and why."""
    values = {
        "account_id": account_id,
        "tier": None,
        "ineligible_reason": "on a paid plan",
        "run_id": "run-1",
        "as_of": AS_OF,
        "probability": 0.5,
        "score": 73.3,
        "is_pql": False,
        "is_control": False,
        "model_version": "m1",
        "scored_at": AS_OF,
    }
    return {key: value for key, value in values.items() if key in table.c}


def test_an_upgrade_adds_only_the_columns_added_later(duckdb_url: str) -> None:
    tables = output_tables(load_settings().tables)
    engine = create_engine(duckdb_url)
    try:
        create_tables(engine, tables)
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {tables.scores.name} RENAME COLUMN playbook TO play"))
        create_tables(engine, tables)
        with engine.connect() as conn:
            columns = stored_columns(conn, tables.scores)
    finally:
        engine.dispose()
    assert columns is not None and "play" in columns and "playbook" not in columns


def test_an_optional_sales_table_is_in_use_only_when_it_exists_and_holds_rows(any_db_url: str) -> None:
    engine = create_engine(any_db_url)
    tables = source_tables(load_settings(None).tables)
    activities = tables.crm_activities
    assert not in_use(engine, activities)
    create_tables(engine, tables)
    assert not in_use(engine, activities)
    row = {"activity_id": "a1", "account_id": "acc_1", "occurred_at": AS_OF, "activity_type": "call"}
    with engine.begin() as conn:
        conn.execute(activities.insert(), [row])
    assert in_use(engine, activities)
    assert not in_use(engine, tables.opportunities)
    engine.dispose()


def test_a_pql_runs_table_without_alerts_json_is_upgraded_in_place(any_db_url: str) -> None:
    tables = output_tables(load_settings().tables)
    runs = tables.runs
    earlier = sa.Table(
        runs.name,
        sa.MetaData(),
        *(
            sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in runs.columns
            if c.name != "alerts_json"
        ),
    )
    row = {"run_id": "run-0", "kind": "nightly", "as_of": AS_OF, "status": "succeeded", "started_at": AS_OF}
    engine = create_engine(any_db_url)
    try:
        earlier.create(engine)
        with engine.begin() as conn:
            conn.execute(sa.insert(earlier), [row | {"used_fallback": False}])
        create_tables(engine, tables)
        with engine.begin() as conn:
            kept = conn.execute(sa.select(runs.c.run_id, runs.c.status, runs.c.alerts_json)).all()
            conn.execute(sa.update(runs).values(alerts_json='{"attempted": 1}'))
            recorded = conn.execute(sa.select(runs.c.alerts_json)).scalar_one()
    finally:
        engine.dispose()
    assert kept == [("run-0", "succeeded", None)]
    assert recorded == '{"attempted": 1}'


def test_output_tables_without_talking_points_gain_the_column_and_keep_their_rows(any_db_url: str) -> None:
    tables = output_tables(load_settings().tables)
    engine = create_engine(any_db_url)
    try:
        create_earlier_tables(engine, tables, ["kept"])
        create_tables(engine, tables)
        with engine.begin() as conn:
            for table in (tables.scores, tables.history):
                row = _untiered_row(table, "told") | {"tier": "high", "ineligible_reason": None}
                conn.execute(
                    sa.insert(table), [row | {"is_pql": True, "talking_point": "offer the Team plan"}]
                )
        with engine.connect() as conn:
            read = {
                table.name: conn.execute(
                    sa.select(table.c.account_id, table.c.talking_point).order_by(table.c.account_id)
                ).all()
                for table in (tables.scores, tables.history)
            }
    finally:
        engine.dispose()
    expected = [("kept", None), ("told", "offer the Team plan")]
    assert read == {"pql_scores": expected, "pql_score_history": expected}


def test_output_tables_of_the_earlier_release_gain_the_rep_feedback_columns(any_db_url: str) -> None:
    tables = output_tables(load_settings().tables)
    engine = create_engine(any_db_url)
    feedback = {
        "sales_decision": "disqualified",
        "sales_decided_at": AS_OF,
        "is_sales_accepted": False,
        "left_reason": "disqualified by ana on 2024-06-03; may qualify again from 2024-09-02",
    }
    try:
        create_earlier_tables(engine, tables, ["kept"])
        create_tables(engine, tables)
        with engine.begin() as conn:
            for table in (tables.scores, tables.history):
                conn.execute(sa.insert(table), [_untiered_row(table, "unfit") | feedback])
        with engine.connect() as conn:
            read = {
                table.name: conn.execute(
                    sa.select(table.c.account_id, *(table.c[key] for key in feedback)).order_by(
                        table.c.account_id
                    )
                ).all()
                for table in (tables.scores, tables.history)
            }
    finally:
        engine.dispose()
    expected = [("kept", None, None, None, None), ("unfit", *feedback.values())]
    assert read == {"pql_scores": expected, "pql_score_history": expected}


def test_a_run_ledger_of_the_earlier_release_gains_the_data_docs_column(any_db_url: str) -> None:
    tables = output_tables(load_settings().tables)
    earlier = sa.MetaData()
    sa.Table(
        tables.runs.name,
        earlier,
        *(
            sa.Column(c.name, c.type, primary_key=c.primary_key)
            for c in tables.runs.columns
            if c.name != "data_docs_path"
        ),
    )
    run = {
        "run_id": "run-0",
        "kind": "nightly",
        "as_of": AS_OF,
        "status": "succeeded",
        "used_fallback": False,
    }
    engine = create_engine(any_db_url)
    try:
        earlier.create_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.insert(earlier.tables[tables.runs.name]), [{**run, "started_at": AS_OF}])
        create_tables(engine, tables)
        with engine.begin() as conn:
            conn.execute(
                sa.insert(tables.runs),
                [
                    {
                        **run,
                        "run_id": "run-1",
                        "started_at": AS_OF,
                        "data_docs_path": "/runs/run-1/data_docs/index.html",
                    }
                ],
            )
        with engine.connect() as conn:
            read = conn.execute(
                sa.select(tables.runs.c.run_id, tables.runs.c.data_docs_path).order_by(tables.runs.c.run_id)
            ).all()
    finally:
        engine.dispose()
    assert read == [("run-0", None), ("run-1", "/runs/run-1/data_docs/index.html")]
