"""One chunk of export rows into contract rows, and the rows that cannot be loaded with their reasons
(pure: DataFrame in, DataFrames out).

Events without ids: when the file has no event_id column, or its event_id column is empty in every row
of the first chunk (`first_plan`), each row's id is derived from its contract values
(`derived_event_ids`), so duplicates are still recognised; two rows with the same account, user, name,
instant and properties are one event.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from pql.config import TablesConfig
from pql.loading.contract import QUARANTINE_COLUMNS, ColumnPlan, ContractColumn, column_plan, path_head
from pql.loading.values import (
    CONVERTERS,
    Converted,
    Issue,
    each,
    id_values,
    issues_where,
    json_value,
    row_json,
    text_values,
    timestamp_values,
)

# What a derived event id hashes: every contract column of events but the id itself.
DERIVED_ID_COLUMNS = ("account_id", "user_id", "event_name", "occurred_at", "properties")
DERIVED_ID_PREFIX = "row-"


def _dig(value: Any, path: Sequence[str]) -> Any:
    """The value at `path` inside a nested object (JSON text is parsed on the way), or None."""
    for key in path:
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                return None
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _source_values(raw: pd.DataFrame, source: str) -> pd.Series:
    """The raw values of export column `source`, or of the dotted path into it; None where absent."""
    head = path_head(source, list(raw.columns))
    if head is None:
        return pd.Series(None, index=raw.index, dtype=object)
    if head == source:
        return raw[source]
    path = source[len(head) + 1 :].split(".")
    return each(raw[head], lambda v: _dig(v, path))


def _packed(raw: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """The given columns of each row as one JSON object (missing values left out), None if all missing."""
    if not columns:
        return pd.Series(None, index=raw.index, dtype=object)
    keys = [json_value(str(column)) + ": " for column in columns]
    values = [raw[column].to_numpy(dtype=object) for column in columns]
    present = [raw[column].notna().to_numpy() for column in columns]
    packed = []
    for row, row_present in zip(zip(*values, strict=True), zip(*present, strict=True), strict=True):
        members = [key + json_value(v) for key, v, p in zip(keys, row, row_present, strict=True) if p]
        packed.append("{" + ", ".join(members) + "}" if members else None)
    return pd.Series(packed, index=raw.index, dtype=object)


@dataclass(frozen=True)
class Normalised:
    """One chunk, split: `good` holds contract columns (index = 1-based row number in the file);
    `quarantined` holds row_number, reason and row_json for every row that cannot be loaded."""

    good: pd.DataFrame
    quarantined: pd.DataFrame
    problems: Counter[str]
    epoch_units: dict[str, str]


def _contract_column(
    raw: pd.DataFrame, plan: ColumnPlan, column: ContractColumn, unit: str | None
) -> tuple[Converted, str | None] | None:
    """One contract column converted from its source (None when the file does not provide it, or when
    it is a derived event_id)."""
    if column.name == "event_id" and plan.derives_ids:
        return None
    source = plan.sources.get(column.name)
    if source is not None:
        label = column.name if source == column.name else f"{column.name} (from {source})"
        raw_values = _source_values(raw, source)
    elif column.name == "properties" and plan.pack_properties:
        # Packed text is a JSON object by construction: only check that it can be stored.
        packed = _packed(raw, plan.leftovers(list(raw.columns)))
        return text_values(packed, "properties (packed from unmapped columns)"), unit
    else:
        return None
    if column.kind == "timestamp":
        converted, unit = timestamp_values(raw_values, label, unit)
    else:
        converted = CONVERTERS[column.kind](raw_values, label)
    if column.required:
        missing = converted.values.isna() & ~converted.bad
        converted = Converted(
            converted.values,
            converted.issues
            + issues_where(
                f"{label}: missing",
                raw_values,
                missing,
                lambda _: f"{label}: missing, required for every {plan.table} row",
            ),
        )
    return converted, unit


def normalise(
    raw: pd.DataFrame, plan: ColumnPlan, epoch_units: Mapping[str, str] | None = None
) -> Normalised:
    """Contract rows from export rows (`raw`, indexed by 1-based row number), with every row that cannot
    be loaded set aside with a reason naming the column, the value and what is wrong with it.

    `epoch_units` carries each timestamp column's epoch unit from earlier chunks of the same file.
    """
    units = dict(epoch_units or {})
    values: dict[str, pd.Series] = {}
    issues: list[Issue] = []
    for column in plan.columns:
        result = _contract_column(raw, plan, column, units.get(column.name))
        if result is None:
            continue
        converted, unit = result
        if unit is not None:
            units[column.name] = unit
        values[column.name] = converted.values
        issues.extend(converted.issues)

    if issues:
        reasons = pd.concat([issue.reasons for issue in issues])
        by_row = reasons.groupby(level=0, sort=True).agg("; ".join)
    else:
        by_row = pd.Series([], index=pd.Index([], dtype="int64"), dtype=object)
    quarantined = pd.DataFrame(
        {
            "row_number": by_row.index.to_numpy(dtype="int64"),
            "reason": by_row.to_numpy(dtype=object),
            "row_json": [row_json(r) for r in raw.loc[by_row.index].to_dict("records")],
        },
        columns=QUARANTINE_COLUMNS,
    )
    problems = Counter({issue.problem: len(issue.reasons) for issue in issues})
    good = pd.DataFrame(values, index=raw.index).drop(index=by_row.index)
    if plan.derives_ids:
        good.insert(0, "event_id", derived_event_ids(good))
    return Normalised(good, quarantined, problems, units)


def _canonical_json(text: str | None) -> str | None:
    """JSON text with sorted keys and no spaces: the export's key order and spacing do not matter."""
    if text is None:
        return None
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def derived_event_ids(rows: pd.DataFrame) -> pd.Series:
    """A stable event_id per normalised events row: "row-" and 32 hex digits of the SHA-256 of its
    account_id, user_id, event_name, occurred_at (ISO 8601 to the microsecond) and properties
    (canonical JSON), missing values as null. Computed from contract values, not the export's text, so
    the same row gets the same id from CSV, Parquet or JSON lines, on every run and every database."""
    missing = pd.Series(None, index=rows.index, dtype=object)
    fields = {name: rows.get(name, missing) for name in DERIVED_ID_COLUMNS}
    stamps = pd.to_datetime(fields["occurred_at"]).astype("datetime64[us]")
    iso = np.datetime_as_string(stamps.to_numpy(), unit="us")  # 2024-05-01T12:00:00.000000
    fields["occurred_at"] = pd.Series(iso, index=rows.index, dtype=object).where(stamps.notna(), None)
    texts = fields["properties"].to_numpy(dtype=object)
    canonical = {text: _canonical_json(text) for text in set(texts)}
    fields["properties"] = pd.Series([canonical[text] for text in texts], index=rows.index, dtype=object)
    columns = [fields[name].astype(object).where(fields[name].notna(), None).tolist() for name in fields]
    return pd.Series([_row_id(row) for row in zip(*columns, strict=True)], index=rows.index, dtype=object)


def _row_id(values: Sequence[str | None]) -> str:
    # A compact JSON array keeps the fields apart ("a","bc" is not "ab","c") and null apart from "";
    # built from the C string encoder, as json.dumps would write it, at a fraction of the cost.
    text = "[" + ",".join("null" if v is None else json.encoder.encode_basestring(v) for v in values) + "]"
    return DERIVED_ID_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def holds_ids(rows: pd.DataFrame, source: str) -> bool:
    """Whether any row has a value in the event id column `source` (an id, or a bad one)."""
    converted = id_values(_source_values(rows, source), "event_id")
    return bool(converted.values.notna().any()) or bool(converted.issues)


def first_plan(
    table: str,
    rows: pd.DataFrame,
    columns: Sequence[str],
    mapping: Mapping[str, str],
    *,
    derive_ids: bool,
    names: TablesConfig,
) -> ColumnPlan:
    """The column plan, from the file's first chunk (`rows`, read with `columns`): event ids are derived
    when the file has no id column, or when its id column is empty in every row of the first chunk."""
    plan = column_plan(table, columns, mapping, derive_ids=derive_ids, names=names)
    source = plan.id_source
    if derive_ids and "event_id" in plan.sources and len(rows) and not holds_ids(rows, source):
        shown = "event_id" if source == "event_id" else f"{source} (mapped to event_id)"
        plan = replace(plan, derived_id_reason=f"the file's {shown} column is empty")
    return plan
