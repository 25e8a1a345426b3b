"""Failures that reach the command line: one line each, the documented exit code, never a traceback,
never a password."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pql.cli import app
from pql.commands import masked_text

FIRST_STEPS = ("pql init", "pql load TABLE FILE", "pql demo")


def pql(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def closed_port() -> int:
    """A localhost port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("command", ["sla", "report", "train"])
def test_a_command_in_a_fresh_folder_says_the_database_file_is_missing_and_how_to_make_it(
    tmp_path: Path, command: str
) -> None:
    code, output = pql(command)
    assert code == 1, output
    assert "The database file .pql/pql.duckdb does not exist." in output
    assert all(step in output for step in FIRST_STEPS)
    assert "Traceback" not in output
    assert not (tmp_path / ".pql" / "pql.duckdb").exists()


@pytest.mark.parametrize(
    ("command", "table"), [("sla", "pql_score_history"), ("report", "plan_changes"), ("train", "events")]
)
def test_a_database_without_the_tables_names_the_missing_table_and_how_to_create_it(
    any_db_url: str, command: str, table: str
) -> None:
    sa.create_engine(any_db_url).connect().close()  # an empty database, file included
    code, output = pql(command, env={"PQL_SOURCE_URL": any_db_url})
    assert code == 1, output
    assert f"`pql {command}` could not" in output
    assert f"table {table} does not exist in database " in output
    assert all(step in output for step in FIRST_STEPS)
    assert "Traceback" not in output and "[SQL:" not in output


def test_an_unreachable_database_is_one_line_naming_it_with_the_password_masked() -> None:
    url = f"postgresql+psycopg://pql:S3cret@127.0.0.1:{closed_port()}/warehouse"
    code, output = pql("train", env={"PQL_SOURCE_URL": url})
    assert code == 1, output
    lines = [line for line in output.strip().splitlines() if not line.startswith("details: ")]
    assert lines[0] == "run failed on the database" and len(lines) == 2
    assert lines[1].startswith("`pql train` could not build the training set")
    assert f"database postgresql+psycopg://pql:***@127.0.0.1:{url.rsplit(':', 1)[1]}" in lines[1]
    assert "Check the URL in the settings and that the server is up and reachable." in lines[1]
    assert "S3cret" not in output


def test_a_state_dir_under_a_regular_file_is_one_line_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder\n", encoding="utf-8")
    code, output = pql("init", env={"PQL_STATE_DIR": "afile/state"})
    assert code == 1, output
    assert "cannot use afile/state: Not a directory." in output
    assert "Check state_dir and registry_path in the settings" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[]", "holds a JSON list, not an object with champion, stack and log"),
        ('{"champion": 5}', "names the champion as 5, not a version string"),
        ('{"champion": "v1", "stack": "v1"}', "has a stack that is not a list of versions"),
    ],
)
@pytest.mark.parametrize("command", [("models", "list"), ("models", "show"), ("models", "rollback")])
def test_a_broken_champion_file_names_the_file_and_how_to_restore_it(
    tmp_path: Path, content: str, problem: str, command: tuple[str, ...]
) -> None:
    champion = tmp_path / ".pql" / "models" / "champion.json"
    champion.parent.mkdir(parents=True)
    champion.write_text(content, encoding="utf-8")
    code, output = pql(*command)
    assert code == 1, output
    assert f".pql/models/champion.json {problem}." in output
    assert "Restore it from a backup, or move it aside and run `pql models promote VERSION`" in output
    assert "Traceback" not in output


def test_a_failed_command_keeps_its_traceback_in_a_log_file_with_the_password_masked(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://pql:S3cret@127.0.0.1:{closed_port()}/warehouse"
    code, output = pql("train", env={"PQL_SOURCE_URL": url})

    assert code == 1 and "Traceback" not in output
    (details,) = [line for line in output.splitlines() if line.startswith("details: ")]
    log = Path(details.removeprefix("details: ")).read_text(encoding="utf-8")
    assert log.startswith("Traceback") and "OperationalError" in log
    assert "S3cret" not in log


def test_masked_text_hides_passwords_in_urls_and_password_parameters() -> None:
    text = "postgresql://u:p%40ss@h/db and host=h password=hunter2 user=u and sqlite:///x.db"

    assert masked_text(text) == "postgresql://u:***@h/db and host=h password=*** user=u and sqlite:///x.db"
