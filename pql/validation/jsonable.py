"""Values as plain JSON: what GX results, examples and quarantined rows are written as."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd


def plain(value: Any) -> Any:
    """`value` as plain JSON: numpy scalars unwrapped, NaN/NaT as None, instants as ISO text."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(item) for item in value]
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


SHOWN_CHARACTERS = 80


def text(value: Any) -> str:
    """One value as people read it in a summary: floats to 4 significant digits, null for missing,
    long text cut short."""
    value = plain(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    shown = "null" if value is None else str(value)
    return shown if len(shown) <= SHOWN_CHARACTERS else shown[: SHOWN_CHARACTERS - 3] + "..."


def row_text(row: dict[str, Any]) -> str:
    """`column=value` pairs of one example row."""
    return " ".join(f"{column}={text(value)}" for column, value in row.items())
