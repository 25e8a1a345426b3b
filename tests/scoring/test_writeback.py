"""Write-back: one transaction, idempotent per as_of, all-or-nothing, never touching sales' tables."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from earlier_schema import create_earlier_tables

from pql import bulk
from pql.config import Settings
from pql.db import DataError, create_engine
from pql.schema import OutputTables, SourceTables, create_tables, output_tables, source_tables
from pql.scoring import writeback
from pql.scoring.crm import crm_snapshot
from pql.scoring.reasons import reasons_frame
from pql.scoring.rows import pql_rows
from pql.scoring.rules import apply_pql_rules
from pql.scoring.scores import score_frame
from pql.scoring.writeback import current_scores, pql_list, previous_scores, write_run

DAY_1 = datetime(2024, 6, 3)
DAY_2 = DAY_1 + timedelta(days=1)
RUN_FIELDS = ["run_id", "scored_at"]


@pytest.fixture
def settings() -> Settings:
    """One new PQL per owner per day, so a re-run that forgot its previous state would add more."""
    return Settings(scoring={"max_new_pqls_per_owner": 1})


@pytest.fixture(scope="module")
def features(scoring_features: pd.DataFrame) -> pd.DataFrame:
    return scoring_features.head(120).reset_index(drop=True)


@pytest.fixture(scope="module")
def explained(features: pd.DataFrame, trained_model, model_settings) -> pd.DataFrame:
    """Scores and reasons do not depend on the previous state: computed once, the rules run per test."""
    scored = score_frame(features, trained_model, model_settings)
    return scored.merge(reasons_frame(features, trained_model, model_settings), on="account_id")


def crm_accounts(features: pd.DataFrame) -> pd.DataFrame:
    n = len(features)
    return pd.DataFrame(
        {
            "account_id": features["account_id"],
            "owner": [("ana", "bob", None)[i % 3] for i in range(n)],
            "lifecycle_stage": "lead",
            "has_open_opportunity": [i % 17 == 5 for i in range(n)],
            "last_touch_at": pd.Series([DAY_1 - timedelta(days=i % 40) for i in range(n)]),
            "do_not_contact": [i % 23 == 7 for i in range(n)],
        }
    )


def output_db(url: str, settings: Settings) -> tuple[sa.Engine, OutputTables]:
    engine = create_engine(url)
    tables = output_tables(settings.tables)
    create_tables(engine, tables)
    return engine, tables


def source_db(url: str, settings: Settings, features: pd.DataFrame) -> tuple[sa.Engine, SourceTables]:
    engine = create_engine(url)
    tables = source_tables(settings.tables)
    create_tables(engine, tables)
    with engine.begin() as conn:
        bulk.bulk_insert(conn, tables.crm_accounts, crm_accounts(features))
    return engine, tables


def run_for(as_of: datetime, run_id: str, model) -> dict:
    return {
        "run_id": run_id,
        "as_of": as_of,
        "started_at": as_of + timedelta(hours=2),
        "model_version": model.version,
    }


def score_and_write(
    engine, tables, explained, model, settings, as_of, run_id, crm=None, **options
) -> pd.DataFrame:
    """One run the way the nightly flow does it: rules on the previous state, then one write."""
    crm = crm_accounts(explained) if crm is None else crm
    rows = apply_pql_rules(explained, crm, previous_scores(engine, tables, as_of), settings, as_of)
    write_run(engine, tables, rows, run_for(as_of, run_id, model), **options)
    return rows


def table_rows(engine: sa.Engine, table: sa.Table) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).fetchall()
    return pd.DataFrame(rows, columns=[c.key for c in table.columns])


def test_a_run_writes_scores_history_and_its_ledger_row(
    any_db_url, features, explained, trained_model, settings
) -> None:
    engine, tables = output_db(any_db_url, settings)
    rows = score_and_write(engine, tables, explained, trained_model, settings, DAY_1, "run-1")
    scores = current_scores(engine, tables)
    assert len(scores) == len(features) and scores["run_id"].eq("run-1").all()
    assert scores["as_of"].eq(pd.Timestamp(DAY_1)).all() and scores["model_version"].eq("test-model-1").all()
    assert scores["reasons_text"].str.len().gt(0).all()
    assert len(table_rows(engine, tables.history)) == len(features)
    run = table_rows(engine, tables.runs).iloc[0]
    assert (run["run_id"], run["status"], run["kind"]) == ("run-1", "succeeded", "nightly")
    assert (run["accounts_scored"], run["pqls"]) == (len(features), int(rows["is_pql"].sum()))
    assert 0 < run["pqls"] == run["new_pqls"]


def test_rerunning_a_date_leaves_pql_scores_identical_apart_from_run_fields(
    any_db_url, features, explained, trained_model, settings
) -> None:
    engine, tables = output_db(any_db_url, settings)
    score_and_write(engine, tables, explained, trained_model, settings, DAY_1, "run-1")
    score_and_write(engine, tables, explained, trained_model, settings, DAY_2, "run-2")
    first = current_scores(engine, tables).drop(columns=RUN_FIELDS)
    score_and_write(engine, tables, explained, trained_model, settings, DAY_2, "run-3")
    again = current_scores(engine, tables).drop(columns=RUN_FIELDS)
    pd.testing.assert_frame_equal(first, again)
    assert first["is_pql"].sum() > 0


def test_rerunning_a_date_replaces_its_history_rows_and_marks_the_earlier_run_superseded(
    any_db_url, features, explained, trained_model, settings
) -> None:
    engine, tables = output_db(any_db_url, settings)
    for run_id in ("run-1", "run-2"):
        score_and_write(engine, tables, explained, trained_model, settings, DAY_1, run_id)
    history = table_rows(engine, tables.history)
    assert len(history) == len(features) and set(history["run_id"]) == {"run-2"}
    status = table_rows(engine, tables.runs).set_index("run_id")["status"].to_dict()
    assert status == {"run-1": "superseded", "run-2": "succeeded"}


def test_previous_scores_are_those_of_the_latest_run_before_the_date(
    duckdb_url, features, explained, trained_model, settings
) -> None:
    engine, tables = output_db(duckdb_url, settings)
    assert previous_scores(engine, tables, DAY_1).empty
    score_and_write(engine, tables, explained, trained_model, settings, DAY_1, "run-1")
    score_and_write(engine, tables, explained, trained_model, settings, DAY_2, "run-2")
    assert set(previous_scores(engine, tables, DAY_2)["run_id"]) == {"run-1"}
    assert set(previous_scores(engine, tables, DAY_2 + timedelta(days=1))["run_id"]) == {"run-2"}


@pytest.mark.parametrize("failing_call", [1, 2])
def test_a_failure_part_way_leaves_the_previous_state_intact(
    any_db_url, features, explained, trained_model, settings, monkeypatch, failing_call: int
) -> None:
    engine, tables = output_db(any_db_url, settings)
    score_and_write(engine, tables, explained, trained_model, settings, DAY_1, "run-1")
    before = {table.name: table_rows(engine, table) for table in (tables.scores, tables.history, tables.runs)}
    calls = []

    def fails_on_a_later_call(conn, table, frame):
        calls.append(table.name)
        written = bulk.bulk_insert(conn, table, frame)
        if len(calls) == failing_call:
            raise OSError("connection lost after writing rows")
        return written

    monkeypatch.setattr(writeback, "bulk_insert", fails_on_a_later_call)
    with pytest.raises(OSError, match="connection lost"):
        score_and_write(engine, tables, explained, trained_model, settings, DAY_2, "run-2")
    for table in (tables.scores, tables.history, tables.runs):
        pd.testing.assert_frame_equal(table_rows(engine, table), before[table.name])


def _checksum(engine: sa.Engine, table: sa.Table) -> str:
    return hashlib.sha256(table_rows(engine, table).to_csv(index=False).encode()).hexdigest()


def test_a_run_never_changes_the_sales_owned_crm_accounts(
    any_db_url, features, explained, trained_model, settings
) -> None:
    engine, sources = source_db(any_db_url, settings, features)
    _, tables = output_db(any_db_url, settings)
    before = table_rows(engine, sources.crm_accounts)
    digest = _checksum(engine, sources.crm_accounts)
    crm = crm_snapshot(engine, sources)
    score_and_write(engine, tables, explained, trained_model, settings, DAY_1, "run-1", crm=crm)
    pd.testing.assert_frame_equal(table_rows(engine, sources.crm_accounts), before)
    assert _checksum(engine, sources.crm_accounts) == digest


@pytest.mark.parametrize("crm_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_scores_go_to_a_crm_database_separate_from_the_source(
    request, tmp_path: Path, features, trained_model, settings, crm_kind: str
) -> None:
    source_url = f"duckdb:///{(tmp_path / 'source.duckdb').as_posix()}"
    crm_url = (
        request.getfixturevalue("postgres_url")
        if crm_kind == "postgres"
        else f"sqlite:///{tmp_path}/crm.sqlite"
    )
    source, sources = source_db(source_url, settings, features)
    crm, tables = output_db(crm_url, settings)
    snapshot = crm_snapshot(source, sources)
    rows = pql_rows(features, trained_model, snapshot, previous_scores(crm, tables, DAY_1), settings, DAY_1)
    write_run(crm, tables, rows, run_for(DAY_1, "run-1", trained_model))
    scores = current_scores(crm, tables)
    assert len(scores) == len(features)
    owners = set(scores.loc[scores["is_pql"], "routed_to"])
    assert owners <= {"ana", "bob", settings.scoring.unowned_queue} and owners
    assert not sa.inspect(source).has_table(tables.scores.name)
    assert not sa.inspect(crm).has_table(sources.events.name)


def test_an_older_date_cannot_roll_back_the_current_list_but_can_be_backfilled(
    duckdb_url, features, explained, trained_model, settings
) -> None:
    engine, tables = output_db(duckdb_url, settings)
    score_and_write(engine, tables, explained, trained_model, settings, DAY_2, "run-2")
    with pytest.raises(DataError, match="newer than this run"):
        score_and_write(engine, tables, explained, trained_model, settings, DAY_1, "run-1")
    score_and_write(engine, tables, explained, trained_model, settings, DAY_1, "run-1", update_current=False)
    assert set(current_scores(engine, tables)["run_id"]) == {"run-2"}
    history = table_rows(engine, tables.history)
    assert history.groupby("run_id").size().to_dict() == {"run-1": len(features), "run-2": len(features)}
    assert table_rows(engine, tables.runs).set_index("run_id")["kind"].to_dict() == {
        "run-1": "backfill",
        "run-2": "nightly",
    }


def test_duplicate_accounts_are_refused_before_anything_is_written(
    duckdb_url, explained, trained_model, settings
) -> None:
    engine, tables = output_db(duckdb_url, settings)
    rows = apply_pql_rules(explained, crm_accounts(explained), pd.DataFrame(), settings, DAY_1)
    with pytest.raises(DataError, match="1 account_id value"):
        write_run(engine, tables, pd.concat([rows, rows.head(1)]), run_for(DAY_1, "run-1", trained_model))
    assert table_rows(engine, tables.runs).empty


def test_reading_without_the_output_tables_says_to_run_init(duckdb_url, settings) -> None:
    engine = create_engine(duckdb_url)
    with pytest.raises(DataError, match="pql init"):
        current_scores(engine, output_tables(settings.tables))


def test_pql_list_is_a_reps_pqls_best_first(duckdb_url, features, explained, trained_model, settings) -> None:
    engine, tables = output_db(duckdb_url, settings)
    for day in range(4):
        as_of = DAY_1 + timedelta(days=day)
        score_and_write(engine, tables, explained, trained_model, settings, as_of, f"run-{day}")
    everyone = pql_list(engine, tables)
    anas = pql_list(engine, tables, owner="ana")
    assert everyone["is_pql"].all() and everyone["score"].is_monotonic_decreasing
    assert set(anas["routed_to"]) == {"ana"} and len(anas) > 1
    assert (
        pql_list(engine, tables, owner="ana", top=1)["account_id"].tolist()
        == anas["account_id"].head(1).tolist()
    )


def test_an_ineligible_account_is_written_without_tier_grade_or_reasons(
    any_db_url, paid_features, trained_model, settings
) -> None:
    features, paid = (part[:120] for part in paid_features)
    engine, tables = output_db(any_db_url, settings)
    rows = pql_rows(features, trained_model, crm_accounts(features), pd.DataFrame(), settings, DAY_1)
    write_run(engine, tables, rows, run_for(DAY_1, "run-1", trained_model))
    written = {
        "scores": current_scores(engine, tables),
        "history": table_rows(engine, tables.history).sort_values("account_id", ignore_index=True),
    }
    engine.dispose()
    paid_ids = set(features.loc[paid, "account_id"])
    for frame in written.values():
        ineligible = frame["account_id"].isin(paid_ids).to_numpy()
        assert frame.loc[ineligible, ["tier", "grade"]].isna().all().all()
        assert frame.loc[ineligible, "ineligible_reason"].eq("on a paid plan").all()
        assert frame.loc[ineligible, "reasons_json"].eq("[]").all()
        assert frame.loc[~ineligible, "tier"].notna().all()
        assert frame.loc[~ineligible, "ineligible_reason"].isna().all()


def test_lists_read_from_tables_a_run_has_not_upgraded_yet(any_db_url, settings) -> None:
    engine = create_engine(any_db_url)
    tables = output_tables(settings.tables)
    create_earlier_tables(engine, tables, ["acc_1"])
    tables.runs.create(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(tables.runs).values(
                run_id="run-0", kind="nightly", as_of=DAY_1, status="succeeded", started_at=DAY_1
            )
        )
    read = [current_scores(engine, tables), pql_list(engine, tables), previous_scores(engine, tables, DAY_2)]
    engine.dispose()
    for frame in read:
        assert frame["account_id"].tolist() == ["acc_1"] and frame["tier"].tolist() == ["high"]
        assert frame["ineligible_reason"].isna().all()
