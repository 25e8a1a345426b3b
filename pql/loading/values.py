"""Parsing and checking values (pure: raw values in, contract values and the reasons for bad ones out).

Each converter takes one export column's raw values and a label, and returns a `Converted`: the contract
values (missing where the raw value was missing or bad) and one `Issue` per failed check, with a
sentence per failing row naming the column, the value and what is wrong with it. `CONVERTERS` holds them
by column kind; `timestamp_values` also carries the column's epoch unit from chunk to chunk.

Timestamps: ISO 8601 strings (naive means UTC, offsets are converted to UTC) or epoch numbers. An epoch
column's unit (seconds, milliseconds, microseconds or nanoseconds) is chosen once per load from the
median magnitude of its first numbers; the plausible ranges of the four units (1990-2099) are 1000x apart
and do not overlap. Any timestamp before 1990 or from 2100 on is an issue (a likely units mistake or
placeholder date): its row is quarantined. Stored as naive UTC.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from pql.config import FEEDBACK_DECISIONS

ID_MAX_LENGTH = 64
MAX_INTEGER = 2_147_483_647
EARLIEST = datetime(1990, 1, 1)
LATEST = datetime(2100, 1, 1)
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})


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
class Bad:
    """A raw value that cannot be converted, and why."""

    why: str


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def printable(text: str) -> str:
    """`text` with undecodable bytes shown as \\xNN, so it can be printed and stored anywhere."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _shown(value: Any, limit: int = 60) -> str:
    """A raw value as quoted in a reason: text in quotes, cut to `limit` characters."""
    text = repr(printable(value)) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def each(values: pd.Series, func: Callable[[Any], Any]) -> pd.Series:
    """`func` of every value, kept as Python objects: pandas would infer Arrow-backed strings, which
    cannot hold the undecodable bytes a reason must be able to point at."""
    return pd.Series([func(v) for v in values.to_numpy(dtype=object)], index=values.index, dtype=object)


def issues_where(
    problem: str, raw: pd.Series, mask: pd.Series, sentence: Callable[[Any], str]
) -> tuple[Issue, ...]:
    """An Issue for the rows in `mask` (none if the mask is empty); `sentence` words one raw value."""
    if not mask.any():
        return ()
    return (Issue(problem, each(raw[mask], sentence)),)


def _bad_values(parsed: pd.Series, problem: str, label: str) -> tuple[pd.Series, tuple[Issue, ...]]:
    """Split values parsed per row into good ones (bad -> None) and an Issue for the `Bad` ones."""
    bad = each(parsed, lambda v: isinstance(v, Bad)).astype(bool)
    return parsed.where(~bad, None), issues_where(problem, parsed, bad, lambda v: f"{label}: {v.why}")


def _as_text(value: Any) -> Any:
    """A raw value as text, or a `Bad` saying why it is not text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return Bad(f"{value} is a boolean, expected text")
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
            return Bad(f"{shown} is not valid UTF-8 (byte 0x{value[exc.start]:02x} at byte {exc.start + 1})")
    if isinstance(value, dict):
        return Bad(f"{_shown(json.dumps(value, default=str))} is a JSON object, expected text")
    if isinstance(value, list | tuple | np.ndarray):
        return Bad(f"{_shown(str(list(value)))} is a list, expected a single value")
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


def text_values(raw: pd.Series, label: str, *, strip: bool = False, what: str = "text") -> Converted:
    """Text values (empty or blank -> missing); values that are not text, or cannot be stored, are
    issues. `strip` trims surrounding blanks (identifiers)."""
    text = raw.astype(object).where(raw.notna(), None)
    issues: tuple[Issue, ...] = ()
    if not _all_text(text):
        text, issues = _bad_values(
            each(text, lambda v: None if v is None else _as_text(v)), f"{label}: not {what}", label
        )
    strings = text[text.notna()]
    values = strings.to_numpy(dtype=object)
    if strip:
        values = np.array([v.strip() for v in values], dtype=object)
    keep = np.array([bool(v) and not v.isspace() for v in values], dtype=bool)
    strings = pd.Series(values[keep], index=strings.index[keep], dtype=object)
    unstorable = _unstorable(strings)
    issues += issues_where(
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


def id_values(raw: pd.Series, label: str) -> Converted:
    """Identifiers: trimmed text of at most 64 characters. A one-element list (Amplitude's `groups`)
    counts as its element; a fraction is not an identifier."""
    issues: tuple[Issue, ...] = ()
    if not _all_text(raw):
        raw = each(raw, _single)
        fraction = each(raw, _is_fraction).astype(bool)
        issues = issues_where(
            f"{label}: not an identifier",
            raw,
            fraction,
            lambda v: f"{label}: {v} is a fraction, not an identifier",
        )
        raw = raw.where(~fraction, None)
    converted = text_values(raw, label, strip=True, what="an identifier")
    values = converted.values
    present = values.dropna()
    too_long = pd.Series(False, index=values.index)
    if len(present) and max(map(len, present.to_numpy(dtype=object))) > ID_MAX_LENGTH:
        too_long = values.notna() & (values.str.len() > ID_MAX_LENGTH).astype(bool)
    issues += converted.issues + issues_where(
        f"{label}: longer than {ID_MAX_LENGTH} characters",
        values,
        too_long,
        lambda v: f"{label}: {_shown(v)} is {len(v)} characters long (at most {ID_MAX_LENGTH})",
    )
    return Converted(values.where(~too_long, None), issues)


def _json_object_text(value: Any) -> Any:
    """JSON object text for a raw value (objects are serialised), or a `Bad`."""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=_plain_json)
    if not isinstance(value, str):
        return Bad(f"{_shown(value)} is not a JSON object")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        return Bad(f"{_shown(value)} is not valid JSON ({exc.msg} at character {exc.pos + 1})")
    if not isinstance(parsed, dict):
        return Bad(f"{_shown(value)} is JSON but not an object")
    return value


def json_values(raw: pd.Series, label: str) -> Converted:
    """JSON object text (the `properties` column)."""
    present = raw.astype(object).where(raw.notna(), None)
    text, issues = _bad_values(
        each(present, lambda v: None if v is None else _json_object_text(v)),
        f"{label}: not a JSON object",
        label,
    )
    checked = text_values(text, label)
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
    mask = each(
        raw,
        lambda v: (
            (isinstance(v, str) and _NUMBER.match(v) is not None)
            or (isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_))
        ),
    ).astype(bool)
    values = pd.to_numeric(raw.where(mask, None), errors="coerce").astype("float64")
    return values, mask & np.isfinite(values)


def integer_values(raw: pd.Series, label: str) -> Converted:
    """Whole numbers from 0 to 2^31-1 ("12", 12, 12.0); anything else is an issue."""
    values, numeric = _numbers(raw)
    whole = numeric & (values == np.floor(values.fillna(0.0)))
    negative = whole & (values < 0)
    too_large = whole & (values > MAX_INTEGER)
    issues = (
        issues_where(
            f"{label}: not a whole number",
            raw,
            raw.notna() & ~whole,
            lambda v: f"{label}: {_shown(v)} is not a whole number",
        )
        + issues_where(f"{label}: negative", raw, negative, lambda v: f"{label}: {_shown(v)} is negative")
        + issues_where(
            f"{label}: too large",
            raw,
            too_large,
            lambda v: f"{label}: {_shown(v)} is too large (at most {MAX_INTEGER})",
        )
    )
    return Converted(values.where(whole & ~negative & ~too_large).round().astype("Int64"), issues)


def number_values(raw: pd.Series, label: str) -> Converted:
    """Finite numbers from 0 up."""
    values, numeric = _numbers(raw)
    negative = numeric & (values < 0)
    issues = issues_where(
        f"{label}: not a number",
        raw,
        raw.notna() & ~numeric,
        lambda v: f"{label}: {_shown(v)} is not a number",
    ) + issues_where(f"{label}: negative", raw, negative, lambda v: f"{label}: {_shown(v)} is negative")
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
    return Bad(f"{_shown(value)} is not a boolean (use true/false, yes/no or 1/0)")


def boolean_values(raw: pd.Series, label: str) -> Converted:
    """true/false, t/f, yes/no, y/n, 1/0 (any case) and real booleans; anything else is an issue."""
    values, issues = _bad_values(each(raw, _as_bool), f"{label}: not a boolean", label)
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
    text = raw if _all_text(raw) else each(raw, _iso_text)
    stamps = _parsed_iso(text)
    retry = stamps.isna() & text.notna()
    if retry.any():
        # Second chance for surrounding blanks and a ' UTC' suffix (warehouse dumps) on the few that need it.
        cleaned = each(text[retry], lambda v: _UTC_SUFFIX.sub("+00:00", v.strip()))
        stamps[retry] = _parsed_iso(cleaned)
    issues = issues_where(
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

    return Converted(stamps, issues_where(f"{label}: implausible epoch value", raw, ~plausible, sentence))


def timestamp_values(raw: pd.Series, label: str, unit: str | None) -> tuple[Converted, str | None]:
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
        return printable(value)
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


def json_value(value: Any) -> str:
    """One value as JSON text, as a member of an object packed from the export's columns."""
    # Text is by far the most common value; the C string encoder skips the encoder's set-up.
    return json.encoder.encode_basestring(value) if isinstance(value, str) else _JSON.encode(value)


def decision_values(raw: pd.Series, label: str) -> Converted:
    """A rep's decision on a PQL (`pql_feedback.decision`): accepted, disqualified or done, in any case
    and with surrounding blanks, stored lower-case. Any other word is an issue: the PQL rules could not
    act on it, so the row is set aside rather than loaded and silently ignored."""
    converted = text_values(raw, label, strip=True)
    words = converted.values.map(lambda v: v.lower() if isinstance(v, str) else v)
    unknown = words.notna() & ~words.isin(FEEDBACK_DECISIONS).astype(bool)
    accepted = ", ".join(FEEDBACK_DECISIONS)
    issues = converted.issues + issues_where(
        f"{label}: unknown decision",
        converted.values,
        unknown,
        lambda v: f"{label}: {_shown(v)} is not a decision pql can use (one of {accepted}, any case)",
    )
    return Converted(words.where(~unknown, None).astype(object), issues)


CONVERTERS: dict[str, Callable[[pd.Series, str], Converted]] = {
    "id": id_values,
    "text": text_values,
    "json": json_values,
    "integer": integer_values,
    "number": number_values,
    "boolean": boolean_values,
    "decision": decision_values,
}
