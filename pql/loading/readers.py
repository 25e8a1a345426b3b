"""Reading CSV, Parquet and JSON lines exports (gzipped CSV and JSON lines too) in chunks of rows
numbered from 1.

A row that cannot be read as a record (a JSON line that does not parse) comes with its reason, to be
quarantined; a file that cannot be read at all is refused, with nothing loaded.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pql.db import DataError
from pql.loading.contract import QUARANTINE_COLUMNS, MappingError
from pql.loading.values import Bad, printable

FORMATS = ("csv", "parquet", "jsonl")
FORMAT_SUFFIXES = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
DEFAULT_CHUNK_ROWS = 100_000
# CSV cells read as missing. "NA" and "None" stay text: "NA" is Namibia's country code.
CSV_NULLS = ("", "NULL", "null", r"\N")


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


def _json_line(line: bytes) -> dict[str, Any] | Bad:
    text = line.decode("utf-8", "surrogateescape")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        return Bad(f"line is not valid JSON ({exc.msg} at character {exc.pos + 1})")
    if not isinstance(parsed, dict):
        return Bad(f"line is JSON but not an object (a {type(parsed).__name__})")
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
            if isinstance(parsed, Bad):
                text = printable(line.decode("utf-8", "surrogateescape").rstrip("\r\n"))
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
