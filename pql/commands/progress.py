"""Progress bars for the long commands: drawn with rich on stderr, only when stderr is a terminal.

The layers below report through `pql.progress.Progress` callbacks; `progress_bar` turns one into a bar.
Piped or captured output (CI, logs, `2>file`) gets no bar at all, so it holds only the command's lines.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pql.commands import errors
from pql.progress import Progress as ProgressCallback


@contextmanager
def progress_bar(
    what: str, unit: str, *, console: Console | None = None
) -> Iterator[ProgressCallback | None]:
    """A callback that draws `what` as a bar of `unit`s on `console` (default: stderr) while the block
    runs; None when that console is not a terminal, so nothing is drawn and nothing is called."""
    console = console or errors
    if not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int | None, step: str = "") -> None:
            description = f"{what}: {step}" if step else what
            bar.update(task, completed=done, total=total, description=description)

        yield update


@contextmanager
def prefect_console_on(console: Console) -> Iterator[None]:
    """Prefect's console log lines printed by `console` for the block, then by Prefect's own again.

    Under a progress bar drawn on `console`, they are printed above the bar instead of through it:
    Prefect's handler has a console of its own, which writes straight to the terminal."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *logging.root.manager.loggerDict.values()]
    handlers = list(  # one handler serves several loggers: each is switched (and restored) once
        {
            id(handler): handler
            for logger in loggers
            if isinstance(logger, logging.Logger)
            for handler in logger.handlers
            if isinstance(handler, PrefectConsoleHandler)
        }.values()
    )
    before = [handler.console for handler in handlers]
    for handler in handlers:
        handler.console = console
    try:
        yield
    finally:
        for handler, own in zip(handlers, before, strict=True):
            handler.console = own
