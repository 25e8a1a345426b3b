"""Production calibration per probability decile."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pql.outcomes.calibration import calibration_error, calibration_table


def _outcomes(probability: np.ndarray, converted: np.ndarray, mature: bool = True) -> pd.DataFrame:
    return pd.DataFrame({"probability": probability, "is_converted": converted, "is_mature": mature})


def test_deciles_are_equal_in_size_and_ordered_by_probability() -> None:
    probability = np.linspace(0.01, 0.5, 100)
    table = calibration_table(_outcomes(probability, probability > 0.45))
    assert table["decile"].tolist() == list(range(1, 11))
    assert table["accounts"].tolist() == [10] * 10
    assert table["mean_probability"].is_monotonic_increasing


def test_observed_rate_per_decile_worked_by_hand() -> None:
    # 20 accounts, two deciles of ten: the low one converts 1 in 10, the high one 6 in 10.
    probability = np.array([0.1] * 10 + [0.5] * 10)
    converted = np.array([True] + [False] * 9 + [True] * 6 + [False] * 4)
    table = calibration_table(_outcomes(probability, converted), bins=2)
    assert table["observed_rate"].tolist() == [pytest.approx(0.1), pytest.approx(0.6)]
    assert table["conversions"].tolist() == [1, 6]
    # Gaps 0.0 and 0.1 with equal weights.
    assert calibration_error(table) == pytest.approx(0.05)


def test_outcomes_still_within_their_horizon_are_left_out() -> None:
    table = calibration_table(_outcomes(np.array([0.2, 0.3]), np.array([False, False]), mature=False))
    assert table.empty
    assert np.isnan(calibration_error(table))


def test_a_calibrated_model_shows_a_small_gap() -> None:
    rng = np.random.default_rng(3)
    probability = rng.uniform(0, 0.6, 20_000)
    table = calibration_table(_outcomes(probability, rng.random(20_000) < probability))
    assert calibration_error(table) < 0.02
