"""Training snapshots and the training set: eligible, uncensored rows from the scoring builder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from feature_worlds import AS_OF, DAY, World, load_world

from pql.config import LABELS, Settings, load_settings
from pql.db import DataError
from pql.features.builder import build_features
from pql.features.training import data_end, snapshot_dates, training_set

SMALL = {"snapshot_every_days": 7, "lookback_days": 28}


def test_snapshots_are_spaced_by_the_setting_over_the_lookback() -> None:
    settings = load_settings(None, horizon_days=30, features=SMALL)

    dates = snapshot_dates(AS_OF + timedelta(hours=15), settings)

    assert dates == [AS_OF - 30 * DAY - k * 7 * DAY for k in (3, 2, 1, 0)]


def test_the_last_snapshot_is_at_least_the_horizon_before_the_end() -> None:
    settings = load_settings(None, horizon_days=30, features=SMALL)

    assert snapshot_dates(AS_OF, settings)[-1] == AS_OF - 30 * DAY
    assert snapshot_dates(AS_OF - timedelta(microseconds=1), settings)[-1] == AS_OF - 31 * DAY


def test_snapshots_fall_at_midnight_in_the_configured_zone_across_a_clock_change() -> None:
    settings = load_settings(None, timezone="Europe/Paris", horizon_days=7, features=SMALL)

    dates = snapshot_dates(datetime(2024, 4, 20), settings)  # spans the change to summer time on 31 March

    local = [moment.replace(tzinfo=UTC).astimezone(settings.zone) for moment in dates]
    assert [moment.time().hour for moment in local] == [0, 0, 0, 0]
    assert [moment.date().isoformat() for moment in local] == [
        "2024-03-23",
        "2024-03-30",
        "2024-04-06",
        "2024-04-13",
    ]


def test_data_end_is_the_latest_event_or_plan_change(duckdb_url: str, settings: Settings) -> None:
    world = World().account("a1").event("a1", AS_OF - DAY).plan_change("a1", AS_OF + DAY, "paid")
    engine, tables = load_world(duckdb_url, world, settings)

    assert data_end(engine, tables) == AS_OF + DAY


def test_data_end_of_empty_tables_is_a_data_error(duckdb_url: str, settings: Settings) -> None:
    engine, tables = load_world(duckdb_url, World().account("a1"), settings)

    with pytest.raises(DataError, match="events and plan_changes are empty"):
        data_end(engine, tables)


def small_history() -> World:
    """Five accounts over 120 days: two convert, one converts before the training window, one trial."""
    end = AS_OF
    world = World()
    for index in range(5):
        account_id = f"a{index}"
        world.account(account_id, end - 120 * DAY, employees=10 * (index + 1))
        world.plan_change(account_id, end - 120 * DAY, "free")
        for day in range(1, 120, 3 + index):
            world.event(account_id, end - day * DAY, "login", f"{account_id}-u")
    world.plan_change("a0", end - 20 * DAY, "paid", from_plan="free")
    world.plan_change("a1", end - 45 * DAY, "paid", from_plan="free")
    world.plan_change("a2", end - 100 * DAY, "paid", from_plan="free")
    world.plan_change("a3", end - 50 * DAY, "trial", from_plan="free", trial_ends_at=end - 36 * DAY)
    world.event("a4", end - timedelta(seconds=1), "login")  # the end of the data
    return world


@pytest.fixture
def history(duckdb_url: str) -> tuple:
    settings = load_settings(None, horizon_days=14, features={"snapshot_every_days": 7, "lookback_days": 56})
    engine, tables = load_world(duckdb_url, small_history(), settings)
    yield engine, tables, settings
    engine.dispose()


def test_the_training_set_holds_only_eligible_uncensored_snapshots_with_labels(history: tuple) -> None:
    engine, tables, settings = history

    rows = training_set(engine, tables, settings)

    assert rows["is_eligible"].all()
    assert set(rows["label"]) == {0, 1}
    assert "a2" not in set(rows["account_id"])  # paid before every snapshot
    end = data_end(engine, tables)
    assert (rows["as_of"] + pd.Timedelta(days=settings.horizon_days) <= pd.Timestamp(end)).all()


def test_the_training_set_labels_conversions_in_the_horizon(history: tuple) -> None:
    engine, tables, settings = history

    rows = training_set(engine, tables, settings)

    positives = rows.loc[rows["label"] == 1, ["account_id", "as_of"]]
    converted_at = {"a0": AS_OF - 20 * DAY, "a1": AS_OF - 45 * DAY}
    for account_id, as_of in positives.itertuples(index=False):
        assert as_of <= converted_at[account_id] < as_of + pd.Timedelta(days=14)


def test_the_training_set_rows_are_the_scoring_builders_rows(history: tuple) -> None:
    engine, tables, settings = history

    rows = training_set(engine, tables, settings)

    built = build_features(engine, tables, settings, sorted(set(rows["as_of"])))
    same_keys = rows[["account_id", "as_of"]].merge(built, on=["account_id", "as_of"])
    labels = ["label", *(f"label_{name}" for name in LABELS)]
    pd.testing.assert_frame_equal(rows.drop(columns=labels), same_keys)


def test_the_training_set_is_sorted_by_as_of_then_account(history: tuple) -> None:
    engine, tables, settings = history

    rows = training_set(engine, tables, settings)

    keys = list(zip(rows["as_of"], rows["account_id"], strict=True))
    assert keys == sorted(keys)


def test_an_end_beyond_the_data_is_held_to_the_data(history: tuple) -> None:
    engine, tables, settings = history

    pd.testing.assert_frame_equal(
        training_set(engine, tables, settings, end=AS_OF + 365 * DAY), training_set(engine, tables, settings)
    )


def test_an_earlier_end_builds_the_training_set_that_could_have_been_built_then(history: tuple) -> None:
    engine, tables, settings = history
    end = AS_OF - 30 * DAY

    rows = training_set(engine, tables, settings, end=end)

    assert rows["as_of"].max() <= pd.Timestamp(end - 14 * DAY)
    assert set(rows.loc[rows["label"] == 1, "account_id"]) == {"a1"}
