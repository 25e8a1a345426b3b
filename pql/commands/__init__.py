"""CLI command groups. Each module exposes `register(app)`; shared plumbing lives here."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from pql.clock import to_utc_naive
from pql.config import ConfigError, Settings, load_settings
from pql.db import DataError

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


def cli_errors(func: F) -> F:
    """Turn the pipeline's known failures into one readable message and the documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            errors.print(f"[bold red]configuration error[/]\n{exc}", highlight=False, markup=True)
            sys.exit(EXIT_USAGE)
        except DataError as exc:
            errors.print(f"[bold red]{exc.heading}[/]\n{exc}", highlight=False)
            sys.exit(EXIT_DATA)

    return wrapper  # type: ignore[return-value]
