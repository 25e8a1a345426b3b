"""Publishing a load: staging tables, de-duplication, quarantine rows, one transaction, the load lock.

`load_file` is the loader's I/O edge. `_stage` is the one loop over the file's chunks: each is
normalised, its good rows staged in a temporary table and its other rows written to the quarantine
table. Then, in the same transaction, duplicates are removed and the rest is inserted, so a failure
part-way leaves every table as it was.

- Duplicates (same key as an earlier row of the file, or as a row already in the table) are counted and
  skipped, never inserted: keys are `DEDUP_KEYS`. Loading the same file twice inserts nothing the second
  time.
- loaded + quarantined + duplicates == input rows, always.
- Concurrent loads: loads into one table take turns (a PostgreSQL advisory lock keyed on the table; a
  file lock beside an embedded database file), so a second load dedupes against what the first
  inserted. One that waited `lock_timeout_seconds` in vain stops with a message naming the holder.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from pql.bulk import bulk_insert
from pql.config import TablesConfig
from pql.db import DataError
from pql.loading.contract import DEDUP_KEYS, QUARANTINE_COLUMNS, ColumnPlan
from pql.loading.readers import DEFAULT_CHUNK_ROWS, RawChunk, read_chunks
from pql.loading.rows import first_plan, holds_ids, normalise
from pql.locks import LockBusy, file_lock
from pql.progress import Progress, report
from pql.schema import create_tables, output_tables, source_tables

LOAD_LOCK_TIMEOUT_SECONDS = 600.0
_LOCK_TIMEOUT_SQLSTATE = "55P03"


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
    progress: Progress | None = None,
) -> _Staging:
    """Normalise every chunk: good rows into `staging`, the others into `quarantine`; `progress` is told
    the rows read so far after each chunk (the total is not known before the end of the file).

    Raises `_IdsFurtherOn` when ids are derived but a later chunk has some."""
    found = _Staging()
    for chunk in chunks:
        if found.plan is None:
            if chunk.size == 0 and not chunk.columns:
                break  # an empty file: nothing to check, nothing to load
            found.plan = first_plan(
                table, chunk.rows, chunk.columns, mapping, derive_ids=derive_ids, names=names
            )
        elif found.plan.derives_ids and holds_ids(chunk.rows, found.plan.id_source):
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
        report(progress, found.input_rows, None)
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
    progress: Progress | None = None,
) -> LoadReport:
    """Load `path` into the contract table `table`, all or nothing.

    Rows are normalised chunk by chunk and staged in a temporary table; duplicates are then removed in
    the database (earlier rows of the file win, rows already in the table win) and the rest is
    inserted. Quarantined rows go to the quarantine table in the same transaction. Events without ids
    get ids derived from their rows (`derived_event_ids`).

    Loads into one table take turns (`load_lock`): a load waits up to `lock_timeout_seconds` for
    another one to finish, then raises `LoadBusy`. `progress` is told the rows read so far, chunk by
    chunk (from 0 again if the file is read a second time).
    """
    loaded_at = loaded_at or datetime.now(UTC).replace(tzinfo=None)
    arguments: dict[str, Any] = {
        "fmt": fmt,
        "mapping": mapping or {},
        "chunk_rows": chunk_rows,
        "progress": progress,
    }
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
    progress: Progress | None = None,
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
                    progress=progress,
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
