"""The split model (models.encoded): encoded once, it answers what-if questions exactly as the whole model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from model_frames import Trained
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from pql.config import Settings
from pql.features.catalog import model_columns
from pql.models.encoded import encoded_model
from pql.models.pipeline import model_pipeline
from pql.models.points import fit_points
from pql.models.registry import LoadedModel, load_scoring_model


@pytest.fixture(scope="module")
def pipeline(frame: pd.DataFrame) -> object:
    numeric, categorical = model_columns(Settings())
    return model_pipeline(numeric, categorical, seed=0).fit(frame, frame["label"].to_numpy())


def _with_missing_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows including missing and never-seen categories, and missing numbers."""
    rows = frame.head(400).copy()
    rows.loc[rows.index[:40], "industry"] = None
    rows.loc[rows.index[40:60], "country"] = "never-seen"
    rows.loc[rows.index[60:90], "employees"] = np.nan
    return rows


@pytest.fixture
def champion(trained: Trained) -> LoadedModel:
    return load_scoring_model(trained.settings)


def test_the_twin_scores_encoded_rows_exactly_as_the_whole_model_scores_the_frame(
    champion: LoadedModel, frame: pd.DataFrame
) -> None:
    encoded, rows = champion.encoded(), _with_missing_values(frame)
    np.testing.assert_array_equal(encoded.predict_proba(encoded.matrix(rows)), champion.predict_proba(rows))


def test_columns_set_to_reference_values_in_the_matrix_match_the_neutralised_frame(
    champion: LoadedModel, frame: pd.DataFrame
) -> None:
    encoded, rows = champion.encoded(), _with_missing_values(frame)
    reference_values = champion.reference_values
    matrix, reference = encoded.matrix(rows), encoded.encoded_row(reference_values)
    groups = (["industry", "country"], ["count_view_pricing_7d", "count_view_pricing_28d"], ["employees"])
    for columns in groups:
        at = encoded.columns_at(columns)
        changed = matrix.copy()
        changed[:, at] = reference[at]
        neutral = rows.assign(**{c: reference_values[c] for c in columns})
        np.testing.assert_array_equal(encoded.predict_proba(changed), champion.predict_proba(neutral))


def test_a_calibrated_pipeline_splits_and_the_original_is_left_untouched(
    pipeline: object, frame: pd.DataFrame
) -> None:
    calibrated = CalibratedClassifierCV(FrozenEstimator(pipeline), method="sigmoid")
    calibrated.fit(frame.tail(2000), frame["label"].tail(2000).to_numpy())
    before = calibrated.predict_proba(frame.head(100))[:, 1]
    encoded = encoded_model(calibrated)
    np.testing.assert_array_equal(encoded.predict_proba(encoded.matrix(frame.head(100))), before)
    np.testing.assert_array_equal(calibrated.predict_proba(frame.head(100))[:, 1], before)


def test_an_uncalibrated_pipeline_splits_too(pipeline: object, frame: pd.DataFrame) -> None:
    encoded = encoded_model(pipeline)
    np.testing.assert_array_equal(
        encoded.predict_proba(encoded.matrix(frame.head(100))), pipeline.predict_proba(frame.head(100))[:, 1]
    )


def test_no_rows_score_to_an_empty_array(pipeline: object, frame: pd.DataFrame) -> None:
    encoded = encoded_model(pipeline)
    assert encoded.predict_proba(encoded.matrix(frame.head(0))).shape == (0,)


def test_the_points_model_has_no_split(frame: pd.DataFrame) -> None:
    assert encoded_model(fit_points(Settings(), frame)) is None
