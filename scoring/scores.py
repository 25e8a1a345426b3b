"""Probability -> score 0-100 -> tier, plus a fit-only sub-score and a grade A-E (fit x engagement).

The score is the calibrated probability on a stretched log-odds scale, so the range where freemium
accounts actually live (1% to 50%) spreads over most of 0-100 instead of crowding near zero:

    score / (100 - score) = e^b * (p / (1 - p))^a

with `a` and `b` fixed by two anchors: a 10% probability scores 45 and a 25% probability scores 60
(the default exit and entry thresholds of the PQL rules). The mapping is strictly increasing and never
depends on the batch being scored, so a score means the same thing every night.

Every account is scored, but only eligible accounts (not on a paid plan at as_of, no opportunity open
then, see `features.builder.eligibility`) are tiered and graded, ranked among themselves: sales never
works the others. An ineligible row has no tier and no grade, and its `ineligible_reason` says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from pql.config import TIERS, Settings
from pql.db import DataError
from pql.scoring.model_protocol import ScoringModel

REST_TIER = TIERS[-1]
GRADES = "EDCBA"  # indexed by fit level + engagement level (each 0, 1 or 2)
SCORE_ANCHORS = ((0.10, 45.0), (0.25, 60.0))
PASSTHROUGH = (
    "as_of",
    "plan",
    "is_eligible",
    "days_left_in_trial",
    "open_opportunity_created_at",
    "won_opportunity_closed_at",
)
# Why an ineligible account is not tiered, by its plan at as_of; then an opportunity open at as_of, then
# a deal won before it (the builder's eligibility facts); any other cause gets NOT_ELIGIBLE.
PLAN_INELIGIBLE_REASONS = {"paid": "on a paid plan"}
OPEN_OPPORTUNITY = "open opportunity (created {day})"
WON_OPPORTUNITY = "won an opportunity (closed {day})"
NOT_ELIGIBLE = "not eligible at as_of"
_EPS = 1e-6


def _anchored_scale() -> tuple[float, float]:
    (p1, s1), (p2, s2) = SCORE_ANCHORS
    slope = (logit(s2 / 100) - logit(s1 / 100)) / (logit(p2) - logit(p1))
    return float(slope), float(logit(s1 / 100) - slope * logit(p1))


_SLOPE, _OFFSET = _anchored_scale()


def score_of_probability(probability: np.ndarray | Sequence[float]) -> np.ndarray:
    """Scores 0-100 (one decimal) for probabilities; strictly increasing before rounding."""
    p = np.clip(np.asarray(probability, dtype=float), _EPS, 1 - _EPS)
    return np.round(100 * expit(_SLOPE * logit(p) + _OFFSET), 1)


def probability_of_score(score: float) -> float:
    """The probability a score stands for (the inverse of `score_of_probability`, before rounding)."""
    s = min(max(score / 100, _EPS), 1 - _EPS)
    return float(expit((logit(s) - _OFFSET) / _SLOPE))


def top_share_mask(values: np.ndarray, population: np.ndarray, share: float) -> np.ndarray:
    """Rows whose value ranks within the top `share` of the population rows.

    A boundary tie falls to the lower side, so the group never holds more than its share of the
    population. Rows outside the population are placed by the same cut-off.
    """
    ranked = np.sort(values[population])[::-1]
    k = math.floor(len(ranked) * share + 1e-9)
    if k == 0:
        return np.zeros(len(values), dtype=bool)
    if k >= len(ranked):
        return values >= ranked[-1]
    return values > ranked[k]


def tiers(probability: np.ndarray, eligible: np.ndarray, settings: Settings) -> np.ndarray:
    """The tier of each eligible row (`pql.config.TIERS`, best first), None for the others: by share
    of the eligible accounts (quantile policy) or by probability (threshold policy)."""
    result = np.full(len(probability), REST_TIER, dtype=object)
    scoring = settings.scoring
    for name in reversed(TIERS[:-1]):  # widest tier first, so better tiers overwrite it
        if scoring.tier_policy == "quantile":
            mask = top_share_mask(probability, eligible, scoring.tier_quantiles[name])
        else:
            mask = probability >= scoring.tier_probabilities[name]
        result[mask] = name
    result[~eligible] = None
    return result


def _levels(values: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """2 for the top third of eligible accounts, 1 for the middle third, 0 for the rest."""
    return top_share_mask(values, eligible, 1 / 3).astype(int) + top_share_mask(values, eligible, 2 / 3)


def grades(probability: np.ndarray, fit_probability: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Grade A-E of each eligible row from fit level x engagement level (thirds of the eligible
    accounts), None for the others.

    Engagement is what product behaviour adds to fit: the log-odds of the full model minus the
    log-odds of the fit-only model. A great-fit quiet account and a poor-fit busy one both grade C;
    their fit scores tell them apart.
    """
    p = np.clip(probability, _EPS, 1 - _EPS)
    fit = np.clip(fit_probability, _EPS, 1 - _EPS)
    engagement = logit(p) - logit(fit)
    letters = np.array(list(GRADES), dtype=object)
    result = letters[_levels(fit, eligible) + _levels(engagement, eligible)]
    result[~eligible] = None
    return result


def eligible_rows(features: pd.DataFrame) -> np.ndarray:
    """Whether each row is eligible (`is_eligible`; a missing value is not): every row when the
    features have no `is_eligible`."""
    if "is_eligible" not in features:
        return np.ones(len(features), dtype=bool)
    return features["is_eligible"].fillna(False).to_numpy(dtype=bool)


def _dated(features: pd.DataFrame, column: str, phrase: str, zone: ZoneInfo) -> pd.Series:
    """`phrase` with the local day of `column` where it has a value, else null."""
    if column not in features:
        return pd.Series(None, index=features.index, dtype=object)
    moments = pd.to_datetime(features[column])
    days = moments.dt.tz_localize("UTC").dt.tz_convert(zone).dt.strftime("%Y-%m-%d")
    return days.map(lambda day: phrase.format(day=day), na_action="ignore").astype(object)


def ineligible_reasons(features: pd.DataFrame, eligible: np.ndarray, zone: ZoneInfo) -> np.ndarray:
    """Why each row is ineligible (None for eligible rows): its plan's phrase when the plan explains
    it ("on a paid plan"), else an opportunity open at as_of ("open opportunity (created 2026-05-03)",
    the local day), else a deal won before it, else NOT_ELIGIBLE."""
    plans = features["plan"].astype(object) if "plan" in features else pd.Series(None, index=features.index)
    reasons = plans.map(PLAN_INELIGIBLE_REASONS)
    for column, phrase in (
        ("open_opportunity_created_at", OPEN_OPPORTUNITY),
        ("won_opportunity_closed_at", WON_OPPORTUNITY),
    ):
        reasons = reasons.fillna(_dated(features, column, phrase, zone))
    return np.where(eligible, None, reasons.fillna(NOT_ELIGIBLE).to_numpy(dtype=object))


def _checked(probability: np.ndarray, n: int, model: ScoringModel, what: str) -> np.ndarray:
    p = np.asarray(probability, dtype=float).reshape(-1)
    bad = int(len(p) != n) or int((~np.isfinite(p) | (p < 0) | (p > 1)).sum())
    if bad:
        raise DataError(
            f"model {model.version}: {what} returned {bad} of {n} values that are not probabilities "
            "(missing, outside 0-1 or the wrong count). Retrain the model or check its input features."
        )
    return p


def missing_columns(features: pd.DataFrame, model: ScoringModel) -> list[str]:
    needed = ["account_id", *model.numeric_columns, *model.categorical_columns]
    return [name for name in needed if name not in features.columns]


def require_model_columns(features: pd.DataFrame, model: ScoringModel) -> None:
    missing = missing_columns(features, model)
    if missing:
        raise DataError(
            f"features ({len(features)} rows) lack columns the model {model.version} needs: "
            f"{', '.join(missing)}. Build features with the same settings the model was trained with."
        )


def score_frame(features: pd.DataFrame, model: ScoringModel, settings: Settings) -> pd.DataFrame:
    """account_id, probability, score, tier, fit_score, grade, ineligible_reason (plus as_of, plan,
    is_eligible and days_left_in_trial carried over from the features when present).

    Every row is scored; tier and grade are null on ineligible rows, whose `ineligible_reason` says why.
    """
    require_model_columns(features, model)
    n = len(features)
    probability = _checked(model.predict_proba(features), n, model, "predict_proba")
    fit_probability = _checked(model.predict_fit_proba(features), n, model, "predict_fit_proba")
    eligible = eligible_rows(features)
    frame = features[["account_id", *[c for c in PASSTHROUGH if c in features]]].reset_index(drop=True)
    return frame.assign(
        probability=probability,
        score=score_of_probability(probability),
        tier=tiers(probability, eligible, settings),
        fit_score=score_of_probability(fit_probability),
        grade=grades(probability, fit_probability, eligible),
        ineligible_reason=ineligible_reasons(frame, eligible, settings.zone),
    )
