"""Event names are data: any text works as a key event, optionally narrowed by its JSON properties."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from feature_worlds import AS_OF, DAY, World, features_of, load_world, row
from pandas_reference import reference_features

from pql.config import ConfigError, load_settings
from pql.features.builder import features_statement, snapshot_instants
from pql.features.catalog import key_event_columns

REAL_WORLD_NAMES = [
    "Submit Upgrade",
    "Project Created",
    "$pageview",
    "checkout:started",
    "Anmeldung abgeschlossen",
    "注册完成",
    "x'; DROP TABLE events; --",
]
SEAT_LIMIT = {"name": "Limit Reached", "where": {"limit": "seats"}}


def _account() -> World:
    return World().account("a1")


def test_real_world_event_names_slug_to_unique_plain_identifiers() -> None:
    settings = load_settings(None, key_events=REAL_WORLD_NAMES)

    slugs = [key.slug for key in key_event_columns(settings)]

    assert slugs[:5] == [
        "submit_upgrade",
        "project_created",
        "pageview",
        "checkout_started",
        "anmeldung_abgeschlossen",
    ]
    assert len(set(slugs)) == len(slugs)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", key.column(28)) for key in key_event_columns(settings))
    assert all(len(key.column(28)) <= 63 for key in key_event_columns(settings))


def test_slugs_do_not_depend_on_the_order_of_the_list() -> None:
    forward = load_settings(None, key_events=["Add Friend", "add_friend", "Thumbs Up"])
    backward = load_settings(None, key_events=["Thumbs Up", "add_friend", "Add Friend"])

    def slugs(settings: object) -> dict[str, str]:
        return {key.event.name: key.slug for key in key_event_columns(settings)}

    assert slugs(forward) == slugs(backward)
    assert slugs(forward)["Add Friend"] != slugs(forward)["add_friend"]


def test_event_names_with_spaces_punctuation_and_non_ascii_are_counted(any_db_url: str) -> None:
    settings = load_settings(None, key_events=REAL_WORLD_NAMES)
    world = _account()
    for k, name in enumerate(REAL_WORLD_NAMES):
        for _ in range(k + 1):
            world.event("a1", AS_OF - 2 * DAY, name)

    features = row(features_of(any_db_url, world, settings), "a1")

    counts = [features[key.column(7)] for key in key_event_columns(settings)]
    assert counts == list(range(1, len(REAL_WORLD_NAMES) + 1))
    assert features["days_since_last_key_event"] == pytest.approx(2.0)


def test_event_names_reach_the_database_only_as_bound_parameters(duckdb_url: str) -> None:
    settings = load_settings(None, key_events=[*REAL_WORLD_NAMES, SEAT_LIMIT])
    _, tables = load_world(duckdb_url, _account(), settings)

    sql = str(features_statement(tables, settings, snapshot_instants([AS_OF])))

    for name in [*REAL_WORLD_NAMES, "Limit Reached"]:
        assert name not in sql


def test_a_property_filtered_key_event_counts_only_matching_events(any_db_url: str) -> None:
    settings = load_settings(None, key_events=[SEAT_LIMIT, "Limit Reached"])
    world = (
        _account()
        .event("a1", AS_OF - DAY, "Limit Reached", properties=json.dumps({"limit": "seats"}))
        .event("a1", AS_OF - DAY, "Limit Reached", properties=json.dumps({"limit": "storage"}))
        .event("a1", AS_OF - DAY, "Limit Reached", properties=None)
        .event("a1", AS_OF - 3 * DAY, "Other", properties=json.dumps({"limit": "seats"}))
    )
    filtered, plain = key_event_columns(settings)

    features = row(features_of(any_db_url, world, settings), "a1")

    assert (features[filtered.column(7)], features[plain.column(7)]) == (1, 3)


def test_property_conditions_compare_numbers_booleans_and_odd_keys_as_text(any_db_url: str) -> None:
    condition = {"name": "Upgrade", "where": {"seats": 10, "annual": True, "utm source": "ads"}}
    settings = load_settings(None, key_events=[condition])
    matching = {"seats": 10, "annual": True, "utm source": "ads"}
    world = (
        _account()
        .event("a1", AS_OF - DAY, "Upgrade", properties=json.dumps(matching))
        .event("a1", AS_OF - DAY, "Upgrade", properties=json.dumps({**matching, "seats": "10"}))
        .event("a1", AS_OF - DAY, "Upgrade", properties=json.dumps({**matching, "annual": False}))
        .event("a1", AS_OF - DAY, "Upgrade", properties=json.dumps({"seats": 10, "annual": True}))
    )
    (key,) = key_event_columns(settings)

    features = row(features_of(any_db_url, world, settings), "a1")

    assert features[key.column(7)] == 2


def test_a_property_filtered_key_event_matches_the_pandas_reference(any_db_url: str) -> None:
    settings = load_settings(None, key_events=[SEAT_LIMIT, "view_pricing"])
    world = World().account("a1").account("a2", AS_OF - 20 * DAY)
    for k in range(40):
        limit = ["seats", "storage", "projects"][k % 3]
        world.event(
            f"a{k % 2 + 1}", AS_OF - k * DAY / 2, "Limit Reached", properties=json.dumps({"limit": limit})
        )
        world.event("a1", AS_OF - k * DAY, "view_pricing")
    frames = {table: world.frame(table) for table in world.rows}
    as_of = [AS_OF, AS_OF - 9 * DAY]

    built = features_of(any_db_url, world, settings, as_of)

    pd.testing.assert_frame_equal(built, reference_features(frames, settings, as_of), check_exact=False)


@pytest.mark.parametrize(
    ("key_events", "message"),
    [
        (["   "], "blank"),
        ([{"name": "Upgrade", "where": {"": "x"}}], "property name cannot be blank"),
        (["Upgrade", "Upgrade"], "listed twice"),
    ],
)
def test_a_blank_or_repeated_key_event_is_a_configuration_error(key_events: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, key_events=key_events)
