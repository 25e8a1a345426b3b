"""Labels read only the horizon after `as_of`; snapshots whose horizon outruns the data are censored."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pandas as pd
from feature_worlds import AS_OF, DAY, World, load_world

from pql.config import Settings, load_settings
from pql.features.labels import build_labels

HORIZON = 30 * DAY
DATA_END = AS_OF + 60 * DAY


def labels_of(
    url: str,
    world: World,
    settings: Settings,
    as_of: Sequence[datetime] = (AS_OF,),
    data_end: datetime = DATA_END,
) -> pd.DataFrame:
    engine, tables = load_world(url, world, settings)
    try:
        return build_labels(engine, tables, settings, list(as_of), data_end)
    finally:
        engine.dispose()


def label_of(url: str, world: World, settings: Settings, account_id: str = "a1") -> int:
    labels = labels_of(url, world, settings)
    return int(labels.loc[labels["account_id"] == account_id, "label"].item())


def converting_at(moment: datetime, to_plan: str = "paid") -> World:
    return (
        World().account("a1").plan_change("a1", AS_OF - 10 * DAY, "trial").plan_change("a1", moment, to_plan)
    )


def test_a_conversion_at_as_of_is_a_positive(duckdb_url: str, settings: Settings) -> None:
    assert label_of(duckdb_url, converting_at(AS_OF), settings) == 1


def test_a_conversion_just_before_the_horizon_ends_is_a_positive(duckdb_url: str, settings: Settings) -> None:
    moment = AS_OF + HORIZON - timedelta(microseconds=1)

    assert label_of(duckdb_url, converting_at(moment), settings) == 1


def test_a_conversion_when_the_horizon_ends_is_a_negative(duckdb_url: str, settings: Settings) -> None:
    assert label_of(duckdb_url, converting_at(AS_OF + HORIZON), settings) == 0


def test_a_conversion_before_as_of_is_not_a_positive(duckdb_url: str, settings: Settings) -> None:
    moment = AS_OF - timedelta(seconds=1)

    assert label_of(duckdb_url, converting_at(moment), settings) == 0


def test_a_change_to_a_non_paid_plan_is_not_a_conversion(duckdb_url: str, settings: Settings) -> None:
    assert label_of(duckdb_url, converting_at(AS_OF + DAY, to_plan="free"), settings) == 0


def test_the_horizon_follows_the_setting(duckdb_url: str) -> None:
    settings = load_settings(None, horizon_days=7)

    assert label_of(duckdb_url, converting_at(AS_OF + 8 * DAY), settings) == 0


def test_labels_have_one_row_per_account_created_before_as_of(duckdb_url: str, settings: Settings) -> None:
    world = World().account("a1").account("a2", AS_OF).account("a3", AS_OF - DAY)

    labels = labels_of(duckdb_url, world, settings)

    assert list(labels.columns) == [
        "account_id",
        "as_of",
        "label",
        "label_converted_to_paid",
        "label_opportunity_created",
        "label_closed_won",
        "label_converted_or_won",
        "is_censored",
    ]
    assert list(labels["account_id"]) == ["a1", "a3"]


def test_a_snapshot_whose_horizon_outruns_the_data_is_censored(duckdb_url: str, settings: Settings) -> None:
    data_end = AS_OF + HORIZON
    snapshots = [AS_OF, AS_OF + timedelta(microseconds=1)]

    labels = labels_of(duckdb_url, World().account("a1"), settings, snapshots, data_end)

    assert list(labels["is_censored"]) == [False, True]


def test_labels_are_the_same_on_every_database(any_db_url: str, settings: Settings) -> None:
    world = World().account("a1").account("a2").account("a3")
    world.plan_change("a1", AS_OF + 5 * DAY, "paid").plan_change("a2", AS_OF + 45 * DAY, "paid")
    snapshots = [AS_OF, AS_OF + 20 * DAY, AS_OF + 40 * DAY]

    labels = labels_of(any_db_url, world, settings, snapshots)

    assert list(labels["label"]) == [1, 0, 0, 0, 1, 0, 0, 1, 0]
    assert list(labels["is_censored"]) == [False] * 6 + [True] * 3
