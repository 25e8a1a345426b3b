"""`--json` output: one JSON document on stdout, with stable keys, for scripts reading a command.

Dates and times are ISO 8601 text (naive UTC, as the tables store them), numbers are numbers, and a
missing value is null. Warnings and notes go to stderr, so stdout parses as it is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer

from pql.commands import errors


def jsonable(value: Any) -> Any:
    """`value` as plain JSON values: mappings and sequences walked, times as ISO 8601 text, NaN, NaT
    and pandas' NA as None, numpy scalars as Python numbers, paths as text."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Series)):
        return [jsonable(item) for item in value]
    if isinstance(value, pd.DataFrame):
        return records(value)
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)  # NaT stays NaT, and is None below
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (datetime, date, time)):  # pd.Timestamp is a datetime
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of `frame` as JSON objects, in order, every column a key."""
    return [jsonable(row) for row in frame.astype(object).to_dict("records")]


def print_json(document: Mapping[str, Any]) -> None:
    """Print `document` as the command's only output on stdout."""
    typer.echo(json.dumps(jsonable(document), indent=2, ensure_ascii=False, allow_nan=False))


def warn(message: str) -> None:
    """A warning beside a JSON document: on stderr, as plain text."""
    errors.print(f"warning: {message}", highlight=False, markup=False)


JSON_HELP = "Print one JSON document (the same facts as the table) on stdout instead of text."
