"""Attributable lift: what sales outreach adds, measured against the held-out control PQLs.

Treated and control PQLs are alike except for outreach (assignment is a hash of the account id), so
the difference of their conversion rates estimates the effect of outreach on a PQL. The interval is
Newcombe's hybrid score interval for a difference of proportions (built from two Wilson intervals),
which keeps its coverage with small groups and rates near 0 where the Wald interval does not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import pandas as pd


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if trials <= 0:
        return (float("nan"), float("nan"))
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    rate = successes / trials
    denominator = 1 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def difference_interval(
    treated_successes: int, treated: int, control_successes: int, control: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for treated rate minus control rate."""
    p1, p0 = treated_successes / treated, control_successes / control
    low1, high1 = wilson_interval(treated_successes, treated, confidence)
    low0, high0 = wilson_interval(control_successes, control, confidence)
    difference = p1 - p0
    return (
        difference - math.sqrt((p1 - low1) ** 2 + (high0 - p0) ** 2),
        difference + math.sqrt((high1 - p1) ** 2 + (p0 - low0) ** 2),
    )


@dataclass(frozen=True)
class Uplift:
    """Treated minus control conversion among mature PQLs, and what it implies in conversions."""

    treated: int
    treated_conversions: int
    control: int
    control_conversions: int
    treated_rate: float
    control_rate: float
    uplift: float
    ci_low: float
    ci_high: float
    confidence: float
    implied_conversions: float
    implied_low: float
    implied_high: float
    forgone_conversions: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def uplift_estimate(outcomes: pd.DataFrame, confidence: float = 0.95) -> Uplift | None:
    """The uplift of outreach from PQL outcomes (segments 'pql' and 'control'), mature ones only.

    `implied_conversions` (with its interval) is the uplift times the treated PQLs: conversions that
    outreach added. `forgone_conversions` is the uplift times the control PQLs: the cost of holding
    them out. None when either group has no mature PQL.
    """
    mature = outcomes[outcomes["is_mature"].astype(bool)]
    treated = mature[mature["segment"] == "pql"]["is_converted"].astype(bool)
    control = mature[mature["segment"] == "control"]["is_converted"].astype(bool)
    if treated.empty or control.empty:
        return None
    n1, x1, n0, x0 = len(treated), int(treated.sum()), len(control), int(control.sum())
    low, high = difference_interval(x1, n1, x0, n0, confidence)
    uplift = x1 / n1 - x0 / n0
    return Uplift(
        treated=n1,
        treated_conversions=x1,
        control=n0,
        control_conversions=x0,
        treated_rate=x1 / n1,
        control_rate=x0 / n0,
        uplift=uplift,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        implied_conversions=uplift * n1,
        implied_low=low * n1,
        implied_high=high * n1,
        forgone_conversions=uplift * n0,
    )
