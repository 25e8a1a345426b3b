"""Can `pql train` train on a window of snapshots, and which window fits the observed history.

A window is the three settings that place the training snapshots (`horizon_days`,
`features.snapshot_every_days`, `features.lookback_days`). Its readiness applies `pql train`'s own
checks, in its order: at least `model.min_conversions` converting accounts among eligible snapshot rows,
an honest out-of-time split (`models.backtest`), conversions on both sides of it. Conversions are counted
in the database (`features.profile.snapshot_conversions`) without building features, so many windows
can be tried for the price of one training set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pql.config import Settings
from pql.db import DataError
from pql.features.catalog import LONGEST_WINDOW_DAYS
from pql.features.profile import SnapshotConversions
from pql.features.training import snapshot_dates
from pql.models.backtest import TimeSplit, out_of_time_split

DAY = timedelta(days=1)
MIN_SNAPSHOTS = 8
# Horizons tried after the configured one, nearest first.
STANDARD_HORIZONS = (30, 14, 60, 90, 7)
# Snapshot spacings tried, widest first, when the configured one gives too few snapshots.
SNAPSHOT_SPACINGS = (7, 3, 2, 1)
MAX_LOOKBACK_DAYS = 1830


@dataclass(frozen=True)
class TrainingWindow:
    """The three settings that decide the training snapshots."""

    horizon_days: int
    snapshot_every_days: int
    lookback_days: int

    @classmethod
    def of(cls, settings: Settings) -> TrainingWindow:
        features = settings.features
        return cls(settings.horizon_days, features.snapshot_every_days, features.lookback_days)

    def applied_to(self, settings: Settings) -> Settings:
        features = settings.features.model_copy(
            update={"snapshot_every_days": self.snapshot_every_days, "lookback_days": self.lookback_days}
        )
        return settings.model_copy(update={"horizon_days": self.horizon_days, "features": features})

    def toml(self) -> str:
        """The lines to put in pql.toml."""
        return (
            f"horizon_days = {self.horizon_days}\n[features]\n"
            f"snapshot_every_days = {self.snapshot_every_days}\nlookback_days = {self.lookback_days}"
        )


@dataclass(frozen=True)
class Readiness:
    """Whether `pql train` would train on a window's snapshots, and every reason it would not."""

    window: TrainingWindow
    dates: tuple[datetime, ...]
    converting_accounts: int
    positive_rows: int
    split: TimeSplit | None
    problems: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def can_train(self) -> bool:
        return not self.problems


def readiness(
    window: TrainingWindow,
    conversions: SnapshotConversions,
    settings: Settings,
    first_account_at: datetime | None,
) -> Readiness:
    """`pql train`'s checks, in its order, on the snapshots of `window` that hold accounts."""
    dates = tuple(d for d in conversions.dates if first_account_at is not None and first_account_at < d)
    problems = []
    needed, converting = settings.model.min_conversions, conversions.converting_accounts
    if converting < needed:
        problems.append(
            f"only {converting} converting accounts in the training snapshots ({conversions.positive_rows} "
            f"positive snapshot rows); model.min_conversions is {needed}: {needed - converting} more "
            "converting accounts are needed"
        )
    split = None
    try:
        split = out_of_time_split(list(dates), window.horizon_days)
    except DataError as exc:
        problems.append(str(exc).rstrip("."))
    if split is not None:
        for part, part_dates in (("training", split.train_dates), ("holdout", split.test_dates)):
            if not sum(conversions.converting_rows.get(d, 0) for d in part_dates):
                problems.append(f"the {part} snapshots of the out-of-time split hold no conversion")
    return Readiness(window, dates, converting, conversions.positive_rows, split, tuple(problems))


def _horizons(configured: int) -> list[int]:
    """The configured horizon, then the standard ones nearest to it (the longer first on a tie)."""
    return sorted({configured, *STANDARD_HORIZONS}, key=lambda h: (h != configured, abs(h - configured), -h))


def _last_snapshot(settings: Settings, end: datetime, horizon_days: int) -> datetime:
    window = replace(TrainingWindow.of(settings), horizon_days=horizon_days)
    return snapshot_dates(end, window.applied_to(settings))[-1]


def _fits(every: int, count: int, horizon: int, span_days: int) -> bool:
    """Enough snapshots, inside the history, spread over at least one horizon (an out-of-time split)."""
    reach = (count - 1) * every
    return count >= MIN_SNAPSHOTS and horizon <= reach <= span_days


@dataclass(frozen=True)
class History:
    """The observed data, from its first event or plan change (`start`) to its last (`end`).

    `cut` means accounts existed well before `start`: the export began after the product did, so a
    snapshot whose feature window reaches before `start` undercounts their activity. Otherwise accounts
    start with the data and a snapshot may sit anywhere in it."""

    start: datetime
    end: datetime
    cut: bool

    @classmethod
    def observed(cls, start: datetime, end: datetime, first_account_at: datetime | None) -> History:
        # A day's grace: an account is created moments before its first event.
        return cls(start, end, first_account_at is not None and first_account_at < start - DAY)

    @property
    def warmup_days(self) -> int:
        return LONGEST_WINDOW_DAYS if self.cut else 0

    @property
    def earliest_snapshot(self) -> datetime:
        """The first instant a snapshot sees a complete feature window."""
        return self.start + self.warmup_days * DAY

    @property
    def days(self) -> int:
        return (self.end - self.start) // DAY


def candidate_windows(settings: Settings, history: History) -> list[TrainingWindow]:
    """Windows that fit the observed history, most like the configured one first.

    Fitting: every snapshot at or after `history.earliest_snapshot`, at least MIN_SNAPSHOTS snapshots,
    and the first snapshot's labels end by the last snapshot (so an out-of-time split exists). Per
    horizon: the configured spacing and lookback when they fit, then the longest lookback at the widest
    spacing that gives enough snapshots.
    """
    configured = TrainingWindow.of(settings)
    spacings = [configured.snapshot_every_days]
    spacings += [every for every in SNAPSHOT_SPACINGS if every < configured.snapshot_every_days]
    windows: list[TrainingWindow] = []
    for horizon in _horizons(configured.horizon_days):
        span = (_last_snapshot(settings, history.end, horizon) - history.earliest_snapshot) // DAY
        if span < 0:
            continue

        def most(every: int, span: int = span) -> int:
            return min(span // every + 1, MAX_LOOKBACK_DAYS // every)

        every = next((e for e in spacings if _fits(e, most(e), horizon, span)), None)
        if every is None:
            continue
        kept = math.ceil(configured.lookback_days / every)
        if every == configured.snapshot_every_days and _fits(every, kept, horizon, span):
            windows.append(TrainingWindow(horizon, every, configured.lookback_days))
        windows.append(TrainingWindow(horizon, every, most(every) * every))
    return list(dict.fromkeys(windows))


def history_needed_days(horizon_days: int, warmup_days: int = 0) -> int:
    """Days of data a window of this horizon needs: any warm-up for complete feature windows, snapshots
    spread over a horizon (and at least MIN_SNAPSHOTS days), the last snapshot's labels, and a day to
    reach a local midnight."""
    return warmup_days + max(horizon_days, MIN_SNAPSHOTS - 1) + horizon_days + 1


def what_would_help(settings: Settings, history: History, evaluated: Sequence[Readiness]) -> str:
    """One sentence, with numbers, on what would make training possible when no fitting window trains."""
    needed = settings.model.min_conversions
    best = closest(evaluated)
    if best is not None and best.converting_accounts < needed:
        w = best.window
        return (
            f"Training needs {needed - best.converting_accounts} more converting accounts: even the longest "
            f"history that fits ({len(best.dates)} snapshots every {w.snapshot_every_days} days, "
            f"horizon_days = {w.horizon_days}) holds {best.converting_accounts} and model.min_conversions is "
            f"{needed}, so load a longer history or lower model.min_conversions."
        )
    if best is not None:
        return f"Not even the settings that fit the history can train: {best.problems[0]}."
    horizon = settings.horizon_days
    need = history_needed_days(horizon, history.warmup_days)
    warmup = f"{history.warmup_days} of feature window, " if history.warmup_days else ""
    return (
        f"The observed history ({history.days} days, {history.start:%Y-%m-%d} to {history.end:%Y-%m-%d}) is "
        f"too short: training with horizon_days = {horizon} needs at least {need} days ({warmup}"
        f"{max(horizon, MIN_SNAPSHOTS - 1)} of snapshots, {horizon} of labels), so about "
        f"{need - history.days} more days of data."
    )


def closest(evaluated: Sequence[Readiness]) -> Readiness | None:
    """The window nearest to training: one with an out-of-time split, then the most converting accounts,
    then the most snapshots."""
    return max(
        evaluated, key=lambda r: (r.split is not None, r.converting_accounts, len(r.dates)), default=None
    )


def first_trainable(
    windows: Sequence[TrainingWindow], evaluate: Callable[[TrainingWindow], Readiness]
) -> tuple[Readiness | None, list[Readiness]]:
    """The first window that trains (evaluated in order, stopping there) and every window evaluated."""
    evaluated = []
    for window in windows:
        checked = evaluate(window)
        evaluated.append(checked)
        if checked.can_train:
            return checked, evaluated
    return None, evaluated


def analysed_window(
    configured: Readiness, suggested: Readiness | None, evaluated: Sequence[Readiness]
) -> Readiness:
    """The window to profile features and key events on: the suggested one (the next step says to use
    it), else yours when it trains, else the fitting window nearest to training, else yours."""
    if suggested is not None or configured.can_train:
        return suggested or configured
    return closest(evaluated) or configured


def next_step(suggested: Readiness | None, unmapped: Sequence[str]) -> str:
    """What to do when a window trains: map any unmapped plans, take the suggested window if any, train."""
    then = "put the suggested settings in pql.toml and run `pql train`." if suggested else "run `pql train`."
    if not unmapped:
        return then[0].upper() + then[1:]
    names = ", ".join(repr(plan) for plan in unmapped)
    return f"Add {names} to plans.free, plans.trial or plans.paid in pql.toml, then {then}"
