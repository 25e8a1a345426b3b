"""Drift monitoring: PSI against the training reference, PQL volume, and the breach policy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pql.config import Settings, load_settings
from pql.db import DataError
from pql.monitoring.drift import (
    MonitoringBreach,
    enforce_breach_policy,
    monitoring_summary,
    population_stability_index,
    quantile_cdf,
    volume_check,
)

LEVELS = np.linspace(0, 1, 11)


def _edges(values: np.ndarray) -> list[float]:
    """A training reference as the models record it: decile edges, minimum to maximum."""
    return np.quantile(values, LEVELS).tolist()


def test_psi_is_zero_on_identical_continuous_data() -> None:
    values = np.random.default_rng(0).lognormal(0, 1, 10_000)
    assert population_stability_index(_edges(values), values) == pytest.approx(0.0, abs=1e-12)


def test_psi_is_zero_on_identical_data_with_heavy_ties() -> None:
    # Most free accounts have no integration: 60% zeros, interpolated deciles of tied values.
    values = np.random.default_rng(0).poisson(0.5, 10_000).astype(float)
    assert population_stability_index(_edges(values), values) == pytest.approx(0.0, abs=1e-12)


def test_psi_stays_small_on_a_fresh_sample_of_the_same_distribution() -> None:
    rng = np.random.default_rng(1)
    assert population_stability_index(_edges(rng.normal(size=20_000)), rng.normal(size=20_000)) < 0.01


def test_psi_is_large_when_the_distribution_shifts() -> None:
    rng = np.random.default_rng(2)
    reference = _edges(rng.normal(size=20_000))
    assert 0.1 < population_stability_index(reference, rng.normal(0.5, 1, 20_000)) < 0.5
    assert population_stability_index(reference, rng.normal(2, 1, 20_000)) > 1.0


def test_psi_is_large_when_a_count_feature_shifts() -> None:
    rng = np.random.default_rng(3)
    reference = _edges(rng.poisson(0.5, 20_000).astype(float))
    assert population_stability_index(reference, rng.poisson(2.0, 20_000)) > 0.25


def test_psi_is_undefined_without_current_values() -> None:
    assert np.isnan(population_stability_index([0.0, 1.0, 2.0], []))


def test_quantile_cdf_takes_the_highest_level_of_tied_edges() -> None:
    edges = [0, 0, 0, 1, 2]  # levels 0, .25, .5, .75, 1
    assert quantile_cdf(edges, np.array([-1, 0, 0.5, 1, 3])).tolist() == [0.0, 0.5, 0.625, 0.75, 1.0]


def test_volume_is_a_breach_three_times_above_or_below_its_trailing_mean() -> None:
    assert volume_check(30, [10, 10, 10], 3.0)["breached"]
    assert volume_check(3, [10, 10, 10], 3.0)["breached"]
    steady = volume_check(12, [10, 10, 10], 3.0)
    assert not steady["breached"]
    assert steady["ratio"] == pytest.approx(1.2)


def test_volume_without_history_is_not_judged() -> None:
    check = volume_check(50, [], 3.0)
    assert (check["ratio"], check["breached"]) == (None, False)


def _run(shift: float, settings: Settings, pqls: int = 10) -> dict:
    rng = np.random.default_rng(4)
    train_seats, train_logins = rng.poisson(3, 5_000).astype(float), rng.normal(10, 2, 5_000)
    train_probability = rng.beta(1, 20, 5_000)
    reference = {
        "seats": _edges(train_seats),
        "logins_7d": _edges(train_logins),
        "probability": _edges(train_probability),
        "retired_feature": _edges(train_logins),
    }
    n = 5_000
    features = pd.DataFrame(
        {
            "account_id": [f"a{i}" for i in range(n)],
            "seats": rng.poisson(3, n).astype(float),
            "logins_7d": rng.normal(10 + shift, 2, n),
            "is_eligible": True,
        }
    )
    features.loc[n - 100 :, "is_eligible"] = False
    features.loc[n - 100 :, "logins_7d"] = 1_000.0  # paid accounts are not compared
    scored = pd.DataFrame(
        {
            "account_id": features["account_id"],
            "probability": rng.beta(1, 20, n),
            "is_pql": np.arange(n) < pqls,
        }
    )
    return monitoring_summary(features, scored, reference, [10, 11, 9], settings)


def test_a_stable_run_has_no_breach(settings: Settings) -> None:
    summary = _run(0.0, settings)
    assert summary["status"] == "ok"
    assert summary["breaches"] == []
    assert set(summary["psi"]) == {"seats", "logins_7d", "probability"}
    assert summary["not_monitored"] == ["retired_feature"]
    json.dumps(summary, allow_nan=False)


def test_a_moderate_shift_is_a_warning(settings: Settings) -> None:
    summary = _run(0.7, settings)
    assert summary["status"] == "warn"
    assert [(b["check"], b["name"], b["level"]) for b in summary["breaches"]] == [
        ("feature_psi", "logins_7d", "warn")
    ]


def test_a_major_shift_only_warns_under_the_warn_policy(settings: Settings) -> None:
    summary = _run(3.0, settings)
    assert summary["status"] == "warn"
    assert summary["breaches"][0]["level"] == "fail"
    enforce_breach_policy(summary)


def test_a_major_shift_fails_the_run_under_the_fail_policy(tmp_path) -> None:
    settings = load_settings(None, state_dir=tmp_path, monitoring={"breach_policy": "fail"})
    summary = _run(3.0, settings)
    assert summary["status"] == "fail"
    with pytest.raises(MonitoringBreach, match="logins_7d PSI") as raised:
        enforce_breach_policy(summary)
    assert isinstance(raised.value, DataError)
    assert raised.value.summary is summary


def test_a_pql_volume_spike_is_a_warning_even_under_the_fail_policy(tmp_path) -> None:
    settings = load_settings(None, state_dir=tmp_path, monitoring={"breach_policy": "fail"})
    summary = _run(0.0, settings, pqls=100)
    assert summary["status"] == "warn"
    assert [b["check"] for b in summary["breaches"]] == ["pql_volume"]
    assert summary["pql_volume"]["current"] == 100
