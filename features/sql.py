"""Portable SQL building blocks: the same Core expression compiles on DuckDB, SQLite and PostgreSQL.

Time arithmetic is deliberately absent: every instant a query compares against (window starts, day
boundaries, horizon ends) is computed in Python and bound as a parameter, so comparisons are exact to
the microsecond on every engine. The one date function is `utc_day`, for counting rows per day.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from pql.config import ConfigError, KeyEvent

# Bound parameters one statement may carry: SQLite's compile-time default since 3.32, PostgreSQL's
# wire-protocol limit. DuckDB has none.
MAX_BOUND_PARAMETERS = {"sqlite": 32766, "postgresql": 65535}


def rows_cte(name: str, columns: Sequence[tuple[str, sa.types.TypeEngine]], rows: Sequence[tuple]) -> sa.CTE:
    """A CTE holding `rows` as typed bound parameters (`SELECT ... UNION ALL SELECT ...`).

    `VALUES` lists would be shorter, but SQLite cannot name their columns in a FROM clause.
    """
    if not rows:
        raise ValueError(f"{name}: a rows CTE needs at least one row")
    selects = [
        sa.select(
            *(
                sa.bindparam(None, value, type_=type_).label(column)
                for (column, type_), value in zip(columns, row, strict=True)
            )
        )
        for row in rows
    ]
    query = selects[0] if len(selects) == 1 else sa.union_all(*selects)
    return query.cte(name)


class property_text(FunctionElement):
    """The text of one top-level key of a JSON object column (NULL when absent).

    `property_text(column, key, path)`: the key and its JSON path (`json_path(key)`) are both bound
    parameters of the statement; each engine reads the one its own function takes. Booleans read as
    `true` / `false` on every engine (SQLite's json_extract alone would give 1 / 0).
    """

    type = sa.String()
    inherit_cache = True
    name = "property_text"


def json_path(key: str) -> str:
    """The JSON path of a top-level key, quoted so any key text works: `$."seat limit"`."""
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


@compiles(property_text)
def _property_text_duckdb(element: property_text, compiler: sa.sql.compiler.SQLCompiler, **kw: object) -> str:
    column, _key, path = list(element.clauses)
    return compiler.process(sa.func.json_extract_string(column, path), **kw)


@compiles(property_text, "postgresql")
def _property_text_postgresql(
    element: property_text, compiler: sa.sql.compiler.SQLCompiler, **kw: object
) -> str:
    column, key, _path = list(element.clauses)
    return compiler.process(sa.cast(column, JSONB).op("->>")(key), **kw)


@compiles(property_text, "sqlite")
def _property_text_sqlite(element: property_text, compiler: sa.sql.compiler.SQLCompiler, **kw: object) -> str:
    column, _key, path = list(element.clauses)
    kind = sa.func.json_type(column, path)
    text = sa.case(
        (kind == "true", sa.literal("true")),
        (kind == "false", sa.literal("false")),
        else_=sa.cast(sa.func.json_extract(column, path), sa.String()),
    )
    return compiler.process(text, **kw)


class utc_day(FunctionElement):
    """The calendar date of a naive-UTC timestamp column (`utc_day(column)`), to group rows by day."""

    type = sa.Date()
    inherit_cache = True
    name = "utc_day"


@compiles(utc_day)
def _utc_day_cast(element: utc_day, compiler: sa.sql.compiler.SQLCompiler, **kw: object) -> str:
    (column,) = list(element.clauses)
    return compiler.process(sa.cast(column, sa.Date()), **kw)


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: sa.sql.compiler.SQLCompiler, **kw: object) -> str:
    # SQLite has no date type: CAST would read '2024-05-01 ...' as the number 2024.
    (column,) = list(element.clauses)
    return compiler.process(sa.func.date(column), **kw)


def key_event_condition(
    name: sa.ColumnElement[str], properties: sa.ColumnElement[str] | None, event: KeyEvent
) -> sa.ColumnElement[bool]:
    """Rows that are `event`: its name (a bound parameter, never SQL text) and every property condition."""
    conditions = [name == sa.bindparam(None, event.name, type_=sa.String())]
    if event.where:
        if properties is None:
            raise ValueError("a key event with property conditions needs the properties column")
        conditions += [
            property_text(
                properties,
                sa.bindparam(None, key, type_=sa.String()),
                sa.bindparam(None, json_path(key), type_=sa.String()),
            )
            == sa.bindparam(None, value, type_=sa.String())
            for key, value in event.where_text().items()
        ]
    return sa.and_(*conditions)


def count_where(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    """`COUNT(CASE WHEN condition THEN 1 END)`: rows meeting `condition` (0 when none)."""
    return sa.func.count(sa.case((condition, sa.literal_column("1"))))


def bound_parameter_count(statement: sa.Executable, dialect: sa.Dialect) -> int:
    """How many parameters `statement` binds on `dialect` (IN lists expanded)."""
    return len(statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}).params)


def parameter_limit(dialect: sa.Dialect) -> int | None:
    """The most parameters one statement may bind on `dialect` (None: no practical limit)."""
    return MAX_BOUND_PARAMETERS.get(dialect.name)


def check_parameter_budget(needed: int, dialect: sa.Dialect, what: str) -> None:
    """Raise ConfigError when a statement needing `needed` parameters exceeds what `dialect` accepts."""
    limit = parameter_limit(dialect)
    if limit is not None and needed > limit:
        raise ConfigError(
            f"{what} needs {needed} bound parameters in one statement; {dialect.name} accepts at most "
            f"{limit}. Pass fewer snapshot dates (raise features.snapshot_every_days or lower "
            "features.lookback_days), or use DuckDB."
        )
