"""Monitoring of each run: drift of features and scores from the training reference, and PQL volume.

The training reference of a column (`LoadedModel.training_distribution[name]`) is a list of its
quantiles at evenly spaced levels from 0 to 1 (for example 11 decile edges from minimum to maximum).
Counts and flags tie heavily (most free accounts have zero integrations), and interpolated quantiles
of tied data do not say exactly how much mass sits on the tie. So the current values are summarised
the same way (the same levels, numpy's default interpolation) and both summaries are read as
piecewise-linear distribution functions: identical data then gives a PSI of exactly 0 whatever the
ties. The bins are the reference's distinct inner edges, with open-ended outer bins.

PSI = sum over bins of (current share - reference share) * ln(current share / reference share), with
shares floored at 1e-4. Rule of thumb: below 0.1 stable, 0.1-0.25 moderate shift, above 0.25 major.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pql.config import Settings
from pql.db import DataError

SHARE_FLOOR = 1e-4
SCORE_COLUMNS = ("score", "probability")


class MonitoringBreach(DataError):
    """A run stopped by its monitoring policy; `summary` is what was measured, for the run ledger."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


def quantile_cdf(edges: Sequence[float], points: np.ndarray) -> np.ndarray:
    """The distribution function described by quantile `edges` (at levels 0..1), at each point.

    Right-continuous: at a value several edges share, it is the highest of their levels; between
    distinct edges it is linear.
    """
    values = np.asarray(edges, dtype=float)
    levels = np.linspace(0.0, 1.0, len(values))
    distinct, last = np.unique(values[::-1], return_index=True)
    top_levels = levels[::-1][last]
    return np.interp(np.asarray(points, dtype=float), distinct, top_levels, left=0.0, right=1.0)


def population_stability_index(
    reference_edges: Sequence[float], values: Sequence[float] | np.ndarray
) -> float:
    """PSI of `values` against a reference given by its quantile edges. NaN when either side is empty."""
    reference = np.asarray(reference_edges, dtype=float)
    current = np.asarray(values, dtype=float)
    current = current[~np.isnan(current)]
    reference = reference[~np.isnan(reference)]
    if len(reference) < 3 or current.size == 0:
        return float("nan")
    cuts = np.unique(reference[1:-1])
    current_edges = np.quantile(current, np.linspace(0.0, 1.0, len(reference)))
    expected = np.diff(np.concatenate([[0.0], quantile_cdf(reference, cuts), [1.0]]))
    actual = np.diff(np.concatenate([[0.0], quantile_cdf(current_edges, cuts), [1.0]]))
    expected, actual = np.maximum(expected, SHARE_FLOOR), np.maximum(actual, SHARE_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def drift_table(current: pd.DataFrame, reference: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """PSI of every referenced column present in `current`: name, psi, rows. Largest drift first."""
    rows = [
        {
            "name": name,
            "psi": population_stability_index(edges, pd.to_numeric(current[name], errors="coerce")),
            "rows": int(current[name].notna().sum()),
        }
        for name, edges in reference.items()
        if name in current.columns
    ]
    table = pd.DataFrame(rows, columns=["name", "psi", "rows"])
    return table.sort_values(["psi", "name"], ascending=[False, True], na_position="last").reset_index(
        drop=True
    )


def volume_check(current: int, trailing: Sequence[float], ratio_limit: float) -> dict[str, Any]:
    """PQL volume against its trailing average; a breach when it is `ratio_limit` times above or below."""
    mean = float(np.mean(trailing)) if len(trailing) else None
    ratio = current / mean if mean else None
    breached = ratio is not None and (ratio >= ratio_limit or ratio <= 1 / ratio_limit)
    return {
        "current": int(current),
        "trailing_mean": mean,
        "trailing_runs": len(trailing),
        "ratio": ratio,
        "breached": bool(breached),
    }


def _eligible(features: pd.DataFrame, scored: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    if "is_eligible" not in features.columns:
        return features, scored
    eligible = features[features["is_eligible"].astype(bool)]
    return eligible, scored[scored["account_id"].isin(eligible["account_id"])]


def monitoring_summary(
    features: pd.DataFrame,
    scored: pd.DataFrame,
    training_distribution: Mapping[str, Sequence[float]],
    trailing_pql_volumes: Sequence[float],
    settings: Settings,
) -> dict[str, Any]:
    """What one run's monitoring measured, its breaches and the verdict, as a JSON-ready dict.

    `features`: the run's feature rows (account_id, feature columns, optional is_eligible: only
    eligible accounts are compared, as in training). `scored`: the run's rows (account_id, is_pql,
    score and/or probability). `trailing_pql_volumes`: PQL counts of previous runs
    (`io.trailing_pql_volumes`). PSI of `settings.monitoring.psi_warn` or more is a warning, of
    `psi_fail` or more a failure; a PQL count `volume_ratio_warn` times above or below the trailing
    mean is a warning. `status` is 'ok', 'warn', or 'fail' (only under `breach_policy = 'fail'`).
    """
    limits = settings.monitoring
    features, scored = _eligible(features, scored)
    score_columns = [name for name in SCORE_COLUMNS if name in scored.columns]
    feature_reference = {k: v for k, v in training_distribution.items() if k not in SCORE_COLUMNS}
    score_reference = {k: v for k, v in training_distribution.items() if k in SCORE_COLUMNS}
    drift = pd.concat(
        [
            drift_table(features, feature_reference).assign(kind="feature"),
            drift_table(scored[score_columns], score_reference).assign(kind="score"),
        ],
        ignore_index=True,
    )
    breaches: list[dict[str, Any]] = []
    for row in drift.itertuples(index=False):
        if np.isnan(row.psi) or row.psi < limits.psi_warn:
            continue
        level, threshold = (
            ("fail", limits.psi_fail) if row.psi >= limits.psi_fail else ("warn", limits.psi_warn)
        )
        breaches.append(
            {
                "check": f"{row.kind}_psi",
                "name": row.name,
                "value": round(float(row.psi), 4),
                "threshold": threshold,
                "level": level,
            }
        )
    volume = volume_check(
        int(scored["is_pql"].astype(bool).sum()), trailing_pql_volumes, limits.volume_ratio_warn
    )
    if volume["breached"]:
        breaches.append(
            {
                "check": "pql_volume",
                "name": "pqls",
                "value": round(volume["ratio"], 4),
                "threshold": limits.volume_ratio_warn,
                "level": "warn",
            }
        )
    fails = limits.breach_policy == "fail" and any(breach["level"] == "fail" for breach in breaches)
    missing = sorted(
        name for name in training_distribution if name not in features.columns and name not in scored.columns
    )
    return {
        "status": "fail" if fails else ("warn" if breaches else "ok"),
        "policy": limits.breach_policy,
        "thresholds": {
            "psi_warn": limits.psi_warn,
            "psi_fail": limits.psi_fail,
            "volume_ratio_warn": limits.volume_ratio_warn,
        },
        "psi": {
            row.name: None if np.isnan(row.psi) else round(float(row.psi), 4) for row in drift.itertuples()
        },
        "not_monitored": missing,
        "pql_volume": volume,
        "breaches": breaches,
    }


def enforce_breach_policy(summary: dict[str, Any]) -> None:
    """Raise MonitoringBreach when the summary's verdict is 'fail'; warnings pass."""
    if summary["status"] != "fail":
        return
    failed = [b for b in summary["breaches"] if b["level"] == "fail"]
    detail = "; ".join(f"{b['name']} PSI {b['value']} >= {b['threshold']}" for b in failed)
    raise MonitoringBreach(
        f"monitoring failed the run under breach_policy = 'fail': {detail}. The population differs from the "
        "model's training data: check the source data for the features named, then retrain with `pql train` "
        "or set monitoring.breach_policy = 'warn' to score anyway.",
        summary,
    )
