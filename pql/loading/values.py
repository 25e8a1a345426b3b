"""Loading exports (Segment, Amplitude, PostHog, warehouse dumps) into the contract tables.

The middle of this module is pure: `column_plan` decides which export column feeds which contract
column, and `normalise` turns one chunk of raw rows into contract rows plus the rows it cannot load,
each with a precise reason. `load_file` is the I/O edge: it reads the file in chunks and writes in ONE
transaction, so a failure part-way leaves every table as it was.

Rules the loader applies (the README documents them for users):
- Timestamps: ISO 8601 strings (naive means UTC, offsets are converted to UTC) or epoch numbers.
  An epoch column's unit (seconds, milliseconds, microseconds or nanoseconds) is chosen once per load
  from the median magnitude of its first numbers; the plausible ranges of the four units (1990-2099)
  are 1000x apart and do not overlap. Any timestamp before 1990 or from 2100 on is quarantined as a
  likely units mistake or placeholder date. Stored as naive UTC.
- Duplicates (same key as an earlier row of the file, or as a row already in the table) are counted and
  skipped, never inserted: keys are `event_id`, the primary keys, and (account_id, changed_at, to_plan)
  for plan changes. Loading the same file twice inserts nothing the second time.
- Events without ids: when the file has no event_id column, or its event_id column is empty in every
  row, each row's id is derived from its contract values (`derived_event_ids`), so the rules above still
  hold; two rows with the same account, user, name, instant and properties are one event.
- loaded + quarantined + duplicates == input rows, always.
- Concurrent loads: loads into one table take turns (a PostgreSQL advisory lock keyed on the table; a
  file lock beside an embedded database file), so a second load dedupes against what the first
  inserted. One that waited `lock_timeout_seconds` in vain stops with a message naming the holder.
"""

from __future__ import annotations

import contextlib
import difflib
import gzip
import hashlib
import json
import math
import re
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pql.bulk import bulk_insert
from pql.config import TablesConfig
from pql.db import DataError
from pql.locks import LockBusy, file_lock
from pql.schema import create_tables, output_tables, source_tables

Kind = Literal["id", "text", "json", "timestamp", "integer", "number", "boolean"]
FORMATS = ("csv", "parquet", "jsonl")
FORMAT_SUFFIXES = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
DEFAULT_CHUNK_ROWS = 100_000
LOAD_LOCK_TIMEOUT_SECONDS = 600.0
_LOCK_TIMEOUT_SQLSTATE = "55P03"
ID_MAX_LENGTH = 64
MAX_INTEGER = 2_147_483_647
EARLIEST = datetime(1990, 1, 1)
LATEST = datetime(2100, 1, 1)
# CSV cells read as missing. "NA" and "None" stay text: "NA" is Namibia's country code.
CSV_NULLS = ("", "NULL", "null", r"\N")
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})
# What a derived event id hashes: every contract column of events but the id itself.
DERIVED_ID_COLUMNS = ("account_id", "user_id", "event_name", "occurred_at", "properties")
DERIVED_ID_PREFIX = "row-"
NO_ID_COLUMN = "the file has no event_id column"


@dataclass(frozen=True)
class ContractColumn:
    """A contract column as the loader sees it: how to read it, and whether a row needs it."""

    name: str
    kind: Kind
    required: bool = False


_c = ContractColumn


CONTRACT: dict[str, tuple[ContractColumn, ...]] = {
    "accounts": (
        _c("account_id", "id", True),
        _c("name", "text"),
        _c("domain", "text"),
        _c("created_at", "timestamp", True),
        _c("employees", "integer"),
        _c("industry", "text"),
        _c("country", "text"),
    ),
    "users": (
        _c("user_id", "id", True),
        _c("account_id", "id", True),
        _c("created_at", "timestamp", True),
        _c("role", "text"),
    ),
    "events": (
        _c("event_id", "id", True),
        _c("user_id", "id"),
        _c("account_id", "id", True),
        _c("event_name", "text", True),
        _c("occurred_at", "timestamp", True),
        _c("properties", "json"),
    ),
    "plan_changes": (
        _c("account_id", "id", True),
        _c("changed_at", "timestamp", True),
        _c("from_plan", "text"),
        _c("to_plan", "text", True),
        _c("trial_ends_at", "timestamp"),
        _c("mrr", "number"),
    ),
    "crm_accounts": (
        _c("account_id", "id", True),
        _c("owner", "text"),
        _c("lifecycle_stage", "text"),
        _c("has_open_opportunity", "boolean"),
        _c("last_touch_at", "timestamp"),
        _c("do_not_contact", "boolean"),
    ),
    "account_attributes": (
        _c("account_id", "id", True),
        _c("name", "text", True),
        _c("value", "text"),
        _c("valid_from", "timestamp", True),
    ),
}
TABLES = tuple(CONTRACT)

DEDUP_KEYS: dict[str, tuple[str, ...]] = {
    "accounts": ("account_id",),
    "users": ("user_id",),
    "events": ("event_id",),
    # No primary key: the same account moving to the same plan at the same instant is the same fact.
    "plan_changes": ("account_id", "changed_at", "to_plan"),
    "crm_accounts": ("account_id",),
    # The same attribute of the same account taking effect at the same instant is the same fact.
    "account_attributes": ("account_id", "name", "valid_from"),
}

# Export column names that usually hold a contract column; used only to suggest a --map.
VENDOR_NAMES: dict[str, tuple[str, ...]] = {
    "event_id": ("messageId", "message_id", "uuid", "$insert_id", "insert_id", "id"),
    "user_id": ("userId", "distinct_id", "person_id"),
    "account_id": ("groupId", "group_id", "context.groupId", "company_id", "org_id", "workspace_id"),
    "event_name": ("event", "event_type", "name", "action"),
    "occurred_at": ("timestamp", "event_time", "time", "sent_at", "created_at"),
    "properties": ("event_properties", "props"),
    "created_at": ("createdAt", "created", "signup_at", "timestamp"),
    "changed_at": ("timestamp", "occurred_at", "created_at", "effective_at"),
}


class MappingError(ValueError):
    """A `--map` argument that cannot be used (a usage error, exit code 2)."""


# --------------------------------------------------------------------------------------------------
# Which export column feeds which contract column


def contract_columns(table: str, names: TablesConfig | None = None) -> tuple[ContractColumn, ...]:
    """The contract columns of `table`, plus the accounts attribute columns declared in `names`."""
    if table != "accounts" or names is None:
        return CONTRACT[table]
    kinds: dict[str, Kind] = {"numeric": "number", "categorical": "text"}
    extra = tuple(_c(column, kinds[kind]) for column, kind in names.accounts.attributes.items())
    return CONTRACT[table] + extra


def parse_mapping(pairs: Sequence[str], table: str, names: TablesConfig | None = None) -> dict[str, str]:
    """`target=source` arguments as {contract column: export column or dotted path}."""
    allowed = [column.name for column in contract_columns(table, names)]
    mapping: dict[str, str] = {}
    for pair in pairs:
        target, sep, source = (part.strip() for part in pair.partition("="))
        if not sep or not target or not source:
            raise MappingError(f"'{pair}' is not TARGET=SOURCE, for example occurred_at=timestamp.")
        if target not in allowed:
            raise MappingError(
                f"'{target}' is not a column of {table}. Allowed targets: {', '.join(allowed)}."
            )
        if target in mapping and mapping[target] != source:
            raise MappingError(f"'{target}' is mapped twice ({mapping[target]} and {source}); keep one.")
        mapping[target] = source
    return mapping


@dataclass(frozen=True)
class ColumnPlan:
    """Where each contract column comes from, and what happens to the export's other columns."""

    table: str
    sources: dict[str, str]
    pack_properties: bool
    derived_id_reason: str | None = None  # why event ids are derived from the rows, when they are
    contract: tuple[ContractColumn, ...] = ()  # the table's columns (declared attributes included)

    @property
    def columns(self) -> tuple[ContractColumn, ...]:
        return self.contract or CONTRACT[self.table]

    @property
    def derives_ids(self) -> bool:
        return self.derived_id_reason is not None

    @property
    def id_source(self) -> str:
        """The export column event ids come from, or would come from (a JSON lines key may appear late)."""
        return self.sources.get("event_id", "event_id")

    def leftovers(self, columns: Sequence[str]) -> list[str]:
        """The export columns no contract column reads, whole or through a dotted path (packed into
        properties, or ignored)."""
        used = {_path_head(source, columns) for source in self.sources.values()}
        return [column for column in columns if column not in used]


def _path_head(source: str, columns: Sequence[str]) -> str | None:
    """The export column a (possibly dotted) source path starts in, or None if it is not in the file."""
    if source in columns:
        return source
    parts = source.split(".")
    for end in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:end])
        if head in columns:
            return head
    return None


def _suggestion(target: str, columns: Sequence[str]) -> str:
    known = [name for name in VENDOR_NAMES.get(target, ()) if _path_head(name, columns) is not None]
    close = difflib.get_close_matches(target, [c for c in columns if c not in known], n=2, cutoff=0.6)
    candidates = known + close
    if not candidates:
        return f"Add the column to the export, or map it: --map {target}=<export column>."
    options = " or ".join(f"--map {target}={name}" for name in candidates[:3])
    return f"Map the export's column to it, for example {options}."


def column_plan(
    table: str,
    columns: Sequence[str],
    mapping: Mapping[str, str],
    *,
    derive_ids: bool = True,
    names: TablesConfig | None = None,
) -> ColumnPlan:
    """Match contract columns to export columns: explicit `mapping` first, then same-named columns.

    An events file without an event_id column gets ids derived from its rows (unless `derive_ids` is
    False). Raises DataError naming the table, the missing column and the columns found, with a `--map`
    hint.
    """
    sources: dict[str, str] = {}
    problems: list[str] = []
    derived_id_reason: str | None = None
    contract = contract_columns(table, names)
    for column in contract:
        source = mapping.get(column.name)
        if source is not None:
            if _path_head(source, columns) is None:
                problems.append(
                    f"--map {column.name}={source}: the file has no column '{source.split('.')[0]}'."
                )
            sources[column.name] = source
        elif column.name in columns:
            sources[column.name] = column.name
        elif column.name == "event_id" and derive_ids:
            derived_id_reason = NO_ID_COLUMN
        elif column.required:
            problems.append(
                f"required column '{column.name}' is missing. {_suggestion(column.name, columns)}"
            )
    if problems:
        found = ", ".join(columns) if columns else "(none)"
        raise DataError(
            f"{table}: cannot load this file.\n"
            + "\n".join(f"- {problem}" for problem in problems)
            + f"\nColumns found: {found}."
        )
    return ColumnPlan(
        table,
        sources,
        pack_properties=table == "events" and "properties" not in sources,
        derived_id_reason=derived_id_reason,
        contract=contract,
    )


# --------------------------------------------------------------------------------------------------
# Turning raw values into contract values (pure: DataFrame in, DataFrames out)


@dataclass(frozen=True)
class Issue:
    """Rows failing one check: `reasons` holds one precise sentence per failing row (indexed by row)."""

    problem: str
    reasons: pd.Series


@dataclass(frozen=True)
class Converted:
    """A column's contract values (missing where the raw value was missing or bad) and its issues."""

    values: pd.Series
    issues: tuple[Issue, ...] = ()

    @property
    def bad(self) -> pd.Series:
        mask = pd.Series(False, index=self.values.index)
        for issue in self.issues:
            mask[issue.reasons.index] = True
        return mask


@dataclass(frozen=True)
class _Bad:
    """A raw value that cannot be converted, and why."""

    why: str


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _printable(text: str) -> str:
    """`text` with undecodable bytes shown as \\xNN, so it can be printed and stored anywhere."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _shown(value: Any, limit: int = 60) -> str:
    """A raw value as quoted in a reason: text in quotes, cut to `limit` characters."""
    text = repr(_printable(value)) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _each(values: pd.Series, func: Callable[[Any], Any]) -> pd.Series:
    """`func` of every value, kept as Python objects: pandas would infer Arrow-backed strings, which
    cannot hold the undecodable bytes a reason must be able to point at."""
    return pd.Series([func(v) for v in values.to_numpy(dtype=object)], index=values.index, dtype=object)


def _issue(
    problem: str, raw: pd.Series, mask: pd.Series, sentence: Callable[[Any], str]
) -> tuple[Issue, ...]:
    """An Issue for the rows in `mask` (none if the mask is empty); `sentence` words one raw value."""
    if not mask.any():
        return ()
    return (Issue(problem, _each(raw[mask], sentence)),)


def _bad_values(parsed: pd.Series, problem: str, label: str) -> tuple[pd.Series, tuple[Issue, ...]]:
    """Split values parsed per row into good ones (bad -> None) and an Issue for the `_Bad` ones."""
    bad = _each(parsed, lambda v: isinstance(v, _Bad)).astype(bool)
    return parsed.where(~bad, None), _issue(problem, parsed, bad, lambda v: f"{label}: {v.why}")


def _as_text(value: Any) -> Any:
    """A raw value as text, or a `_Bad` saying why it is not text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return _Bad(f"{value} is a boolean, expected text")
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        # Integer columns with gaps come out of Parquet and pandas as floats (12.0).
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            shown = _shown(value.decode("utf-8", "backslashreplace"))
            return _Bad(f"{shown} is not valid UTF-8 (byte 0x{value[exc.start]:02x} at byte {exc.start + 1})")
    if isinstance(value, dict):
        return _Bad(f"{_shown(json.dumps(value, default=str))} is a JSON object, expected text")
    if isinstance(value, list | tuple | np.ndarray):
        return _Bad(f"{_shown(str(list(value)))} is a list, expected a single value")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


_UNSTORABLE = re.compile("[\ud800-\udfff\x00]")


def _unstorable_why(text: str) -> str:
    """Why `text` cannot be stored: an undecodable byte, a lone surrogate or a NUL character."""
    found = _UNSTORABLE.search(text)
    char, at = (found.group(), found.start() + 1) if found else ("", 0)
    if char == "\x00":
        return f"contains a NUL character (at character {at}), which databases cannot store"
    if "\udc80" <= char <= "\udcff":
        return f"is not valid UTF-8 (byte 0x{ord(char) - 0xDC00:02x} at character {at})"
    return f"is not valid Unicode (lone surrogate U+{ord(char):04X} at character {at})"


def _all_text(values: pd.Series) -> bool:
    """True when every present value is already text (CSV columns): the fast paths below apply."""
    return pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")


def _unstorable(strings: pd.Series) -> pd.Series:
    """Which texts hold an undecodable byte, a lone surrogate or a NUL character."""
    joined = "\x01".join(strings.to_numpy(dtype=object))
    # One scan of the whole column (instant when it is ASCII) spares clean columns the per-value check.
    if "\x00" not in joined and (joined.isascii() or not _UNSTORABLE.search(joined)):
        return pd.Series(False, index=strings.index)
    return strings.str.contains(_UNSTORABLE, regex=True).astype(bool)


def _texts(raw: pd.Series, label: str, *, strip: bool = False, what: str = "text") -> Converted:
    """Text values (empty or blank -> missing); values that are not text, or cannot be stored, are
    issues. `strip` trims surrounding blanks (identifiers)."""
    text = raw.astype(object).where(raw.notna(), None)
    issues: tuple[Issue, ...] = ()
    if not _all_text(text):
        text, issues = _bad_values(
            _each(text, lambda v: None if v is None else _as_text(v)), f"{label}: not {what}", label
        )
    strings = text[text.notna()]
    values = strings.to_numpy(dtype=object)
    if strip:
        values = np.array([v.strip() for v in values], dtype=object)
    keep = np.array([bool(v) and not v.isspace() for v in values], dtype=bool)
    strings = pd.Series(values[keep], index=strings.index[keep], dtype=object)
    unstorable = _unstorable(strings)
    issues += _issue(
        f"{label}: not storable text",
        strings,
        unstorable,
        lambda v: f"{label}: {_shown(v)} {_unstorable_why(v)}",
    )
    kept = strings[~unstorable].reindex(raw.index)
    return Converted(kept.where(kept.notna(), None).astype(object), issues)


def _single(value: Any) -> Any:
    return value[0] if isinstance(value, list | tuple | np.ndarray) and len(value) == 1 else value


def _is_fraction(value: Any) -> bool:
    return isinstance(value, float | np.floating) and math.isfinite(value) and not float(value).is_integer()


def _ids(raw: pd.Series, label: str) -> Converted:
    """Identifiers: trimmed text of at most 64 characters. A one-element list (Amplitude's `groups`)
    counts as its element; a fraction is not an identifier."""
    issues: tuple[Issue, ...] = ()
    if not _all_text(raw):
        raw = _each(raw, _single)
        fraction = _each(raw, _is_fraction).astype(bool)
        issues = _issue(
            f"{label}: not an identifier",
            raw,
            fraction,
            lambda v: f"{label}: {v} is a fraction, not an identifier",
        )
        raw = raw.where(~fraction, None)
    converted = _texts(raw, label, strip=True, what="an identifier")
    values = converted.values
    present = values.dropna()
    too_long = pd.Series(False, index=values.index)
    if len(present) and max(map(len, present.to_numpy(dtype=object))) > ID_MAX_LENGTH:
        too_long = values.notna() & (values.str.len() > ID_MAX_LENGTH).astype(bool)
    issues += converted.issues + _issue(
        f"{label}: longer than {ID_MAX_LENGTH} characters",
        values,
        too_long,
        lambda v: f"{label}: {_shown(v)} is {len(v)} characters long (at most {ID_MAX_LENGTH})",
    )
    return Converted(values.where(~too_long, None), issues)


def _json_object_text(value: Any) -> Any:
    """JSON object text for a raw value (objects are serialised), or a `_Bad`."""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=_plain_json)
    if not isinstance(value, str):
        return _Bad(f"{_shown(value)} is not a JSON object")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        return _Bad(f"{_shown(value)} is not valid JSON ({exc.msg} at character {exc.pos + 1})")
    if not isinstance(parsed, dict):
        return _Bad(f"{_shown(value)} is JSON but not an object")
    return value


def _json_objects(raw: pd.Series, label: str) -> Converted:
    """JSON object text (the `properties` column)."""
    present = raw.astype(object).where(raw.notna(), None)
    text, issues = _bad_values(
        _each(present, lambda v: None if v is None else _json_object_text(v)),
        f"{label}: not a JSON object",
        label,
    )
    checked = _texts(text, label)
    return Converted(checked.values, issues + checked.issues)


_UTC_SUFFIX = re.compile(r"\s*(UTC|GMT)$")
_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


def _numbers(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(float value or NaN, is-a-finite-number mask): numbers and numeric text; booleans, infinities and
    "1e999" are not numbers."""
    if pd.api.types.infer_dtype(raw, skipna=True) in (
        "integer",
        "floating",
        "mixed-integer-float",
        "string",
        "empty",
    ):
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        return values, pd.Series(np.isfinite(values), index=raw.index)
    # Mixed values (JSON): booleans must not pass as 0 and 1.
    mask = _each(
        raw,
        lambda v: (
            (isinstance(v, str) and _NUMBER.match(v) is not None)
            or (isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_))
        ),
    ).astype(bool)
    values = pd.to_numeric(raw.where(mask, None), errors="coerce").astype("float64")
    return values, mask & np.isfinite(values)


def _integers(raw: pd.Series, label: str) -> Converted:
    """Whole numbers from 0 to 2^31-1 ("12", 12, 12.0); anything else is an issue."""
    values, numeric = _numbers(raw)
    whole = numeric & (values == np.floor(values.fillna(0.0)))
    negative = whole & (values < 0)
    too_large = whole & (values > MAX_INTEGER)
    issues = (
        _issue(
            f"{label}: not a whole number",
            raw,
            raw.notna() & ~whole,
            lambda v: f"{label}: {_shown(v)} is not a whole number",
        )
        + _issue(f"{label}: negative", raw, negative, lambda v: f"{label}: {_shown(v)} is negative")
        + _issue(
            f"{label}: too large",
            raw,
            too_large,
            lambda v: f"{label}: {_shown(v)} is too large (at most {MAX_INTEGER})",
        )
    )
    return Converted(values.where(whole & ~negative & ~too_large).round().astype("Int64"), issues)


def _decimals(raw: pd.Series, label: str) -> Converted:
    """Finite numbers from 0 up."""
    values, numeric = _numbers(raw)
    negative = numeric & (values < 0)
    issues = _issue(
        f"{label}: not a number",
        raw,
        raw.notna() & ~numeric,
        lambda v: f"{label}: {_shown(v)} is not a number",
    ) + _issue(f"{label}: negative", raw, negative, lambda v: f"{label}: {_shown(v)} is negative")
    return Converted(values.where(numeric & ~negative).astype("float64"), issues)


def _as_bool(value: Any) -> Any:
    if _is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        if not word:
            return None
    return _Bad(f"{_shown(value)} is not a boolean (use true/false, yes/no or 1/0)")


def _booleans(raw: pd.Series, label: str) -> Converted:
    """true/false, t/f, yes/no, y/n, 1/0 (any case) and real booleans; anything else is an issue."""
    values, issues = _bad_values(_each(raw, _as_bool), f"{label}: not a boolean", label)
    return Converted(values.astype("boolean"), issues)


UNIT_MICROS = {"s": 1_000_000.0, "ms": 1_000.0, "us": 1.0, "ns": 0.001}
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
_EARLIEST_US = (EARLIEST - datetime(1970, 1, 1)).total_seconds() * 1e6
_LATEST_US = (LATEST - datetime(1970, 1, 1)).total_seconds() * 1e6
_MICROS_PER_YEAR = 365.2425 * 86_400 * 1e6


def epoch_unit(magnitude: float) -> str:
    """The epoch unit a number of this size is in. Dates from 1990 to 2099 are 6.3e8-4.1e9 in seconds,
    6.3e11-4.1e12 in milliseconds, 6.3e14-4.1e15 in microseconds, 6.3e17-4.1e18 in nanoseconds."""
    if magnitude < 1e11:
        return "s"
    if magnitude < 1e14:
        return "ms"
    if magnitude < 1e17:
        return "us"
    return "ns"


def _plausible(micros: float) -> bool:
    return _EARLIEST_US <= micros < _LATEST_US


def _no_stamps(index: pd.Index) -> pd.Series:
    return pd.Series(pd.NaT, index=index, dtype="datetime64[us]")


def _within_years(stamps: pd.Series, raw: pd.Series, label: str) -> Converted:
    """`stamps` with those before 1990 or from 2100 on taken out as issues."""
    outside = stamps.notna() & ((stamps < EARLIEST) | (stamps >= LATEST))
    if not outside.any():
        return Converted(stamps)
    span = f"{EARLIEST.year}-{LATEST.year - 1}"
    reasons = pd.Series(
        [
            f"{label}: {_shown(value)} is {stamp:%Y-%m-%d}, outside {span} "
            "(a placeholder date or a units mistake?)"
            for value, stamp in zip(raw[outside], stamps[outside], strict=True)
        ],
        index=stamps.index[outside],
        dtype=object,
    )
    return Converted(stamps.where(~outside), (Issue(f"{label}: outside {span}", reasons),))


def _iso_text(value: Any) -> str | None:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value if isinstance(value, str) else None


def _parsed_iso(text: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    return stamps.dt.tz_localize(None).astype("datetime64[us]")


def _iso_stamps(raw: pd.Series, label: str) -> Converted:
    """ISO 8601 text (a trailing ' UTC' allowed; naive means UTC) as naive-UTC timestamps."""
    if raw.empty:
        return Converted(_no_stamps(raw.index))
    text = raw if _all_text(raw) else _each(raw, _iso_text)
    stamps = _parsed_iso(text)
    retry = stamps.isna() & text.notna()
    if retry.any():
        # Second chance for surrounding blanks and a ' UTC' suffix (warehouse dumps) on the few that need it.
        cleaned = _each(text[retry], lambda v: _UTC_SUFFIX.sub("+00:00", v.strip()))
        stamps[retry] = _parsed_iso(cleaned)
    issues = _issue(
        f"{label}: not a timestamp",
        raw,
        stamps.isna(),
        lambda v: (
            f"{label}: {_shown(v)} is not a timestamp "
            "(expected ISO 8601 such as 2024-05-01T12:00:00Z, or epoch seconds or milliseconds)"
        ),
    )
    ranged = _within_years(stamps, raw, label)
    return Converted(ranged.values, issues + ranged.issues)


def _epoch_stamps(raw: pd.Series, numbers: pd.Series, unit: str, label: str) -> Converted:
    """Epoch numbers in `unit` as naive-UTC timestamps; implausible ones are issues."""
    micros = numbers * UNIT_MICROS[unit]
    plausible = (micros >= _EARLIEST_US) & (micros < _LATEST_US)
    stamps = pd.to_datetime(micros.where(plausible).round(), unit="us").astype("datetime64[us]")
    span = f"{EARLIEST.year}-{LATEST.year - 1}"

    def sentence(value: Any) -> str:
        number = float(value)
        years = 1970 + number * UNIT_MICROS[unit] / _MICROS_PER_YEAR
        # A huge number overflows to infinity in microseconds: it has no year worth printing.
        when = f"in the year {math.floor(years)}" if abs(years) < 1e9 else "astronomically far from now"
        text = (
            f"{label}: {_shown(value)} read as epoch {UNIT_NAMES[unit]} (this column's unit) is "
            f"{when}, outside {span}"
        )
        other = epoch_unit(abs(number))
        if other != unit and _plausible(number * UNIT_MICROS[other]):
            text += f"; the value looks like epoch {UNIT_NAMES[other]} (mixed units in one column?)"
        return text

    return Converted(stamps, _issue(f"{label}: implausible epoch value", raw, ~plausible, sentence))


def _timestamps(raw: pd.Series, label: str, unit: str | None) -> tuple[Converted, str | None]:
    """Naive-UTC timestamps from native timestamps, ISO 8601 text or epoch numbers, and the column's
    epoch unit (chosen from the first numbers seen, then kept for the rest of the file)."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        stamps = raw.dt.tz_convert("UTC").dt.tz_localize(None) if raw.dt.tz is not None else raw
        return _within_years(stamps.astype("datetime64[us]"), raw, label), unit
    numbers, numeric = _numbers(raw)
    if unit is None and numeric.any():
        unit = epoch_unit(float(numbers[numeric].abs().median()))
    texts = raw.notna() & ~numeric
    stamps = _no_stamps(raw.index)
    issues: tuple[Issue, ...] = ()
    for part in (
        _epoch_stamps(raw[numeric], numbers[numeric], unit, label) if numeric.any() else None,
        _iso_stamps(raw[texts], label) if texts.any() else None,
    ):
        if part is not None:
            stamps[part.values.index] = part.values
            issues += part.issues
    return Converted(stamps, issues), unit


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
    head = _path_head(source, list(raw.columns))
    if head is None:
        return pd.Series(None, index=raw.index, dtype=object)
    if head == source:
        return raw[source]
    path = source[len(head) + 1 :].split(".")
    return _each(raw[head], lambda v: _dig(v, path))


def _plain_json(value: Any) -> Any:
    """A JSON-serialisable stand-in for values pandas, Arrow or NumPy hand over."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _jsonable(value: Any) -> Any:
    """`value` with text made storable and missing values as None, ready for `json.dumps`."""
    if isinstance(value, str):
        return _printable(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    return None if _is_missing(value) else value


def row_json(record: Mapping[str, Any]) -> str:
    """The original row as JSON text, safe to store even when it holds undecodable bytes."""
    return json.dumps(
        {str(k): _jsonable(v) for k, v in record.items()}, ensure_ascii=False, default=_plain_json
    )


_JSON = json.JSONEncoder(ensure_ascii=False, default=_plain_json)


def _json_value(value: Any) -> str:
    # Text is by far the most common value; the C string encoder skips the encoder's set-up.
    return json.encoder.encode_basestring(value) if isinstance(value, str) else _JSON.encode(value)


def _packed(raw: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """The given columns of each row as one JSON object (missing values left out), None if all missing."""
    if not columns:
        return pd.Series(None, index=raw.index, dtype=object)
    keys = [_json_value(str(column)) + ": " for column in columns]
    values = [raw[column].to_numpy(dtype=object) for column in columns]
    present = [raw[column].notna().to_numpy() for column in columns]
    packed = []
    for row, row_present in zip(zip(*values, strict=True), zip(*present, strict=True), strict=True):
        members = [key + _json_value(v) for key, v, p in zip(keys, row, row_present, strict=True) if p]
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


QUARANTINE_COLUMNS = ["row_number", "reason", "row_json"]


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
        return _texts(packed, "properties (packed from unmapped columns)"), unit
    else:
        return None
    if column.kind == "timestamp":
        converted, unit = _timestamps(raw_values, label, unit)
    else:
        converted = CONVERTERS[column.kind](raw_values, label)
    if column.required:
        missing = converted.values.isna() & ~converted.bad
        converted = Converted(
            converted.values,
            converted.issues
            + _issue(
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


CONVERTERS: dict[str, Callable[[pd.Series, str], Converted]] = {
    "id": _ids,
    "text": _texts,
    "json": _json_objects,
    "integer": _integers,
    "number": _decimals,
    "boolean": _booleans,
}


# --------------------------------------------------------------------------------------------------
# Reading files in chunks


def file_format(path: Path, explicit: str | None = None) -> str:
    """The format named, or inferred from the extension (.csv, .parquet, .jsonl, .ndjson; .gz allowed
    for csv and jsonl). Raises MappingError when it cannot be inferred."""
    if explicit is not None:
        if explicit not in FORMATS:
            raise MappingError(f"unknown format '{explicit}'. Allowed: {', '.join(FORMATS)}.")
        return explicit
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last not in FORMAT_SUFFIXES:
        raise MappingError(
            f"cannot tell the format of '{path.name}' from its extension; "
            "pass --format csv, parquet or jsonl."
        )
    return FORMAT_SUFFIXES[last]


@dataclass(frozen=True)
class RawChunk:
    """Rows as read (index = 1-based row number) plus rows unreadable as records (row_number, reason,
    row_json), such as a JSON line that does not parse."""

    rows: pd.DataFrame
    unreadable: pd.DataFrame
    columns: list[str]

    @property
    def size(self) -> int:
        return len(self.rows) + len(self.unreadable)


def _numbered(frame: pd.DataFrame, first_row: int) -> pd.DataFrame:
    frame.index = pd.RangeIndex(first_row, first_row + len(frame))
    return frame


# What reading a damaged file raises: a truncated .gz ends in EOFError (which click would turn into a
# bare "Aborted."), damaged deflate data in zlib.error, a bad gzip header in OSError.
_DAMAGED = (OSError, EOFError, zlib.error)


def _unreadable(path: Path, what: str, exc: Exception) -> DataError:
    return DataError(
        f"{path.name}: not a readable {what} file ({str(exc).strip()}). "
        "Nothing was loaded: fix the file and load it again."
    )


def _csv_chunks(path: Path, chunk_rows: int) -> Iterator[RawChunk]:
    # surrogateescape keeps undecodable bytes in the cell, so only that row is quarantined.
    try:
        reader = pd.read_csv(
            path,
            dtype=object,
            keep_default_na=False,
            na_values=list(CSV_NULLS),
            chunksize=chunk_rows,
            encoding="utf-8",
            encoding_errors="surrogateescape",
            compression="infer",
        )
    except pd.errors.EmptyDataError:
        yield RawChunk(pd.DataFrame(), pd.DataFrame(columns=QUARANTINE_COLUMNS), [])
        return
    except (pd.errors.ParserError, *_DAMAGED) as exc:
        raise _unreadable(path, "CSV", exc) from exc
    first = 1
    with reader:
        while True:
            try:
                frame = next(reader)
            except StopIteration:
                return
            except (pd.errors.ParserError, *_DAMAGED) as exc:
                raise _unreadable(path, "CSV", exc) from exc
            frame = _numbered(frame.astype(object), first)
            yield RawChunk(frame, pd.DataFrame(columns=QUARANTINE_COLUMNS), list(frame.columns))
            first += len(frame)


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[RawChunk]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(path, "Parquet", exc) from exc
    names = list(parquet.schema_arrow.names)
    first = 1
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas()
        for name in frame.columns:
            if not pd.api.types.is_datetime64_any_dtype(frame[name]):
                frame[name] = frame[name].astype(object)
        yield RawChunk(_numbered(frame, first), pd.DataFrame(columns=QUARANTINE_COLUMNS), names)
        first += len(frame)
    if first == 1:
        yield RawChunk(pd.DataFrame(columns=names), pd.DataFrame(columns=QUARANTINE_COLUMNS), names)


def _json_line(line: bytes) -> dict[str, Any] | _Bad:
    text = line.decode("utf-8", "surrogateescape")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        return _Bad(f"line is not valid JSON ({exc.msg} at character {exc.pos + 1})")
    if not isinstance(parsed, dict):
        return _Bad(f"line is JSON but not an object (a {type(parsed).__name__})")
    return parsed


def _lines(lines: Iterator[bytes], path: Path) -> Iterator[bytes]:
    try:
        yield from lines
    except _DAMAGED as exc:
        raise _unreadable(path, "JSON lines", exc) from exc


def _jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[RawChunk]:
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    columns: dict[str, None] = {}
    row = 0
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    unreadable: list[tuple[int, str, str]] = []

    def chunk() -> RawChunk:
        frame = pd.DataFrame(records, index=pd.Index(numbers, dtype="int64"), dtype=object)
        for name in frame.columns:
            columns.setdefault(name, None)
        bad = pd.DataFrame(unreadable, columns=QUARANTINE_COLUMNS)
        return RawChunk(frame, bad, list(columns))

    with opener(path, "rb") as lines:
        for line in _lines(lines, path):
            if not line.strip():
                continue
            row += 1
            parsed = _json_line(line)
            if isinstance(parsed, _Bad):
                text = _printable(line.decode("utf-8", "surrogateescape").rstrip("\r\n"))
                unreadable.append((row, parsed.why, json.dumps(text, ensure_ascii=False)))
            else:
                records.append(parsed)
                numbers.append(row)
            if len(records) + len(unreadable) >= chunk_rows:
                yield chunk()
                records, numbers, unreadable = [], [], []
    if records or unreadable or row == 0:
        yield chunk()


def read_chunks(path: Path, fmt: str, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[RawChunk]:
    """The file's rows, `chunk_rows` at a time, numbered from 1 (header and blank lines not counted).

    Always yields at least one chunk, so an empty file still shows its columns."""
    readers = {"csv": _csv_chunks, "parquet": _parquet_chunks, "jsonl": _jsonl_chunks}
    return readers[fmt](path, chunk_rows)


# --------------------------------------------------------------------------------------------------
# Writing: one transaction per load


@dataclass(frozen=True)
class LoadReport:
    """What one load did. loaded + quarantined + duplicates == input_rows."""

    table: str
    path: Path
    format: str
    batch_id: str
    quarantine_table: str
    input_rows: int
    loaded: int
    quarantined: int
    duplicates_in_file: int
    duplicates_in_table: int
    problems: dict[str, int]
    epoch_units: dict[str, str]
    packed_columns: tuple[str, ...]
    ignored_columns: tuple[str, ...]
    derived_ids: int  # rows whose event_id was derived from the row (DERIVED_ID_COLUMNS)
    derived_id_reason: str | None  # why, when event ids were derived

    @property
    def duplicates(self) -> int:
        return self.duplicates_in_file + self.duplicates_in_table


def _staging_table(target: sa.Table) -> sa.Table:
    """A temporary copy of `target` plus each row's number in the file."""
    columns = [sa.Column("pql_row_number", sa.BigInteger, key="pql_row_number")]
    columns += [sa.Column(c.name, c.type, key=c.key) for c in target.columns]
    name = f"pql_load_{uuid.uuid4().hex[:16]}"
    return sa.Table(name, sa.MetaData(), *columns, prefixes=["TEMPORARY"])


def _count(conn: sa.Connection, table: sa.FromClause) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _quarantine_frame(rows: pd.DataFrame, batch_id: str, table: str, loaded_at: datetime) -> pd.DataFrame:
    frame = rows[QUARANTINE_COLUMNS].copy()
    frame.insert(0, "source_table", table)
    frame.insert(0, "batch_id", batch_id)
    frame["quarantined_at"] = pd.Series(loaded_at, index=frame.index, dtype="datetime64[us]")
    frame["row_number"] = frame["row_number"].astype("int64")
    return frame


@dataclass
class _Staging:
    """What staging a file found, chunk by chunk."""

    input_rows: int = 0
    staged: int = 0
    quarantined: int = 0
    derived_ids: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    epoch_units: dict[str, str] = field(default_factory=dict)
    columns: dict[str, None] = field(default_factory=dict)
    plan: ColumnPlan | None = None


class _IdsFurtherOn(Exception):
    """Event ids derived because the first chunk had none, but a later chunk has some: the file's id
    column is not empty after all."""


def _holds_ids(rows: pd.DataFrame, source: str) -> bool:
    """Whether any row has a value in the event id column `source` (an id, or a bad one)."""
    converted = _ids(_source_values(rows, source), "event_id")
    return bool(converted.values.notna().any()) or bool(converted.issues)


def _first_plan(
    table: str, chunk: RawChunk, mapping: Mapping[str, str], derive_ids: bool, names: TablesConfig
) -> ColumnPlan:
    """The column plan, from the file's first chunk: event ids are derived when the file has no id
    column, or when its id column is empty in every row of the first chunk."""
    plan = column_plan(table, chunk.columns, mapping, derive_ids=derive_ids, names=names)
    source = plan.id_source
    if derive_ids and "event_id" in plan.sources and len(chunk.rows) and not _holds_ids(chunk.rows, source):
        shown = "event_id" if source == "event_id" else f"{source} (mapped to event_id)"
        plan = replace(plan, derived_id_reason=f"the file's {shown} column is empty")
    return plan


def _stage(
    conn: sa.Connection,
    staging: sa.Table,
    quarantine: sa.Table,
    chunks: Iterator[RawChunk],
    *,
    table: str,
    names: TablesConfig,
    mapping: Mapping[str, str],
    batch_id: str,
    loaded_at: datetime,
    derive_ids: bool,
) -> _Staging:
    """Normalise every chunk: good rows into `staging`, the others into `quarantine`.

    Raises `_IdsFurtherOn` when ids are derived but a later chunk has some."""
    found = _Staging()
    for chunk in chunks:
        if found.plan is None:
            if chunk.size == 0 and not chunk.columns:
                break  # an empty file: nothing to check, nothing to load
            found.plan = _first_plan(table, chunk, mapping, derive_ids, names)
        elif found.plan.derives_ids and _holds_ids(chunk.rows, found.plan.id_source):
            raise _IdsFurtherOn
        result = normalise(chunk.rows, found.plan, found.epoch_units)
        if len(result.good) + len(result.quarantined) != len(chunk.rows):
            raise AssertionError("a chunk's good and quarantined rows do not add up to its rows")
        staged = bulk_insert(conn, staging, result.good.rename_axis("pql_row_number").reset_index())
        found.staged += staged
        if found.plan.derives_ids:
            found.derived_ids += staged
        for rejected in (chunk.unreadable, result.quarantined):
            found.quarantined += bulk_insert(
                conn, quarantine, _quarantine_frame(rejected, batch_id, table, loaded_at)
            )
        found.input_rows += chunk.size
        found.problems.update(result.problems)
        if len(chunk.unreadable):
            found.problems["unreadable line"] += len(chunk.unreadable)
        found.epoch_units = result.epoch_units
        found.columns.update(dict.fromkeys(chunk.columns))
    return found


def load_file(
    engine: sa.Engine,
    names: TablesConfig,
    table: str,
    path: Path,
    *,
    fmt: str,
    mapping: Mapping[str, str] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    loaded_at: datetime | None = None,
    lock_timeout_seconds: float = LOAD_LOCK_TIMEOUT_SECONDS,
) -> LoadReport:
    """Load `path` into the contract table `table`, all or nothing.

    Rows are normalised chunk by chunk and staged in a temporary table; duplicates are then removed in
    the database (earlier rows of the file win, rows already in the table win) and the rest is
    inserted. Quarantined rows go to the quarantine table in the same transaction. Events without ids
    get ids derived from their rows (`derived_event_ids`).

    Loads into one table take turns (`load_lock`): a load waits up to `lock_timeout_seconds` for
    another one to finish, then raises `LoadBusy`.
    """
    loaded_at = loaded_at or datetime.now(UTC).replace(tzinfo=None)
    arguments: dict[str, Any] = {"fmt": fmt, "mapping": mapping or {}, "chunk_rows": chunk_rows}
    target = getattr(source_tables(names), table).name
    try:
        with load_lock(engine, target, timeout_seconds=lock_timeout_seconds, holder=f"pql load {path.name}"):
            try:
                return _load(engine, names, table, path, loaded_at=loaded_at, derive_ids=True, **arguments)
            except _IdsFurtherOn:
                # Rolled back: the id column was empty in the first chunk only. Ids are required, as before.
                return _load(engine, names, table, path, loaded_at=loaded_at, derive_ids=False, **arguments)
    except sa.exc.DBAPIError as exc:
        raise DataError(
            f"{table}: the database refused the load ({type(exc.orig).__name__}: {str(exc.orig).strip()}). "
            "Nothing was written: a load is one transaction."
        ) from exc


class LoadBusy(LockBusy):
    """Another load into the same table did not finish within the timeout."""


def _load_busy_message(table: str, waited: float, holder: str) -> str:
    return (
        f"{table}: another load into this table is still running ({holder}); waited {waited:.0f} s. "
        "Nothing was written. Let it finish, then load again (rows it loaded are skipped as duplicates)."
    )


def _embedded_file(engine: sa.Engine) -> Path | None:
    """The database file of an embedded (DuckDB, SQLite) engine; None for a server or in memory."""
    database = engine.url.database or ""
    if engine.url.get_backend_name() in ("duckdb", "sqlite") and database not in ("", ":memory:"):
        return Path(database).expanduser().resolve()
    return None


@contextlib.contextmanager
def load_lock(engine: sa.Engine, table: str, *, timeout_seconds: float, holder: str) -> Iterator[None]:
    """Hold the lock that makes loads into `table` take turns (across processes and hosts).

    PostgreSQL: a session-level advisory lock keyed on the database and table, held across table
    creation and the load's transaction. Embedded databases: an exclusive file lock beside the
    database file, for the whole database: DuckDB lets one process at a time open the file, and a
    SQLite writer that waits for another mid-transaction fails rather than waits. Other engines (in
    memory, one process): nothing to serialise across processes.
    """
    if engine.url.get_backend_name() == "postgresql":
        with _advisory_load_lock(engine, table, timeout_seconds, holder):
            yield
        return
    database = _embedded_file(engine)
    if database is None:
        yield
        return

    def busy(waited: float, holder: str) -> str:
        return _load_busy_message(table, waited, holder)

    lock = database.with_name(f"{database.name}.load.lock")
    with file_lock(lock, timeout_seconds=timeout_seconds, holder=holder, busy=busy, error=LoadBusy):
        try:
            yield
        finally:
            # Close the file before the next load may open it: DuckDB refuses a second process.
            engine.dispose()


def _load_lock_keys(table: str) -> dict[str, int]:
    # Advisory locks belong to one database already: the table name is key enough.
    digest = hashlib.sha256(f"pql:load:{table}".encode()).digest()
    return {
        "k1": int.from_bytes(digest[:4], "big") & 0x7FFFFFFF,
        "k2": int.from_bytes(digest[4:8], "big") & 0x7FFFFFFF,
    }


@contextlib.contextmanager
def _advisory_load_lock(engine: sa.Engine, table: str, timeout_seconds: float, holder: str) -> Iterator[None]:
    keys = _load_lock_keys(table)
    # Autocommit: the lock belongs to the session and must not hold a transaction open around the load's.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("SELECT set_config('application_name', :name, false)"), {"name": holder[:63]})
        conn.execute(sa.text(f"SET lock_timeout = {max(1, int(timeout_seconds * 1000))}"))
        started = time.monotonic()
        try:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k1, :k2)"), keys)
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_TIMEOUT_SQLSTATE:
                raise
            waited = time.monotonic() - started
            raise LoadBusy(_load_busy_message(table, waited, "another pql load")) from None
        finally:
            conn.execute(sa.text("RESET lock_timeout"))
            conn.execute(sa.text("RESET application_name"))
        try:
            yield
        finally:
            # A session that broke mid-load took its lock with it; never mask the load's own error.
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k1, :k2)"), keys)


def _load(
    engine: sa.Engine,
    names: TablesConfig,
    table: str,
    path: Path,
    *,
    fmt: str,
    mapping: Mapping[str, str],
    chunk_rows: int,
    loaded_at: datetime,
    derive_ids: bool,
) -> LoadReport:
    """One attempt at `load_file`, in one transaction."""
    batch_id = uuid.uuid4().hex
    sources = source_tables(names)
    target: sa.Table = getattr(sources, table)
    quarantine = output_tables(names).quarantine
    staging = _staging_table(target)
    create_tables(engine, sources)
    quarantine.create(engine, checkfirst=True)
    with engine.connect() as conn:
        try:
            with conn.begin():
                staging.create(conn)
                found = _stage(
                    conn,
                    staging,
                    quarantine,
                    read_chunks(path, fmt, chunk_rows),
                    table=table,
                    names=names,
                    mapping=mapping,
                    batch_id=batch_id,
                    loaded_at=loaded_at,
                    derive_ids=derive_ids,
                )
                in_file, in_table = _remove_duplicates(conn, staging, target, DEDUP_KEYS[table], found.staged)
                columns = list(target.columns)
                conn.execute(
                    target.insert().from_select(
                        columns,
                        sa.select(*(staging.c[c.key] for c in columns)).order_by(staging.c.pql_row_number),
                    )
                )
                loaded = found.staged - in_file - in_table
                if loaded + found.quarantined + in_file + in_table != found.input_rows:
                    raise AssertionError(
                        f"loaded {loaded} + quarantined {found.quarantined} + duplicates "
                        f"{in_file + in_table} != input rows {found.input_rows}"
                    )
        finally:
            # A temporary table dies with its connection anyway; never let cleanup mask the real error.
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                conn.execute(sa.schema.DropTable(staging, if_exists=True))
                conn.commit()

    leftovers = tuple(found.plan.leftovers(list(found.columns))) if found.plan else ()
    packing = found.plan is not None and found.plan.pack_properties
    return LoadReport(
        table=table,
        path=path,
        format=fmt,
        batch_id=batch_id,
        quarantine_table=quarantine.name,
        input_rows=found.input_rows,
        loaded=loaded,
        quarantined=found.quarantined,
        duplicates_in_file=in_file,
        duplicates_in_table=in_table,
        problems=dict(found.problems.most_common()),
        epoch_units=found.epoch_units,
        packed_columns=leftovers if packing else (),
        ignored_columns=() if packing else leftovers,
        derived_ids=found.derived_ids,
        derived_id_reason=found.plan.derived_id_reason if found.plan else None,
    )


def _remove_duplicates(
    conn: sa.Connection, staging: sa.Table, target: sa.Table, keys: Sequence[str], staged: int
) -> tuple[int, int]:
    """Delete staged rows whose key repeats an earlier row of the file, then rows whose key is already in
    the table; return the two counts."""
    if _count(conn, staging) != staged:
        raise AssertionError("the staging table does not hold every row staged")
    if conn.dialect.name == "sqlite":
        # SQLite has no hash joins: without this index the self-join below is quadratic.
        sa.Index(f"{staging.name}_key", *(staging.c[k] for k in keys), staging.c.pql_row_number).create(conn)
    key_columns = [staging.c[k] for k in keys]
    distinct_keys = sa.select(*key_columns).group_by(*key_columns).subquery()
    if _count(conn, distinct_keys) < staged:  # only then is the costlier delete of repeats needed
        earlier = staging.alias("earlier")
        conn.execute(
            staging.delete().where(
                sa.exists().where(
                    *(earlier.c[k] == staging.c[k] for k in keys),
                    earlier.c.pql_row_number < staging.c.pql_row_number,
                )
            )
        )
    unique = _count(conn, staging)
    key = sa.tuple_(*key_columns) if len(keys) > 1 else key_columns[0]
    conn.execute(staging.delete().where(key.in_(sa.select(*(target.c[k] for k in keys)))))
    new = _count(conn, staging)
    return staged - unique, unique - new
