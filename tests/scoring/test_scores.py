"""Score 0-100, tiers by quantile or threshold, fit sub-score and grade A-E; only eligible accounts are
tiered and graded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pql.config import Settings
from pql.db import DataError
from pql.scoring.scores import (
    NOT_ELIGIBLE,
    grades,
    probability_of_score,
    score_frame,
    score_of_probability,
    tiers,
)


def _settings(**scoring: object) -> Settings:
    return Settings(scoring=scoring)


@given(st.lists(st.floats(0, 1), min_size=2, max_size=50))
def test_score_never_decreases_as_probability_rises(probabilities: list[float]) -> None:
    ordered = np.sort(np.asarray(probabilities))
    assert np.all(np.diff(score_of_probability(ordered)) >= 0)


def test_score_stays_within_0_and_100() -> None:
    scores = score_of_probability([0.0, 1e-9, 0.5, 1 - 1e-9, 1.0])
    assert scores.min() >= 0 and scores.max() <= 100


def test_score_spreads_distinct_probabilities_apart() -> None:
    assert len(set(score_of_probability(np.linspace(0.01, 0.9, 50)))) == 50


def test_score_anchors_put_10_percent_at_45_and_25_percent_at_60() -> None:
    assert score_of_probability([0.10, 0.25]).tolist() == [45.0, 60.0]
    assert probability_of_score(60.0) == pytest.approx(0.25)


def test_quantile_tiers_hold_their_share_of_eligible_accounts() -> None:
    probability = np.linspace(0.001, 0.9, 1000)
    assigned = pd.Series(tiers(probability, np.ones(1000, dtype=bool), Settings()))
    assert assigned.value_counts().to_dict() == {"very_high": 10, "high": 90, "medium": 200, "low": 700}
    assert set(assigned[probability >= probability[-10]]) == {"very_high"}


def test_quantile_tiers_are_cut_among_eligible_accounts_only() -> None:
    probability = np.r_[np.linspace(0.01, 0.5, 100), [0.99] * 50]
    eligible = np.r_[np.ones(100, dtype=bool), np.zeros(50, dtype=bool)]
    assigned = pd.Series(tiers(probability, eligible, Settings())[:100])
    assert assigned.value_counts().to_dict() == {"low": 70, "medium": 20, "high": 9, "very_high": 1}


@pytest.mark.parametrize("policy", ["quantile", "threshold"])
def test_ineligible_accounts_get_no_tier_under_either_policy(policy: str) -> None:
    probability = np.array([0.99, 0.6, 0.3, 0.05])
    eligible = np.array([False, True, False, True])
    assigned = tiers(probability, eligible, _settings(tier_policy=policy))
    assert assigned[0] is None and assigned[2] is None
    assert assigned[1] is not None and assigned[3] is not None


def test_quantile_tie_at_a_boundary_falls_to_the_lower_tier() -> None:
    probability = np.full(200, 0.2)
    assert set(tiers(probability, np.ones(200, dtype=bool), Settings())) == {"low"}


def test_threshold_tiers_follow_probability_cut_offs() -> None:
    settings = _settings(tier_policy="threshold")
    assigned = tiers(np.array([0.6, 0.5, 0.3, 0.25, 0.1, 0.09]), np.ones(6, dtype=bool), settings)
    assert assigned.tolist() == ["very_high", "very_high", "high", "high", "medium", "low"]


def test_threshold_tiers_follow_configured_cut_offs() -> None:
    cuts = {"very_high": 0.8, "high": 0.6, "medium": 0.4}
    settings = _settings(tier_policy="threshold", tier_probabilities=cuts)
    assigned = tiers(np.array([0.85, 0.7, 0.5, 0.3]), np.ones(4, dtype=bool), settings)
    assert assigned.tolist() == ["very_high", "high", "medium", "low"]


def test_quantile_tiers_follow_configured_shares() -> None:
    settings = _settings(tier_quantiles={"very_high": 0.1, "high": 0.2, "medium": 0.5})
    assigned = pd.Series(tiers(np.linspace(0.01, 0.9, 100), np.ones(100, dtype=bool), settings))
    assert assigned.value_counts().to_dict() == {"low": 50, "medium": 30, "very_high": 10, "high": 10}


def test_grade_tells_great_fit_quiet_from_poor_fit_busy_and_ranks_both_ends() -> None:
    rng = np.random.default_rng(0)
    fit = np.r_[rng.uniform(0.05, 0.15, 300), [0.4, 0.4, 0.01, 0.01]]
    probability = np.r_[fit[:300] * rng.uniform(0.5, 2.0, 300), [0.9, 0.05, 0.3, 0.001]]
    graded = grades(probability, fit, np.ones(len(fit), dtype=bool))
    great_fit_busy, great_fit_quiet, poor_fit_busy, poor_fit_quiet = graded[-4:]
    assert (great_fit_busy, great_fit_quiet, poor_fit_busy, poor_fit_quiet) == ("A", "C", "C", "E")


def test_grades_are_cut_among_eligible_accounts_only() -> None:
    rng = np.random.default_rng(1)
    probability, fit = rng.uniform(0.01, 0.6, 300), rng.uniform(0.01, 0.3, 300)
    eligible = np.arange(300) % 3 != 0
    alongside = grades(probability, fit, eligible)
    alone = grades(probability[eligible], fit[eligible], np.ones(eligible.sum(), dtype=bool))
    assert alongside[eligible].tolist() == alone.tolist()
    assert set(alongside[~eligible]) == {None}


def test_paid_accounts_are_never_tiered_nor_graded_and_say_why(
    trained_model, paid_features, model_settings
) -> None:
    features, paid = paid_features
    scored = score_frame(features, trained_model, model_settings)
    assert scored.loc[paid, ["tier", "grade"]].isna().all().all()
    assert scored.loc[paid, "ineligible_reason"].eq("on a paid plan").all()
    assert scored.loc[~paid, ["tier", "grade"]].notna().all().all()
    assert scored.loc[~paid, "ineligible_reason"].isna().all()


def test_ineligible_accounts_are_still_scored(trained_model, paid_features, model_settings) -> None:
    features, paid = paid_features
    scored = score_frame(features, trained_model, model_settings)
    expected = trained_model.predict_proba(features)
    np.testing.assert_allclose(scored.loc[paid, "probability"], expected[paid])
    assert scored.loc[paid, "score"].between(0, 100).all() and scored.loc[paid, "fit_score"].notna().all()


def test_an_account_ineligible_for_another_reason_than_its_plan_gets_a_generic_reason(
    trained_model, scoring_features, model_settings
) -> None:
    features = scoring_features.head(5).assign(is_eligible=[True, False, True, True, True], plan="free")
    scored = score_frame(features, trained_model, model_settings)
    reasons = scored["ineligible_reason"]
    assert reasons.iloc[1] == NOT_ELIGIBLE and reasons.drop(index=1).isna().all()
    assert pd.isna(scored.loc[1, "tier"]) and pd.isna(scored.loc[1, "grade"])


def test_an_account_with_an_opportunity_open_at_as_of_is_not_tiered_and_says_since_when(
    trained_model, scoring_features, model_settings
) -> None:
    features = scoring_features.head(4).assign(
        plan=["free", "free", "free", "paid"],
        is_eligible=[True, False, False, False],
        open_opportunity_created_at=pd.to_datetime([None, "2026-05-03 10:00", None, "2026-05-03 00:00"]),
        won_opportunity_closed_at=pd.to_datetime([None, None, "2026-04-01 09:30", None]),
    )

    scored = score_frame(features, trained_model, model_settings)

    reasons = scored["ineligible_reason"]
    assert pd.isna(reasons.iloc[0])
    assert reasons.iloc[1:].tolist() == [
        "open opportunity (created 2026-05-03)",
        "won an opportunity (closed 2026-04-01)",
        "on a paid plan",
    ]
    assert scored["tier"].isna().tolist() == [False, True, True, True]


def test_the_opportunitys_day_is_the_local_day_of_the_configured_zone(
    trained_model, scoring_features, model_settings
) -> None:
    features = scoring_features.head(1).assign(
        plan="trial", is_eligible=False, open_opportunity_created_at=pd.Timestamp("2026-05-03 02:00")
    )
    settings = model_settings.model_copy(update={"timezone": "America/New_York"})

    scored = score_frame(features, trained_model, settings)

    assert scored["ineligible_reason"].item() == "open opportunity (created 2026-05-02)"


def test_score_frame_scores_every_account(trained_model, scoring_features, model_settings) -> None:
    scored = score_frame(scoring_features, trained_model, model_settings)
    expected = {"account_id", "probability", "score", "tier", "fit_score", "grade", "ineligible_reason"}
    expected |= {"plan", "is_eligible"}
    assert expected <= set(scored.columns)
    assert scored["account_id"].tolist() == scoring_features["account_id"].tolist()
    assert scored["score"].between(0, 100).all() and scored["fit_score"].between(0, 100).all()
    assert set(scored["grade"]) <= set("ABCDE")
    assert scored.sort_values("probability")["score"].is_monotonic_increasing


def test_score_frame_names_the_missing_feature_columns(
    trained_model, scoring_features, model_settings
) -> None:
    with pytest.raises(DataError, match="count_events_7d"):
        score_frame(scoring_features.drop(columns=["count_events_7d"]), trained_model, model_settings)
