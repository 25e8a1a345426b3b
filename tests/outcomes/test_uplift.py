"""Uplift of outreach: treated minus control PQL conversion, with Newcombe's interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pql.outcomes.uplift import difference_interval, uplift_estimate, wilson_interval
from pql.scoring.control import is_control


@pytest.mark.parametrize(
    ("counts", "published"),
    [
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((6, 7, 2, 7), (0.0582, 0.8062)),
        ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ],
)
def test_difference_interval_matches_newcombes_published_examples(counts: tuple, published: tuple) -> None:
    low, high = difference_interval(*counts)
    assert (round(low, 4), round(high, 4)) == published


def test_wilson_interval_of_zero_successes_starts_at_zero() -> None:
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(0.2775, abs=1e-4)


def _simulated_pqls(n: int, base: float, effect: float, share: float, seed: int) -> pd.DataFrame:
    """A world where the truth is known: treated PQLs convert at base + effect, control PQLs at base."""
    rng = np.random.default_rng(seed)
    ids = pd.Series([f"pql-{seed}-{i}" for i in range(n)])
    control = is_control(ids, share, "experiment")
    rate = np.where(control, base, base + effect)
    return pd.DataFrame(
        {
            "account_id": ids,
            "segment": np.where(control, "control", "pql"),
            "is_converted": rng.random(n) < rate,
            "is_mature": True,
        }
    )


def test_on_a_simulated_world_the_estimate_is_close_to_the_true_effect_and_inside_the_interval() -> None:
    outcomes = _simulated_pqls(20_000, base=0.10, effect=0.05, share=0.10, seed=11)
    estimate = uplift_estimate(outcomes)
    assert estimate is not None
    assert estimate.ci_low < 0.05 < estimate.ci_high
    assert estimate.uplift == pytest.approx(0.05, abs=0.015)
    assert estimate.control == pytest.approx(2_000, abs=150)


def test_the_interval_covers_the_true_effect_about_95_times_in_100() -> None:
    rng = np.random.default_rng(7)
    treated, control = rng.binomial(900, 0.3, 2_000), rng.binomial(100, 0.2, 2_000)
    intervals = [
        difference_interval(int(x1), 900, int(x0), 100) for x1, x0 in zip(treated, control, strict=True)
    ]
    coverage = np.mean([low <= 0.1 <= high for low, high in intervals])
    assert 0.93 <= coverage <= 0.97


def test_with_no_effect_the_interval_contains_zero() -> None:
    estimate = uplift_estimate(_simulated_pqls(20_000, base=0.12, effect=0.0, share=0.1, seed=5))
    assert estimate.ci_low < 0 < estimate.ci_high


def test_implied_conversions_scale_the_uplift_by_each_group() -> None:
    outcomes = pd.DataFrame(
        {
            "account_id": [f"x{i}" for i in range(150)],
            "segment": ["pql"] * 100 + ["control"] * 50,
            "is_converted": [True] * 30 + [False] * 70 + [True] * 10 + [False] * 40,
            "is_mature": True,
        }
    )
    estimate = uplift_estimate(outcomes)
    assert estimate.uplift == pytest.approx(0.1)
    assert estimate.implied_conversions == pytest.approx(10.0)
    assert estimate.forgone_conversions == pytest.approx(5.0)
    assert estimate.implied_low == pytest.approx(estimate.ci_low * 100)


def test_outcomes_still_within_their_horizon_are_not_used() -> None:
    outcomes = pd.DataFrame(
        {
            "account_id": ["a", "b", "c"],
            "segment": ["pql", "control", "control"],
            "is_converted": [True, False, True],
            "is_mature": [True, True, False],
        }
    )
    estimate = uplift_estimate(outcomes)
    assert (estimate.treated, estimate.control, estimate.control_conversions) == (1, 1, 0)


def test_without_a_control_group_there_is_no_estimate() -> None:
    outcomes = _simulated_pqls(100, base=0.1, effect=0.1, share=0.0, seed=1)
    assert uplift_estimate(outcomes) is None
