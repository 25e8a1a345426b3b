"""The small frames the checks validate, built from query results or from the run's own frames.

Pure DataFrame-in, DataFrame-out: no engine, no settings file, no clock.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd


class Spec(Protocol):
    """A feature column's description: its name, and the attributes (family, window, …) that the
    features suite's column sets and null-share rules select on."""

    name: str


def columns_frame(
    expected: Mapping[str, Sequence[str]], found: Mapping[str, Collection[str] | None]
) -> pd.DataFrame:
    """table, column, present: one row per expected column (a missing table has none present)."""
    rows = [
        (table, column, found.get(table) is not None and column in found[table])
        for table, columns in expected.items()
        for column in columns
    ]
    return pd.DataFrame(rows, columns=["table", "column", "present"])


def daily_volume(
    daily_counts: pd.DataFrame, as_of: datetime, *, checked_days: int, baseline_days: int
) -> pd.DataFrame:
    """The `checked_days` days before as_of, latest first: day_start, events, the average daily events
    of the `baseline_days` before them (over days that had any; null when none did), and the ratio."""
    counts = (
        daily_counts.set_index("days_before")["events"]
        .reindex(range(1, checked_days + baseline_days + 1), fill_value=0)
        .astype("int64")
    )
    baseline = counts.iloc[checked_days:]
    baseline_mean = float(baseline[baseline > 0].mean()) if (baseline > 0).any() else np.nan
    checked = counts.iloc[:checked_days]
    return pd.DataFrame(
        {
            "day_start": [as_of - timedelta(days=int(k)) for k in checked.index],
            "events": checked.to_numpy(),
            "baseline_daily_events": baseline_mean,
            "ratio_to_baseline": checked.to_numpy() / baseline_mean,
        }
    )


def new_event_names(names: pd.DataFrame) -> pd.DataFrame:
    """event_name, events: the names among the new events, with their counts, most frequent first."""
    new = names[names["is_new"]].groupby("event_name", as_index=False)["events"].sum()
    return new.sort_values(["events", "event_name"], ascending=[False, True], ignore_index=True)


def known_event_names(names: pd.DataFrame, key_events: Sequence[str]) -> list[str]:
    """The configured key events plus every name seen before the new events."""
    return sorted(set(key_events) | set(names.loc[~names["is_new"], "event_name"].dropna()))


def _numbers(value: Any) -> list[float]:
    """Every number inside a parsed JSON value (booleans are not numbers)."""
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    if isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value):
        return [float(value)]
    return []


def _property_profile(text: str) -> tuple[bool, float, float]:
    try:
        parsed = json.loads(text)
    except ValueError:
        return False, np.nan, np.nan
    numbers = _numbers(parsed)
    return isinstance(parsed, dict), min(numbers, default=np.nan), max(numbers, default=np.nan)


def property_numbers(properties: pd.DataFrame) -> pd.DataFrame:
    """properties, events, event_id, is_object, lowest_number, highest_number: per distinct properties
    text, whether it is a JSON object and the extreme numbers anywhere inside it (null when none)."""
    profiles = [_property_profile(text) for text in properties["properties"]]
    return properties[["properties", "events", "event_id"]].assign(
        is_object=[profile[0] for profile in profiles],
        lowest_number=[profile[1] for profile in profiles],
        highest_number=[profile[2] for profile in profiles],
    )


def key_event_counts(names: pd.DataFrame, key_events: Sequence[str]) -> pd.DataFrame:
    """event_name, events: each configured key event with its count in the window (0 when unseen)."""
    totals = names.groupby("event_name")["events"].sum()
    return pd.DataFrame(
        {"event_name": list(key_events), "events": [int(totals.get(k, 0)) for k in key_events]}
    )


def _matches(spec: Spec, where: Mapping[str, Sequence[str]]) -> bool:
    return all(getattr(spec, key) in values for key, values in where.items())


def feature_column_sets(
    specs: Sequence[Spec], column_sets: Mapping[str, Mapping[str, Sequence[str]]]
) -> dict[str, list[str]]:
    """Each named set of the features suite resolved to the catalog's columns it selects."""
    return {
        name: [spec.name for spec in specs if _matches(spec, where)] for name, where in column_sets.items()
    }


def range_extremes(features: pd.DataFrame, column_sets: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Per row and column set: min_<set> and max_<set>, the lowest and highest non-null value among
    the set's columns, and min_<set>_in / max_<set>_in, the column holding it (null when all are).

    One range expectation on min_/max_ checks every column of a set at once: Great Expectations'
    cost is per expectation, not per row.
    """
    n, extremes = len(features), {}
    for name, columns in column_sets.items():
        # A trailing all-null column keeps an empty set well-defined (its extremes are null).
        values = np.column_stack([features[list(columns)].astype(float).to_numpy(), np.full(n, np.nan)])
        labels = np.asarray([*columns, None], dtype=object)
        present = ~np.isnan(values)
        any_present = present.any(axis=1)
        for side, fill, pick in (("min", np.inf, np.argmin), ("max", -np.inf, np.argmax)):
            at = pick(np.where(present, values, fill), axis=1)
            extremes[f"{side}_{name}"] = np.where(any_present, values[np.arange(n), at], np.nan)
            extremes[f"{side}_{name}_in"] = np.where(any_present, labels[at], None)
    return pd.DataFrame(extremes, index=features.index)


def null_shares(
    features: pd.DataFrame, specs: Sequence[Spec], limits: Sequence[Mapping[str, Any]]
) -> pd.DataFrame:
    """column, null_share, max_null_share: one row per catalog column present in `features`; the limit
    is that of the first rule whose `where` matches the column's spec."""
    present = [spec for spec in specs if spec.name in features.columns]
    shares = features[[spec.name for spec in present]].isna().mean() if len(features) else None
    return pd.DataFrame(
        {
            "column": [spec.name for spec in present],
            "null_share": [0.0 if shares is None else float(shares[spec.name]) for spec in present],
            "max_null_share": [
                float(next(rule["max"] for rule in limits if _matches(spec, rule["where"])))
                for spec in present
            ],
        }
    )


def score_coverage(scores: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """account_id, is_eligible, has_features, score_rows: one row per account with features or scores."""
    # Merges, not `isin`: on pandas' Arrow-backed strings `isin` is ten times slower.
    eligible = features.groupby("account_id", dropna=False)["is_eligible"].any().reset_index()
    counts = scores.groupby("account_id", dropna=False).size().rename("score_rows").reset_index()
    coverage = eligible.assign(has_features=True).merge(counts, on="account_id", how="outer")
    return coverage.assign(
        is_eligible=coverage["is_eligible"].astype("boolean").fillna(False).astype(bool),
        has_features=coverage["has_features"].astype("boolean").fillna(False).astype(bool),
        score_rows=coverage["score_rows"].fillna(0).astype("int64"),
    )[["account_id", "is_eligible", "has_features", "score_rows"]]


def score_eligibility(scores: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """account_id, tier, is_eligible: each score row (same index) with its account's eligibility in
    `features` (null for an account without features, which `score_coverage` reports)."""
    eligible = features.groupby("account_id", dropna=False)["is_eligible"].any().reset_index()
    rows = scores[["account_id", "tier"]].merge(eligible, on="account_id", how="left")
    return rows.set_axis(scores.index)


def _eligible_tiers(scores: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    eligible = features.loc[features["is_eligible"].fillna(False).astype(bool), ["account_id"]]
    return scores.merge(eligible.drop_duplicates(), on="account_id", how="inner")


def tier_shares(
    scores: pd.DataFrame,
    features: pd.DataFrame,
    order: Sequence[str],
    cutoffs: Mapping[str, float],
    *,
    relative: float,
    accounts: float,
) -> pd.DataFrame:
    """Quantile policy. tier, observed_share, expected_share, deviation, tolerance for each tier but the
    last (best first): the cumulative share of eligible accounts in that tier or a better one."""
    tiers = _eligible_tiers(scores, features)["tier"]
    n = len(tiers)
    counts = tiers.value_counts()
    cumulative = np.cumsum([int(counts.get(name, 0)) for name in order[:-1]])
    observed = cumulative / n if n else np.zeros(len(cumulative))
    expected = np.array([cutoffs[name] for name in order[:-1]], dtype=float)
    return pd.DataFrame(
        {
            "tier": list(order[:-1]),
            "observed_share": observed,
            "expected_share": expected,
            "deviation": np.abs(observed - expected),
            "tolerance": relative * expected + (accounts / n if n else 1.0),
        }
    )


def tier_bounds(
    scores: pd.DataFrame, features: pd.DataFrame, order: Sequence[str], thresholds: Mapping[str, float]
) -> pd.DataFrame:
    """Threshold policy. tier, lower, upper, misplaced: each tier's probability interval [lower, upper)
    and how many eligible accounts in it have a probability outside it."""
    scored = _eligible_tiers(scores, features)
    lowers = [float(thresholds[name]) for name in order[:-1]] + [0.0]
    uppers = [np.inf, *lowers[:-1]]
    misplaced = []
    for name, lower, upper in zip(order, lowers, uppers, strict=True):
        p = scored.loc[scored["tier"] == name, "probability"]
        misplaced.append(int(((p < lower) | (p >= upper)).sum()))
    return pd.DataFrame({"tier": list(order), "lower": lowers, "upper": uppers, "misplaced": misplaced})
