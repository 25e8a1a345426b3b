"""Which candidate columns a model can learn from: the feature set adapts to the data it is given.

A column with no value in the training rows, or one value in every row, carries nothing to learn
(and a column with no value at all breaks the booster's binning). It is left out of the model, with a
reason in the reader's terms, rather than refusing to train: a product without trials or without
firmographics is a product, not a short history. The same choice is made afresh for every fit (the
final model, each rolling-origin fold, each baseline), each on its own training rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from pql.config import Settings
from pql.features.catalog import KEY_EVENT_WINDOWS_DAYS, excluded_features, feature_specs, key_event_columns

# What an empty column means, per family, in the words of someone who knows their own data.
_EMPTY_BY_FAMILY = {
    "trial": "no account was ever in a trial",
    "fit": "the accounts table has no value in this column",
    "momentum": "no account had a full 28-day baseline of activity",
    "recency": "no account had an event of this kind before its snapshot",
    "people": "no account had a user",
    "attributes": "no account had a value for this attribute before its snapshot",
}


@dataclass(frozen=True)
class ColumnChoice:
    """The columns a model learns from, and every candidate left out with its reason."""

    numeric: list[str]
    categorical: list[str]
    left_out: dict[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def _shown(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _reason(column: str, values: pd.Series, family: str, key_event: str | None) -> str | None:
    """Why `column` (of `family`; counting `key_event` if it is a key-event count) cannot be learned
    from in these rows; None when it can."""
    known = values.dropna()
    if known.empty:
        return f"{_EMPTY_BY_FAMILY.get(family, 'no value')} in the {len(values)} training rows"
    if known.nunique() > 1:
        return None
    if key_event is not None and float(known.iloc[0]) == 0 and len(known) == len(values):
        return f"no account did '{key_event}' in the {len(values)} training rows"
    missing = len(values) - len(known)
    also = f" (the other {missing} unknown)" if missing else ""
    return f"the same value ({_shown(known.iloc[0])}) in every training row{also}"


def usable_columns(
    rows: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str], settings: Settings
) -> ColumnChoice:
    """The candidate columns that vary in `rows`, and the reason for each one left out.

    Columns switched off in `features.exclude` are left out with that reason first."""
    left_out = dict(excluded_features(settings))
    families = {spec.name: spec.family for spec in feature_specs(settings)}
    key_events = {
        key.column(days): key.event.display
        for key in key_event_columns(settings)
        for days in KEY_EVENT_WINDOWS_DAYS
    }
    kept: dict[str, list[str]] = {"numeric": [], "categorical": []}
    for kind, columns in (("numeric", numeric), ("categorical", categorical)):
        for column in columns:
            if column in left_out:
                continue
            why = _reason(column, rows[column], families.get(column, ""), key_events.get(column))
            if why is None:
                kept[kind].append(column)
            else:
                left_out[column] = why
    return ColumnChoice(kept["numeric"], kept["categorical"], left_out)
