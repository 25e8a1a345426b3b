"""Results: the summary for the run ledger, the JSON files in the run folder, the text for the CLI,
the failure that stops the run, and the quarantine table."""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from gate_worlds import AS_OF, World, features_frame, output_rows
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from pql.config import Settings
from pql.db import DataError, create_engine
from pql.features.gate import validate_features
from pql.schema import create_tables, output_tables
from pql.validation import (
    ValidationFailed,
    data_docs_index,
    raise_for_failures,
    summary,
    summary_text,
    validate_events,
    validate_output,
    write_quarantine,
    write_results,
)
from pql.validation.gates import NO_EVENTS_NOTE
from pql.validation.gx_runner import _built
from pql.validation.quarantine import split_rows


def broken_features(settings: Settings):
    features = features_frame(settings)
    features.loc[3, "count_events_7d"] = -4
    features = pd.concat([features, features.iloc[[7]]], ignore_index=True)
    return validate_features(features, settings)


def test_the_summary_is_json_and_names_each_problem(settings: Settings) -> None:
    data = json.loads(json.dumps(summary([broken_features(settings)])))
    assert data["status"] == "failed"
    assert data["failed"] == ["features.unique_key"]
    assert data["quarantined"] == ["features.value_ranges"]
    assert data["quarantined_rows"] == 1
    problem = next(p for p in data["stages"][0]["problems"] if p["check"] == "features.value_ranges")
    assert problem["rows"] == 1
    assert problem["expectations"][0]["columns"] == ["min_non_negative"]
    assert "min_non_negative_in=count_events_7d" in problem["expectations"][0]["examples"][0]
    assert problem["hint"]


def test_the_text_names_the_expectation_the_row_count_and_examples(settings: Settings) -> None:
    text = summary_text(summary([broken_features(settings)]))
    assert "FAIL features.unique_key" in text
    assert "expect_compound_columns_to_be_unique(account_id, as_of) failed on 2 rows of 21" in text
    assert "e.g. account_id=acc_7 as_of=2026-03-02T00:00:00" in text
    assert "QUARANTINE features.value_ranges" in text
    assert "min_non_negative=-4 min_non_negative_in=count_events_7d" in text
    assert "what to do:" in text


def test_a_clean_summary_says_so_per_stage(settings: Settings) -> None:
    text = summary_text(summary([validate_output(output_rows(), settings)]))
    assert text.splitlines() == ["validation passed", "  output: passed (5 checks passed)"]


def test_a_note_is_in_the_summary_and_printed_under_its_stage(world: World) -> None:
    world.execute(sa.delete(world.tables.events))
    data = summary([validate_events(world.engine, world.tables, world.settings, AS_OF, now=AS_OF)])
    assert data["stages"][0]["notes"] == [NO_EVENTS_NOTE]
    assert summary_text(data).splitlines() == [
        "validation passed",
        "  events: passed (1 checks passed)",
        f"    note: {NO_EVENTS_NOTE}",
    ]


def test_results_are_written_as_json_into_the_run_folder(settings: Settings) -> None:
    paths = write_results(
        [broken_features(settings), validate_output(output_rows(), settings)], settings, "r42"
    )
    folder = settings.state_dir / "runs" / "r42" / "validation"
    assert sorted(paths) == sorted(
        [folder / "features.json", folder / "output.json", folder / "summary.json"]
    )
    features = json.loads((folder / "features.json").read_text())
    assert [result["suite_name"] for result in features["results"]] == [
        "pql.features.columns",
        "pql.features.rows",
        "pql.features.null_shares",
    ]
    failed = [r for r in features["results"][1]["results"] if not r["success"]]
    assert {r["expectation_config"]["meta"]["check"] for r in failed} == {
        "features.unique_key",
        "features.value_ranges",
    }
    assert json.loads((folder / "summary.json").read_text())["status"] == "failed"


def test_results_are_rendered_as_data_docs_in_the_run_folder(settings: Settings) -> None:
    results = [broken_features(settings), validate_output(output_rows(), settings)]
    write_results(results, settings, "r42")
    docs = settings.state_dir / "runs" / "r42" / "data_docs"
    assert data_docs_index(settings, "r42") == docs / "index.html"
    index = (docs / "index.html").read_text(encoding="utf-8")
    pages = sorted(docs.glob("validations/**/*.html"))
    suites = ["pql.features.columns", "pql.features.rows", "pql.features.null_shares"]
    suites += ["pql.output.columns", "pql.output.rows", "pql.output.pqls"]
    assert [page.relative_to(docs / "validations").parts[:3] for page in pages] == sorted(
        tuple(name.split(".")) for name in suites
    )
    assert all(page.relative_to(docs / "validations").parts[3] == "r42" for page in pages)
    for page in pages:
        assert page.relative_to(docs).as_posix() in index
    rows_page = next(page for page in pages if "rows" in page.parts and "features" in page.parts)
    shown = re.sub(r"\s+", " ", re.sub("<[^>]+>", " ", rows_page.read_text(encoding="utf-8")))
    assert "Expectation Suite: pql.features.rows" in shown
    assert "Run Name r42" in shown
    assert "Unsuccessful Expectations 2" in shown


def test_data_docs_grow_with_the_results_of_a_run(settings: Settings) -> None:
    features = broken_features(settings)
    write_results([features], settings, "r43")
    write_results([features, validate_output(output_rows(), settings)], settings, "r43")
    docs = settings.state_dir / "runs" / "r43" / "data_docs"
    assert len(list(docs.glob("validations/**/*.html"))) == 6
    assert "pql.output.pqls" in (docs / "index.html").read_text(encoding="utf-8")


def test_a_failed_check_raises_a_data_error_carrying_the_summary(settings: Settings) -> None:
    with pytest.raises(ValidationFailed) as raised:
        raise_for_failures([broken_features(settings)])
    assert isinstance(raised.value, DataError)
    assert raised.value.summary["failed"] == ["features.unique_key"]
    assert "FAIL features.unique_key" in str(raised.value)
    assert "features.columns" not in str(raised.value)


def test_warnings_and_quarantines_do_not_stop_the_run(settings: Settings) -> None:
    features = features_frame(settings)
    features.loc[3, "count_events_7d"] = -4
    raise_for_failures([validate_features(features, settings)])


def test_quarantined_rows_land_in_the_quarantine_table_with_their_reason(
    any_db_url: str, settings: Settings
) -> None:
    rows = output_rows()
    rows.loc[1, "routed_to"] = None
    result = validate_output(rows, settings)
    engine = create_engine(any_db_url)
    tables = output_tables(settings.tables)
    create_tables(engine, tables)
    with engine.begin() as conn:
        assert write_quarantine(conn, tables, [result], batch_id="run_1", at=AS_OF) == 1
    with engine.connect() as conn:
        stored = conn.execute(sa.select(tables.quarantine)).mappings().one()
    engine.dispose()
    assert (stored["batch_id"], stored["source_table"], stored["row_number"]) == ("run_1", "output", 1)
    assert stored["reason"].startswith("output.pql_routed: expect_column_values_to_not_be_null(routed_to)")
    assert json.loads(stored["row_json"])["account_id"] == "acc_1"
    assert stored["quarantined_at"] == AS_OF


@hypothesis_settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 30), data=st.data())
def test_split_rows_keeps_exactly_the_rows_without_a_reason(n: int, data: st.DataObject) -> None:
    frame = pd.DataFrame({"id": range(n)})
    bad = data.draw(st.sets(st.integers(0, n - 1)) if n else st.just(set()))
    kept, quarantined = split_rows(frame, {i: ["why"] for i in bad})
    assert len(kept) + len(quarantined) == n
    assert set(kept["id"]).isdisjoint(quarantined["id"])
    assert set(quarantined["row_number"]) == bad


def test_validation_prints_nothing_and_warns_nothing(
    settings: Settings, capfd: pytest.CaptureFixture
) -> None:
    _built.cache_clear()  # the context is built inside the captured block too
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        broken_features(settings)
        rows = output_rows()
        rows.loc[1, "reasons_json"] = "[]"
        validate_output(rows, settings)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert [str(w.message) for w in caught] == []


def test_writing_results_and_data_docs_prints_nothing_and_warns_nothing(
    settings: Settings, capfd: pytest.CaptureFixture
) -> None:
    results = [broken_features(settings)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_results(results, settings, "r44")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert [str(w.message) for w in caught] == []


def test_data_docs_are_written_under_a_relative_state_dir(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = settings.model_copy(update={"state_dir": Path(".pql")})
    write_results([broken_features(relative)], relative, "r45")
    assert (tmp_path / ".pql" / "runs" / "r45" / "data_docs" / "index.html").is_file()


def test_data_docs_that_cannot_be_written_leave_the_results_and_a_warning(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    docs = data_docs_index(settings, "r46").parent
    docs.parent.mkdir(parents=True)
    docs.write_text("a file where the docs folder goes", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="pql.validation.results"):
        paths = write_results([broken_features(settings)], settings, "r46")
    assert all(path.is_file() for path in paths)
    assert f"Data Docs not written to {docs}" in caplog.text
