"""Rep feedback from the source to the CRM: two nights scored the way the nightly run does it (feedback
read in SQL, rules, output gate, one write), with decisions recorded between them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from pql import bulk, validation
from pql.config import Settings
from pql.db import create_engine
from pql.schema import OutputTables, SourceTables, create_tables, output_tables, source_tables
from pql.scoring.crm import crm_snapshot
from pql.scoring.rows import pql_rows
from pql.scoring.writeback import current_scores, pql_list, previous_scores, write_run

NIGHT_1 = datetime(2024, 6, 3)
NIGHT_2 = NIGHT_1 + timedelta(days=1)
DECIDED = NIGHT_1 + timedelta(hours=15)


@dataclass
class TwoNights:
    engine: sa.Engine
    tables: OutputTables
    second: pd.DataFrame  # the rows the second night wrote
    unfit: str  # disqualified between the nights
    finished: str  # marked done between the nights
    owned: str  # accepted between the nights
    late: str  # disqualified at the very instant of the second night


def score_night(
    engine: sa.Engine, sources: SourceTables, tables: OutputTables, features, model, settings, as_of
):
    """One night: the CRM snapshot with feedback before `as_of`, the rules, the output gate, the write."""
    crm = crm_snapshot(engine, sources, as_of)
    rows = pql_rows(features, model, crm, previous_scores(engine, tables, as_of), settings, as_of)
    gate = validation.validate_output(rows, settings)
    assert not gate.failed, [check for check in gate.checks if check.status == "failed"]
    run = {"run_id": f"run-{as_of:%d}", "as_of": as_of, "started_at": as_of, "model_version": model.version}
    write_run(engine, tables, rows, run)
    return rows


@pytest.fixture
def two_nights(any_db_url: str, scoring_features: pd.DataFrame, trained_model) -> Iterator[TwoNights]:
    settings = Settings()
    features = scoring_features.head(120).reset_index(drop=True)
    engine = create_engine(any_db_url)
    sources, tables = source_tables(settings.tables), output_tables(settings.tables)
    create_tables(engine, sources)
    create_tables(engine, tables)
    owners = pd.DataFrame(
        {
            "account_id": features["account_id"],
            "owner": [("ana", "bob", "cy", "di")[i % 4] for i in range(len(features))],
            "has_open_opportunity": False,
            "do_not_contact": False,
        }
    )
    with engine.begin() as conn:
        bulk.bulk_insert(conn, sources.crm_accounts, owners)
    first = score_night(engine, sources, tables, features, trained_model, settings, NIGHT_1)
    pqls = first.loc[first["is_pql"], "account_id"].tolist()
    unfit, finished, owned, late = pqls[:4]
    decisions = [
        {
            "account_id": unfit,
            "owner": "ana",
            "decided_at": DECIDED,
            "decision": "disqualified",
            "reason": "not a fit",
        },
        {"account_id": finished, "owner": "bob", "decided_at": DECIDED, "decision": "done", "reason": None},
        {
            "account_id": owned,
            "owner": "cy",
            "decided_at": DECIDED,
            "decision": "accepted",
            "reason": "demo booked",
        },
        {
            "account_id": late,
            "owner": "di",
            "decided_at": NIGHT_2,
            "decision": "disqualified",
            "reason": None,
        },
    ]
    with engine.begin() as conn:
        conn.execute(sources.pql_feedback.insert(), decisions)
    second = score_night(engine, sources, tables, features, trained_model, settings, NIGHT_2)
    yield TwoNights(engine, tables, second, unfit, finished, owned, late)
    engine.dispose()


def stored(nights: TwoNights, table: sa.Table, account_id: str) -> dict:
    with nights.engine.connect() as conn:
        query = sa.select(table).where(table.c.account_id == account_id).order_by(table.c.as_of.desc())
        return dict(conn.execute(query).mappings().first())


def test_a_disqualified_pql_leaves_the_stored_list_and_its_rows_say_why(two_nights: TwoNights) -> None:
    for table in (two_nights.tables.scores, two_nights.tables.history):
        row = stored(two_nights, table, two_nights.unfit)
        assert not row["is_pql"] and row["first_pql_at"] is None
        assert row["sales_decision"] == "disqualified" and row["sales_decided_at"] == DECIDED
        assert (
            row["left_reason"]
            == "disqualified by ana on 2024-06-03 (not a fit); may qualify again from 2024-09-02"
        )


def test_a_pql_marked_done_leaves_the_stored_list_too(two_nights: TwoNights) -> None:
    row = stored(two_nights, two_nights.tables.scores, two_nights.finished)
    assert not row["is_pql"] and row["left_reason"].startswith("marked done by bob on 2024-06-03;")


def test_an_accepted_pql_stays_listed_and_is_marked_sales_accepted(two_nights: TwoNights) -> None:
    listed = pql_list(two_nights.engine, two_nights.tables).set_index("account_id")
    assert listed.loc[two_nights.owned, "is_sales_accepted"]
    assert listed.loc[two_nights.owned, "sales_decision"] == "accepted"
    assert listed["is_sales_accepted"].sum() == 1
    assert two_nights.unfit not in listed.index and two_nights.finished not in listed.index


def test_a_decision_at_the_instant_of_the_run_changes_nothing(two_nights: TwoNights) -> None:
    row = stored(two_nights, two_nights.tables.scores, two_nights.late)
    assert row["is_pql"] and row["first_pql_at"] == NIGHT_1
    assert row["sales_decision"] is None and row["left_reason"] is None and not row["is_sales_accepted"]


def test_accounts_without_a_decision_carry_none(two_nights: TwoNights) -> None:
    scores = current_scores(two_nights.engine, two_nights.tables)
    decided = scores["account_id"].isin([two_nights.unfit, two_nights.finished, two_nights.owned])
    assert scores.loc[~decided, ["sales_decision", "sales_decided_at", "left_reason"]].isna().all().all()
    assert not scores.loc[~decided, "is_sales_accepted"].any()


def test_the_ledger_counts_the_pqls_a_rep_took_off_as_dropped(two_nights: TwoNights) -> None:
    runs = two_nights.tables.runs
    with two_nights.engine.connect() as conn:
        dropped = conn.execute(sa.select(runs.c.dropped_pqls).where(runs.c.as_of == NIGHT_2)).scalar_one()
    assert dropped == int(two_nights.second["pql_status"].isin(["left_disqualified", "left_done"]).sum()) == 2
