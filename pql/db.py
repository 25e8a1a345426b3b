"""Database connections: one engine per URL, created lazily, always disposed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pql.config import Settings
from pql.schema import OutputTables, SourceTables, output_tables, source_tables


class DataError(Exception):
    """A run that failed on its data (exit code 1); the message says what to do."""

    heading = "run failed on data"  # what the command line prints above the message


def redacted(url: str | sa.URL) -> str:
    """The URL with its password masked, for logs, artifacts and the run ledger."""
    return make_url(url).render_as_string(hide_password=True)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _tag_with_database(context: sa.engine.ExceptionContext) -> None:
    """Record on a database error which database it came from and the driver's own first line, both
    with the password masked: the CLI prints them instead of a traceback (see `failure_of`)."""
    error, engine = context.sqlalchemy_exception, context.engine
    if error is None or engine is None:
        return
    reason = _first_line(str(getattr(error, "orig", None) or error))
    password = engine.url.password
    error.pql_database = redacted(engine.url)  # type: ignore[attr-defined]
    error.pql_reason = reason.replace(password, "***") if password else reason  # type: ignore[attr-defined]


def failure_of(error: sa.exc.DBAPIError) -> tuple[str | None, str]:
    """The database a failed statement or connection was for (password masked; None when the engine
    was not made by `create_engine`) and the driver's message, one line."""
    reason = getattr(error, "pql_reason", None) or _first_line(str(error.orig or error))
    return getattr(error, "pql_database", None), reason


def dialect_name(url: str) -> str:
    return make_url(url).get_backend_name()


def missing_database_file(url: str) -> Path | None:
    """The file of an embedded (DuckDB, SQLite) database that does not exist yet; None otherwise.

    Connecting would create it, so read-only commands check first."""
    parsed = make_url(url)
    if parsed.get_backend_name() not in ("duckdb", "sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database).expanduser()
    return None if path.exists() else path


def create_engine(url: str) -> sa.Engine:
    """An engine for `url`; embedded database files get their folder created first."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("duckdb", "sqlite") and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if backend == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": 30})
    elif backend == "postgresql":
        engine = sa.create_engine(url, pool_pre_ping=True)
    else:
        engine = sa.create_engine(url)
    sa.event.listen(engine, "handle_error", _tag_with_database)
    return engine


@dataclass
class Databases:
    """The source and CRM databases of one run. Shares one engine when both URLs are the same."""

    settings: Settings
    _engines: dict[str, sa.Engine] = field(default_factory=dict)

    def _engine(self, url: str) -> sa.Engine:
        if url not in self._engines:
            self._engines[url] = create_engine(url)
        return self._engines[url]

    @property
    def source(self) -> sa.Engine:
        return self._engine(self.settings.source_database_url)

    @property
    def crm(self) -> sa.Engine:
        return self._engine(self.settings.crm_database_url)

    @property
    def source_tables(self) -> SourceTables:
        return source_tables(self.settings.tables)

    @property
    def output_tables(self) -> OutputTables:
        return output_tables(self.settings.tables)

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()


@contextmanager
def databases(settings: Settings) -> Iterator[Databases]:
    """The run's databases, disposed on exit so embedded files are closed and nothing leaks at exit."""
    dbs = Databases(settings)
    try:
        yield dbs
    finally:
        dbs.dispose()
