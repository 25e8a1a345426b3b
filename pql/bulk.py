"""Bulk inserts through each database's fast path, inside the caller's transaction.

PostgreSQL gets COPY, DuckDB reads the DataFrame directly (Arrow scan), anything else gets one
multi-row `executemany`. Never row by row.
"""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import sqlalchemy as sa


def _python_values(frame: pd.DataFrame) -> list[tuple]:
    """Rows as plain Python values, with every missing value as None."""
    columns = []
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_datetime64_any_dtype(series):
            values = [None if pd.isna(v) else v.to_pydatetime() for v in series]
        else:
            values = series.astype(object).where(series.notna(), None).tolist()
            values = [v.item() if isinstance(v, np.generic) else v for v in values]
        columns.append(values)
    return list(zip(*columns, strict=True))


def bulk_insert(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> int:
    """Append `frame` (columns named by the table's column keys) to `table`; return the row count.

    Runs on `conn`, so it commits or rolls back with the caller's transaction.
    """
    if frame.empty:
        return 0
    keys = list(frame.columns)
    physical = [table.c[key].name for key in keys]
    backend = conn.dialect.name
    if backend == "postgresql":
        _copy_postgres(conn, table, physical, frame)
    elif backend == "duckdb":
        _insert_duckdb(conn, table, physical, frame)
    else:
        rows = [dict(zip(keys, row, strict=True)) for row in _python_values(frame)]
        conn.execute(table.insert(), rows)
    return len(frame)


def _copy_postgres(conn: sa.Connection, table: sa.Table, physical: list[str], frame: pd.DataFrame) -> None:
    preparer = conn.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(name) for name in physical)
    statement = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN"
    cursor = conn.connection.dbapi_connection.cursor()
    with cursor.copy(statement) as copy:
        for row in _python_values(frame):
            copy.write_row(row)


def _insert_duckdb(conn: sa.Connection, table: sa.Table, physical: list[str], frame: pd.DataFrame) -> None:
    raw = conn.connection.dbapi_connection
    view = f"pql_bulk_{uuid.uuid4().hex}"
    data = frame.copy()
    data.columns = physical
    for name in data.columns:
        # DuckDB reads pandas' tz-aware timestamps as TIMESTAMPTZ; the schema stores naive UTC.
        if isinstance(data[name].dtype, pd.DatetimeTZDtype):
            data[name] = data[name].dt.tz_convert("UTC").dt.tz_localize(None)
    preparer = conn.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(name) for name in physical)
    raw.register(view, data)
    try:
        raw.execute(f"INSERT INTO {preparer.format_table(table)} ({columns}) SELECT {columns} FROM {view}")
    finally:
        raw.unregister(view)
