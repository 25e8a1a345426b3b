"""Champion and challenger: better PR-AUC by the margin, without worse calibration, or no promotion."""

from __future__ import annotations

from pql.models.champion import BRIER_TOLERANCE, HoldoutScore, promotion_decision

MARGIN = 0.005
CHAMPION = HoldoutScore(pr_auc=0.30, brier=0.040)


def test_the_first_model_is_promoted() -> None:
    decision = promotion_decision(HoldoutScore(0.1, 0.05), None, margin=MARGIN)
    assert decision.promote
    assert decision.reason == "no champion yet"


def test_a_challenger_better_by_the_margin_with_no_worse_calibration_is_promoted() -> None:
    decision = promotion_decision(HoldoutScore(0.31, 0.039), CHAMPION, margin=MARGIN, champion_name="v1")
    assert decision.promote
    assert "0.3100 vs 0.3000 for v1" in decision.reason


def test_a_challenger_better_by_less_than_the_margin_stays_a_challenger() -> None:
    decision = promotion_decision(HoldoutScore(0.304, 0.030), CHAMPION, margin=MARGIN)
    assert not decision.promote
    assert "not better by the promotion margin 0.005" in decision.reason


def test_a_worse_challenger_stays_a_challenger() -> None:
    assert not promotion_decision(HoldoutScore(0.25, 0.030), CHAMPION, margin=MARGIN).promote


def test_better_ranking_with_worse_calibration_stays_a_challenger() -> None:
    worse_brier = CHAMPION.brier * (1 + BRIER_TOLERANCE) + 0.001
    decision = promotion_decision(HoldoutScore(0.40, worse_brier), CHAMPION, margin=MARGIN)
    assert not decision.promote
    assert "calibration is worse" in decision.reason


def test_brier_within_the_tolerance_does_not_block_promotion() -> None:
    slightly_worse = CHAMPION.brier * (1 + BRIER_TOLERANCE / 2)
    assert promotion_decision(HoldoutScore(0.40, slightly_worse), CHAMPION, margin=MARGIN).promote


def test_a_zero_margin_promotes_on_an_equal_pr_auc() -> None:
    assert promotion_decision(HoldoutScore(0.30, 0.040), CHAMPION, margin=0.0).promote
