"""A fitted pipeline model split in two: its preprocessing, and a twin that scores preprocessed rows.

Reasons ask the model many what-if questions about the same accounts ("and with this group at its
reference value?"). Through the whole pipeline each question pays the input casting and the category
encoding again, which costs more than the trees. Split, the accounts are encoded once; each question
copies the rows it needs, overwrites the group's encoded columns with the encoded reference values and
asks the twin, which is the same fitted model with its preprocessing steps set to "passthrough". Both
halves are the fitted estimator's own objects (copied, never refitted), so the answers are the model's.

Models of another shape (the points fallback, a partitioned model) have no split; callers then go
through `predict_proba` on modified frames.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline


@dataclass(frozen=True)
class EncodedModel:
    """`encode` turns a feature frame into the booster's matrix; `twin` scores such matrices."""

    encode: Pipeline
    twin: Any
    positions: dict[str, int]

    def matrix(self, features: pd.DataFrame) -> np.ndarray:
        """The encoded rows, one float64 column per model column, C-ordered."""
        if features.empty:
            return np.empty((0, len(self.positions)))
        return np.ascontiguousarray(self.encode.transform(features), dtype=np.float64)

    def encoded_row(self, values: dict[str, object]) -> np.ndarray:
        """One row of encoded values for a complete set of model column values (None/NaN: missing)."""
        row = pd.DataFrame({column: [np.nan if value is None else value] for column, value in values.items()})
        return self.matrix(row)[0]

    def columns_at(self, columns: Sequence[str]) -> list[int]:
        return [self.positions[column] for column in columns]

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """Probability of the positive class for encoded rows; exactly the whole model's answer."""
        if len(matrix) == 0:
            return np.zeros(0)
        return np.asarray(self.twin.predict_proba(matrix)[:, 1], dtype=np.float64)


def _pipelines(estimator: Any) -> list[Pipeline] | None:
    """The pipeline(s) doing the work inside `estimator`, when its shape is one this module knows."""
    if isinstance(estimator, Pipeline):
        return [estimator]
    if isinstance(estimator, CalibratedClassifierCV) and hasattr(estimator, "calibrated_classifiers_"):
        inner = [calibrated.estimator for calibrated in estimator.calibrated_classifiers_]
        unwrapped = [e.estimator if isinstance(e, FrozenEstimator) else e for e in inner]
        if unwrapped and all(isinstance(e, Pipeline) for e in unwrapped):
            return list({id(e): e for e in unwrapped}.values())
    return None


def _positions(pipeline: Pipeline) -> dict[str, int] | None:
    """Model column -> encoded matrix column, when the last preprocessing step maps columns one to one."""
    columns = pipeline.steps[-2][1] if len(pipeline.steps) >= 2 else None
    if not isinstance(columns, ColumnTransformer) or not hasattr(columns, "output_indices_"):
        return None
    positions: dict[str, int] = {}
    for name, transformer, selected in columns.transformers_:
        if transformer == "drop":
            continue
        if name == "remainder":
            return None
        where = columns.output_indices_[name]
        if not isinstance(selected, list) or where.stop - where.start != len(selected):
            return None
        positions.update({column: where.start + k for k, column in enumerate(selected)})
    return positions


def encoded_model(estimator: Any) -> EncodedModel | None:
    """`estimator` split into its preprocessing and a twin scoring encoded rows; None for other shapes.

    Known shapes: a Pipeline ending in a classifier whose last preprocessing step is a one-to-one
    ColumnTransformer, alone or inside a fitted CalibratedClassifierCV (frozen or not).
    """
    pipelines = _pipelines(estimator)
    if not pipelines or len(pipelines) != 1 or len(pipelines[0].steps) < 2:
        return None
    positions = _positions(pipelines[0])
    if positions is None:
        return None
    twin = copy.deepcopy(estimator)
    twin_pipelines = _pipelines(twin)
    assert twin_pipelines is not None and len(twin_pipelines) == 1
    preprocessing = [name for name, _ in twin_pipelines[0].steps[:-1]]
    twin_pipelines[0].set_params(**dict.fromkeys(preprocessing, "passthrough"))
    return EncodedModel(encode=pipelines[0][:-1], twin=twin, positions=positions)
