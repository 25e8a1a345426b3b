"""What each feature means, one behaviour per test, on a real DuckDB (portability is tested separately)."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import sqlalchemy as sa
from feature_worlds import AS_OF, DAY, MICROSECOND, World, features_of, load_world, row

from pql.clock import to_utc_naive
from pql.config import ConfigError, Settings, load_settings
from pql.db import DataError
from pql.features.builder import OPPORTUNITY_COLUMNS, build_features
from pql.features.catalog import feature_specs


def one_account(**account: object) -> World:
    return World().account("a1", **account)


def test_one_statement_serves_every_as_of(duckdb_url: str, settings: Settings) -> None:
    engine, tables = load_world(duckdb_url, one_account().event("a1", AS_OF - DAY), settings)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    features = build_features(engine, tables, settings, [AS_OF - 14 * DAY, AS_OF - 7 * DAY, AS_OF])

    # Besides it, only the probe of whether the optional opportunities table is in use.
    assert len([statement for statement in statements if "account_grid" in statement]) == 1
    assert len(features) == 3


def test_rows_cover_accounts_created_strictly_before_as_of(duckdb_url: str, settings: Settings) -> None:
    world = (
        World()
        .account("old", AS_OF - DAY)
        .account("at_as_of", AS_OF)
        .account("just_before", AS_OF - MICROSECOND)
    )

    features = features_of(duckdb_url, world, settings)

    assert sorted(features["account_id"]) == ["just_before", "old"]


def test_columns_are_the_catalog_in_order(duckdb_url: str, settings: Settings) -> None:
    features = features_of(duckdb_url, one_account(), settings)

    names = [spec.name for spec in feature_specs(settings)]
    assert list(features.columns) == ["account_id", "as_of", *names, "is_eligible", *OPPORTUNITY_COLUMNS]


def test_rows_are_sorted_by_as_of_then_account(duckdb_url: str, settings: Settings) -> None:
    world = World().account("b").account("a")

    features = features_of(duckdb_url, world, settings, [AS_OF, AS_OF - DAY])

    keys = list(zip(features["as_of"], features["account_id"], strict=True))
    assert keys == sorted(keys)


def test_no_as_of_gives_an_empty_frame_with_every_column(duckdb_url: str, settings: Settings) -> None:
    features = features_of(duckdb_url, one_account(), settings, [])

    assert features.empty
    assert "count_events_28d" in features.columns and "is_eligible" in features.columns


def test_duplicate_as_of_values_give_one_snapshot(duckdb_url: str, settings: Settings) -> None:
    features = features_of(duckdb_url, one_account(), settings, [AS_OF, AS_OF])

    assert len(features) == 1


def test_an_event_exactly_n_days_before_as_of_is_inside_the_n_day_window(
    duckdb_url: str, settings: Settings
) -> None:
    world = one_account().event("a1", AS_OF - DAY).event("a1", AS_OF - 7 * DAY).event("a1", AS_OF - 28 * DAY)

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert (features["count_events_1d"], features["count_events_7d"], features["count_events_28d"]) == (
        1,
        2,
        3,
    )


def test_an_event_a_microsecond_before_the_window_start_is_outside_it(
    duckdb_url: str, settings: Settings
) -> None:
    world = (
        one_account()
        .event("a1", AS_OF - DAY - MICROSECOND)
        .event("a1", AS_OF - 7 * DAY - MICROSECOND)
        .event("a1", AS_OF - 28 * DAY - MICROSECOND)
    )

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert (features["count_events_1d"], features["count_events_7d"], features["count_events_28d"]) == (
        0,
        1,
        2,
    )


def test_active_days_count_each_day_before_as_of_once(duckdb_url: str, settings: Settings) -> None:
    world = (
        one_account()
        .event("a1", AS_OF - timedelta(hours=1))
        .event("a1", AS_OF - timedelta(hours=23))  # same day as the one above
        .event("a1", AS_OF - DAY)  # first instant of day 1: still day 1
        .event("a1", AS_OF - DAY - MICROSECOND)  # day 2
        .event("a1", AS_OF - 10 * DAY)
    )

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert (features["count_active_days_7d"], features["count_active_days_28d"]) == (2, 3)


def test_active_days_never_exceed_the_window_when_as_of_is_not_at_midnight(
    duckdb_url: str, settings: Settings
) -> None:
    as_of = AS_OF + timedelta(hours=13)
    world = one_account()
    for hours in range(0, 8 * 24, 6):
        world.event("a1", as_of - timedelta(hours=hours) - MICROSECOND)

    features = row(features_of(duckdb_url, world, settings, [as_of]), "a1", as_of)

    assert features["count_active_days_7d"] == 7


def test_an_account_without_events_has_zero_counts_and_unknown_recency(
    duckdb_url: str, settings: Settings
) -> None:
    features = row(features_of(duckdb_url, one_account(), settings), "a1")

    counts = [spec.name for spec in feature_specs(settings) if spec.name.startswith("count_")]
    assert all(features[name] == 0 for name in counts)
    assert math.isnan(features["days_since_last_event"])
    assert math.isnan(features["days_since_last_key_event"])
    assert math.isnan(features["ratio_momentum_7d_vs_prior_21d"])
    assert math.isnan(features["share_users_active_28d"])


def test_users_without_an_account_are_ignored(duckdb_url: str, settings: Settings) -> None:
    world = one_account().user("u1", "a1").user("nobody", None).event(None, AS_OF - DAY, user_id="nobody")

    features = features_of(duckdb_url, world, settings)

    assert list(features["account_id"]) == ["a1"]
    assert row(features, "a1")["count_users"] == 1
    assert row(features, "a1")["count_events_28d"] == 0


def test_events_of_unknown_accounts_are_ignored(duckdb_url: str, settings: Settings) -> None:
    world = one_account().event("ghost", AS_OF - DAY)

    features = features_of(duckdb_url, world, settings)

    assert list(features["account_id"]) == ["a1"]
    assert row(features, "a1")["count_events_28d"] == 0


def test_users_count_until_as_of_and_new_users_count_in_their_window(
    duckdb_url: str, settings: Settings
) -> None:
    world = (
        one_account()
        .user("founder", "a1", AS_OF - 60 * DAY)
        .user("month", "a1", AS_OF - 28 * DAY)
        .user("fortnight", "a1", AS_OF - 14 * DAY)
        .user("tomorrow", "a1", AS_OF)
    )

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert features["count_users"] == 3
    assert (features["count_new_users_14d"], features["count_new_users_28d"]) == (1, 2)


def test_active_users_are_distinct_users_with_an_event_in_the_window(
    duckdb_url: str, settings: Settings
) -> None:
    world = (
        one_account()
        .user("u1", "a1")
        .user("u2", "a1")
        .user("u3", "a1")
        .user("u4", "a1")
        .event("a1", AS_OF - DAY, user_id="u1")
        .event("a1", AS_OF - 2 * DAY, user_id="u1")
        .event("a1", AS_OF - 20 * DAY, user_id="u2")
        .event("a1", AS_OF - 3 * DAY, user_id=None)
    )

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert (features["count_active_users_7d"], features["count_active_users_28d"]) == (1, 2)
    assert features["share_users_active_28d"] == pytest.approx(0.5)


def test_breadth_counts_distinct_event_names_in_28_days(duckdb_url: str, settings: Settings) -> None:
    world = (
        one_account()
        .event("a1", AS_OF - DAY, "login")
        .event("a1", AS_OF - 2 * DAY, "login")
        .event("a1", AS_OF - 3 * DAY, "export_report")
        .event("a1", AS_OF - 40 * DAY, "view_pricing")
    )

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert features["count_distinct_event_types_28d"] == 2


def test_key_events_are_counted_per_event_and_window(duckdb_url: str, settings: Settings) -> None:
    world = (
        one_account()
        .event("a1", AS_OF - DAY, "invite_teammate")
        .event("a1", AS_OF - 10 * DAY, "invite_teammate")
        .event("a1", AS_OF - 2 * DAY, "hit_usage_limit")
        .event("a1", AS_OF - 2 * DAY, "login")
    )

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert (features["count_invite_teammate_7d"], features["count_invite_teammate_28d"]) == (1, 2)
    assert (features["count_hit_usage_limit_7d"], features["count_view_pricing_28d"]) == (1, 0)


def test_configured_key_events_get_their_own_counts(duckdb_url: str) -> None:
    settings = load_settings(None, key_events=["share_board"])
    world = one_account().event("a1", AS_OF - DAY, "share_board")

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert features["count_share_board_7d"] == 1
    assert "count_invite_teammate_7d" not in features.index


def test_recency_is_measured_from_the_last_event_before_as_of_in_days(
    duckdb_url: str, settings: Settings
) -> None:
    world = (
        one_account()
        .event("a1", AS_OF - 400 * DAY, "view_pricing")
        .event("a1", AS_OF - timedelta(days=40, hours=12), "login")
        .event("a1", AS_OF + DAY, "login")
    )

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert features["days_since_last_event"] == pytest.approx(40.5)
    assert features["days_since_last_key_event"] == pytest.approx(400)


def test_recency_carries_over_snapshots_without_events(duckdb_url: str, settings: Settings) -> None:
    world = one_account().event("a1", AS_OF - 30 * DAY, "login")
    snapshots = [AS_OF - 14 * DAY, AS_OF - 7 * DAY, AS_OF]

    features = features_of(duckdb_url, world, settings, snapshots)

    assert list(features["days_since_last_event"]) == pytest.approx([16, 23, 30])


def test_momentum_compares_the_last_week_with_the_weekly_pace_before(
    duckdb_url: str, settings: Settings
) -> None:
    world = one_account()
    for day in (1, 2, 3, 4):
        world.event("a1", AS_OF - day * DAY)
    for day in (8, 15, 22):
        world.event("a1", AS_OF - day * DAY - timedelta(hours=1))

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert features["ratio_momentum_7d_vs_prior_21d"] == pytest.approx(4 / (3 / 3))


def test_momentum_is_unknown_without_activity_in_the_prior_21_days(
    duckdb_url: str, settings: Settings
) -> None:
    world = one_account().event("a1", AS_OF - DAY)

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert math.isnan(features["ratio_momentum_7d_vs_prior_21d"])


def test_momentum_is_unknown_for_an_account_younger_than_28_days(duckdb_url: str, settings: Settings) -> None:
    world = one_account(created_at=AS_OF - 27 * DAY)
    for day in (1, 2, 10, 20):
        world.event("a1", AS_OF - day * DAY)

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert math.isnan(features["ratio_momentum_7d_vs_prior_21d"])


def test_tenure_is_days_since_the_account_was_created(duckdb_url: str, settings: Settings) -> None:
    world = one_account(created_at=AS_OF - timedelta(days=10, hours=6))

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert features["days_tenure"] == pytest.approx(10.25)


def test_an_account_without_plan_changes_is_on_the_free_plan(duckdb_url: str, settings: Settings) -> None:
    features = row(features_of(duckdb_url, one_account(), settings), "a1")

    assert features["plan"] == "free" and features["is_eligible"]


def test_the_latest_plan_change_before_as_of_sets_the_plan(duckdb_url: str, settings: Settings) -> None:
    world = (
        one_account()
        .plan_change("a1", AS_OF - 30 * DAY, "free")
        .plan_change("a1", AS_OF - 20 * DAY, "paid")
        .plan_change("a1", AS_OF - 10 * DAY, "free", from_plan="paid")
    )

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert features["plan"] == "free" and features["is_eligible"]


def test_a_paid_plan_makes_the_account_ineligible(duckdb_url: str, settings: Settings) -> None:
    world = one_account().plan_change("a1", AS_OF - DAY, "paid", from_plan="free")

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert features["plan"] == "paid" and not features["is_eligible"]


def test_a_trial_reports_days_in_it_and_days_left(duckdb_url: str, settings: Settings) -> None:
    world = one_account().plan_change("a1", AS_OF - 3 * DAY, "trial", trial_ends_at=AS_OF + 11 * DAY)

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert features["plan"] == "trial"
    assert (features["days_in_trial"], features["days_left_in_trial"]) == (
        pytest.approx(3),
        pytest.approx(11),
    )


def test_a_trial_ending_exactly_at_as_of_is_over(duckdb_url: str, settings: Settings) -> None:
    world = one_account().plan_change("a1", AS_OF - 14 * DAY, "trial", trial_ends_at=AS_OF)

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert features["plan"] == "free" and features["is_eligible"]
    assert math.isnan(features["days_in_trial"]) and math.isnan(features["days_left_in_trial"])


def test_a_trial_ending_just_after_as_of_is_still_running(duckdb_url: str, settings: Settings) -> None:
    world = one_account().plan_change(
        "a1", AS_OF - 14 * DAY, "trial", trial_ends_at=AS_OF + timedelta(seconds=864)
    )

    features = row(features_of(duckdb_url, world, settings), "a1")

    assert features["plan"] == "trial"
    assert features["days_left_in_trial"] == pytest.approx(0.01)


def test_plan_names_map_through_the_settings(duckdb_url: str) -> None:
    settings = load_settings(
        None, plans={"free": ["starter"], "trial": ["pro_trial"], "paid": ["pro", "team"]}
    )
    world = World().account("a1").account("a2")
    world.plan_change("a1", AS_OF - DAY, "pro_trial", trial_ends_at=AS_OF + DAY)
    world.plan_change("a2", AS_OF - DAY, "team")

    features = features_of(duckdb_url, world, settings)

    assert list(features["plan"]) == ["trial", "paid"]


def test_an_unmapped_plan_name_stops_the_build_with_its_name(duckdb_url: str, settings: Settings) -> None:
    world = one_account().plan_change("a1", AS_OF - DAY, "enterprise")

    with pytest.raises(DataError, match=r"plan_changes\.to_plan.*'enterprise'.*plans\.paid"):
        features_of(duckdb_url, world, settings)


def test_firmographics_are_passed_through_with_unknowns_as_null(duckdb_url: str, settings: Settings) -> None:
    world = World().account("a1", employees=42, industry="software", country="FR").account("a2")

    features = features_of(duckdb_url, world, settings)

    known, unknown = row(features, "a1"), row(features, "a2")
    assert (known["employees"], known["industry"], known["country"]) == (42.0, "software", "FR")
    assert math.isnan(unknown["employees"]) and pd.isna(unknown["industry"]) and pd.isna(unknown["country"])


def test_as_of_given_in_the_configured_zone_counts_that_zones_days(duckdb_url: str) -> None:
    settings = load_settings(None, timezone="America/New_York")
    zone = ZoneInfo("America/New_York")
    as_of = to_utc_naive(date(2024, 3, 15), zone)  # local midnight, 04:00 UTC
    local = datetime(2024, 3, 14, 1, 0)  # 05:00 UTC on the 14th
    late = datetime(2024, 3, 14, 22, 0)  # 02:00 UTC on the 15th: another UTC date, the same local day
    world = (
        one_account(created_at=as_of - 30 * DAY)
        .event("a1", to_utc_naive(local, zone))
        .event("a1", to_utc_naive(late, zone))
        .event("a1", to_utc_naive(datetime(2024, 3, 15, 0, 0), zone))  # local midnight = as_of: excluded
    )

    features = row(features_of(duckdb_url, world, settings, [as_of]), "a1", as_of)

    assert as_of == datetime(2024, 3, 15, 4, 0)
    assert (features["count_events_1d"], features["count_active_days_7d"]) == (2, 1)


def test_a_zone_aware_as_of_is_the_same_instant_as_its_naive_utc(duckdb_url: str, settings: Settings) -> None:
    world = one_account().event("a1", AS_OF - timedelta(hours=3))
    engine, tables = load_world(duckdb_url, world, settings)
    aware = datetime(2024, 2, 29, 19, 0, tzinfo=ZoneInfo("America/New_York"))  # 2024-03-01 00:00 UTC

    from_aware = build_features(engine, tables, settings, [aware])

    pd.testing.assert_frame_equal(from_aware, build_features(engine, tables, settings, [AS_OF]))


def test_too_many_snapshots_for_sqlite_is_a_clear_configuration_error(
    sqlite_url: str, settings: Settings
) -> None:
    engine, tables = load_world(sqlite_url, one_account(), settings)
    dates = [AS_OF - k * DAY for k in range(1200)]

    with pytest.raises(ConfigError, match=r"sqlite accepts at most 32766.*snapshot_every_days"):
        build_features(engine, tables, settings, dates)


def test_a_date_is_refused_as_an_as_of_because_its_zone_is_unknown(
    duckdb_url: str, settings: Settings
) -> None:
    engine, tables = load_world(duckdb_url, one_account(), settings)

    with pytest.raises(ValueError, match=r"start_of_day"):
        build_features(engine, tables, settings, [date(2024, 3, 1)])
