"""Loading exports (Segment, Amplitude, PostHog, warehouse dumps) into the contract tables.

`load_file` reads a file in chunks, turns each into contract rows plus the rows it cannot load (each
with a precise reason), and publishes the load in ONE transaction. Pure logic sits in the middle, I/O at
the edges:

- `contract`: which table takes which columns, required or optional, `--map` renames (`parse_mapping`),
  `column_plan` and its messages, the duplicate keys.
- `values`: parsing and checking values: timestamps and epoch units, numbers, booleans, ids, text, JSON.
- `rows`: one chunk of export rows into contract rows and quarantined rows (`normalise`), derived
  event ids.
- `readers`: CSV, Parquet and JSON lines files (gzipped too) read in chunks (`read_chunks`,
  `file_format`).
- `staging`: the staging table, de-duplication, quarantine rows, the one transaction (`load_file`) and
  the lock that makes loads into one table take turns (`load_lock`).
"""

from pql.loading.contract import (
    CONTRACT,
    DEDUP_KEYS,
    NO_ID_COLUMN,
    QUARANTINE_COLUMNS,
    TABLES,
    VENDOR_NAMES,
    ColumnPlan,
    ContractColumn,
    MappingError,
    column_plan,
    contract_columns,
    parse_mapping,
)
from pql.loading.readers import DEFAULT_CHUNK_ROWS, FORMATS, RawChunk, file_format, read_chunks
from pql.loading.rows import DERIVED_ID_COLUMNS, Normalised, derived_event_ids, normalise
from pql.loading.staging import LOAD_LOCK_TIMEOUT_SECONDS, LoadBusy, LoadReport, load_file, load_lock
from pql.loading.values import UNIT_NAMES, epoch_unit, row_json

__all__ = [
    "CONTRACT",
    "DEDUP_KEYS",
    "DEFAULT_CHUNK_ROWS",
    "DERIVED_ID_COLUMNS",
    "FORMATS",
    "LOAD_LOCK_TIMEOUT_SECONDS",
    "NO_ID_COLUMN",
    "QUARANTINE_COLUMNS",
    "TABLES",
    "UNIT_NAMES",
    "VENDOR_NAMES",
    "ColumnPlan",
    "ContractColumn",
    "LoadBusy",
    "LoadReport",
    "MappingError",
    "Normalised",
    "RawChunk",
    "column_plan",
    "contract_columns",
    "derived_event_ids",
    "epoch_unit",
    "file_format",
    "load_file",
    "load_lock",
    "normalise",
    "parse_mapping",
    "read_chunks",
    "row_json",
]
