"""Progress: the long loops report increasing counts up to their total, and the CLI draws them as a rich
bar on a terminal only (never into captured or piped output)."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from pql.cli import app
from pql.commands.progress import progress_bar
from pql.config import Settings
from pql.db import create_engine
from pql.demo.world import write_demo_world
from pql.loading import load_file
from pql.schema import source_tables

BAR_CHARACTERS = ("━", "╸", "╺", "\x1b[")
EVENT = {"event_id": "e0", "user_id": "u1", "account_id": "a1", "event_name": "login"}


class Calls:
    """A progress callback that remembers what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None, str]] = []

    def __call__(self, done: int, total: int | None, step: str = "") -> None:
        self.calls.append((done, total, step))

    @property
    def done(self) -> list[int]:
        return [done for done, _, _ in self.calls]


def test_the_demo_world_reports_every_simulated_day_of_the_total(duckdb_url: str, settings: Settings) -> None:
    engine = create_engine(duckdb_url)
    progress = Calls()
    try:
        write_demo_world(
            engine,
            source_tables(settings.tables),
            settings,
            accounts=20,
            days=12,
            seed=1,
            end=datetime(2026, 3, 2),
            progress=progress,
        )
    finally:
        engine.dispose()
    assert progress.calls == [(day, 12, "") for day in range(1, 13)]


def test_a_load_reports_the_rows_read_after_each_chunk_with_no_total_known(
    duckdb_url: str, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    rows = [{**EVENT, "event_id": f"e{i}", "occurred_at": f"2026-01-01T00:00:{i:02d}Z"} for i in range(5)]
    pd.DataFrame(rows).to_csv(path, index=False)
    engine = create_engine(duckdb_url)
    progress = Calls()
    try:
        report = load_file(
            engine, settings.tables, "events", path, fmt="csv", chunk_rows=2, progress=progress
        )
    finally:
        engine.dispose()
    assert progress.calls == [(2, None, ""), (4, None, ""), (5, None, "")]
    assert report.input_rows == progress.done[-1]


def test_a_command_run_without_a_terminal_draws_no_bar() -> None:
    result = CliRunner().invoke(
        app, ["demo-data", "--accounts", "20", "--days", "10", "--seed", "1", "--end", "2026-03-02"]
    )
    assert result.exit_code == 0, result.output
    assert "demo world written to" in result.output
    assert not any(mark in result.output for mark in BAR_CHARACTERS)


def test_no_callback_is_made_when_the_console_is_not_a_terminal() -> None:
    from rich.console import Console

    piped = Console(file=io.StringIO(), force_terminal=False)
    with progress_bar("simulating", "days", console=piped) as progress:
        assert progress is None
    assert piped.file.getvalue() == ""


def test_a_terminal_gets_a_bar_with_the_units_done_of_the_total() -> None:
    from rich.console import Console

    terminal = Console(file=io.StringIO(), force_terminal=True, width=100)
    with progress_bar("training", "steps", console=terminal) as progress:
        assert progress is not None
        for done in range(8):
            progress(done, 7, "rolling-origin folds")
    drawn = terminal.file.getvalue()
    assert "━" in drawn
    assert "7/7" in drawn and "steps" in drawn


def test_prefect_log_lines_go_through_the_bars_console_while_it_runs_then_back() -> None:
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler
    from rich.console import Console

    from pql.commands.progress import prefect_console_on

    handler = PrefectConsoleHandler(stream=io.StringIO())
    logger = logging.getLogger("pql.tests.progress")
    logger.addHandler(handler)
    own = handler.console
    terminal = Console(file=io.StringIO(), force_terminal=True, width=200)
    try:
        with prefect_console_on(terminal):
            logger.warning("the run lock is taken")
    finally:
        logger.removeHandler(handler)
    assert "the run lock is taken" in terminal.file.getvalue()
    assert handler.console is own and handler.stream.getvalue() == ""
