"""`pql load`: mapping, normalising, quarantining, de-duplicating and writing exports all or nothing."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import typer
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from released_together import released_together
from typer.testing import CliRunner

import pql.loading.staging
from pql.commands import load as load_command
from pql.config import Settings, load_settings
from pql.db import DataError, create_engine
from pql.loading import (
    CONTRACT,
    MappingError,
    column_plan,
    epoch_unit,
    file_format,
    load_file,
    normalise,
    parse_mapping,
)
from pql.schema import create_tables, output_tables, source_tables

DATA = Path(__file__).parent / "data" / "loading"
EVENT = {
    "event_id": "e1",
    "user_id": "u1",
    "account_id": "a1",
    "event_name": "login",
    "occurred_at": "2024-05-01T12:00:00Z",
}
NOON = datetime(2024, 5, 1, 12, 0, 0)
PARIS = ZoneInfo("Europe/Paris")


def raw_rows(rows: list[dict]) -> pd.DataFrame:
    """Rows as the readers hand them over: object columns, indexed by 1-based row number."""
    return pd.DataFrame(rows, index=pd.RangeIndex(1, len(rows) + 1), dtype=object)


def normalised(table: str, rows: list[dict], mapping: dict[str, str] | None = None):
    raw = raw_rows(rows)
    return normalise(raw, column_plan(table, list(raw.columns), mapping or {}))


def only_reason(table: str, row: dict) -> str:
    result = normalised(table, [row])
    assert result.good.empty, "the row should have been quarantined"
    return result.quarantined["reason"].item()


def write_csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def events(n: int, start: int = 0) -> list[dict]:
    return [{**EVENT, "event_id": f"e{i}"} for i in range(start, start + n)]


def table_rows(engine: sa.Engine, table: sa.Table) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.select(table), conn)


@pytest.fixture
def engine(any_db_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(any_db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def duck(duckdb_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(duckdb_url)
    yield engine
    engine.dispose()


def _loaded_twice(rows: list[dict], chunk_rows: int) -> tuple:
    """The reports of loading the same events CSV twice into a fresh SQLite database."""
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(None, state_dir=Path(folder))
        path = write_csv(Path(folder) / "events.csv", rows)
        engine = create_engine(f"sqlite:///{folder}/db.sqlite")
        try:
            return (
                load(engine, settings, "events", path, chunk_rows=chunk_rows),
                load(engine, settings, "events", path, chunk_rows=chunk_rows),
            )
        finally:
            engine.dispose()


def load(engine: sa.Engine, settings: Settings, table: str, path: Path, **kwargs):
    kwargs.setdefault("fmt", file_format(path))
    return load_file(engine, settings.tables, table, path, **kwargs)


# --- the contract the loader reads ---------------------------------------------------------------


def test_loader_contract_names_every_column_of_the_schema(settings: Settings) -> None:
    tables = source_tables(settings.tables)
    for name, columns in CONTRACT.items():
        assert [c.name for c in columns] == [c.key for c in getattr(tables, name).columns]


# --- --map and the column plan ---------------------------------------------------------------------


def test_mapping_reads_target_equals_source_pairs() -> None:
    assert parse_mapping(["occurred_at=timestamp", "event_name=event"], "events") == {
        "occurred_at": "timestamp",
        "event_name": "event",
    }


def test_mapping_to_an_unknown_column_names_the_allowed_ones() -> None:
    with pytest.raises(
        MappingError, match=r"'when' is not a column of events\. Allowed targets: event_id, user_id"
    ):
        parse_mapping(["when=timestamp"], "events")


@pytest.mark.parametrize("pair", ["occurred_at", "=timestamp", "occurred_at="])
def test_mapping_without_both_sides_is_refused(pair: str) -> None:
    with pytest.raises(MappingError, match="is not TARGET=SOURCE"):
        parse_mapping([pair], "events")


def test_mapping_one_column_twice_is_refused() -> None:
    with pytest.raises(MappingError, match="mapped twice"):
        parse_mapping(["event_id=uuid", "event_id=messageId"], "events")


def test_missing_required_column_names_table_column_columns_found_and_a_map_hint() -> None:
    with pytest.raises(DataError) as caught:
        column_plan("events", ["messageId", "userId", "event", "timestamp", "account_id"], {})
    message = str(caught.value)
    assert "events: cannot load this file" in message
    assert "required column 'occurred_at' is missing" in message
    assert "--map occurred_at=timestamp" in message
    assert "Columns found: messageId, userId, event, timestamp, account_id." in message


def test_mapping_from_a_column_the_file_lacks_is_a_data_error() -> None:
    with pytest.raises(DataError, match="--map role=job_title: the file has no column 'job_title'"):
        column_plan("users", ["user_id", "account_id", "created_at"], {"role": "job_title"})


def test_optional_columns_may_be_absent() -> None:
    plan = column_plan("accounts", ["account_id", "created_at"], {})
    assert plan.sources == {"account_id": "account_id", "created_at": "created_at"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", "csv"),
        ("a.CSV.gz", "csv"),
        ("a.parquet", "parquet"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson.gz", "jsonl"),
    ],
)
def test_format_is_inferred_from_the_extension(name: str, expected: str) -> None:
    assert file_format(Path(name)) == expected


def test_an_unknown_extension_asks_for_format() -> None:
    with pytest.raises(MappingError, match="pass --format"):
        file_format(Path("export.txt"))


def test_explicit_format_wins_over_the_extension() -> None:
    assert file_format(Path("export.json.gz"), "jsonl") == "jsonl"


# --- timestamps ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00",
        "2024-05-01 12:00:00",
        "2024-05-01T14:00:00+02:00",
        "2024-05-01T07:00:00-0500",
        "2024-05-01 12:00:00 UTC",
        "1714564800",
        1714564800,
        1714564800.0,
        "1714564800000",
        1714564800000,
        1714564800000000,
        1714564800000000000,
    ],
)
def test_iso_text_and_epoch_seconds_millis_micros_nanos_give_the_same_naive_utc_instant(
    value: object,
) -> None:
    result = normalised("events", [{**EVENT, "occurred_at": value}])
    assert result.quarantined.empty
    assert result.good["occurred_at"].item() == NOON


def test_a_date_alone_means_its_midnight_utc() -> None:
    result = normalised("events", [{**EVENT, "occurred_at": "2024-05-01"}])
    assert result.good["occurred_at"].item() == datetime(2024, 5, 1)


def test_naive_and_aware_text_can_mix_in_one_column() -> None:
    rows = [{**EVENT, "event_id": "a", "occurred_at": "2024-05-01T12:00:00"}]
    rows.append({**EVENT, "event_id": "b", "occurred_at": "2024-05-01T13:00:00+01:00"})
    assert normalised("events", rows).good["occurred_at"].tolist() == [NOON, NOON]


@pytest.mark.parametrize(
    ("magnitude", "unit"),
    [
        (6.3e8, "s"),
        (4.1e9, "s"),
        (6.3e11, "ms"),
        (4.1e12, "ms"),
        (6.3e14, "us"),
        (4.1e15, "us"),
        (6.3e17, "ns"),
    ],
)
def test_epoch_unit_follows_magnitude(magnitude: float, unit: str) -> None:
    assert epoch_unit(magnitude) == unit


def test_the_epoch_unit_is_chosen_per_column_and_reported() -> None:
    result = normalised("events", [{**EVENT, "occurred_at": 1714564800000}])
    assert result.epoch_units == {"occurred_at": "ms"}


def test_milliseconds_in_a_seconds_column_are_quarantined_with_the_likely_unit() -> None:
    rows = [{**EVENT, "event_id": f"e{i}", "occurred_at": 1714564800 + i} for i in range(3)]
    rows.append({**EVENT, "event_id": "late", "occurred_at": 1714564800000})
    result = normalised("events", rows)
    assert len(result.good) == 3
    reason = result.quarantined["reason"].item()
    assert (
        "occurred_at: 1714564800000 read as epoch seconds (this column's unit) is in the year 56302" in reason
    )
    assert "looks like epoch milliseconds" in reason


def test_the_epoch_unit_carries_over_to_later_chunks() -> None:
    plan = column_plan("events", list(EVENT), {})
    first = normalise(raw_rows([{**EVENT, "occurred_at": "1714564800"}]), plan)
    second = normalise(raw_rows([{**EVENT, "occurred_at": "1714564800000"}]), plan, first.epoch_units)
    assert "read as epoch seconds" in second.quarantined["reason"].item()


@pytest.mark.parametrize("value", ["1970-01-01T00:00:00Z", "1989-12-31", "2100-01-01", "0001-01-01"])
def test_timestamps_outside_1990_to_2099_are_quarantined(value: str) -> None:
    reason = only_reason("events", {**EVENT, "occurred_at": value})
    assert reason.startswith(f"occurred_at: '{value}' is ")
    assert "outside 1990-2099" in reason


def test_an_epoch_number_too_small_for_any_unit_is_quarantined() -> None:
    reason = only_reason("events", {**EVENT, "occurred_at": "86400"})
    assert "read as epoch seconds (this column's unit) is in the year 1970" in reason


# --- one reason per kind of bad row ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "row", "reason"),
    [
        ("events", {**EVENT, "event_id": None}, "event_id: missing, required for every events row"),
        ("events", {**EVENT, "event_id": "   "}, "event_id: missing, required for every events row"),
        ("events", {**EVENT, "account_id": None}, "account_id: missing, required for every events row"),
        ("events", {**EVENT, "event_name": ""}, "event_name: missing, required for every events row"),
        (
            "events",
            {**EVENT, "occurred_at": "yesterday"},
            "occurred_at: 'yesterday' is not a timestamp (expected ISO 8601",
        ),
        ("events", {**EVENT, "occurred_at": True}, "occurred_at: True is not a timestamp"),
        ("events", {**EVENT, "event_id": "x" * 65}, "is 65 characters long (at most 64)"),
        ("events", {**EVENT, "event_id": 1.5}, "event_id: 1.5 is a fraction, not an identifier"),
        ("events", {**EVENT, "account_id": ["a1", "a2"]}, "account_id: \"['a1', 'a2']\" is a list"),
        ("events", {**EVENT, "properties": "{oops"}, "properties: '{oops' is not valid JSON"),
        ("events", {**EVENT, "properties": "[1, 2]"}, "properties: '[1, 2]' is JSON but not an object"),
        ("events", {**EVENT, "event_name": "log\x00in"}, "contains a NUL character (at character 4)"),
        ("events", {**EVENT, "event_name": "caf\udce9"}, "is not valid UTF-8 (byte 0xe9 at character 4)"),
        ("events", {**EVENT, "user_id": "u\ud800"}, "is not valid Unicode (lone surrogate U+D800"),
        ("events", {**EVENT, "user_id": True}, "user_id: True is a boolean, expected text"),
        (
            "accounts",
            {"account_id": "a1", "created_at": "2024-01-01", "employees": "ten"},
            "employees: 'ten' is not a whole number",
        ),
        (
            "accounts",
            {"account_id": "a1", "created_at": "2024-01-01", "employees": "12.5"},
            "employees: '12.5' is not a whole number",
        ),
        (
            "accounts",
            {"account_id": "a1", "created_at": "2024-01-01", "employees": -3},
            "employees: -3 is negative",
        ),
        (
            "accounts",
            {"account_id": "a1", "created_at": "2024-01-01", "employees": "3000000000"},
            "employees: '3000000000' is too large",
        ),
        (
            "accounts",
            {"account_id": "a1", "created_at": "2024-01-01", "employees": True},
            "employees: True is not a whole number",
        ),
        (
            "crm_accounts",
            {"account_id": "a1", "do_not_contact": "maybe"},
            "do_not_contact: 'maybe' is not a boolean (use true/false, yes/no or 1/0)",
        ),
        (
            "crm_accounts",
            {"account_id": "a1", "has_open_opportunity": 2},
            "has_open_opportunity: 2 is not a boolean",
        ),
        (
            "plan_changes",
            {"account_id": "a1", "changed_at": "2024-01-01", "to_plan": "paid", "mrr": "lots"},
            "mrr: 'lots' is not a number",
        ),
        (
            "plan_changes",
            {"account_id": "a1", "changed_at": "2024-01-01", "to_plan": "paid", "mrr": "-5"},
            "mrr: '-5' is negative",
        ),
        (
            "plan_changes",
            {"account_id": "a1", "changed_at": "2024-01-01", "to_plan": None},
            "to_plan: missing, required for every plan_changes row",
        ),
        (
            "users",
            {"user_id": "u1", "account_id": "a1", "created_at": "2024-01-01", "role": {"x": 1}},
            "role: '{\"x\": 1}' is a JSON object, expected text",
        ),
    ],
)
def test_each_kind_of_bad_row_is_quarantined_with_a_precise_reason(
    table: str, row: dict, reason: str
) -> None:
    assert reason in only_reason(table, row)


def test_a_row_with_several_problems_is_quarantined_once_with_every_reason() -> None:
    result = normalised("events", [{**EVENT, "event_id": None, "occurred_at": "soon"}])
    assert len(result.quarantined) == 1
    assert result.quarantined["reason"].item() == (
        "event_id: missing, required for every events row; occurred_at: 'soon' is not a timestamp "
        "(expected ISO 8601 such as 2024-05-01T12:00:00Z, or epoch seconds or milliseconds)"
    )


def test_quarantined_rows_keep_their_row_number_and_original_row() -> None:
    rows = [EVENT, {**EVENT, "event_id": "e2", "occurred_at": "never"}]
    quarantined = normalised("events", rows).quarantined
    assert quarantined["row_number"].tolist() == [2]
    assert json.loads(quarantined["row_json"].item()) == {**EVENT, "event_id": "e2", "occurred_at": "never"}


def test_undecodable_bytes_are_shown_escaped_in_the_stored_row() -> None:
    quarantined = normalised("events", [{**EVENT, "event_name": "caf\udce9"}]).quarantined
    assert json.loads(quarantined["row_json"].item())["event_name"] == "caf\\xe9"


def test_the_problem_summary_counts_rows_per_check() -> None:
    rows = [{**EVENT, "event_id": f"e{i}", "occurred_at": "bad"} for i in range(3)] + [EVENT]
    assert normalised("events", rows).problems == {"occurred_at: not a timestamp": 3}


# --- values that do load ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("YES", True), ("t", True), (1, True), (False, False), ("n", False), ("0", False)],
)
def test_boolean_words_and_numbers_are_booleans(value: object, expected: bool) -> None:
    result = normalised("crm_accounts", [{"account_id": "a1", "do_not_contact": value}])
    assert result.good["do_not_contact"].tolist() == [expected]


@pytest.mark.parametrize(("value", "expected"), [("12", 12), ("12.0", 12), (" 7 ", 7), (40.0, 40)])
def test_whole_numbers_are_integers(value: object, expected: int) -> None:
    result = normalised("accounts", [{"account_id": "a1", "created_at": "2024-01-01", "employees": value}])
    assert result.good["employees"].item() == expected


def test_numeric_ids_become_text_without_a_decimal_point() -> None:
    result = normalised("events", [{**EVENT, "account_id": 42, "user_id": 7.0}])
    assert result.good[["account_id", "user_id"]].iloc[0].tolist() == ["42", "7"]


def test_ids_are_trimmed_and_blank_optional_values_are_missing() -> None:
    result = normalised("events", [{**EVENT, "account_id": " a1 ", "user_id": "  "}])
    assert result.good["account_id"].item() == "a1"
    assert result.good["user_id"].item() is None


def test_na_is_text_not_missing_in_csv(tmp_path: Path, duck: sa.Engine, settings: Settings) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text("account_id,created_at,country\na1,2024-01-01,NA\na2,2024-01-01,\n", encoding="utf-8")
    load(duck, settings, "accounts", path)
    countries = table_rows(duck, source_tables(settings.tables).accounts)["country"].tolist()
    assert countries[0] == "NA"
    assert pd.isna(countries[1])


# --- nested JSON, vendor exports and properties ----------------------------------------------------


def test_a_dotted_source_reaches_into_nested_objects() -> None:
    row = {
        "messageId": "m1",
        "event": "login",
        "timestamp": "2024-05-01T12:00:00Z",
        "context": {"groupId": "g1"},
    }
    mapping = {
        "event_id": "messageId",
        "event_name": "event",
        "occurred_at": "timestamp",
        "account_id": "context.groupId",
    }
    assert normalised("events", [row], mapping).good["account_id"].item() == "g1"


def test_a_dotted_source_reaches_into_json_text_columns() -> None:
    row = {**EVENT, "account_id": None, "properties": '{"$groups": {"company": "c9"}}'}
    result = normalised("events", [row], {"account_id": "properties.$groups.company"})
    assert result.good["account_id"].item() == "c9"


def test_a_one_element_list_counts_as_its_element() -> None:
    row = {**EVENT, "groups": {"company": ["acct-7"]}}
    assert normalised("events", [row], {"account_id": "groups.company"}).good["account_id"].item() == "acct-7"


def test_a_dotted_source_absent_from_a_row_is_missing_with_its_path_in_the_reason() -> None:
    row = {**EVENT, "context": {"library": "x"}}
    reason = normalised("events", [row], {"account_id": "context.groupId"}).quarantined["reason"].item()
    assert reason == "account_id (from context.groupId): missing, required for every events row"


def test_unmapped_event_columns_are_packed_into_properties() -> None:
    row = {**EVENT, "browser": "firefox", "plan": None, "seats": 3}
    assert json.loads(normalised("events", [row]).good["properties"].item()) == {
        "browser": "firefox",
        "seats": 3,
    }


def test_a_column_read_through_a_dotted_path_is_not_packed() -> None:
    row = {**EVENT, "account_id": None, "context": {"groupId": "g1"}, "browser": "firefox"}
    result = normalised("events", [row], {"account_id": "context.groupId"})
    assert json.loads(result.good["properties"].item()) == {"browser": "firefox"}


def test_unmapped_columns_are_ignored_when_properties_is_mapped() -> None:
    row = {**EVENT, "browser": "firefox", "event_properties": {"template": "blank"}}
    result = normalised("events", [row], {"properties": "event_properties"})
    assert json.loads(result.good["properties"].item()) == {"template": "blank"}


def test_segment_export_loads_with_its_documented_mapping(duck: sa.Engine, settings: Settings) -> None:
    mapping = parse_mapping(
        [
            "event_id=messageId",
            "user_id=userId",
            "event_name=event",
            "occurred_at=timestamp",
            "account_id=context.groupId",
        ],
        "events",
    )
    report = load(duck, settings, "events", DATA / "segment_tracks.jsonl", mapping=mapping)
    assert (report.loaded, report.quarantined) == (3, 0)
    rows = table_rows(duck, source_tables(settings.tables).events).set_index("event_id")
    assert rows.loc["ajs-5f1b2d", "occurred_at"] == datetime(2024, 5, 1, 9, 5)
    assert json.loads(rows.loc["ajs-5f1b2c", "properties"]) == {"invitees": 2}
    assert rows["account_id"].tolist() == ["acct-1", "acct-2", "acct-1"]


def test_amplitude_export_loads_with_its_documented_mapping(duck: sa.Engine, settings: Settings) -> None:
    mapping = parse_mapping(
        [
            "event_id=uuid",
            "event_name=event_type",
            "occurred_at=event_time",
            "account_id=groups.company",
            "properties=event_properties",
        ],
        "events",
    )
    report = load(duck, settings, "events", DATA / "amplitude_events.jsonl", mapping=mapping)
    # Amplitude's own `event_id` is a per-device counter (12 twice here): mapping uuid keeps both events.
    assert (report.loaded, report.duplicates) == (2, 0)
    rows = table_rows(duck, source_tables(settings.tables).events)
    assert rows["occurred_at"].tolist() == [datetime(2024, 5, 1, 9, 30, 0, 123000), datetime(2024, 5, 1, 10)]


def test_posthog_export_loads_with_its_documented_mapping(duck: sa.Engine, settings: Settings) -> None:
    mapping = parse_mapping(
        [
            "event_id=uuid",
            "user_id=distinct_id",
            "event_name=event",
            "occurred_at=timestamp",
            "account_id=properties.$groups.company",
        ],
        "events",
    )
    report = load(duck, settings, "events", DATA / "posthog_events.csv", mapping=mapping)
    assert (report.loaded, report.quarantined) == (2, 0)
    rows = table_rows(duck, source_tables(settings.tables).events)
    assert rows["account_id"].tolist() == ["acct-1", "acct-2"]
    assert rows["user_id"].tolist() == ["u-100", "u-101"]


# --- the counting invariant ------------------------------------------------------------------------

cell = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.integers(min_value=-(10**19), max_value=10**19),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(["2024-05-01T12:00:00Z", "1714564800", "1714564800000", "1970-01-01", " ", "{}", "[]"]),
)


@given(
    st.lists(
        st.fixed_dictionaries({name: cell for name in [*EVENT, "properties", "extra"]}),
        min_size=1,
        max_size=12,
    )
)
@hypothesis_settings(max_examples=80, deadline=None)
def test_every_row_is_either_good_or_quarantined_exactly_once(rows: list[dict]) -> None:
    raw = raw_rows(rows)
    result = normalise(raw, column_plan("events", list(raw.columns), {}))
    good, bad = set(result.good.index), set(result.quarantined["row_number"])
    assert good.isdisjoint(bad)
    assert good | bad == set(raw.index)
    assert result.quarantined["reason"].map(bool).all()


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["e1", "e2", "e3", "e4", None]),
            st.sampled_from(["2024-05-01", "bad", "1970-01-01"]),
        ),
        max_size=15,
    ),
    st.integers(min_value=1, max_value=4),
)
@hypothesis_settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_loaded_plus_quarantined_plus_duplicates_equals_input_rows(
    rows: list[tuple[str | None, str]], chunk_rows: int
) -> None:
    first, second = _loaded_twice([{**EVENT, "event_id": i, "occurred_at": t} for i, t in rows], chunk_rows)
    for report in (first, second):
        assert report.loaded + report.quarantined + report.duplicates == report.input_rows == len(rows)
    assert second.loaded == 0
    assert second.duplicates_in_table == first.loaded


# --- loading into each database --------------------------------------------------------------------


def test_good_rows_load_into_every_database(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    rows = [
        {**EVENT, "event_id": "e1", "occurred_at": "2024-05-01T14:00:00+02:00", "properties": '{"a": 1}'},
        {**EVENT, "event_id": "e2", "occurred_at": "1714564800000", "user_id": None},
    ]
    report = load(engine, settings, "events", write_csv(tmp_path / "events.csv", rows))
    assert (report.input_rows, report.loaded, report.quarantined, report.duplicates) == (2, 2, 0, 0)
    stored = table_rows(engine, source_tables(settings.tables).events).sort_values("event_id")
    assert stored["occurred_at"].tolist() == [NOON, NOON]
    assert stored["properties"].iloc[0] == '{"a": 1}'
    assert pd.isna(stored["user_id"].iloc[1])


def test_physical_table_and_column_names_come_from_the_settings(engine: sa.Engine, tmp_path: Path) -> None:
    settings = load_settings(
        None,
        state_dir=tmp_path / ".pql",
        tables={"events": {"name": "product_events", "columns": {"occurred_at": "ts", "event_id": "id"}}},
    )
    report = load(engine, settings, "events", write_csv(tmp_path / "events.csv", events(2)))
    assert report.loaded == 2
    events_table = source_tables(settings.tables).events
    assert (events_table.name, events_table.c.occurred_at.name) == ("product_events", "ts")
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(events_table.c.event_id, events_table.c.occurred_at).order_by(events_table.c.event_id)
        ).all()
    assert stored == [("e0", NOON), ("e1", NOON)]


def test_typed_columns_load_into_every_database(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "crm.csv",
        [
            {
                "account_id": "a1",
                "owner": "Ana",
                "has_open_opportunity": "yes",
                "do_not_contact": "0",
                "last_touch_at": "2024-05-01T12:00:00Z",
            },
            {
                "account_id": "a2",
                "owner": None,
                "has_open_opportunity": "no",
                "do_not_contact": "true",
                "last_touch_at": None,
            },
        ],
    )
    assert load(engine, settings, "crm_accounts", path).loaded == 2
    stored = table_rows(engine, source_tables(settings.tables).crm_accounts).sort_values("account_id")
    assert stored["has_open_opportunity"].tolist() == [True, False]
    assert stored["do_not_contact"].tolist() == [False, True]
    assert stored["last_touch_at"].iloc[0] == NOON


def test_quarantined_rows_are_stored_with_batch_table_row_reason_and_original(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    rows = [EVENT, {**EVENT, "event_id": "e2", "occurred_at": "whenever"}]
    when = datetime(2024, 6, 1, 8, 0)
    report = load(engine, settings, "events", write_csv(tmp_path / "events.csv", rows), loaded_at=when)
    stored = table_rows(engine, output_tables(settings.tables).quarantine)
    assert len(stored) == 1
    row = stored.iloc[0]
    assert (row["batch_id"], row["source_table"], row["row_number"]) == (report.batch_id, "events", 2)
    assert row["reason"].startswith("occurred_at: 'whenever' is not a timestamp")
    assert json.loads(row["row_json"])["occurred_at"] == "whenever"
    assert row["quarantined_at"] == when


def test_invalid_utf8_in_a_csv_cell_quarantines_only_that_row(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(
        b"event_id,account_id,event_name,occurred_at\n"
        b"e1,a1,login,2024-05-01T12:00:00Z\n"
        b"e2,a1,caf\xe9,2024-05-01T12:00:00Z\n"
    )
    report = load(engine, settings, "events", path)
    assert (report.loaded, report.quarantined) == (1, 1)
    reason = table_rows(engine, output_tables(settings.tables).quarantine)["reason"].item()
    assert reason == "event_name: 'caf\\\\xe9' is not valid UTF-8 (byte 0xe9 at character 4)"


def test_unreadable_json_lines_are_quarantined(duck: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        json.dumps(EVENT).encode()
        + b"\n\n{not json\n[1, 2]\n"
        + json.dumps({**EVENT, "event_id": "e2"}).encode()
    )
    report = load(duck, settings, "events", path)
    assert (report.input_rows, report.loaded, report.quarantined) == (4, 2, 2)
    stored = table_rows(duck, output_tables(settings.tables).quarantine).sort_values("row_number")
    assert stored["row_number"].tolist() == [2, 3]
    assert stored["reason"].iloc[0].startswith("line is not valid JSON")
    assert stored["reason"].iloc[1] == "line is JSON but not an object (a list)"
    assert json.loads(stored["row_json"].iloc[0]) == "{not json"


def test_gzipped_json_lines_load(duck: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(row) + "\n" for row in events(3))
    assert load(duck, settings, "events", path).loaded == 3


def test_parquet_loads_with_native_timestamps_and_integers(
    duck: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "accounts.parquet"
    frame = pa.table(
        {
            "account_id": ["a1", "a2"],
            "created_at": pa.array(
                [datetime(2024, 5, 1, 14, tzinfo=PARIS), datetime(2024, 5, 2, tzinfo=PARIS)],
                pa.timestamp("ms", "Europe/Paris"),
            ),
            "employees": pa.array([12, None], pa.int64()),
        }
    )
    pq.write_table(frame, path, row_group_size=1)
    report = load(duck, settings, "accounts", path, chunk_rows=1)
    assert report.loaded == 2
    stored = table_rows(duck, source_tables(settings.tables).accounts).sort_values("account_id")
    assert stored["created_at"].tolist() == [NOON, datetime(2024, 5, 1, 22)]
    assert stored["employees"].iloc[0] == 12
    assert pd.isna(stored["employees"].iloc[1])


def test_a_file_with_a_header_and_no_rows_loads_nothing(
    duck: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(",".join(EVENT) + "\n", encoding="utf-8")
    report = load(duck, settings, "events", path)
    assert (report.input_rows, report.loaded) == (0, 0)


def test_an_empty_file_loads_nothing(duck: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"")
    assert load(duck, settings, "events", path).input_rows == 0


# --- duplicates ------------------------------------------------------------------------------------


def test_duplicate_event_ids_within_a_file_keep_the_first_row(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    rows = [EVENT, {**EVENT, "event_name": "second copy"}, {**EVENT, "event_id": "e2"}]
    report = load(engine, settings, "events", write_csv(tmp_path / "events.csv", rows), chunk_rows=1)
    assert (report.loaded, report.duplicates_in_file, report.duplicates_in_table) == (2, 1, 0)
    stored = table_rows(engine, source_tables(settings.tables).events)
    assert stored.set_index("event_id").loc["e1", "event_name"] == "login"


def test_loading_the_same_file_twice_inserts_nothing_the_second_time(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "events.csv", events(5))
    load(engine, settings, "events", path)
    again = load(engine, settings, "events", path)
    assert (again.loaded, again.duplicates_in_table) == (0, 5)
    assert len(table_rows(engine, source_tables(settings.tables).events)) == 5


def test_a_primary_key_already_in_the_table_is_a_duplicate_not_an_error(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    first = [{"account_id": "a1", "created_at": "2024-01-01", "name": "Old"}]
    second = [
        {"account_id": "a1", "created_at": "2024-01-01", "name": "New"},
        {"account_id": "a2", "created_at": "2024-01-01"},
    ]
    load(engine, settings, "accounts", write_csv(tmp_path / "one.csv", first))
    report = load(engine, settings, "accounts", write_csv(tmp_path / "two.csv", second))
    assert (report.loaded, report.duplicates_in_table) == (1, 1)
    stored = table_rows(engine, source_tables(settings.tables).accounts).set_index("account_id")
    assert stored.loc["a1", "name"] == "Old"


def test_plan_changes_are_duplicates_on_account_time_and_plan(
    duck: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    rows = [
        {"account_id": "a1", "changed_at": "2024-01-01T00:00:00Z", "to_plan": "trial"},
        {"account_id": "a1", "changed_at": "1704067200", "to_plan": "trial"},
        {"account_id": "a1", "changed_at": "2024-01-01T00:00:00Z", "to_plan": "paid"},
    ]
    report = load(duck, settings, "plan_changes", write_csv(tmp_path / "plans.csv", rows))
    assert (report.loaded, report.duplicates_in_file) == (2, 1)


# --- events without ids ----------------------------------------------------------------------------

NO_ID = {k: v for k, v in EVENT.items() if k != "event_id"}
PROPERTIES = {"plan": "pro", "seats": 3}


def events_without_ids(n: int) -> list[dict]:
    return [{**NO_ID, "event_name": f"step_{i}", "properties": json.dumps(PROPERTIES)} for i in range(n)]


def test_the_derived_id_hashes_the_rows_contract_values() -> None:
    result = normalised("events", [{**NO_ID, "properties": '{"seats":3, "plan":"pro"}'}])
    # sha256('["a1","u1","login","2024-05-01T12:00:00.000000","{\"plan\":\"pro\",\"seats\":3}"]')
    assert result.good["event_id"].tolist() == ["row-0b2fa15b794f617e0e16de746478aee2"]


def test_an_events_csv_without_event_id_loaded_twice_inserts_its_rows_once(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "events.csv", events_without_ids(4))
    first = load(engine, settings, "events", path)
    again = load(engine, settings, "events", path)
    assert (first.loaded, first.derived_ids) == (4, 4)
    assert (again.loaded, again.duplicates_in_table) == (0, 4)
    stored = table_rows(engine, source_tables(settings.tables).events)
    assert len(stored) == 4 and stored["event_id"].str.fullmatch("row-[0-9a-f]{32}").all()


def test_the_derived_id_is_the_same_for_the_same_row_from_csv_and_parquet(
    duck: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    rows = events_without_ids(3)
    load(duck, settings, "events", write_csv(tmp_path / "events.csv", rows))
    parquet = pa.table(
        {
            "user_id": ["u1"] * 3,
            "account_id": ["a1"] * 3,
            "event_name": [row["event_name"] for row in rows],
            "occurred_at": pa.array(
                [datetime(2024, 5, 1, 14, tzinfo=PARIS)] * 3, pa.timestamp("us", "Europe/Paris")
            ),
            "properties": ['{"seats": 3,  "plan": "pro"}'] * 3,  # other key order and spacing
        }
    )
    pq.write_table(parquet, tmp_path / "events.parquet")
    report = load(duck, settings, "events", tmp_path / "events.parquet")
    assert (report.derived_ids, report.loaded, report.duplicates_in_table) == (3, 0, 3)


def test_an_empty_event_id_column_gets_derived_ids(
    duck: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "events.csv", [{**row, "event_id": None} for row in events_without_ids(3)])
    report = load(duck, settings, "events", path, chunk_rows=2)
    assert (report.loaded, report.quarantined, report.derived_ids) == (3, 0, 3)
    assert report.derived_id_reason == "the file's event_id column is empty"


def test_an_event_id_column_empty_only_in_the_first_chunk_still_requires_ids(
    duck: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "events.csv", [{**EVENT, "event_id": None}, *events(2)])
    report = load(duck, settings, "events", path, chunk_rows=1)
    assert (report.loaded, report.quarantined, report.derived_ids) == (2, 1, 0)
    assert report.derived_id_reason is None
    assert report.problems == {"event_id: missing": 1}
    assert table_rows(duck, output_tables(settings.tables).quarantine)["row_number"].tolist() == [1]


def test_identical_rows_without_ids_are_one_event(
    duck: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "events.csv", [NO_ID, NO_ID, {**NO_ID, "user_id": "u2"}])
    report = load(duck, settings, "events", path)
    assert (report.loaded, report.duplicates_in_file) == (2, 1)


@given(
    st.lists(
        st.tuples(st.sampled_from(["a1", "a2", None]), st.sampled_from(["2024-05-01", "bad", "1714564800"])),
        max_size=12,
    ),
    st.integers(min_value=1, max_value=4),
)
@hypothesis_settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_derived_ids_keep_loaded_plus_quarantined_plus_duplicates_equal_to_input_rows(
    rows: list[tuple[str | None, str]], chunk_rows: int
) -> None:
    first, second = _loaded_twice([{**NO_ID, "account_id": a, "occurred_at": t} for a, t in rows], chunk_rows)
    for report in (first, second):
        assert report.loaded + report.quarantined + report.duplicates == report.input_rows == len(rows)
    good = {(a, t) for a, t in rows if a is not None and t != "bad"}
    assert first.loaded == len(good)  # "2024-05-01" and "1714564800" are different instants
    assert (second.loaded, second.duplicates_in_table) == (0, first.loaded)


# --- all or nothing --------------------------------------------------------------------------------


@pytest.fixture
def loaded_before(engine: sa.Engine, settings: Settings, tmp_path: Path) -> list[pd.DataFrame]:
    """Events and quarantine after one earlier load: what a failed load must leave untouched."""
    load(
        engine,
        settings,
        "events",
        write_csv(tmp_path / "before.csv", [*events(2), {**EVENT, "event_id": None}]),
    )
    return [table_rows(engine, table) for table in loaded_tables(settings)]


def loaded_tables(settings: Settings) -> tuple[sa.Table, sa.Table]:
    return source_tables(settings.tables).events, output_tables(settings.tables).quarantine


# The file's first row is quarantined, so the failures below come after quarantine writes.
FAILING_FILE_ROWS = [{**EVENT, "event_id": None}, *events(6, start=10)]


def test_a_failure_while_staging_chunks_leaves_every_table_as_it_was(
    engine: sa.Engine,
    settings: Settings,
    tmp_path: Path,
    loaded_before: list[pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_bulk_insert, writes = pql.loading.staging.bulk_insert, []

    def failing_on_the_third_chunk(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> int:
        writes.append(table.name)
        if writes.count(writes[0]) == 3:  # the third chunk's staging write
            raise RuntimeError("injected failure")
        return real_bulk_insert(conn, table, frame)

    monkeypatch.setattr(pql.loading.staging, "bulk_insert", failing_on_the_third_chunk)
    with pytest.raises(RuntimeError, match="injected failure"):
        load(engine, settings, "events", write_csv(tmp_path / "after.csv", FAILING_FILE_ROWS), chunk_rows=2)
    for table, rows_before in zip(loaded_tables(settings), loaded_before, strict=True):
        pd.testing.assert_frame_equal(table_rows(engine, table), rows_before)


def test_a_failure_after_the_insert_leaves_every_table_as_it_was(
    engine: sa.Engine, settings: Settings, tmp_path: Path, loaded_before: list[pd.DataFrame]
) -> None:
    @sa.event.listens_for(engine, "after_cursor_execute")
    def fail_after_inserting_events(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().startswith("INSERT INTO events"):
            raise RuntimeError("injected failure")

    with pytest.raises(RuntimeError, match="injected failure"):
        load(engine, settings, "events", write_csv(tmp_path / "after.csv", FAILING_FILE_ROWS), chunk_rows=2)
    sa.event.remove(engine, "after_cursor_execute", fail_after_inserting_events)
    for table, rows_before in zip(loaded_tables(settings), loaded_before, strict=True):
        pd.testing.assert_frame_equal(table_rows(engine, table), rows_before)


def test_a_malformed_csv_line_late_in_the_file_fails_the_load_and_writes_nothing(
    duck: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "events.csv", [*events(4), {**EVENT, "event_id": None}])
    with path.open("a", encoding="utf-8") as out:
        out.write("e9,u1,a1,login,2024-05-01,surplus\n")
    with pytest.raises(DataError, match=r"events.csv: not a readable CSV file .*line 7.*Nothing was loaded"):
        load(duck, settings, "events", path, chunk_rows=2)
    assert table_rows(duck, source_tables(settings.tables).events).empty
    assert table_rows(duck, output_tables(settings.tables).quarantine).empty


# --- the command -----------------------------------------------------------------------------------


def flat(output: str) -> str:
    """Command output with the error panel's frame and line wrapping removed."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", output).split())


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, duckdb_url: str) -> typer.Typer:
    monkeypatch.setenv("PQL_SOURCE_URL", duckdb_url)
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """pql"""

    load_command.register(app)
    return app


def test_load_command_prints_counts_and_where_quarantined_rows_are(cli: typer.Typer, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "events.csv", [*events(3), events(1)[0], {**EVENT, "event_id": None}])
    result = CliRunner().invoke(cli, ["load", "events", str(path)])
    assert result.exit_code == 0, result.output
    assert "input rows              5" in result.output
    assert "loaded                  3" in result.output
    assert "quarantined             1" in result.output
    assert "duplicates              1  (1 repeated within the file, 0 already in the table)" in result.output
    assert "loaded + quarantined + duplicates = 5 = input rows" in result.output
    assert "quarantined rows are in pql_quarantine, batch_id " in result.output
    assert "1  event_id: missing" in result.output


def test_load_command_applies_maps(cli: typer.Typer, tmp_path: Path) -> None:
    rows = [{"messageId": "m1", "event": "login", "timestamp": "1714564800", "account_id": "a1"}]
    path = write_csv(tmp_path / "export.csv", rows)
    args = ["load", "events", str(path), "--map", "event_id=messageId", "--map", "event_name=event"]
    result = CliRunner().invoke(cli, [*args, "--map", "occurred_at=timestamp"])
    assert result.exit_code == 0, result.output
    assert "epoch numbers in occurred_at read as seconds" in result.output


def test_load_command_refuses_an_unknown_map_target_with_exit_2(cli: typer.Typer, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "events.csv", events(1))
    result = CliRunner().invoke(cli, ["load", "events", str(path), "--map", "when=timestamp"])
    assert result.exit_code == 2
    assert "Allowed targets: event_id, user_id, account_id, event_name, occurred_at, properties" in flat(
        result.output
    )


def test_load_command_refuses_an_unknown_table_with_exit_2(cli: typer.Typer, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "events.csv", events(1))
    assert CliRunner().invoke(cli, ["load", "sessions", str(path)]).exit_code == 2


def test_load_command_refuses_an_unknown_extension_with_exit_2(cli: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "events.txt"
    path.write_text("x\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["load", "events", str(path)])
    assert result.exit_code == 2
    assert "pass --format csv, parquet or jsonl" in flat(result.output)


def test_load_command_exits_1_naming_a_missing_column(cli: typer.Typer, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "events.csv", [{k: v for k, v in EVENT.items() if k != "occurred_at"}])
    result = CliRunner().invoke(cli, ["load", "events", str(path)])
    assert result.exit_code == 1
    assert "required column 'occurred_at' is missing" in result.output


def test_load_command_says_how_many_event_ids_were_derived_and_from_which_columns(
    cli: typer.Typer, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "pages.csv", [{**row, "messageId": "m"} for row in events_without_ids(2)])
    result = CliRunner().invoke(cli, ["load", "events", str(path)])
    assert result.exit_code == 0, result.output
    assert (
        "event_id derived for 2 rows from account_id, user_id, event_name, occurred_at, properties "
        "(the file has no event_id column); if messageId holds unique ids, load with --map "
        "event_id=messageId instead"
    ) in flat(result.output)


# --- account attributes ------------------------------------------------------------------------------

ATTRIBUTE_TABLES = {
    "accounts": {"attributes": {"signup_channel": "categorical", "seats_purchased": "numeric"}},
    "account_attributes": {"attributes": {"Lead Source": "categorical"}},
}


def test_declared_accounts_attribute_columns_load_with_their_kind(tmp_path: Path, engine: sa.Engine) -> None:
    settings = load_settings(None, tables=ATTRIBUTE_TABLES)
    rows = [
        {
            "account_id": "a1",
            "created_at": "2024-01-01",
            "signup_channel": "paid search",
            "seats_purchased": "12",
        },
        {"account_id": "a2", "created_at": "2024-01-02", "signup_channel": "", "seats_purchased": "many"},
    ]

    report = load(engine, settings, "accounts", write_csv(tmp_path / "accounts.csv", rows))

    loaded = table_rows(engine, source_tables(settings.tables).accounts)
    assert (report.loaded, report.quarantined) == (1, 1)
    assert loaded.loc[0, "signup_channel"] == "paid search" and loaded.loc[0, "seats_purchased"] == 12.0
    assert report.problems == {"seats_purchased: not a number": 1}


def test_the_attributes_table_loads_once_however_often_its_file_is_loaded(
    tmp_path: Path, engine: sa.Engine
) -> None:
    settings = load_settings(None, tables=ATTRIBUTE_TABLES)
    rows = [
        {"account_id": "a1", "name": "Lead Source", "value": "webinar", "valid_from": "2024-01-01T10:00:00Z"},
        {
            "account_id": "a1",
            "name": "Lead Source",
            "value": "referral",
            "valid_from": "2024-02-01T10:00:00Z",
        },
        {"account_id": "a2", "name": "Lead Source", "value": "ads", "valid_from": ""},
    ]
    path = write_csv(tmp_path / "attributes.csv", rows)

    first = load(engine, settings, "account_attributes", path)
    second = load(engine, settings, "account_attributes", path)

    assert (first.loaded, first.quarantined, second.loaded, second.duplicates_in_table) == (2, 1, 0, 2)
    assert len(table_rows(engine, source_tables(settings.tables).account_attributes)) == 2


def test_mapping_accepts_declared_attribute_columns_as_targets() -> None:
    settings = load_settings(None, tables=ATTRIBUTE_TABLES)

    assert parse_mapping(["signup_channel=utm_source"], "accounts", settings.tables) == {
        "signup_channel": "utm_source"
    }
    with pytest.raises(MappingError, match="signup_channel"):
        parse_mapping(["signup_channel=utm_source"], "accounts")


def test_an_epoch_number_too_large_for_any_year_is_quarantined_with_a_reason() -> None:
    reason = only_reason("events", {**EVENT, "occurred_at": 1.797693134862316e302})

    assert "astronomically far from now" in reason


def damaged_gzip(path: Path, damage: str) -> Path:
    """`path` as a gzip file of many CSV rows, cut short or with its compressed data overwritten."""
    rows = "".join(f"e{i},u{i},a{i},login,2026-01-01T00:00:00\n" for i in range(20_000))
    data = bytearray(gzip.compress(("event_id,user_id,account_id,event_name,occurred_at\n" + rows).encode()))
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[200:400] = b"\xff" * 200
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
@pytest.mark.parametrize("suffix", ["csv.gz", "jsonl.gz"])
def test_load_command_exits_1_naming_a_damaged_gzip_file(
    cli: typer.Typer, tmp_path: Path, damage: str, suffix: str
) -> None:
    path = damaged_gzip(tmp_path / f"events.{suffix}", damage)
    result = CliRunner().invoke(cli, ["load", "events", str(path)])
    assert result.exit_code == 1, result.output
    assert f"events.{suffix}: not a readable" in result.output
    assert "Nothing was loaded: fix the file and load it again." in result.output
    assert "Aborted" not in result.output


# Two `pql load` processes that start loading at the same instant: each imports pql, says it is ready,
# then waits for the parent's go (one line on stdin), so neither has a head start.
LOAD_ON_GO = """
import sys
from pql.cli import app
print("ready", flush=True)
sys.stdin.readline()
app(["load", "events", sys.argv[1]])
"""


def _racing_loads(path: Path, source_url: str, tmp_path: Path) -> list[subprocess.CompletedProcess[str]]:
    """Run two `pql load events PATH` processes released together; their exit codes and output."""
    env = {**os.environ, "PQL_SOURCE_URL": source_url, "PQL_STATE_DIR": str(tmp_path / ".pql")}
    command = [sys.executable, "-c", LOAD_ON_GO, str(path)]
    return released_together([command, command], env, tmp_path, timeout=300)


def _event_ids(source_url: str) -> pd.Series:
    engine = create_engine(source_url)
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text("SELECT event_id FROM events"), conn)["event_id"]
    finally:
        engine.dispose()


RACED_EVENTS = 20_000


@pytest.mark.slow
@pytest.mark.postgres
def test_two_loads_of_one_file_into_postgres_at_the_same_instant_insert_each_event_once(
    postgres_url: str, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "events.csv", events(RACED_EVENTS))
    engine = create_engine(postgres_url)
    create_tables(engine, source_tables(load_settings(None).tables))  # the race is the load's, not DDL's
    engine.dispose()
    results = _racing_loads(path, postgres_url, tmp_path)
    assert [result.returncode for result in results] == [0, 0], [result.stderr for result in results]
    ids = _event_ids(postgres_url)
    assert len(ids) == RACED_EVENTS
    assert ids.is_unique
    outputs = " ".join(flat(result.stdout) for result in results)
    assert f"{RACED_EVENTS:,} already in the table" in outputs, outputs


@pytest.mark.slow
def test_two_loads_of_one_file_into_duckdb_at_the_same_instant_take_turns(
    duckdb_url: str, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "events.csv", events(RACED_EVENTS))
    results = _racing_loads(path, duckdb_url, tmp_path)
    for result in results:
        assert "Traceback" not in result.stderr, result.stderr
    # DuckDB lets one process at a time open the file: the second load waits rather than being refused.
    assert [result.returncode for result in results] == [0, 0], [result.stderr for result in results]
    ids = _event_ids(duckdb_url)
    assert len(ids) == RACED_EVENTS
    assert ids.is_unique


def test_a_load_waiting_for_another_load_into_the_table_gives_up_with_a_message(
    duckdb_url: str, tmp_path: Path, settings: Settings
) -> None:
    engine = create_engine(duckdb_url)
    path = write_csv(tmp_path / "events.csv", events(3))
    try:
        with (
            pql.loading.load_lock(engine, "events", timeout_seconds=0, holder="pql load first.csv"),
            pytest.raises(DataError, match=r"another load into this table is still running.*first\.csv"),
        ):
            load_file(engine, settings.tables, "events", path, fmt="csv", lock_timeout_seconds=0.3)
    finally:
        engine.dispose()
