"""Out-of-time splits: test strictly later than train; no training label window reaches the test period."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from model_frames import snapshot_dates

from pql.db import DataError
from pql.models.backtest import TimeSplit, out_of_time_split, rolling_origin_splits


def assert_no_leakage(split: TimeSplit, horizon_days: int) -> None:
    horizon = timedelta(days=horizon_days)
    assert max(split.train_dates) < min(split.test_dates)
    assert all(d + horizon <= split.test_start for d in split.train_dates)
    assert not set(split.embargo_dates) & (set(split.train_dates) | set(split.test_dates))


def test_test_snapshots_are_the_latest_quarter() -> None:
    dates = snapshot_dates(20)
    split = out_of_time_split(dates, horizon_days=30)
    assert list(split.test_dates) == dates[-5:]


def test_training_labels_end_before_the_first_test_snapshot() -> None:
    dates = snapshot_dates(20)
    split = out_of_time_split(dates, horizon_days=30)
    assert_no_leakage(split, 30)
    assert split.train_label_end <= split.test_start


def test_snapshots_whose_labels_overlap_the_test_period_are_left_out() -> None:
    dates = snapshot_dates(20)
    split = out_of_time_split(dates, horizon_days=30)
    # Weekly snapshots, 30-day labels: the 4 weeks before the test start would see into it.
    assert list(split.embargo_dates) == dates[-9:-5]
    assert len(split.train_dates) + len(split.embargo_dates) + len(split.test_dates) == len(dates)


def test_a_label_window_ending_exactly_at_the_test_start_may_train() -> None:
    dates = snapshot_dates(8)
    split = out_of_time_split(dates, horizon_days=14)
    assert split.train_dates[-1] + timedelta(days=14) == split.test_start


def test_rows_follow_their_snapshot_dates(frame: pd.DataFrame) -> None:
    split = out_of_time_split(frame["as_of"], horizon_days=30)
    train, test = frame[split.train_rows(frame)], frame[split.test_rows(frame)]
    assert train["as_of"].max() + timedelta(days=30) <= test["as_of"].min()
    assert len(train) + len(test) < len(frame)


def test_too_few_snapshots_for_an_honest_split_is_a_data_error() -> None:
    with pytest.raises(DataError, match="horizon"):
        out_of_time_split(snapshot_dates(4), horizon_days=30)


@given(
    gaps=st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=40),
    horizon_days=st.integers(min_value=1, max_value=60),
)
def test_no_split_ever_leaks_labels_across_the_cutoff(gaps: list[int], horizon_days: int) -> None:
    dates = [datetime(2025, 1, 1) + timedelta(days=sum(gaps[:i])) for i in range(len(gaps) + 1)]
    try:
        folds = rolling_origin_splits(dates, horizon_days)
    except DataError:
        assert dates[-1] - dates[0] < timedelta(days=horizon_days)
        return
    for split in folds:
        assert_no_leakage(split, horizon_days)


def test_rolling_origin_folds_move_back_one_test_block_at_a_time() -> None:
    dates = snapshot_dates(30)
    folds = rolling_origin_splits(dates, horizon_days=30)
    assert len(folds) >= 2
    assert folds[-1] == out_of_time_split(dates, horizon_days=30)
    for earlier, later in itertools.pairwise(folds):
        assert max(earlier.test_dates) < min(later.test_dates)
        assert len(earlier.test_dates) == len(later.test_dates)
    for split in folds:
        assert_no_leakage(split, 30)


def test_folds_without_enough_training_snapshots_are_not_made() -> None:
    folds = rolling_origin_splits(snapshot_dates(12), horizon_days=30, min_train_snapshots=4)
    assert len(folds) == 1
