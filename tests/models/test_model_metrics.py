"""Holdout metrics: the same numbers as scikit-learn, per-snapshot top shares, fair ties, paired bootstrap."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from pql.models.metrics import (
    bootstrap_intervals,
    calibration_error,
    calibration_table,
    gain_curve,
    holdout_of,
    point_metrics,
)

DAY0 = datetime(2025, 3, 3)


def holdout_frame(labels: list[list[int]]) -> pd.DataFrame:
    """One snapshot per inner list; account i is row i of every snapshot."""
    return pd.DataFrame(
        {
            "account_id": [f"a{i}" for snapshot in labels for i in range(len(snapshot))],
            "as_of": [DAY0 + timedelta(days=7 * k) for k, snapshot in enumerate(labels) for _ in snapshot],
            "label": [y for snapshot in labels for y in snapshot],
        }
    )


def random_holdout(rows: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = (rng.random(rows) < 0.1).astype(int)
    frame = pd.DataFrame(
        {
            "account_id": [f"a{i % 500}" for i in range(rows)],
            "as_of": [DAY0 + timedelta(days=7 * (i // 500)) for i in range(rows)],
            "label": label,
        }
    )
    return frame, label


def test_roc_and_pr_auc_match_scikit_learn_including_tied_scores() -> None:
    frame, label = random_holdout()
    rng = np.random.default_rng(1)
    coarse = np.round(rng.random(len(label)) * 0.3 + 0.3 * label, 1)  # many ties
    metrics = point_metrics(holdout_of(frame), coarse, top_k=10)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(label, coarse), abs=1e-12)
    assert metrics["pr_auc"] == pytest.approx(average_precision_score(label, coarse), abs=1e-12)


def test_brier_is_the_mean_squared_error_of_the_probability() -> None:
    frame, label = random_holdout()
    p = np.full(len(label), 0.2)
    assert point_metrics(holdout_of(frame), p, top_k=10)["brier"] == pytest.approx(np.mean((p - label) ** 2))


def test_top_shares_are_taken_within_each_snapshot() -> None:
    # Snapshot 1: the converter has the top score; snapshot 2: all scores are higher but nobody converts.
    frame = holdout_frame([[1] + [0] * 99, [0] * 100])
    score = np.r_[np.linspace(0.5, 0.1, 100), np.linspace(0.9, 0.6, 100)]
    metrics = point_metrics(holdout_of(frame), score, top_k=1)
    # Top 1% is one row per snapshot: the converter and one non-converter.
    assert metrics["precision_top_1pct"] == pytest.approx(0.5)
    assert metrics["precision_top_k"] == pytest.approx(0.5)
    assert metrics["capture_top_10pct"] == pytest.approx(1.0)
    assert metrics["lift_top_1pct"] == pytest.approx(0.5 / (1 / 200))


def test_tied_scores_at_the_cut_count_at_their_average_rate() -> None:
    frame = holdout_frame([[1] * 10 + [0] * 90])
    metrics = point_metrics(holdout_of(frame), np.zeros(100), top_k=5)
    assert metrics["precision_top_5pct"] == pytest.approx(0.1)
    assert metrics["precision_top_k"] == pytest.approx(0.1)
    assert metrics["lift_top_10pct"] == pytest.approx(1.0)


def test_a_perfect_score_captures_every_conversion_in_the_top_ten_percent() -> None:
    frame = holdout_frame([[1] * 5 + [0] * 95, [0] * 97 + [1] * 3])
    label = frame["label"].to_numpy()
    metrics = point_metrics(holdout_of(frame), label.astype(float), top_k=3)
    assert metrics["capture_top_10pct"] == pytest.approx(1.0)
    assert metrics["pr_auc"] == pytest.approx(1.0)
    assert metrics["precision_top_k"] == pytest.approx(1.0)


def test_bootstrap_intervals_bracket_the_point_estimate() -> None:
    frame, label = random_holdout()
    rng = np.random.default_rng(2)
    score = rng.random(len(label)) * 0.5 + 0.3 * label
    holdout = holdout_of(frame)
    boot = bootstrap_intervals(holdout, {"model": score}, top_k=10, rounds=50, seed=0, reference="model")
    low, high = boot.intervals["model"]["pr_auc"]
    assert low < point_metrics(holdout, score, top_k=10)["pr_auc"] < high
    assert boot.rounds == 50


def test_paired_gap_interval_is_above_zero_when_the_reference_is_clearly_better() -> None:
    frame, label = random_holdout()
    rng = np.random.default_rng(3)
    good = rng.random(len(label)) * 0.2 + 0.5 * label
    noise = rng.random(len(label))
    boot = bootstrap_intervals(
        holdout_of(frame), {"model": good, "noise": noise}, top_k=10, rounds=30, seed=0, reference="model"
    )
    assert boot.pr_auc_gap["noise"][0] > 0


def test_bootstrap_is_reproducible_for_a_seed() -> None:
    frame, label = random_holdout()
    score = np.linspace(0, 1, len(label))
    first = bootstrap_intervals(holdout_of(frame), {"m": score}, top_k=5, rounds=20, seed=7, reference="m")
    second = bootstrap_intervals(holdout_of(frame), {"m": score}, top_k=5, rounds=20, seed=7, reference="m")
    assert first.intervals == second.intervals


def test_calibration_table_bins_rows_by_predicted_probability() -> None:
    _, label = random_holdout()
    p = np.linspace(0.01, 0.5, len(label))
    table = calibration_table(label, p, bins=10)
    assert list(table["bin"]) == list(range(1, 11))
    assert table["rows"].sum() == len(label)
    assert table["conversions"].sum() == label.sum()
    assert table["mean_probability"].is_monotonic_increasing


def test_calibration_error_is_zero_when_predictions_match_observed_rates() -> None:
    label = np.array([0, 0, 0, 1] * 25)
    assert calibration_error(calibration_table(label, np.full(100, 0.25), bins=1)) == pytest.approx(0.0)


def test_gain_curve_runs_from_nothing_to_everything() -> None:
    frame, label = random_holdout()
    curve = gain_curve(holdout_of(frame), np.linspace(0, 1, len(label)))
    assert curve["share_worked"].iloc[0] == 0 and curve["share_captured"].iloc[0] == 0
    assert curve["share_worked"].iloc[-1] == pytest.approx(1) and curve["share_captured"].iloc[
        -1
    ] == pytest.approx(1)
    assert curve["share_captured"].is_monotonic_increasing
