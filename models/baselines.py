"""The baselines the model must beat, fitted on the same training rows and judged on the same holdout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from pql.config import Settings
from pql.db import DataError
from pql.models.pipeline import MIN_CATEGORY_ROWS, input_step, missing_columns
from pql.models.points import Link, fit_link, fit_points

ACTIVITY_COLUMN = "count_events_28d"
# Labels for reports and the CLI, in the order baselines are shown.
BASELINE_NAMES = {
    "points": "decayed points",
    "logreg": "logistic regression",
    "most_active": "most active (events in 28 days)",
}


def logistic_pipeline(numeric: Sequence[str], categorical: Sequence[str], seed: int) -> Pipeline:
    """Logistic regression on the model's columns: median-imputed (with indicators) and scaled, one-hot."""
    columns = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
                list(numeric),
            ),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="(missing)"),
                    OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=MIN_CATEGORY_ROWS),
                ),
                list(categorical),
            ),
        ]
    )
    return Pipeline(
        [
            ("input", input_step(numeric, categorical)),
            ("columns", columns),
            ("logistic", LogisticRegression(C=1.0, max_iter=2000, random_state=seed)),
        ]
    )


class MostActiveModel:
    """Ranks accounts by events in the last 28 days; a fitted logistic link gives a probability."""

    def __init__(self, link: Link) -> None:
        self.link = link

    @staticmethod
    def activity(frame: pd.DataFrame) -> np.ndarray:
        if missing_columns(frame, [ACTIVITY_COLUMN]):
            raise DataError(f"The feature frame ({len(frame)} rows) lacks {ACTIVITY_COLUMN}.")
        return frame[ACTIVITY_COLUMN].fillna(0).to_numpy(dtype=np.float64)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        p = self.link.probability(self.activity(frame))
        return np.column_stack([1 - p, p])


def fit_most_active(train: pd.DataFrame) -> MostActiveModel:
    activity = MostActiveModel.activity(train)
    return MostActiveModel(fit_link(activity, train["label"].to_numpy(dtype=float)))


def fit_baselines(
    train: pd.DataFrame, settings: Settings, numeric: Sequence[str], categorical: Sequence[str]
) -> dict[str, Any]:
    """Every baseline, fitted on `train`, keyed as in BASELINE_NAMES."""
    logistic = logistic_pipeline(numeric, categorical, settings.model.seed)
    return {
        "points": fit_points(settings, train),
        "logreg": logistic.fit(train, train["label"].to_numpy()),
        "most_active": fit_most_active(train),
    }
