"""The catalog names every feature once, with its window in its name, and the reference is generated."""

from __future__ import annotations

import re

from pql.config import Settings, load_settings
from pql.features.catalog import KEY_EVENT_GROUPS, feature_specs, key_event_columns, model_columns
from pql.features.reference import REFERENCE_PATH, default_settings, main, render_reference


def test_every_feature_has_a_definition_window_group_and_unit(settings: Settings) -> None:
    for spec in feature_specs(settings):
        assert spec.definition and spec.window and spec.group and spec.unit, spec.name
        assert spec.kind in ("numeric", "categorical")


def test_windowed_features_carry_their_window_in_their_name(settings: Settings) -> None:
    for spec in feature_specs(settings):
        window = re.fullmatch(r"\[as_of - (\d+)d, as_of\)", spec.window)
        if window and spec.family != "momentum":
            assert spec.name.endswith(f"_{window.group(1)}d"), spec.name


def test_each_key_event_has_7_and_28_day_counts_in_its_own_group() -> None:
    settings = load_settings(None, key_events=["hit_usage_limit", "share_board"])

    specs = {spec.name: spec for spec in feature_specs(settings) if spec.family == "key_events"}

    assert list(specs) == [
        "count_hit_usage_limit_7d",
        "count_hit_usage_limit_28d",
        "count_share_board_7d",
        "count_share_board_28d",
    ]
    assert specs["count_hit_usage_limit_7d"].group == KEY_EVENT_GROUPS["hit_usage_limit"] == "usage_limits"
    assert specs["count_share_board_28d"].group == "share_board"


def test_a_key_event_that_would_take_a_built_in_feature_name_gets_a_slug_of_its_own() -> None:
    settings = load_settings(None, key_events=["events"])

    (key,) = key_event_columns(settings)

    assert key.slug.startswith("events_") and key.column(7) != "count_events_7d"
    names = [spec.name for spec in feature_specs(settings)]
    assert len(names) == len(set(names))


def test_model_columns_split_the_catalog_into_numeric_and_categorical(settings: Settings) -> None:
    numeric, categorical = model_columns(settings)

    assert categorical == ["plan", "industry", "country"]
    assert numeric[:3] == ["count_events_1d", "count_events_7d", "count_events_28d"]
    assert set(numeric) | set(categorical) == {spec.name for spec in feature_specs(settings)}


def test_the_committed_reference_is_generated_from_the_catalog() -> None:
    assert REFERENCE_PATH.read_text(encoding="utf-8") == render_reference(default_settings())
    assert main(["--check"]) == 0


def test_the_reference_documents_every_feature(settings: Settings) -> None:
    text = render_reference(settings)

    for spec in feature_specs(settings):
        assert f"| `{spec.name}` |" in text
