"""The features gate with the catalog's column descriptions: what the flows and analysts call."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from pql.config import Settings
from pql.features.catalog import feature_specs, model_columns
from pql.validation import StageResult, validate_feature_frame


def validate_features(
    features: pd.DataFrame, settings: Settings, used: Sequence[str] | None = None
) -> StageResult:
    """The features gate (`pql.validation.validate_feature_frame`) over `features`, every catalog column
    described; `used` are the columns the scoring model reads (default: every candidate model column)."""
    if used is None:
        numeric, categorical = model_columns(settings)
        used = [*numeric, *categorical]
    return validate_feature_frame(features, settings, feature_specs(settings), used)
