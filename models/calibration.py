"""Fit a pipeline on the earlier training snapshots; early-stop and calibrate it on the latest ones.

The booster is fitted on all but the latest training snapshots, watching its loss on the latest ones
(the "slice") to decide when to stop adding trees; then it is frozen and a sigmoid (Platt) map from
its scores to probabilities is fitted on the slice: a later time slice it never trained on, so the map
also absorbs drift in the base rate. Early stopping on a random share of rows would not do: the same
account sits in many snapshots, so a random validation set keeps rewarding memorised accounts.
Sigmoid rather than isotonic: it needs few conversions and is
strictly monotone, so calibration never reorders accounts (ranking metrics are the booster's).
The slice shares label periods with the booster's last snapshots; that is acceptable for a 2-parameter
map, and the calibration that counts is measured before/after on the embargoed out-of-time holdout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sklearn import config_context
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

CALIBRATION_SHARE = 0.2
MIN_CALIBRATION_CONVERSIONS = 20


@dataclass
class CalibratedFit:
    """The estimator to ship, its uncalibrated booster, and how the calibration slice was chosen."""

    estimator: Any
    base: Any
    calibration: dict[str, object] = field(default_factory=dict)


def calibration_dates(train: pd.DataFrame) -> list:
    """The latest snapshot dates holding at least CALIBRATION_SHARE of the rows, leaving one for fitting."""
    counts = train.groupby("as_of").size().sort_index()
    chosen, rows = [], 0
    for as_of, size in reversed(list(counts.items())):
        if len(chosen) == len(counts) - 1 or rows >= CALIBRATION_SHARE * len(train):
            break
        chosen.append(as_of)
        rows += size
    return sorted(chosen)


def fit_watching(pipeline: Pipeline, fit_rows: pd.DataFrame, watch_rows: pd.DataFrame) -> Pipeline:
    """Fit `pipeline`; a booster early-stops on `watch_rows`, passed through the fitted preprocessing
    (an estimator without early stopping just fits)."""
    if not isinstance(pipeline[-1], HistGradientBoostingClassifier):
        return pipeline.fit(fit_rows, fit_rows["label"].to_numpy())
    with config_context(enable_metadata_routing=True):
        pipeline.set_params(transform_input=["X_val"])
        pipeline[-1].set_fit_request(X_val=True, y_val=True)
        pipeline.fit(
            fit_rows, fit_rows["label"].to_numpy(), X_val=watch_rows, y_val=watch_rows["label"].to_numpy()
        )
    return pipeline.set_params(transform_input=None)


def _early_stopping(make_pipeline: Callable[[Sequence[str], Sequence[str], int], Any]) -> bool:
    """Whether the pipeline `make_pipeline` builds ends in the booster (early stopping, calibration)."""
    return isinstance(make_pipeline([], [], 0)[-1], HistGradientBoostingClassifier)


def calibrated_fit(
    train: pd.DataFrame,
    make_pipeline: Callable[[Sequence[str], Sequence[str], int], Any],
    numeric: Sequence[str],
    categorical: Sequence[str],
    seed: int,
) -> CalibratedFit:
    """Fit `make_pipeline(...)` and calibrate it on a later slice when that slice has enough conversions.

    Without enough (one snapshot, or fewer than MIN_CALIBRATION_CONVERSIONS in the slice) the pipeline
    is fitted on all rows (early-stopping on a random share) and shipped uncalibrated; the reason is recorded.
    """
    if not _early_stopping(make_pipeline):
        # A logistic regression is fitted on log-loss over every row: its probabilities need no separate
        # slice, and holding one out would only give it less to learn from.
        base = make_pipeline(numeric, categorical, seed).fit(train, train["label"].to_numpy())
        return CalibratedFit(base, base, {"method": "none", "reason": "fitted on log-loss; no slice needed"})
    dates = calibration_dates(train)
    in_slice = train["as_of"].isin(dates)
    slice_conversions = int(train.loc[in_slice, "label"].sum())
    fit_rows = train.loc[~in_slice]
    usable = (
        dates
        and slice_conversions >= MIN_CALIBRATION_CONVERSIONS
        and 0 < fit_rows["label"].sum() < len(fit_rows)
        and train.loc[in_slice, "label"].nunique() == 2
        and not fit_rows[list(numeric)].isna().all().any()
    )
    if not usable:
        base = make_pipeline(numeric, categorical, seed).fit(train, train["label"].to_numpy())
        reason = (
            "only one training snapshot"
            if not dates
            else f"{slice_conversions} conversions in the latest snapshots "
            f"(need {MIN_CALIBRATION_CONVERSIONS})"
        )
        return CalibratedFit(base, base, {"method": "none", "reason": reason})
    slice_rows = train.loc[in_slice]
    base = fit_watching(make_pipeline(numeric, categorical, seed), fit_rows, slice_rows)
    calibrated = CalibratedClassifierCV(FrozenEstimator(base), method="sigmoid")
    calibrated.fit(slice_rows, slice_rows["label"].to_numpy())
    return CalibratedFit(
        calibrated,
        base,
        {
            "method": "sigmoid",
            **(
                {"trees": int(base[-1].n_iter_)}
                if isinstance(base[-1], HistGradientBoostingClassifier)
                else {}
            ),
            "fit_snapshots": int(fit_rows["as_of"].nunique()),
            "calibration_snapshots": [pd.Timestamp(d).isoformat() for d in dates],
            "calibration_rows": len(slice_rows),
            "calibration_conversions": slice_conversions,
        },
    )
