"""The GX runner: one quiet context per process, suites from the GX JSON files, each batch validated
through its Checkpoint, SQL results validated."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from pql.db import create_engine
from pql.validation.gx_runner import (
    _batch_definition,
    _gx,
    checkpoint,
    load_suite,
    prepare,
    run_batch,
    run_query,
)


def test_the_context_is_built_once_and_reused() -> None:
    prepare()
    assert _batch_definition() is _batch_definition()


def test_a_batch_is_validated_by_the_checkpoint_of_its_suite() -> None:
    suite = load_suite("plan_changes").batches["plans"]
    frame = pd.DataFrame({"plan": ["free", "gold"], "changes": [3, 2]})
    batch = run_batch(frame, suite, {"known_plans": ["free"]})
    run, _ = checkpoint(suite)
    (definition,) = run.validation_definitions
    assert (run.name, definition.suite.name) == ("pql.plan_changes.plans", "pql.plan_changes.plans")
    assert batch.gx_result["meta"]["checkpoint_id"] == run.id
    assert batch.gx_result["meta"]["validation_id"] == definition.id
    assert batch.validation.success is False


def test_checkpoint_results_do_not_pile_up_in_the_process() -> None:
    suite = load_suite("plan_changes").batches["plans"]
    for _ in range(3):
        run_batch(pd.DataFrame({"plan": ["free"], "changes": [1]}), suite, {"known_plans": ["free"]})
    assert _gx().context.validation_results_store.list_keys() == []


def test_suite_parameters_come_from_the_caller() -> None:
    suite = load_suite("plan_changes").batches["plans"]
    frame = pd.DataFrame({"plan": ["free", "gold"], "changes": [3, 2]})
    strict = run_batch(frame, suite, {"known_plans": ["free"]})
    lenient = run_batch(frame, suite, {"known_plans": ["free", "gold"]})
    assert strict.failed_checks() == ["plan_changes.known_plans"]
    assert lenient.failed_checks() == []


def test_failing_rows_are_named_by_their_index_label() -> None:
    suite = load_suite("output").batches["pqls"]
    frame = pd.DataFrame(
        {
            "account_id": ["a", "b"],
            "score": [80.0, 70.0],
            "routed_to": ["rep", None],
            "playbook": ["x", "y"],
            "reasons_json": ['[{"g": 1}]', '[{"g": 1}]'],
        },
        index=[17, 42],
    )
    (failed,) = [run for run in run_batch(frame, suite).expectations if not run.success]
    assert failed.unexpected_index.tolist() == [42]


def test_a_query_result_is_validated_like_a_frame(duckdb_url: str) -> None:
    engine = create_engine(duckdb_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE plans (plan TEXT, changes INTEGER)"))
        conn.execute(sa.text("INSERT INTO plans VALUES ('free', 4), ('platinum', 1)"))
        query = sa.select(sa.column("plan"), sa.column("changes")).select_from(sa.table("plans"))
        batch = run_query(conn, query, load_suite("plan_changes").batches["plans"], {"known_plans": ["free"]})
    engine.dispose()
    (failed,) = [run for run in batch.expectations if not run.success]
    assert failed.result["partial_unexpected_list"] == ["platinum"]


def test_an_unknown_suite_is_an_error_naming_it() -> None:
    with pytest.raises(FileNotFoundError, match=r"stage 'nope'.*pql/nope/<batch>\.json"):
        load_suite("nope")
