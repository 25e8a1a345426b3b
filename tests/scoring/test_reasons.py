"""Reasons are measured on the model: present, ordered, and faithful to what moves the score; only
eligible accounts get them."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from pql.db import DataError
from pql.scoring import reasons
from pql.scoring.reasons import group_impacts, reason_groups, reasons_frame, top_reasons


@pytest.fixture(scope="module")
def explained(trained_model, scoring_features, model_settings) -> pd.DataFrame:
    return reasons_frame(scoring_features, trained_model, model_settings)


def _parsed(explained: pd.DataFrame) -> list[list[dict]]:
    return [json.loads(text) for text in explained["reasons_json"]]


def _neutralised_probability(model, features: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The test's own neutralisation: the group's columns set to the model's reference values."""
    return model.predict_proba(features.assign(**{c: model.reference_values[c] for c in columns}))


def test_every_account_gets_reasons_as_json_and_text(explained, scoring_features) -> None:
    assert explained["account_id"].tolist() == scoring_features["account_id"].tolist()
    parsed = _parsed(explained)
    assert all(1 <= len(account) <= 5 for account in parsed)
    lines = [text.split("\n") for text in explained["reasons_text"]]
    assert [len(line) for line in lines] == [len(account) for account in parsed]


def test_reasons_are_at_most_three_raising_then_two_lowering_each_ordered_by_impact(explained) -> None:
    for account in _parsed(explained):
        directions = [reason["direction"] for reason in account]
        raising = [r["impact_points"] for r in account if r["direction"] == "up"]
        lowering = [r["impact_points"] for r in account if r["direction"] == "down"]
        assert directions == sorted(directions, key=["up", "down"].index)
        assert len(raising) <= 3 and len(lowering) <= 2
        assert raising == sorted(raising, reverse=True) and all(v > 0 for v in raising)
        assert lowering == sorted(lowering) and all(v < 0 for v in lowering)


def test_a_reason_names_its_group_feature_value_and_percentile_among_the_same_plan(
    explained, scoring_features
) -> None:
    account = scoring_features.iloc[0]
    reason = _parsed(explained)[0][0]
    assert set(reason) == {"group", "direction", "impact_points", "feature", "value", "percentile"}
    assert reason["value"] == pytest.approx(float(account[reason["feature"]]), abs=1e-4)
    peers = scoring_features.loc[scoring_features["plan"] == account["plan"], reason["feature"]].astype(float)
    below, equal = (peers < account[reason["feature"]]).mean(), (peers == account[reason["feature"]]).mean()
    assert reason["percentile"] == pytest.approx(100 * (below + equal / 2), abs=0.06)


def test_reason_text_lines_follow_the_json_order_with_a_sign_for_direction(explained) -> None:
    for text, account in zip(explained["reasons_text"], _parsed(explained), strict=True):
        signs = [line[:2] for line in text.split("\n")]
        assert signs == ["+ " if reason["direction"] == "up" else "- " for reason in account]


def test_impact_is_the_probability_drop_when_the_group_is_neutralised(
    explained, trained_model, scoring_features, model_settings
) -> None:
    groups = reason_groups(trained_model, model_settings)
    base = trained_model.predict_proba(scoring_features)
    for row in (0, 1, 2):
        for reason in _parsed(explained)[row]:
            neutral = _neutralised_probability(
                trained_model, scoring_features.iloc[[row]], groups[reason["group"]]
            )
            assert reason["impact_points"] == pytest.approx(100 * (base[row] - neutral[0]), abs=0.006)


def test_neutralising_the_top_reason_lowers_the_score_more_than_a_random_signal(
    explained, trained_model, scoring_features, model_settings
) -> None:
    groups = reason_groups(trained_model, model_settings)
    base = trained_model.predict_proba(scoring_features)
    neutral = {
        group: _neutralised_probability(trained_model, scoring_features, cols)
        for group, cols in groups.items()
    }
    rng = np.random.default_rng(3)
    top_drops, random_drops = [], []
    for row, account in enumerate(_parsed(explained)):
        if not account or account[0]["direction"] != "up":
            continue
        top = account[0]["group"]
        other = rng.choice([group for group in groups if group != top])
        top_drops.append(base[row] - neutral[top][row])
        random_drops.append(base[row] - neutral[other][row])
    top_drops, random_drops = np.array(top_drops), np.array(random_drops)
    assert len(top_drops) >= 300
    assert top_drops.mean() > 3 * random_drops.mean()
    assert (top_drops > random_drops).mean() >= 0.95


def test_reasons_name_the_signals_that_drive_the_synthetic_conversions(explained) -> None:
    top_groups = pd.Series([account[0]["group"] for account in _parsed(explained) if account]).value_counts()
    assert set(top_groups.index[:3]) & {"team_activity", "usage_limits", "pricing_interest", "recency"}


class _ThroughFrames:
    """The fixture's model without its split: reasons ask it through `predict_proba` on frames."""

    def __init__(self, model: object) -> None:
        self._model = model

    def __getattr__(self, name: str) -> object:
        return getattr(self._model, name)

    def encoded(self) -> None:
        return None


def test_impacts_from_encoded_rows_equal_impacts_through_frames(
    trained_model, scoring_features, model_settings
) -> None:
    groups = reason_groups(trained_model, model_settings)
    _, encoded = group_impacts(scoring_features, trained_model, groups)
    _, framed = group_impacts(scoring_features, _ThroughFrames(trained_model), groups)
    np.testing.assert_allclose(encoded, framed, atol=1e-12)


def test_rows_at_the_reference_are_not_rescored_and_get_zero_impact(
    trained_model, scoring_features, model_settings, monkeypatch
) -> None:
    model = _ThroughFrames(trained_model)
    groups = reason_groups(model, model_settings)
    _, subset = group_impacts(scoring_features, model, groups)
    monkeypatch.setattr(reasons, "SUBSET_SHARE", 0.0)
    _, full = group_impacts(scoring_features, model, groups)
    np.testing.assert_allclose(subset, full, atol=1e-12)


def test_top_reasons_leave_out_noise_and_keep_direction() -> None:
    impacts = np.array([[0.05, -0.02, 0.0001, 0.01, -0.0001, -0.3]])
    assert top_reasons(np.array([0.5]), impacts).tolist() == [[0, 3, -1, 5, 1]]


def test_an_account_near_certainty_still_gets_its_reasons() -> None:
    impacts = np.array([[0.0004, -0.0001, 0.0]])
    assert top_reasons(np.array([0.9995]), impacts).tolist() == [[0, -1, -1, 1, -1]]


def test_a_model_without_reference_values_cannot_explain(
    trained_model, scoring_features, model_settings
) -> None:
    class WithoutReferences:
        def __getattr__(self, name: str) -> object:
            return {} if name == "reference_values" else getattr(trained_model, name)

    with pytest.raises(DataError, match="no reference value for count_events_1d"):
        reasons_frame(scoring_features, WithoutReferences(), model_settings)


def test_an_account_at_the_population_reference_has_no_reasons(
    trained_model, scoring_features, model_settings
) -> None:
    typical = scoring_features.head(3).assign(**trained_model.reference_values)
    explained = reasons_frame(typical, trained_model, model_settings)
    assert explained["reasons_json"].tolist() == ["[]"] * 3
    assert explained["reasons_text"].tolist() == [""] * 3


@pytest.fixture(scope="module")
def explained_with_paid(trained_model, paid_features, model_settings) -> pd.DataFrame:
    return reasons_frame(paid_features[0], trained_model, model_settings)


def test_ineligible_accounts_get_no_reasons(explained_with_paid, paid_features) -> None:
    _, paid = paid_features
    assert explained_with_paid.loc[paid, "reasons_json"].eq("[]").all()
    assert explained_with_paid.loc[paid, "reasons_text"].eq("").all()
    assert explained_with_paid.loc[~paid, "reasons_json"].ne("[]").all()


def test_eligible_accounts_keep_the_reasons_they_had_when_every_account_was_explained(
    explained_with_paid, trained_model, paid_features, model_settings
) -> None:
    features, paid = paid_features
    everyone = reasons_frame(features.assign(is_eligible=True), trained_model, model_settings)
    pd.testing.assert_frame_equal(explained_with_paid[~paid], everyone[~paid])


def test_ineligible_accounts_are_never_measured(trained_model, paid_features, model_settings) -> None:
    features, paid = paid_features
    seen: set[str] = set()

    class Watched(_ThroughFrames):
        def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
            seen.update(frame["account_id"])
            return self._model.predict_proba(frame)

    reasons_frame(features, Watched(trained_model), model_settings)
    assert seen and not seen & set(features.loc[paid, "account_id"])


class _Pricing28DaysOnly:
    """A model that reads only the 28-day pricing count: the 7-day count moves nothing."""

    version = "pricing-28d"
    is_fallback = False
    numeric_columns: ClassVar[list[str]] = ["count_view_pricing_7d", "count_view_pricing_28d"]
    categorical_columns: ClassVar[list[str]] = []
    reference_values: ClassVar[dict[str, object]] = {
        "count_view_pricing_7d": 0.0,
        "count_view_pricing_28d": 0.0,
    }

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return 1 / (1 + np.exp(3 - 0.8 * features["count_view_pricing_28d"].to_numpy(dtype=float)))

    def predict_fit_proba(self, features: pd.DataFrame) -> np.ndarray:
        return np.full(len(features), 0.05)

    def encoded(self) -> None:
        return None


def test_a_reason_quotes_the_number_that_moved_the_score(model_settings) -> None:
    # The account's 7-day count is the most unusual (the lowest), but only its 28-day count moves the score.
    features = pd.DataFrame(
        {
            "account_id": [f"a{k}" for k in range(30)],
            "plan": "free",
            "count_view_pricing_7d": [0.0] + [float(1 + k % 3) for k in range(29)],
            "count_view_pricing_28d": [4.0] + [float(3 + k % 3) for k in range(29)],
        }
    )

    explained = reasons_frame(features, _Pricing28DaysOnly(), model_settings)

    reason = _parsed(explained)[0][0]
    assert (reason["direction"], reason["feature"], reason["value"]) == ("up", "count_view_pricing_28d", 4.0)
    assert explained["reasons_text"].iloc[0].startswith("+ looked at pricing 4 times in the last 28 days")
