"""Out-of-time splits of snapshot dates: never a random split of time-ordered rows.

A training snapshot's label looks `horizon` days ahead, so a snapshot is only usable for training
when its whole label window closes before the first test snapshot (`as_of + horizon <= test_start`).
Snapshots in between (the embargo) are left out of both sides: their labels would tell the model
about conversions that happen during the test period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from pql.db import DataError

TEST_SHARE = 0.25
MIN_TRAIN_SNAPSHOTS_PER_FOLD = 4
MAX_FOLDS = 4


@dataclass(frozen=True)
class TimeSplit:
    """Which snapshot dates train and which test; `embargo` are dates used by neither."""

    train_dates: tuple[datetime, ...]
    test_dates: tuple[datetime, ...]
    embargo_dates: tuple[datetime, ...]
    horizon: timedelta

    @property
    def test_start(self) -> datetime:
        return self.test_dates[0]

    @property
    def train_label_end(self) -> datetime:
        """The end of the last training label window: no training label saw anything from here on."""
        return self.train_dates[-1] + self.horizon

    def train_rows(self, frame: pd.DataFrame) -> pd.Series:
        return frame["as_of"].isin(self.train_dates)

    def test_rows(self, frame: pd.DataFrame) -> pd.Series:
        return frame["as_of"].isin(self.test_dates)

    def describe(self) -> dict[str, object]:
        return {
            "train_from": self.train_dates[0].isoformat(),
            "train_to": self.train_dates[-1].isoformat(),
            "train_snapshots": len(self.train_dates),
            "train_label_end": self.train_label_end.isoformat(),
            "embargo_snapshots": len(self.embargo_dates),
            "test_from": self.test_dates[0].isoformat(),
            "test_to": self.test_dates[-1].isoformat(),
            "test_snapshots": len(self.test_dates),
        }


def _dates(as_of: Sequence[datetime] | pd.Series) -> list[datetime]:
    """The distinct snapshot dates, sorted (deduplicated first: a column has one value per row)."""
    return sorted(pd.Timestamp(moment).to_pydatetime() for moment in pd.Series(as_of).unique())


def _split_at(dates: list[datetime], test: list[datetime], horizon: timedelta) -> TimeSplit | None:
    start = test[0]
    train = [d for d in dates if d + horizon <= start]
    if not train:
        return None
    embargo = [d for d in dates if d < start and d + horizon > start]
    return TimeSplit(tuple(train), tuple(test), tuple(embargo), horizon)


def out_of_time_split(
    as_of: Sequence[datetime] | pd.Series, horizon_days: int, test_share: float = TEST_SHARE
) -> TimeSplit:
    """Test on the latest snapshots (about `test_share` of the dates), train on those whose labels end first.

    Gives up test dates (down to one) before giving up the split; raises DataError when even one test
    date leaves no training date whose label window ends before it.
    """
    dates = _dates(as_of)
    horizon = timedelta(days=horizon_days)
    n_test = max(1, round(test_share * len(dates)))
    for size in range(n_test, 0, -1):
        split = _split_at(dates, dates[-size:], horizon)
        if split is not None:
            return split
    span = f"{dates[0]:%Y-%m-%d} to {dates[-1]:%Y-%m-%d}" if dates else "no dates"
    raise DataError(
        f"The training set has {len(dates)} snapshot date(s) ({span}); an out-of-time test needs a later "
        f"snapshot at least {horizon_days} days (the horizon) after the first one. Load more history or "
        "raise features.lookback_days."
    )


def rolling_origin_splits(
    as_of: Sequence[datetime] | pd.Series,
    horizon_days: int,
    test_share: float = TEST_SHARE,
    min_train_snapshots: int = MIN_TRAIN_SNAPSHOTS_PER_FOLD,
) -> list[TimeSplit]:
    """Folds that move the test window back one block at a time, oldest first; the last is the main split.

    Each fold tests on a block of `test_share` of the dates and trains only on snapshots whose labels end
    before that block; folds with fewer than `min_train_snapshots` training dates are not made.
    """
    dates = _dates(as_of)
    main = out_of_time_split(dates, horizon_days, test_share)
    block = len(main.test_dates)
    folds = [main]
    end = len(dates) - block
    while len(folds) < MAX_FOLDS and end - block >= 0:
        split = _split_at(dates, dates[end - block : end], timedelta(days=horizon_days))
        if split is None or len(split.train_dates) < min_train_snapshots:
            break
        folds.append(split)
        end -= block
    return folds[::-1]
