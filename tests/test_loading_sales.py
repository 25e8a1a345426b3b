"""The sales-owned tables (crm_activities, opportunities, pql_feedback) through `pql init` and `pql load`,
on every database: good rows stored with their types, bad rows quarantined with a reason, repeated
facts counted as duplicates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pql.cli import app
from pql.config import load_settings
from pql.db import create_engine
from pql.schema import output_tables, source_tables

NOON = datetime(2024, 5, 1, 12, 0, 0)
ACTIVITY = {
    "activity_id": "act1",
    "account_id": "a1",
    "owner": "Ana",
    "occurred_at": "2024-05-01T14:00:00+02:00",
    "activity_type": "call",
    "outcome": "connected",
}
OPPORTUNITY = {
    "opportunity_id": "opp1",
    "account_id": "a1",
    "created_at": "2024-05-01T12:00:00Z",
    "stage": "closed won",
    "amount": "1200.50",
    "closed_at": "1714564800",
    "is_won": "yes",
}
FEEDBACK = {
    "account_id": "a1",
    "owner": "Ana",
    "decided_at": "2024-05-01T12:00:00Z",
    "decision": " Disqualified ",
    "reason": "student project",
}


@pytest.fixture
def source(any_db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[sa.Engine]:
    """The source database the CLI loads into (PQL_SOURCE_URL), output tables in the state folder."""
    monkeypatch.setenv("PQL_SOURCE_URL", any_db_url)
    monkeypatch.setenv("PQL_STATE_DIR", str(tmp_path / ".pql"))
    engine = create_engine(any_db_url)
    yield engine
    engine.dispose()


def tables():
    return source_tables(load_settings(None).tables)


def pql(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def load_csv(tmp_path: Path, table: str, rows: list[dict]) -> str:
    path = tmp_path / f"{table}.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return pql("load", table, str(path))


def stored(engine: sa.Engine, table: sa.Table) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.select(table), conn)


def quarantine_reasons(engine: sa.Engine, table: str) -> list[str]:
    q = output_tables(load_settings(None).tables).quarantine
    with engine.connect() as conn:
        rows = conn.execute(sa.select(q.c.reason).where(q.c.source_table == table).order_by(q.c.row_number))
        return [row.reason for row in rows]


def test_init_creates_the_three_sales_tables_empty(source: sa.Engine) -> None:
    pql("init")
    for table in tables().sales:
        with source.connect() as conn:
            assert sa.inspect(conn).has_table(table.name)
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0


def test_activities_load_with_utc_timestamps(source: sa.Engine, tmp_path: Path) -> None:
    output = load_csv(
        tmp_path, "crm_activities", [ACTIVITY, {**ACTIVITY, "activity_id": "act2", "outcome": None}]
    )
    assert "loaded                  2" in output
    rows = stored(source, tables().crm_activities).sort_values("activity_id")
    assert rows["occurred_at"].tolist() == [NOON, NOON]
    assert rows["activity_type"].tolist() == ["call", "call"]
    assert pd.isna(rows["outcome"].iloc[1])


def test_bad_activities_are_quarantined_and_a_repeated_activity_id_is_a_duplicate(
    source: sa.Engine, tmp_path: Path
) -> None:
    rows = [
        ACTIVITY,
        {**ACTIVITY, "activity_id": None},
        {**ACTIVITY, "activity_id": "act3", "occurred_at": "last tuesday"},
        {**ACTIVITY, "outcome": "repeated"},
    ]
    output = load_csv(tmp_path, "crm_activities", rows)
    assert "loaded                  1" in output
    assert "quarantined             2" in output
    assert "duplicates              1  (1 repeated within the file, 0 already in the table)" in output
    reasons = quarantine_reasons(source, "crm_activities")
    assert reasons[0] == "activity_id: missing, required for every crm_activities row"
    assert reasons[1].startswith("occurred_at: 'last tuesday' is not a timestamp")


def test_opportunities_load_amount_as_a_number_and_is_won_as_a_boolean(
    source: sa.Engine, tmp_path: Path
) -> None:
    open_opportunity = {
        **OPPORTUNITY,
        "opportunity_id": "opp2",
        "amount": None,
        "closed_at": None,
        "is_won": None,
    }
    load_csv(tmp_path, "opportunities", [OPPORTUNITY, open_opportunity])
    rows = stored(source, tables().opportunities).sort_values("opportunity_id")
    assert rows["amount"].iloc[0] == pytest.approx(1200.5)
    assert pd.isna(rows["amount"].iloc[1])
    assert rows["closed_at"].iloc[0] == NOON
    assert pd.isna(rows["closed_at"].iloc[1])
    assert bool(rows["is_won"].iloc[0]) is True
    assert pd.isna(rows["is_won"].iloc[1])


def test_bad_opportunities_are_quarantined_naming_the_column(source: sa.Engine, tmp_path: Path) -> None:
    rows = [
        {**OPPORTUNITY, "opportunity_id": "opp2", "amount": "-5"},
        {**OPPORTUNITY, "opportunity_id": "opp3", "is_won": "maybe"},
        {**OPPORTUNITY, "opportunity_id": "opp4", "amount": "lots"},
    ]
    output = load_csv(tmp_path, "opportunities", rows)
    assert "quarantined             3" in output
    assert quarantine_reasons(source, "opportunities") == [
        "amount: '-5' is negative",
        "is_won: 'maybe' is not a boolean (use true/false, yes/no or 1/0)",
        "amount: 'lots' is not a number",
    ]


def test_a_decision_is_read_in_any_case_and_stored_lower_case(source: sa.Engine, tmp_path: Path) -> None:
    rows = [FEEDBACK, {**FEEDBACK, "decided_at": "2024-05-02", "decision": "ACCEPTED"}]
    load_csv(tmp_path, "pql_feedback", rows)
    decisions = stored(source, tables().pql_feedback).sort_values("decided_at")["decision"].tolist()
    assert decisions == ["disqualified", "accepted"]


def test_an_unknown_decision_is_quarantined_saying_which_decisions_count(
    source: sa.Engine, tmp_path: Path
) -> None:
    output = load_csv(tmp_path, "pql_feedback", [FEEDBACK, {**FEEDBACK, "decision": "maybe later"}])
    assert "loaded                  1" in output
    assert "quarantined             1" in output
    (reason,) = quarantine_reasons(source, "pql_feedback")
    assert reason == (
        "decision: 'maybe later' is not a decision pql can use "
        "(one of accepted, disqualified, done, any case)"
    )


def test_feedback_without_a_decision_is_quarantined(source: sa.Engine, tmp_path: Path) -> None:
    load_csv(tmp_path, "pql_feedback", [{**FEEDBACK, "decision": None}])
    assert quarantine_reasons(source, "pql_feedback") == [
        "decision: missing, required for every pql_feedback row"
    ]


def test_the_same_decision_loaded_twice_is_a_duplicate_already_in_the_table(
    source: sa.Engine, tmp_path: Path
) -> None:
    load_csv(tmp_path, "pql_feedback", [FEEDBACK])
    output = load_csv(tmp_path, "pql_feedback", [{**FEEDBACK, "decision": "disqualified"}])
    assert "duplicates              1  (0 repeated within the file, 1 already in the table)" in output
    assert len(stored(source, tables().pql_feedback)) == 1


def test_a_quarantined_row_keeps_the_original_values(source: sa.Engine, tmp_path: Path) -> None:
    load_csv(tmp_path, "pql_feedback", [{**FEEDBACK, "decision": "Nope"}])
    q = output_tables(load_settings(None).tables).quarantine
    with source.connect() as conn:
        original = json.loads(conn.execute(sa.select(q.c.row_json)).scalar_one())
    assert original["decision"] == "Nope"
