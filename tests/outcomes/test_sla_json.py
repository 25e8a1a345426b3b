"""`pql sla --json`: one JSON document with the same owners, counts and overdue PQLs as the tables."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner, Result

from pql.commands import report as report_command
from pql.config import Settings

from .conftest import MONDAY, shared_world

AS_OF = f"{MONDAY + timedelta(weeks=7, days=3):%Y-%m-%dT%H:%M}"


@pytest.fixture(scope="module")
def world_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    with shared_world(tmp_path_factory, accounts=200, weeks=8, seed=2) as (settings, _):
        yield settings


@pytest.fixture
def configured(world_settings: Settings, tmp_path: Path) -> Settings:
    (tmp_path / "pql.toml").write_text(
        f'source_url = "{world_settings.source_url}"\nstate_dir = "{world_settings.state_dir.as_posix()}"\n'
    )
    return world_settings


def sla(*args: str) -> Result:
    app = typer.Typer()

    @app.callback()
    def main(config: Annotated[Path | None, typer.Option("--config")] = None) -> None:
        """pql"""

    report_command.register(app)
    return CliRunner().invoke(app, ["sla", "--as-of", AS_OF, "--since", "2025-01-01", *args])


def table_rows(output: str, first_cell: str) -> list[list[str]]:
    """The body rows of the rich table whose rows start with one of `first_cell`'s values."""
    rows = [[cell.strip() for cell in line.strip("│ ").split("│")] for line in output.splitlines()]
    return [row for row in rows if row and row[0] in first_cell]


@pytest.mark.usefixtures("configured")
def test_the_json_holds_every_owner_with_the_counts_the_table_shows() -> None:
    text, document = sla(), sla("--json")
    assert text.exit_code == 0 and document.exit_code == 0, text.output + document.output
    found = json.loads(document.stdout)
    by_owner = {row["owner"]: row for row in found["by_owner"]}
    shown = {row[0]: row[1:6] for row in table_rows(text.stdout, " ".join(by_owner))}
    assert set(shown) == set(by_owner) and {"ana", "bo", "cy", "all owners"} <= set(by_owner)
    for owner, counts in shown.items():
        row = by_owner[owner]
        assert counts == [str(row[key]) for key in ("pqls", "due", "met", "late", "overdue")]
    assert found["sla_hours"] == 24 and found["as_of"].startswith(AS_OF)


@pytest.mark.usefixtures("configured")
def test_the_json_holds_the_per_playbook_rows_and_where_the_touches_came_from() -> None:
    text, found = sla(), json.loads(sla("--json").stdout)
    playbooks = [row["playbook"] for row in found["by_playbook"]]
    assert playbooks and all(re.search(rf"^│ {re.escape(name)}\s", text.stdout, re.M) for name in playbooks)
    assert found["source_line"] in text.stdout


@pytest.mark.usefixtures("configured")
def test_the_json_lists_the_same_overdue_pqls_with_iso_dates_and_numbers() -> None:
    text, document = sla("--overdue"), sla("--overdue", "--json")
    found = json.loads(document.stdout)
    assert found["by_owner"] is None
    overdue = found["overdue"]
    assert f"Overdue PQLs, still PQLs now ({len(overdue)})" in text.stdout
    assert all(row["account_id"] in text.stdout for row in overdue)
    for row in overdue:
        assert isinstance(row["hours_overdue"], float) and isinstance(row["score"], float)
        assert row["deadline"][:10].count("-") == 2 and "T" in row["deadline"]


def test_a_configuration_error_keeps_exit_code_2_and_prints_nothing_on_stdout(tmp_path: Path) -> None:
    (tmp_path / "pql.toml").write_text("horizon_days = 0\n", encoding="utf-8")
    result = sla("--json")
    assert result.exit_code == 2
    assert result.stdout == "" and "horizon_days" in result.stderr
