"""The decayed points baseline: fading with age, weights from config or from past conversions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pql.config import ConfigError, load_settings
from pql.db import DataError
from pql.models.points import (
    DEFAULT_POINTS,
    bucket_decay,
    decayed_counts,
    fit_points,
    log_odds_ratio,
    points_rules,
)


def counts(seven: list[float], twenty_eight: list[float], event: str = "view_pricing") -> pd.DataFrame:
    return pd.DataFrame({f"count_{event}_7d": seven, f"count_{event}_28d": twenty_eight})


def test_bucket_decay_is_the_mean_linear_fade_over_the_bucket() -> None:
    assert bucket_decay(0, 7, 28) == pytest.approx(1 - 3.5 / 28)
    # Ages 7..14 fade from 0.5 to 0 with a 14-day lifespan; ages 14..28 are worth nothing.
    assert bucket_decay(7, 28, 14) == pytest.approx((7 * 0.25) / 21)
    assert bucket_decay(7, 28, 7) == 0.0


def test_recent_events_are_worth_more_than_older_ones() -> None:
    frame = counts([3, 0], [3, 3])  # three events this week vs three events 8-28 days ago
    recent, older = decayed_counts(frame, "view_pricing", lifespan_days=28)
    assert recent > older > 0


def test_events_older_than_the_lifespan_are_worth_nothing() -> None:
    frame = counts([0], [5])
    assert decayed_counts(frame, "view_pricing", lifespan_days=7)[0] == 0.0


def test_missing_counts_are_no_events() -> None:
    frame = counts([np.nan], [np.nan])
    assert decayed_counts(frame, "view_pricing", lifespan_days=28)[0] == 0.0


def test_log_odds_ratio_is_positive_for_an_event_converters_do_more() -> None:
    did = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    converted = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    assert log_odds_ratio(did, converted) == pytest.approx(np.log((3.5 * 3.5) / (1.5 * 1.5)))


def test_weights_are_derived_from_past_conversions(frame: pd.DataFrame) -> None:
    rules = {rule.event: rule for rule in points_rules(load_settings(None), frame)}
    assert rules["view_pricing"].source == "derived"
    assert rules["view_pricing"].points > 0


def test_configured_points_override_derived_ones(frame: pd.DataFrame) -> None:
    settings = load_settings(None, model={"points": {"view_pricing": {"points": 3, "lifespan_days": 10}}})
    rules = {rule.event: rule for rule in points_rules(settings, frame)}
    assert (rules["view_pricing"].points, rules["view_pricing"].lifespan_days) == (3.0, 10)
    assert rules["view_pricing"].source == "config"
    assert rules["invite_teammate"].source == "derived"


def test_without_data_every_event_gets_the_default_points() -> None:
    rules = points_rules(load_settings(None))
    assert {rule.source for rule in rules} == {"default"}
    assert {rule.points for rule in rules} == {DEFAULT_POINTS}


def test_points_for_an_event_that_is_not_a_key_event_are_a_config_error(tmp_path: Path) -> None:
    settings = load_settings(None, model={"points": {"login": {"points": 1, "lifespan_days": 7}}})
    with pytest.raises(ConfigError, match="login"):
        points_rules(settings)


def test_probability_rises_with_points(frame: pd.DataFrame) -> None:
    model = fit_points(load_settings(None), frame)
    points = model.points(frame)
    p = model.predict_proba(frame)[:, 1]
    order = np.argsort(points)
    assert np.all(np.diff(p[order]) >= 0)
    assert model.link.source == "fitted"


def test_a_frame_without_the_event_columns_is_refused_by_name() -> None:
    model = fit_points(load_settings(None))
    with pytest.raises(DataError, match="count_invite_teammate_7d"):
        model.predict_proba(pd.DataFrame({"x": [1]}))


def test_probability_never_saturates_for_heavy_users() -> None:
    model = fit_points(load_settings(None))
    columns = model.input_columns
    heavy = pd.DataFrame({column: [100.0, 200.0] for column in columns})
    p = model.predict_proba(heavy)[:, 1]
    assert p[0] < p[1] < 1.0
