"""`pql inspect`: the source profile, training readiness, feature families and suggested key events."""

from __future__ import annotations

import json
import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from inspect_worlds import (
    END,
    ORDINARY,
    SIGNAL,
    START,
    Shape,
    converting_accounts,
    inspect_world,
    loaded,
    write_config,
)
from typer.testing import CliRunner

from pql.cli import app
from pql.config import load_settings
from pql.db import create_engine
from pql.features.training import snapshot_dates, training_set
from pql.models.backtest import out_of_time_split
from pql.models.inspection import events_per_day, key_events_toml
from pql.models.readiness import MIN_SNAPSHOTS, History, candidate_windows, what_would_help
from pql.schema import create_tables, source_tables

DAY = timedelta(days=1)


def pql(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def inspected(tmp_path: Path, url: str, shape: Shape | None = None, **config: Any) -> dict[str, Any]:
    """The `--json` document of `pql inspect` on a world of `shape` (default: `Shape()`) at `url`."""
    path = write_config(tmp_path / "pql.toml", url, **config)
    loaded(url, inspect_world(shape or Shape()), path)
    code, output = pql("--config", str(path), "inspect", "--json")
    assert code == 0, output
    return json.loads(output)


def text_report(tmp_path: Path, url: str, shape: Shape, **config: Any) -> str:
    """The text report of `pql inspect` on a world of `shape` at `url`."""
    path = write_config(tmp_path / "pql.toml", url, **config)
    loaded(url, inspect_world(shape), path)
    code, output = pql("--config", str(path), "inspect")
    assert code == 0, output
    return output


def families(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["family"]: row for row in document["features"]["families"]}


def test_the_json_document_has_the_documented_keys(tmp_path: Path, duckdb_url: str) -> None:
    document = inspected(tmp_path, duckdb_url)

    assert set(document) == {"database", "source", "training", "features", "key_events"}
    assert set(document["source"]) == {
        "accounts",
        "users",
        "events",
        "plan_changes",
        "event_names",
        "plans",
        "unmapped_plans",
        "converting_accounts_per_month",
        "sales_tables",
    }
    assert set(document["source"]["events"]["per_day"]) == {
        "median",
        "min",
        "max",
        "days_with_events",
        "days_without_events",
    }
    assert set(document["training"]) == {
        "can_train",
        "history_start",
        "data_end",
        "min_conversions",
        "configured",
        "suggested",
        "next_step",
    }
    assert {"can_train", "snapshots", "converting_accounts", "out_of_time_split", "problems", "toml"} <= set(
        document["training"]["configured"]
    )
    assert set(document["features"]) == {"settings", "training_rows", "families"}
    assert set(document["key_events"]) == {
        "settings",
        "window_days",
        "min_converting_accounts",
        "snapshots",
        "eligible_rows",
        "converting_rows",
        "suggested",
        "toml",
    }


def test_the_profile_counts_what_the_source_holds(tmp_path: Path, duckdb_url: str) -> None:
    shape = Shape()
    world = inspect_world(shape)

    source = inspected(tmp_path, duckdb_url, shape)["source"]

    assert source["accounts"] == len(world.rows["accounts"])
    assert source["users"] == len(world.rows["users"])
    assert source["events"]["rows"] == len(world.rows["events"])
    assert source["plan_changes"]["rows"] == len(world.rows["plan_changes"])
    assert source["events"]["per_day"]["days_without_events"] == 0
    assert source["event_names"]["distinct"] == 4
    assert source["event_names"]["top"][0] == {"name": ORDINARY[0], "events": 75 * source["accounts"]}
    assert {row["to_plan"]: row["maps_to"] for row in source["plans"]} == {"paid": "paid", "free": "free"}
    per_month = {row["month"]: row["converting_accounts"] for row in source["converting_accounts_per_month"]}
    # The churned account's first conversion (January) counts, not its return.
    assert sum(per_month.values()) == shape.converters + 2
    assert per_month["2024-02"] == 0


def test_the_sales_tables_in_use_are_listed_with_rows_and_date_range(tmp_path: Path, any_db_url: str) -> None:
    path = write_config(tmp_path / "pql.toml", any_db_url)
    settings = loaded(any_db_url, inspect_world(Shape()), path)
    first, last = END - 40 * DAY, END - 2 * DAY
    engine = create_engine(any_db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                source_tables(settings.tables).opportunities.insert(),
                [
                    {"opportunity_id": f"opp{i}", "account_id": "acc_0", "created_at": at, "stage": "new"}
                    for i, at in enumerate((first, last))
                ],
            )
    finally:
        engine.dispose()
    code, output = pql("--config", str(path), "inspect", "--json")
    assert code == 0, output
    sales = json.loads(output)["source"]["sales_tables"]
    assert sales["opportunities"]["in_use"] is True
    assert (
        sales["opportunities"]["rows"],
        sales["opportunities"]["first"],
        sales["opportunities"]["last"],
    ) == (
        2,
        first.isoformat(),
        last.isoformat(),
    )
    assert sales["crm_activities"]["in_use"] is False and sales["pql_feedback"]["rows"] == 0


def test_absent_sales_tables_are_reported_with_what_they_enable(tmp_path: Path, duckdb_url: str) -> None:
    output = text_report(tmp_path, duckdb_url, Shape())
    assert "sales tables (optional, owned by sales; in use when they hold rows)" in output
    assert "pql_feedback        absent or empty: load it for rep feedback in the PQL rules" in output
    assert "opportunities       absent or empty: load it for the hybrid labels" in output


def test_events_per_day_counts_the_empty_days_inside_the_range() -> None:
    day = START.date()

    summary = events_per_day({day: 3, day + 2 * DAY: 9, day + 5 * DAY: 4})

    assert summary == {"median": 4, "min": 3, "max": 9, "days_with_events": 3, "days_without_events": 3}


def test_suggested_key_events_find_the_signal_and_paste_as_toml(tmp_path: Path, duckdb_url: str) -> None:
    document = inspected(tmp_path, duckdb_url)

    suggested = document["key_events"]["suggested"]
    assert suggested[0]["name"] == SIGNAL
    assert suggested[0]["lift"] > 3
    assert suggested[0]["converting_accounts"] == Shape().converters
    pasted = tomllib.loads(document["key_events"]["toml"])["key_events"]
    assert pasted == [row["name"] for row in suggested]
    assert set(pasted) <= {SIGNAL, *ORDINARY}


def test_event_names_with_quotes_backslashes_and_control_characters_round_trip_through_toml() -> None:
    names = [SIGNAL, 'a "quoted" name', "tab\there", "line\nbreak", "del\x7fete", "注册完成", "\\"]

    assert tomllib.loads(key_events_toml(names))["key_events"] == names


def test_a_world_without_trials_or_firmographics_trains_and_says_why_those_are_left_out(
    tmp_path: Path, duckdb_url: str
) -> None:
    document = inspected(tmp_path, duckdb_url, Shape(trials=False, firmographics=False))

    found = families(document)
    assert document["training"]["can_train"] is True
    assert found["trial"]["status"] == "left out"
    assert found["trial"]["summary"] == (
        "trial: left out: no account was ever in a trial (no to_plan in plans.trial)"
    )
    assert found["fit"]["status"] == "left out"
    assert found["fit"]["left_out"]["employees"] == "accounts.employees is empty"
    assert "industry left out: accounts.industry is empty" in found["fit"]["summary"]
    assert found["activity"]["summary"] == "activity: used"


def test_trials_and_firmographics_are_used_when_the_source_has_them(tmp_path: Path, duckdb_url: str) -> None:
    found = families(inspected(tmp_path, duckdb_url, Shape(trials=True, firmographics=True)))

    assert found["trial"]["status"] == "used"
    assert found["fit"]["left_out"] == {"country": found["fit"]["left_out"]["country"]}
    assert found["fit"]["left_out"]["country"].startswith("the same value (FR) in every training row")


def test_a_key_event_that_never_occurs_is_reported_as_left_out(tmp_path: Path, duckdb_url: str) -> None:
    found = families(inspected(tmp_path, duckdb_url))

    assert found["key_events"]["status"] == "partly used"
    assert found["key_events"]["summary"] == (
        "key_events: `view_pricing` never occurs in events: its counts will be left out"
    )


def test_families_switched_off_in_the_settings_are_reported_as_such(tmp_path: Path, duckdb_url: str) -> None:
    path = write_config(tmp_path / "pql.toml", duckdb_url)
    path.write_text(
        path.read_text(encoding="utf-8").replace("[features]", '[features]\nexclude = ["momentum"]')
    )
    loaded(duckdb_url, inspect_world(), path)

    code, output = pql("--config", str(path), "inspect", "--json")

    assert code == 0, output
    assert families(json.loads(output))["momentum"]["summary"] == "momentum: switched off in features.exclude"


def test_too_few_converting_accounts_says_how_many_more_counting_accounts_not_rows(
    tmp_path: Path, duckdb_url: str
) -> None:
    shape = Shape(converters=3, churned_and_back=False, paid_from_the_start=False)
    document = inspected(tmp_path, duckdb_url, shape, min_conversions=10)

    training = document["training"]
    configured = training["configured"]
    assert training["can_train"] is False and training["suggested"] is None
    assert configured["converting_accounts"] == 3
    assert configured["positive_rows"] > 3  # each converter is positive at two weekly snapshots
    assert "7 more converting accounts are needed" in configured["problems"][0]
    assert training["next_step"].startswith("Training needs 7 more converting accounts")


def test_the_text_report_says_training_is_not_possible_and_what_is_missing(
    tmp_path: Path, duckdb_url: str
) -> None:
    output = text_report(
        tmp_path,
        duckdb_url,
        Shape(converters=3, churned_and_back=False, paid_from_the_start=False),
        min_conversions=10,
    )

    assert "cannot train" in output
    assert "Training needs 7 more converting accounts" in output
    assert SIGNAL in output  # event names are printed as they are, never read as markup


def test_an_unmapped_plan_is_reported_with_the_setting_to_add_it_to(tmp_path: Path, duckdb_url: str) -> None:
    document = inspected(tmp_path, duckdb_url, Shape(extra_plan="Enterprise (annual)"))

    source, training = document["source"], document["training"]
    assert source["unmapped_plans"] == ["Enterprise (annual)"]
    plan = next(row for row in source["plans"] if row["to_plan"] == "Enterprise (annual)")
    assert plan["maps_to"] is None
    assert training["can_train"] is False
    assert "plans.paid" in training["configured"]["problems"][0]
    assert training["next_step"].startswith(
        "Add 'Enterprise (annual)' to plans.free, plans.trial or plans.paid"
    )
    assert families(document)["activity"]["status"] == "used"  # the rest of the report still runs


def test_inspect_counts_the_converting_accounts_and_snapshots_that_train_would_use(
    tmp_path: Path, duckdb_url: str
) -> None:
    shape = Shape()
    document = inspected(tmp_path, duckdb_url, shape)
    settings = load_settings(tmp_path / "pql.toml")
    engine = create_engine(duckdb_url)
    try:
        frame = training_set(engine, source_tables(settings.tables), settings)
    finally:
        engine.dispose()

    configured = document["training"]["configured"]
    converting = frame.loc[frame["label"] == 1, "account_id"].nunique()
    assert configured["converting_accounts"] == converting == converting_accounts(shape)
    assert configured["positive_rows"] == int(frame["label"].sum())
    assert configured["snapshots"] == frame["as_of"].nunique()
    assert configured["out_of_time_split"] == out_of_time_split(frame["as_of"], 14).describe()
    assert document["key_events"]["eligible_rows"] == len(frame) == document["features"]["training_rows"]


def test_a_cut_history_gets_settings_whose_snapshots_all_see_complete_windows(
    tmp_path: Path, duckdb_url: str
) -> None:
    document = inspected(
        tmp_path, duckdb_url, Shape(accounts_before_data_days=200), horizon_days=30, lookback_days=182
    )

    training = document["training"]
    assert training["configured"]["notes"]
    suggested = training["suggested"]
    assert suggested["can_train"] and suggested["snapshots"] >= MIN_SNAPSHOTS
    assert datetime.fromisoformat(suggested["first_snapshot"]) >= START + 28 * DAY
    assert suggested["out_of_time_split"] is not None
    assert tomllib.loads(suggested["toml"])["features"]["lookback_days"] == suggested["lookback_days"]


def test_candidate_windows_fit_a_short_history() -> None:
    settings = load_settings(None)  # horizon 30, every 7 days, lookback 182
    history = History(START, START + 100 * DAY, cut=True)

    windows = candidate_windows(settings, history)

    assert windows
    for window in windows:
        dates = snapshot_dates(history.end, window.applied_to(settings))
        assert len(dates) >= MIN_SNAPSHOTS
        assert dates[0] >= history.earliest_snapshot
        out_of_time_split(dates, window.horizon_days)  # raises when there is no honest split


def test_a_history_too_short_for_any_window_says_how_many_more_days_are_needed() -> None:
    settings = load_settings(None)
    history = History(START, START + 10 * DAY, cut=False)

    assert candidate_windows(settings, history) == []
    sentence = what_would_help(settings, history, [])
    assert sentence.startswith("The observed history (10 days")
    # 30 days of snapshots for an out-of-time split, 30 of labels after the last, a day to reach midnight
    assert "needs at least 61 days" in sentence and "about 51 more days" in sentence


def test_inspect_runs_alike_on_every_engine(tmp_path: Path, any_db_url: str) -> None:
    shape = Shape(trials=True)
    world = inspect_world(shape)
    document = inspected(tmp_path, any_db_url, shape)

    training, source = document["training"], document["source"]
    latest = max(row["occurred_at"] for row in world.rows["events"])
    assert training["data_end"] == latest.isoformat() and latest < END
    assert training["can_train"] is True
    assert training["configured"]["converting_accounts"] == converting_accounts(shape)
    assert source["events"]["rows"] == len(world.rows["events"])
    assert source["events"]["per_day"]["days_with_events"] == 150
    assert source["event_names"]["distinct"] == 4
    assert [row["month"] for row in source["converting_accounts_per_month"]][:2] == ["2024-01", "2024-02"]
    assert document["key_events"]["suggested"][0]["name"] == SIGNAL
    assert families(document)["trial"]["status"] == "used"


def test_an_empty_source_table_names_the_table_and_the_command_to_run(
    tmp_path: Path, duckdb_url: str
) -> None:
    path = write_config(tmp_path / "pql.toml", duckdb_url)
    engine = create_engine(duckdb_url)
    create_tables(engine, source_tables(load_settings(path).tables))
    engine.dispose()

    code, output = pql("--config", str(path), "inspect")

    assert code == 1
    assert "'accounts' is empty" in output and "pql load accounts" in output


def test_a_missing_source_table_names_the_table_and_pql_init(tmp_path: Path, duckdb_url: str) -> None:
    path = write_config(tmp_path / "pql.toml", duckdb_url)
    engine = create_engine(duckdb_url)
    create_tables(engine, source_tables(load_settings(path).tables))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE events"))
    engine.dispose()

    code, output = pql("--config", str(path), "inspect")

    assert code == 1
    assert "no table 'events'" in output and "pql init" in output


def test_a_missing_database_file_is_not_created(tmp_path: Path, duckdb_url: str) -> None:
    path = write_config(tmp_path / "pql.toml", duckdb_url)

    code, output = pql("--config", str(path), "inspect")

    assert code == 1
    assert "does not exist" in output and "pql init" in output
    assert not (tmp_path / "source.duckdb").exists()
