"""The hybrid motion's labels and eligibility: self-serve, opportunity created, deal won, either path.

Labels read only the horizon `[as_of, as_of + horizon)`; eligibility reads only what happened strictly
before `as_of`: an opportunity open at `as_of` makes an account ineligible, one closed before does not,
and for a sales label so does a deal won before `as_of`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from feature_worlds import AS_OF, DAY, MICROSECOND, World, features_of, load_world, row

from pql.config import LABELS, ConfigError, Settings, load_settings
from pql.features.labels import build_labels, converters_by_path
from pql.features.training import training_set

HORIZON = 30 * DAY
DATA_END = AS_OF + 60 * DAY


def with_label(label: str) -> Settings:
    return load_settings(None, features={"label": label})


def labels_of(
    url: str, world: World, settings: Settings, as_of: Sequence[datetime] = (AS_OF,)
) -> pd.DataFrame:
    engine, tables = load_world(url, world, settings)
    try:
        return build_labels(engine, tables, settings, list(as_of), DATA_END)
    finally:
        engine.dispose()


def positives(labels: pd.DataFrame, column: str = "label") -> list[str]:
    return sorted(labels.loc[labels[column] == 1, "account_id"])


def paths_world() -> World:
    """One account per path in the horizon, and one whose deal comes after it."""
    world = World()
    for account_id in ("self_serve", "lost_deal", "won_deal", "both", "neither", "too_late"):
        world.account(account_id)
    world.plan_change("self_serve", AS_OF + 5 * DAY, "paid")
    world.opportunity("lost_deal", AS_OF + 3 * DAY, AS_OF + 10 * DAY, is_won=False)
    world.opportunity("won_deal", AS_OF + 2 * DAY, AS_OF + 8 * DAY, is_won=True)
    world.plan_change("both", AS_OF + 4 * DAY, "paid")
    world.opportunity("both", AS_OF + DAY, AS_OF + 6 * DAY, is_won=True)
    world.opportunity("too_late", AS_OF + HORIZON, AS_OF + HORIZON + DAY, is_won=True)
    return world


EXPECTED_POSITIVES = {
    "converted_to_paid": ["both", "self_serve"],
    "opportunity_created": ["both", "lost_deal", "won_deal"],
    "closed_won": ["both", "won_deal"],
    "converted_or_won": ["both", "self_serve", "won_deal"],
}


@pytest.mark.parametrize("label", LABELS)
def test_each_label_has_its_known_positives_on_every_database(any_db_url: str, label: str) -> None:
    labels = labels_of(any_db_url, paths_world(), with_label(label))

    assert positives(labels) == EXPECTED_POSITIVES[label]


def test_every_labels_value_is_given_beside_the_chosen_one(duckdb_url: str) -> None:
    labels = labels_of(duckdb_url, paths_world(), with_label("closed_won"))

    for label, expected in EXPECTED_POSITIVES.items():
        assert positives(labels, f"label_{label}") == expected


def test_an_opportunity_created_at_as_of_is_a_positive_and_one_at_the_horizon_end_is_not(
    duckdb_url: str,
) -> None:
    world = World().account("at_as_of").account("at_end").account("just_before_end")
    world.opportunity("at_as_of", AS_OF).opportunity("at_end", AS_OF + HORIZON)
    world.opportunity("just_before_end", AS_OF + HORIZON - MICROSECOND)

    labels = labels_of(duckdb_url, world, with_label("opportunity_created"))

    assert positives(labels) == ["at_as_of", "just_before_end"]


def test_a_deal_counts_when_it_is_won_in_the_horizon_not_when_it_was_created(duckdb_url: str) -> None:
    world = World().account("won_in").account("won_after").account("lost_in")
    world.opportunity("won_in", AS_OF + DAY, AS_OF + HORIZON - MICROSECOND, is_won=True)
    world.opportunity("won_after", AS_OF + DAY, AS_OF + HORIZON, is_won=True)
    world.opportunity("lost_in", AS_OF + DAY, AS_OF + 5 * DAY, is_won=False)

    labels = labels_of(duckdb_url, world, with_label("closed_won"))

    assert positives(labels) == ["won_in"]


def test_opportunities_before_as_of_are_never_a_positive(duckdb_url: str) -> None:
    world = World().account("created_before").account("won_before")
    world.opportunity("created_before", AS_OF - MICROSECOND)
    world.opportunity("won_before", AS_OF - 20 * DAY, AS_OF - MICROSECOND, is_won=True)

    labels = labels_of(duckdb_url, world, with_label("converted_or_won"))

    assert positives(labels, "label_opportunity_created") == []
    assert positives(labels) == []


def test_a_sales_label_without_opportunities_is_refused_naming_the_table_and_the_load_command(
    duckdb_url: str,
) -> None:
    world = World().account("a1").plan_change("a1", AS_OF + DAY, "paid")

    with pytest.raises(ConfigError) as refused:
        labels_of(duckdb_url, world, with_label("closed_won"))

    message = str(refused.value)
    assert "\n" not in message
    assert "opportunities table" in message and "`pql load opportunities FILE`" in message


def test_without_opportunities_the_self_serve_label_works_and_the_sales_ones_are_unknown(
    duckdb_url: str, settings: Settings
) -> None:
    world = World().account("a1").plan_change("a1", AS_OF + DAY, "paid")

    labels = labels_of(duckdb_url, world, settings)

    assert positives(labels) == ["a1"]
    assert labels["label_closed_won"].isna().all() and labels["label_converted_or_won"].isna().all()


def eligibility_world() -> World:
    """Free accounts with opportunities on every side of as_of."""
    world = World()
    for account_id in ("open", "closed_at_as_of", "lost_before", "won_before", "created_at_as_of", "none"):
        world.account(account_id)
    world.opportunity("open", AS_OF - 10 * DAY).opportunity("open", AS_OF - 3 * DAY)
    world.opportunity("closed_at_as_of", AS_OF - 10 * DAY, AS_OF, is_won=False)
    world.opportunity("lost_before", AS_OF - 10 * DAY, AS_OF - MICROSECOND, is_won=False)
    world.opportunity("won_before", AS_OF - 10 * DAY, AS_OF - DAY, is_won=True)
    world.opportunity("created_at_as_of", AS_OF)
    return world


def test_an_opportunity_open_at_as_of_makes_the_account_ineligible_on_every_database(
    any_db_url: str, settings: Settings
) -> None:
    features = features_of(any_db_url, eligibility_world(), settings)

    opened = row(features, "open")
    assert not opened["is_eligible"]
    assert opened["open_opportunity_created_at"] == pd.Timestamp(AS_OF - 10 * DAY)
    assert not row(features, "closed_at_as_of")["is_eligible"]
    for account_id in ("lost_before", "created_at_as_of", "none"):
        assert row(features, account_id)["is_eligible"], account_id
        assert pd.isna(row(features, account_id)["open_opportunity_created_at"])


def test_a_deal_won_before_as_of_makes_the_account_ineligible_only_for_a_sales_label(
    duckdb_url: str, settings: Settings, tmp_path: Path
) -> None:
    self_serve = features_of(duckdb_url, eligibility_world(), settings)
    sales = features_of(
        f"duckdb:///{tmp_path / 'sales.duckdb'}", eligibility_world(), with_label("closed_won")
    )

    assert row(self_serve, "won_before")["is_eligible"]
    assert not row(sales, "won_before")["is_eligible"]
    assert row(sales, "won_before")["won_opportunity_closed_at"] == pd.Timestamp(AS_OF - DAY)
    assert row(sales, "lost_before")["is_eligible"]


def test_opportunities_and_activities_at_or_after_as_of_change_no_feature_nor_eligibility(
    duckdb_url: str, tmp_path: Path
) -> None:
    settings = with_label("converted_or_won")
    world = eligibility_world()
    before = features_of(duckdb_url, world, settings)

    later = eligibility_world().activity("none", AS_OF - DAY).activity("open", AS_OF)
    later.opportunity("none", AS_OF).opportunity("none", AS_OF + DAY, AS_OF + 2 * DAY, is_won=True)
    later.opportunity("lost_before", AS_OF + MICROSECOND).activity("lost_before", AS_OF + 5 * DAY, "meeting")
    after = features_of(f"duckdb:///{tmp_path / 'later.duckdb'}", later, settings)

    pd.testing.assert_frame_equal(after, before)


def test_an_opportunity_created_after_as_of_changes_nothing_even_when_it_is_the_only_one(
    any_db_url: str, tmp_path: Path
) -> None:
    settings = with_label("opportunity_created")
    quiet = World().account("a1").account("a2").plan_change("a2", AS_OF - DAY, "paid")
    before = features_of(f"duckdb:///{tmp_path / 'quiet.duckdb'}", quiet, settings)

    later = World().account("a1").account("a2").plan_change("a2", AS_OF - DAY, "paid")
    later.opportunity("a1", AS_OF).opportunity("a2", AS_OF + 5 * DAY, AS_OF + 9 * DAY, is_won=True)
    after = features_of(any_db_url, later, settings)

    pd.testing.assert_frame_equal(after, before)


def test_a_later_snapshot_sees_the_opportunity_an_earlier_one_does_not(duckdb_url: str) -> None:
    world = World().account("a1").opportunity("a1", AS_OF + DAY, AS_OF + 10 * DAY, is_won=True)
    later = AS_OF + 5 * DAY

    features = features_of(duckdb_url, world, with_label("closed_won"), [AS_OF, later, AS_OF + 20 * DAY])

    assert row(features, "a1")["is_eligible"]
    assert not row(features, "a1", later)["is_eligible"]  # open then
    assert not row(features, "a1", AS_OF + 20 * DAY)["is_eligible"]  # won before then


def test_the_training_set_keeps_the_rows_before_the_deal_opened_with_the_win_from_their_horizon(
    duckdb_url: str,
) -> None:
    settings = load_settings(
        None, horizon_days=14, features={"label": "closed_won", "snapshot_every_days": 7, "lookback_days": 28}
    )
    world = World().account("deal").account("quiet").event("quiet", AS_OF + 40 * DAY)  # the data's end
    world.opportunity("deal", AS_OF + 10 * DAY, AS_OF + 12 * DAY, is_won=True)
    engine, tables = load_world(duckdb_url, world, settings)
    try:
        rows = training_set(engine, tables, settings)
    finally:
        engine.dispose()

    # Snapshots at +5, +12, +19 and +26 days: open at +12, won before +19 and +26.
    assert sorted(set(rows["as_of"])) == [AS_OF + days * DAY for days in (5, 12, 19, 26)]
    deal = rows[rows["account_id"] == "deal"]
    assert list(deal["as_of"]) == [AS_OF + 5 * DAY] and list(deal["label"]) == [1]
    assert (rows.loc[rows["account_id"] == "quiet", "label"] == 0).all()


def test_converters_by_path_count_each_account_once_per_label() -> None:
    rows = pd.DataFrame(
        {
            "account_id": ["both", "both", "sales", "paid", "none"],
            "label_converted_to_paid": [1, 0, 0, 1, 0],
            "label_opportunity_created": [0, 1, 1, 0, 0],
            "label_closed_won": [0, 1, 1, 0, 0],
            "label_converted_or_won": [1, 1, 1, 1, 0],
        }
    ).astype({f"label_{name}": "Int64" for name in LABELS})

    paths = converters_by_path(rows)

    assert paths is not None and paths["opportunities"]
    assert paths["labels"]["converted_or_won"] == {
        "converting_accounts": 3,
        "self_serve_only": 1,
        "opportunity_only": 1,
        "both": 1,
    }
    # Per positive snapshot: "both" went paid in one horizon and won a deal in another.
    assert paths["labels"]["closed_won"] == {
        "converting_accounts": 2,
        "self_serve_only": 0,
        "opportunity_only": 2,
        "both": 0,
    }


def test_without_opportunities_only_the_self_serve_converters_are_counted() -> None:
    rows = pd.DataFrame(
        {
            "account_id": ["a", "b"],
            "label_converted_to_paid": pd.array([1, 0], dtype="Int64"),
            **{f"label_{name}": pd.array([pd.NA, pd.NA], dtype="Int64") for name in LABELS[1:]},
        }
    )

    paths = converters_by_path(rows)

    assert paths == {
        "opportunities": False,
        "labels": {
            "converted_to_paid": {
                "converting_accounts": 1,
                "self_serve_only": 1,
                "opportunity_only": None,
                "both": None,
            }
        },
    }
