"""Rep feedback through real nightly flow runs, on DuckDB and PostgreSQL: decisions recorded in
`pql_feedback` between two nights move accounts on the list, the dry run shows each move with its
reason, and a disqualified account returns once its cooldown is over."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pql.config import load_settings
from pql.db import create_engine
from pql.demo.world import write_demo_world
from pql.flows.nightly import nightly
from pql.flows.summary import RunSummary
from pql.schema import create_tables, output_tables, source_tables

END = datetime(2026, 3, 2)
NIGHT_1 = END - timedelta(days=5)
NIGHT_2 = NIGHT_1 + timedelta(days=1)
AFTER_COOLDOWN = NIGHT_1 + timedelta(days=4)
DECIDED = NIGHT_1 + timedelta(hours=10)
COOLDOWN_DAYS = 3


@dataclass
class Nights:
    """What the runs left: the scores after each night, the dry run's summary, who was decided on."""

    night_2: pd.DataFrame
    history: pd.DataFrame
    after_cooldown: pd.DataFrame
    dry_run: RunSummary
    unfit: str
    finished: str
    owned: str
    late: str


@contextmanager
def _postgres_database() -> Iterator[str]:
    """An empty PostgreSQL database of its own, dropped afterwards."""
    admin_url = os.environ.get("PQL_TEST_POSTGRES_URL")
    if not admin_url:
        pytest.skip("PostgreSQL tests need PQL_TEST_POSTGRES_URL")
    name = f"pql_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One database holding the source and the CRM, with a small demo world."""
    with ExitStack() as stack:
        if request.param == "postgres":
            url = stack.enter_context(_postgres_database())
        else:
            url = f"duckdb:///{(tmp_path_factory.mktemp('feedback') / 'pql.duckdb').as_posix()}"
        settings = load_settings(None, source_url=url)
        engine = create_engine(url)
        try:
            tables = source_tables(settings.tables)
            create_tables(engine, tables)
            write_demo_world(engine, tables, settings, accounts=300, days=90, seed=7, end=END)
        finally:
            engine.dispose()
        yield url


def _frame(url: str, key: str) -> pd.DataFrame:
    table = getattr(output_tables(load_settings(None).tables), key)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.DataFrame(conn.execute(sa.select(table)).mappings().all())
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def nights(prefect_api: None, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Nights:
    root = tmp_path_factory.mktemp("nights")
    config = root / "pql.toml"
    lines = [
        f"source_url = {json.dumps(database_url)}",
        f"crm_url = {json.dumps(database_url)}",
        f"state_dir = {json.dumps((root / '.pql').as_posix())}",
        "[flows]",
        "retry_delay_seconds = 0",
        "lock_timeout_seconds = 0",
        "[scoring]",
        f"feedback_cooldown_days = {COOLDOWN_DAYS}",
    ]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    nightly(as_of=NIGHT_1, config=str(config))
    first = _frame(database_url, "scores")
    best = first[first["is_pql"]].sort_values(["score", "account_id"], ascending=[False, True])
    unfit, finished, owned, late = best["account_id"].head(4)
    decisions = [
        {
            "account_id": unfit,
            "owner": "ana",
            "decided_at": DECIDED,
            "decision": "disqualified",
            "reason": "not a fit",
        },
        {"account_id": finished, "owner": "bo", "decided_at": DECIDED, "decision": "done", "reason": None},
        {"account_id": owned, "owner": "cy", "decided_at": DECIDED, "decision": "accepted", "reason": None},
        {
            "account_id": late,
            "owner": "di",
            "decided_at": NIGHT_2,
            "decision": "disqualified",
            "reason": None,
        },
    ]
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(source_tables(load_settings(None).tables).pql_feedback.insert(), decisions)
    finally:
        engine.dispose()
    dry_run = nightly(as_of=NIGHT_2, dry_run=True, config=str(config))
    nightly(as_of=NIGHT_2, config=str(config))
    night_2, history = _frame(database_url, "scores"), _frame(database_url, "history")
    nightly(as_of=AFTER_COOLDOWN, config=str(config))
    after = _frame(database_url, "scores")
    return Nights(night_2, history, after, dry_run, unfit, finished, owned, late)


def _row(scores: pd.DataFrame, account_id: str) -> pd.Series:
    return scores.set_index("account_id").loc[account_id]


@pytest.mark.slow
def test_a_disqualified_and_a_done_pql_leave_the_list_each_saying_why(nights: Nights) -> None:
    unfit, finished = _row(nights.night_2, nights.unfit), _row(nights.night_2, nights.finished)
    assert not unfit["is_pql"] and not finished["is_pql"]
    assert unfit["left_reason"] == (
        f"disqualified by ana on {DECIDED:%Y-%m-%d} (not a fit); may qualify again from 2026-03-01"
    )
    assert finished["left_reason"].startswith(f"marked done by bo on {DECIDED:%Y-%m-%d};")


@pytest.mark.slow
def test_an_accepted_pql_stays_and_is_marked_in_scores_and_history(nights: Nights) -> None:
    assert _row(nights.night_2, nights.owned)[["is_pql", "is_sales_accepted"]].tolist() == [True, True]
    history = nights.history[nights.history["account_id"] == nights.owned].sort_values("as_of")
    assert history["is_sales_accepted"].tolist() == [False, True]


@pytest.mark.slow
def test_a_decision_at_the_instant_of_the_run_is_not_seen_by_it(nights: Nights) -> None:
    late = _row(nights.night_2, nights.late)
    assert late["is_pql"] and pd.isna(late["sales_decision"]) and pd.isna(late["left_reason"])


@pytest.mark.slow
def test_the_dry_run_lists_each_move_with_its_reason(nights: Nights) -> None:
    changes = nights.dry_run.changes
    moves = changes[changes["change"].isin(["left_by_sales", "sales_accepted"])].set_index("account_id")
    assert moves["change"].to_dict() == {
        nights.unfit: "left_by_sales",
        nights.finished: "left_by_sales",
        nights.owned: "sales_accepted",
    }
    assert moves.loc[nights.unfit, "why"].startswith("disqualified by ana")
    assert nights.dry_run.dropped_pqls >= 2


@pytest.mark.slow
def test_after_the_cooldown_a_disqualified_account_that_still_qualifies_is_back_with_a_new_first_pql_at(
    nights: Nights,
) -> None:
    during, back = _row(nights.night_2, nights.unfit), _row(nights.after_cooldown, nights.unfit)
    assert not during["is_pql"]
    assert back["is_pql"] and back["first_pql_at"] == AFTER_COOLDOWN and pd.isna(back["left_reason"])


def test_the_nightly_validates_the_feedback_table_it_reads_and_notes_the_sales_tables_it_lacks(
    nights: Nights, database_url: str
) -> None:
    runs = _frame(database_url, "runs").sort_values("as_of")
    stages = json.loads(runs["validation_json"].iloc[-1])["stages"]
    sales = next(stage for stage in stages if stage["stage"] == "sales")
    assert {"sales.known_decisions", "sales.feedback_known_accounts"} <= set(sales["passed"])
    assert [note.split(":")[0] for note in sales["notes"]] == ["crm_activities", "opportunities"]
