"""CLI command groups. Each module exposes `register(app)`; shared plumbing lives here."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
import typer
from rich.console import Console

from pql.clock import to_utc_naive
from pql.config import ConfigError, Settings, load_settings
from pql.db import DataError, failure_of, missing_database_file, redacted

EXIT_OK, EXIT_DATA, EXIT_USAGE = 0, 1, 2

# Piped output (make demo, logs, CI) gets a wide page rather than rich's 80-column fallback.
_PAGE = None if sys.stdout.isatty() else 150
console = Console(soft_wrap=True, width=_PAGE)
errors = Console(stderr=True, soft_wrap=True, width=_PAGE)

F = TypeVar("F", bound=Callable[..., Any])


def settings_of(ctx: typer.Context) -> Settings:
    """The validated settings for this invocation (from --config, $PQL_CONFIG or ./pql.toml)."""
    path: Path | None = (ctx.find_root().params or {}).get("config")
    return load_settings(path)


def instant_option(value: str | None, option: str, settings: Settings) -> datetime | None:
    """A date or date-time option as naive UTC: local to the configured time zone unless it carries an
    offset, a date meaning its midnight there. A bad value is a usage error (exit 2) naming the option."""
    if value is None:
        return None
    try:
        return to_utc_naive(value, settings.zone)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{option}: {value!r} is not an ISO date or date-time (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)."
        ) from exc


_MISSING_TABLE = re.compile(
    r"Table with name (?P<duckdb>\w+) does not exist"  # DuckDB
    r"|no such table: (?P<sqlite>\w+)"  # SQLite
    r'|relation "(?P<postgresql>\w+)" does not exist'  # PostgreSQL
)
CREATE_TABLES_HINT = (
    "Run `pql init` to create the tables, then load your data (`pql load TABLE FILE`), "
    "or try everything on a simulated world with `pql demo`."
)


def _intent(ctx: typer.Context | None) -> str:
    """What the command set out to do, from its help: "`pql train` could not build the training set"."""
    if ctx is None:
        return "pql could not finish"
    summary = re.split(r"[:;(]|\.(?:\s|$)", ctx.command.help or "", maxsplit=1)[0].strip()
    doing = f" {summary[:1].lower()}{summary[1:]}" if summary else " finish"
    return f"`{ctx.command_path}` could not{doing}"


def _databases_in(ctx: typer.Context | None) -> str:
    """The configured databases (passwords masked), for an error that does not say which it came from."""
    try:
        settings = settings_of(ctx) if ctx is not None else None
    except ConfigError:
        settings = None
    if settings is None:
        return "the database"
    urls = dict.fromkeys(redacted(url) for url in (settings.source_database_url, settings.crm_database_url))
    return "database " + " or ".join(urls)


def database_failure(error: sa.exc.DBAPIError, ctx: typer.Context | None) -> str:
    """One line for a database error that reached the command: the intent, the database, why, the fix."""
    database, reason = failure_of(error)
    where = f"database {database}" if database else _databases_in(ctx)
    missing = _MISSING_TABLE.search(reason)
    if missing:
        table = next(name for name in missing.groups() if name)
        return f"{_intent(ctx)}: table {table} does not exist in {where}. {CREATE_TABLES_HINT}"
    if isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        hint = "Check the URL in the settings and that the server is up and reachable."
    else:
        hint = "Check that the tables match the data contract (`pql init` adds what is missing)."
    return f"{_intent(ctx)}: {where} failed: {reason}. {hint}"


def path_failure(error: OSError) -> str:
    """One line for a file or folder the command could not create, read or write."""
    path = error.filename or "a file or folder"
    why = error.strerror or str(error)
    return (
        f"cannot use {path}: {why}. Check state_dir and registry_path in the settings (and the paths "
        "given on the command line): the folder must be creatable and writable."
    )


def require_database_files(*urls: str) -> None:
    """Stop a command that reads before it opens an embedded database file that does not exist:
    connecting would create an empty one, and the command would fail on its first missing table."""
    for url in dict.fromkeys(urls):
        missing = missing_database_file(url)
        if missing is not None:
            raise DataError(f"The database file {missing} does not exist. {CREATE_TABLES_HINT}")


# A URL's password, and a password given as a query parameter: masked in everything written to logs.
_PASSWORD_IN_URL = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^:@/\s]*:)[^@\s]*@")
_PASSWORD_PARAMETER = re.compile(r"(?P<head>password=)[^&\s'\"]+", re.IGNORECASE)


def masked_text(text: str) -> str:
    """`text` with every password in a URL (or a `password=` parameter) replaced by ***."""
    return _PASSWORD_PARAMETER.sub(r"\g<head>***", _PASSWORD_IN_URL.sub(r"\g<head>***@", text))


def traceback_log(ctx: typer.Context | None, exc: BaseException) -> Path | None:
    """Write the failure's full traceback (passwords masked) to `<state_dir>/logs/`; None when there is
    no usable state directory (the one-line message then stands alone)."""
    import os
    import traceback
    from datetime import UTC

    try:
        state_dir = settings_of(ctx).state_dir if ctx is not None else None
        if state_dir is None:
            return None
        folder = state_dir / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        command = ctx.command_path.replace(" ", "-") if ctx is not None else "pql"
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = folder / f"{command}-{stamp}-{os.getpid()}.log"
        path.write_text(masked_text("".join(traceback.format_exception(exc))), encoding="utf-8")
        return path
    except (ConfigError, OSError):
        return None


def _details(ctx: typer.Context | None, exc: BaseException) -> None:
    path = traceback_log(ctx, exc)
    if path is not None:
        errors.print(f"details: {path}", highlight=False, markup=False, style="dim")


def cli_errors(func: F) -> F:
    """Turn the pipeline's known failures into one readable message and the documented exit code.

    A database error or an unusable path that reaches the command is one line too (exit code 1):
    the database with its password masked, or the path, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx")
        try:
            return func(*args, **kwargs)
        # Messages quote values and data ('["invite_teammate"]'): never read as rich markup.
        except ConfigError as exc:
            errors.print("[bold red]configuration error[/]", highlight=False)
            errors.print(str(exc), highlight=False, markup=False)
            sys.exit(EXIT_USAGE)
        except DataError as exc:
            errors.print(f"[bold red]{exc.heading}[/]", highlight=False)
            errors.print(str(exc), highlight=False, markup=False)
            if exc.__cause__ is not None:  # a curated message alone has no traceback worth keeping
                _details(ctx, exc)
            sys.exit(EXIT_DATA)
        except sa.exc.DBAPIError as exc:
            errors.print("[bold red]run failed on the database[/]", highlight=False)
            errors.print(database_failure(exc, ctx), highlight=False, markup=False)
            _details(ctx, exc)
            sys.exit(EXIT_DATA)
        except OSError as exc:
            errors.print("[bold red]run failed on a path[/]", highlight=False)
            errors.print(path_failure(exc), highlight=False, markup=False)
            _details(ctx, exc)
            sys.exit(EXIT_DATA)

    return wrapper  # type: ignore[return-value]
