"""The model pipeline: reproducible, calibrated on a later slice, tolerant of unseen and missing values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pql.config import load_settings
from pql.db import DataError
from pql.features.catalog import model_columns
from pql.models.calibration import calibrated_fit, calibration_dates
from pql.models.pipeline import model_pipeline

SETTINGS = load_settings(None)
NUMERIC, CATEGORICAL = model_columns(SETTINGS)


def test_the_same_data_and_seed_give_identical_predictions(frame: pd.DataFrame) -> None:
    first = calibrated_fit(frame, model_pipeline, NUMERIC, CATEGORICAL, seed=3)
    second = calibrated_fit(frame.copy(), model_pipeline, NUMERIC, CATEGORICAL, seed=3)
    np.testing.assert_array_equal(first.estimator.predict_proba(frame), second.estimator.predict_proba(frame))


def test_the_booster_uses_native_categorical_splits() -> None:
    booster = model_pipeline(NUMERIC, CATEGORICAL, seed=0)[-1]
    assert booster.categorical_features == list(range(len(CATEGORICAL)))
    assert booster.random_state == 0


def test_calibration_uses_the_latest_snapshots_and_fits_on_the_earlier_ones(frame: pd.DataFrame) -> None:
    fitted = calibrated_fit(frame, model_pipeline, NUMERIC, CATEGORICAL, seed=0)
    slice_dates = calibration_dates(frame)
    assert slice_dates == sorted(frame["as_of"].unique())[-len(slice_dates) :]
    assert fitted.calibration["method"] == "sigmoid"
    assert fitted.calibration["fit_snapshots"] == frame["as_of"].nunique() - len(slice_dates)


def test_calibration_keeps_the_ranking_of_the_booster(frame: pd.DataFrame) -> None:
    fitted = calibrated_fit(frame, model_pipeline, NUMERIC, CATEGORICAL, seed=0)
    raw = fitted.base.predict_proba(frame)[:, 1]
    calibrated = fitted.estimator.predict_proba(frame)[:, 1]
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(calibrated[order]) >= -1e-12)


def test_one_snapshot_is_fitted_without_calibration_and_says_why(frame: pd.DataFrame) -> None:
    one = frame[frame["as_of"] == frame["as_of"].max()]
    fitted = calibrated_fit(one, model_pipeline, NUMERIC, CATEGORICAL, seed=0)
    assert fitted.calibration == {"method": "none", "reason": "only one training snapshot"}


def test_unseen_and_missing_categories_score_without_error(frame: pd.DataFrame) -> None:
    fitted = calibrated_fit(frame, model_pipeline, NUMERIC, CATEGORICAL, seed=0)
    odd = frame.head(3).copy()
    odd["industry"] = ["space mining", None, np.nan]
    odd["plan"] = ["enterprise-trial", None, "free"]
    p = fitted.estimator.predict_proba(odd)[:, 1]
    assert np.all((p > 0) & (p < 1))


def test_a_missing_model_column_is_refused_by_name(frame: pd.DataFrame) -> None:
    fitted = calibrated_fit(frame, model_pipeline, NUMERIC, CATEGORICAL, seed=0)
    with pytest.raises(DataError, match="count_view_pricing_7d"):
        fitted.estimator.predict_proba(frame.drop(columns=["count_view_pricing_7d"]))
