"""The model as one scikit-learn Pipeline: what is trained is exactly what is scored.

input casting -> ColumnTransformer (categorical -> OrdinalEncoder, numeric passthrough) ->
HistGradientBoostingClassifier with native categorical splits. Missing numeric values stay NaN (the
booster routes them); missing and unseen categories become NaN too, never an error at scoring time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

from pql.db import DataError

# Categories seen fewer times than this in training share one "infrequent" code: too rare to learn from.
MIN_CATEGORY_ROWS = 20
# Keeps every categorical within the booster's 255-bin limit.
MAX_CATEGORIES = 250

# Shallow trees with large leaves: conversions are rare (a few % of snapshots) and an account appears in
# many snapshots, so deeper trees memorise accounts. Early stopping watches a later time slice when the
# caller passes one (see models.calibration), else a random 10% of the rows; it stops once 20 trees in a
# row improve the validation log-loss by less than 1e-4 (smaller gains never moved PR-AUC in 4 decimals).
BOOSTER_PARAMS = {
    "learning_rate": 0.05,
    "max_iter": 500,
    "max_depth": 3,
    "min_samples_leaf": 200,
    "l2_regularization": 1.0,
    "early_stopping": True,
    "validation_fraction": 0.1,
    "n_iter_no_change": 20,
    "tol": 1e-4,
}


def missing_columns(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    return [column for column in columns if column not in frame.columns]


def model_input(frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    """The model columns only, numeric as float64 and categorical as objects with NaN for missing."""
    absent = missing_columns(frame, [*numeric, *categorical])
    if absent:
        raise DataError(
            f"The feature frame ({len(frame)} rows) lacks model column(s) {', '.join(absent)}. "
            "Build features with the same settings (key_events) the model was trained with, or retrain."
        )
    columns = {name: pd.to_numeric(frame[name], errors="raise").astype(np.float64) for name in numeric}
    for name in categorical:
        values = frame[name].astype(object)
        columns[name] = values.where(values.notna(), np.nan)
    return pd.DataFrame(columns, index=frame.index)


def input_step(numeric: Sequence[str], categorical: Sequence[str]) -> FunctionTransformer:
    return FunctionTransformer(
        model_input, kw_args={"numeric": list(numeric), "categorical": list(categorical)}, validate=False
    )


def model_pipeline(numeric: Sequence[str], categorical: Sequence[str], seed: int) -> Pipeline:
    """Unfitted gradient-boosting pipeline over the given columns, seeded for reproducible fits."""
    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        encoded_missing_value=np.nan,
        min_frequency=MIN_CATEGORY_ROWS,
        max_categories=MAX_CATEGORIES,
    )
    columns = ColumnTransformer(
        [("categorical", encoder, list(categorical)), ("numeric", "passthrough", list(numeric))],
        verbose_feature_names_out=False,
    )
    booster = HistGradientBoostingClassifier(
        categorical_features=list(range(len(categorical))) or None,
        random_state=seed,
        **BOOSTER_PARAMS,
    )
    return Pipeline([("input", input_step(numeric, categorical)), ("columns", columns), ("booster", booster)])
