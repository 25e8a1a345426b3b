"""Nothing at or after `as_of` reaches a feature; a conversion before `as_of` makes the account ineligible."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from feature_worlds import AS_OF, DAY, World, features_of, load_world, row
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from pql.bulk import bulk_insert
from pql.config import Settings, load_settings
from pql.features.builder import build_features
from pql.features.reference import default_settings
from pql.schema import SourceTables

LATER = AS_OF + 3 * DAY


def active_world() -> World:
    """Two accounts with users, key events and a trial, active right up to as_of."""
    world = World().account("a1", employees=20).account("a2", AS_OF - 20 * DAY)
    world.user("u1", "a1").user("u2", "a1").user("v1", "a2", AS_OF - 19 * DAY)
    for hours in (1, 5, 30, 100, 200, 400, 700):
        world.event("a1", AS_OF - timedelta(hours=hours), "login", "u1")
    world.event("a1", AS_OF - 2 * DAY, "invite_teammate", "u2")
    world.event("a2", AS_OF - 15 * DAY, "view_pricing", "v1")
    world.plan_change("a1", AS_OF - 90 * DAY, "free")
    world.plan_change("a2", AS_OF - 20 * DAY, "trial", trial_ends_at=AS_OF + 5 * DAY)
    return world


def test_an_event_exactly_at_as_of_changes_no_feature(
    duckdb_url: str, settings: Settings, tmp_path: Path
) -> None:
    before = features_of(duckdb_url, active_world(), settings)

    with_event = active_world().event("a1", AS_OF, "invite_teammate", "u1").event("a2", AS_OF, "login", "v1")
    after = features_of(f"duckdb:///{tmp_path / 'with_event.duckdb'}", with_event, settings)

    pd.testing.assert_frame_equal(after, before)


def test_later_events_users_and_plan_changes_change_no_feature(
    duckdb_url: str, settings: Settings, tmp_path: Path
) -> None:
    before = features_of(duckdb_url, active_world(), settings)

    later = active_world().event("a1", AS_OF + timedelta(microseconds=1), "hit_usage_limit", "u1")
    later.event("a2", AS_OF + 40 * DAY, "view_pricing", "v1").user("u3", "a1", AS_OF)
    later.plan_change("a2", AS_OF, "paid", from_plan="trial").account("a3", AS_OF)
    after = features_of(f"duckdb:///{tmp_path / 'later.duckdb'}", later, settings)

    pd.testing.assert_frame_equal(after, before)


def test_a_conversion_before_as_of_makes_the_account_ineligible(duckdb_url: str, settings: Settings) -> None:
    world = active_world().plan_change("a2", AS_OF - timedelta(seconds=1), "paid", from_plan="trial")

    features = features_of(duckdb_url, world, settings)

    assert not row(features, "a2")["is_eligible"]
    assert row(features, "a1")["is_eligible"]


def test_a_conversion_exactly_at_as_of_leaves_the_account_eligible(
    duckdb_url: str, settings: Settings
) -> None:
    world = active_world().plan_change("a2", AS_OF, "paid", from_plan="trial")

    features = features_of(duckdb_url, world, settings)

    assert row(features, "a2")["is_eligible"]
    assert row(features, "a2")["plan"] == "trial"


def test_a_later_snapshot_in_the_same_statement_does_not_leak_into_an_earlier_one(
    duckdb_url: str, settings: Settings
) -> None:
    engine, tables = load_world(
        duckdb_url, active_world().event("a1", LATER - DAY, "view_pricing", "u1"), settings
    )

    both = build_features(engine, tables, settings, [AS_OF, LATER])
    alone = build_features(engine, tables, settings, [AS_OF])

    pd.testing.assert_frame_equal(both[both["as_of"] == pd.Timestamp(AS_OF)].reset_index(drop=True), alone)


SharedWorld = tuple[sa.Engine, SourceTables, Settings, pd.DataFrame]


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedWorld]:
    """One DuckDB world, and its features at as_of, for every hypothesis example (each example removes
    the events it adds)."""
    settings = default_settings()
    url = f"duckdb:///{tmp_path_factory.mktemp('leakage') / 'world.duckdb'}"
    engine, tables = load_world(url, active_world(), settings)
    yield engine, tables, settings, build_features(engine, tables, settings, [AS_OF])
    engine.dispose()


late_events = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=60 * 86400 * 10**6),  # microseconds at or after as_of
        st.sampled_from(["a1", "a2", "ghost", None]),
        st.sampled_from(["u1", "u2", "v1", "stranger", None]),
        st.sampled_from(["login", "invite_teammate", "view_pricing", "hit_usage_limit", "brand_new_event"]),
    ),
    min_size=1,
    max_size=25,
)


@hypothesis_settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=late_events)
def test_appending_any_events_at_or_after_as_of_leaves_every_feature_unchanged(
    shared_world: SharedWorld, events: list[tuple]
) -> None:
    engine, tables, settings, baseline = shared_world
    added = pd.DataFrame(
        {
            "event_id": [f"late{i}" for i in range(len(events))],
            "user_id": [user for _, _, user, _ in events],
            "account_id": [account for _, account, _, _ in events],
            "event_name": [name for _, _, _, name in events],
            "occurred_at": pd.to_datetime([AS_OF + timedelta(microseconds=us) for us, *_ in events]),
            "properties": [None] * len(events),
        }
    )
    with engine.begin() as conn:
        bulk_insert(conn, tables.events, added)
    try:
        # A later snapshot in the same statement has the added events in its windows.
        after = build_features(engine, tables, settings, [AS_OF, LATER])
    finally:
        with engine.begin() as conn:
            conn.execute(sa.delete(tables.events).where(tables.events.c.event_id.like("late%")))

    pd.testing.assert_frame_equal(
        after[after["as_of"] == pd.Timestamp(AS_OF)].reset_index(drop=True), baseline
    )


def test_property_filtered_key_events_at_or_after_as_of_change_no_feature(
    duckdb_url: str, tmp_path: Path
) -> None:
    settings = load_settings(
        None, key_events=[{"name": "Limit Reached", "where": {"limit": "seats"}}, "login"]
    )
    seats = '{"limit": "seats"}'
    before = features_of(
        duckdb_url, active_world().event("a1", AS_OF - DAY, "Limit Reached", "u1", seats), settings
    )

    later = active_world().event("a1", AS_OF - DAY, "Limit Reached", "u1", seats)
    later.event("a1", AS_OF, "Limit Reached", "u1", seats).event("a2", LATER, "Limit Reached", "v1", seats)
    after = features_of(f"duckdb:///{tmp_path / 'later.duckdb'}", later, settings)

    pd.testing.assert_frame_equal(after, before)
    assert row(before, "a1")["count_limit_reached_limit_seats_7d"] == 1


def test_attribute_values_valid_from_as_of_or_later_change_no_feature(duckdb_url: str) -> None:
    settings = load_settings(None, tables={"account_attributes": {"attributes": {"Seats": "numeric"}}})
    engine, tables = load_world(duckdb_url, active_world(), settings)
    history = pd.DataFrame(
        {
            "account_id": ["a1", "a1", "a1", "a2"],
            "name": "Seats",
            "value": ["5", "50", "500", "7"],
            "valid_from": [AS_OF - 10 * DAY, AS_OF, LATER, AS_OF + timedelta(microseconds=1)],
        }
    ).astype({"valid_from": "datetime64[us]"})
    with engine.begin() as conn:
        bulk_insert(conn, tables.account_attributes, history)

    features = build_features(engine, tables, settings, [AS_OF])
    engine.dispose()

    assert row(features, "a1")["seats"] == 5.0
    assert pd.isna(row(features, "a2")["seats"])
