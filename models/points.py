"""The decayed points score, in the style of the commercial lead-scoring tools.

Each key event carries `points` and a `lifespan_days`. An event of age `a` days is worth
`points * max(0, 1 - a / lifespan)`: full value when it happens, fading linearly to nothing at the end
of its lifespan. The features hold counts per window (`count_<slug>_7d`, `count_<slug>_28d`), not
single events, so events are taken as spread evenly over each bucket between consecutive windows
([0, 7) and [7, 28) days) and a bucket is worth its event count times the mean decay over it:

    mean decay over [x0, x1) = ((m - x0) - (m^2 - x0^2) / (2 * lifespan)) / (x1 - x0),  m = min(x1, lifespan)

(0 when the lifespan ends before x0). Events older than the longest window (28 days) are not counted,
so a lifespan above 28 days only slows the fade.

Weights come from `model.points` in the settings when given there; otherwise they are derived from
past conversions on the training rows: 10 x the log odds ratio of converting between accounts that did
the event in the last 28 days and those that did not (with 0.5 added to each cell), lifespan 28 days.
Without both converters and non-converters to learn from, each event gets DEFAULT_POINTS.

A one-feature logistic link on asinh(points / 10) turns points into a probability (fitted on the
training rows; without data a fixed link giving DEFAULT_BASE_RATE at the median). The link is kept
strictly increasing so it never reorders accounts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from pql.config import ConfigError, Settings
from pql.db import DataError
from pql.features.catalog import key_event_columns

EVENT_WINDOWS_DAYS = (7, 28)
DEFAULT_POINTS = 10.0
DEFAULT_LIFESPAN_DAYS = 28
POINTS_PER_LOG_ODDS = 10.0
DEFAULT_BASE_RATE = 0.02
# The link reads scores in units of one default event's points; its default slope is per asinh unit.
LINK_UNIT = DEFAULT_POINTS
DEFAULT_SLOPE = 1.0


@dataclass(frozen=True)
class EventPoints:
    """One key event's rule and where it came from: 'config', 'derived' or 'default'.

    `event` is the slug of the key event's feature columns (`count_<event>_7d`)."""

    event: str
    points: float
    lifespan_days: int
    source: str


def bucket_decay(start_days: float, end_days: float, lifespan_days: float) -> float:
    """Mean of max(0, 1 - age / lifespan) over ages in [start_days, end_days)."""
    upper = min(end_days, lifespan_days)
    if upper <= start_days:
        return 0.0
    area = (upper - start_days) - (upper**2 - start_days**2) / (2 * lifespan_days)
    return area / (end_days - start_days)


def event_columns(event: str) -> list[str]:
    return [f"count_{event}_{days}d" for days in EVENT_WINDOWS_DAYS]


def _require(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    absent = [column for column in columns if column not in frame.columns]
    if absent:
        raise DataError(
            f"The feature frame ({len(frame)} rows) lacks {', '.join(absent)}, needed by the points score. "
            "Build features with the same key_events as the points rules, or retrain."
        )


def decayed_counts(frame: pd.DataFrame, event: str, lifespan_days: int) -> np.ndarray:
    """Decay-weighted event count per row (see the module docstring for the formula)."""
    _require(frame, event_columns(event))
    total = np.zeros(len(frame))
    previous_days, previous = 0, np.zeros(len(frame))
    for days in EVENT_WINDOWS_DAYS:
        cumulative = frame[f"count_{event}_{days}d"].fillna(0).to_numpy(dtype=np.float64)
        total += (cumulative - previous) * bucket_decay(previous_days, days, lifespan_days)
        previous_days, previous = days, cumulative
    return total


def log_odds_ratio(did: np.ndarray, label: np.ndarray) -> float:
    """log((a·d)/(b·c)) with 0.5 added to each cell of the 2x2 table (did event x converted)."""
    did, label = did.astype(bool), label.astype(bool)
    a = np.sum(did & label) + 0.5
    b = np.sum(did & ~label) + 0.5
    c = np.sum(~did & label) + 0.5
    d = np.sum(~did & ~label) + 0.5
    return float(math.log((a * d) / (b * c)))


def points_rules(settings: Settings, training: pd.DataFrame | None = None) -> list[EventPoints]:
    """One rule per key event: configured, else derived from `training` (needs label), else the default.

    A `model.points` entry is keyed by the key event's name or by its column slug."""
    keys = key_event_columns(settings)
    known = {key.event.name for key in keys} | {key.slug for key in keys}
    unknown = sorted(set(settings.model.points) - known)
    if unknown:
        names = ", ".join(repr(key.event.name) for key in keys)
        raise ConfigError(
            f"model.points: {', '.join(repr(u) for u in unknown)} is not a key event (key_events: {names}). "
            "Add it to key_events or remove its points rule."
        )
    learnable = training is not None and 0 < training["label"].sum() < len(training)
    rules = []
    for key in keys:
        event = key.slug
        configured = settings.model.points.get(key.slug) or settings.model.points.get(key.event.name)
        if configured is not None:
            rules.append(EventPoints(event, float(configured.points), configured.lifespan_days, "config"))
        elif learnable:
            assert training is not None
            _require(training, [key.column(28)])
            did = training[key.column(28)].fillna(0).to_numpy() > 0
            ratio = log_odds_ratio(did, training["label"].to_numpy())
            rules.append(
                EventPoints(event, round(POINTS_PER_LOG_ODDS * ratio, 2), DEFAULT_LIFESPAN_DAYS, "derived")
            )
        else:
            rules.append(EventPoints(event, DEFAULT_POINTS, DEFAULT_LIFESPAN_DAYS, "default"))
    return rules


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@dataclass(frozen=True)
class Link:
    """probability = 1 / (1 + exp(-(intercept + slope * asinh(score / LINK_UNIT)))), slope > 0.

    asinh is linear near zero and logarithmic for large scores, so a heavy user's probability keeps
    rising with more points without ever rounding to exactly 1 (which would flatten every comparison
    made with it, such as the per-feature contributions behind reasons).
    """

    intercept: float
    slope: float
    source: str

    @staticmethod
    def compressed(score: np.ndarray) -> np.ndarray:
        return np.arcsinh(np.asarray(score, dtype=np.float64) / LINK_UNIT)

    def probability(self, score: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.intercept + self.slope * self.compressed(score))))


def _fixed_link(score: np.ndarray, base_rate: float, source: str) -> Link:
    """The default increasing link: the (clipped) base rate at the median score."""
    base = min(max(base_rate, 0.005), 0.5)
    centre = float(np.median(Link.compressed(score))) if len(score) else 0.0
    return Link(_logit(base) - DEFAULT_SLOPE * centre, DEFAULT_SLOPE, source)


def fit_link(score: np.ndarray, label: np.ndarray | None) -> Link:
    """Logistic fit of label on the compressed score; the default link when that is impossible or
    not increasing."""
    if label is None or len(label) == 0:
        return _fixed_link(score, DEFAULT_BASE_RATE, "default")
    if not 0 < label.sum() < len(label):
        return _fixed_link(score, float(label.mean()), "default: one class only")
    fitted = LogisticRegression(C=1e4, max_iter=1000).fit(Link.compressed(score).reshape(-1, 1), label)
    slope = float(fitted.coef_[0, 0])
    if slope <= 0:
        return _fixed_link(score, float(label.mean()), "default: score not increasing")
    return Link(float(fitted.intercept_[0]), slope, "fitted")


class PointsModel:
    """Decayed points per account, and a probability through the link; sklearn-style predict_proba."""

    def __init__(self, rules: Sequence[EventPoints], link: Link) -> None:
        self.rules = tuple(rules)
        self.link = link

    @property
    def input_columns(self) -> list[str]:
        return [column for rule in self.rules for column in event_columns(rule.event)]

    def points(self, frame: pd.DataFrame) -> np.ndarray:
        total = np.zeros(len(frame))
        for rule in self.rules:
            total += rule.points * decayed_counts(frame, rule.event, rule.lifespan_days)
        return total

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        p = self.link.probability(self.points(frame))
        return np.column_stack([1 - p, p])

    def describe(self) -> dict[str, object]:
        return {"rules": [asdict(rule) for rule in self.rules], "link": asdict(self.link)}


def fit_points(settings: Settings, training: pd.DataFrame | None = None) -> PointsModel:
    """The points baseline: rules from settings or `training`, link fitted on `training` when it can be."""
    rules = points_rules(settings, training)
    unlinked = PointsModel(rules, Link(0.0, DEFAULT_SLOPE, "default"))
    if training is None or training.empty:
        return PointsModel(rules, fit_link(np.zeros(0), None))
    score = unlinked.points(training)
    return PointsModel(rules, fit_link(score, training["label"].to_numpy(dtype=float)))
