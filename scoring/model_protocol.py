"""What scoring needs from a model: the slice of `models.registry.LoadedModel` it actually uses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pql.models.encoded import EncodedModel


@runtime_checkable
class ScoringModel(Protocol):
    """A loaded model as scoring sees it; `models.registry.LoadedModel` satisfies it."""

    version: str
    is_fallback: bool
    numeric_columns: list[str]
    categorical_columns: list[str]
    reference_values: dict[str, object]

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Probability of converting within the horizon, one per row."""
        ...

    def predict_fit_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Probability from firmographics alone (fit), one per row."""
        ...

    def encoded(self) -> EncodedModel | None:
        """The conversion model split for scoring encoded rows (`models.encoded`), or None."""
        ...
