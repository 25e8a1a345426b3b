"""`pql train` and `pql models ...` on a Typer app carrying only these commands."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from model_frames import SIGNING_KEY, Trained
from typer.testing import CliRunner, Result

from pql.commands.models import register
from pql.config import load_settings
from pql.db import create_engine
from pql.demo.world import write_demo_world
from pql.models.registry import MODEL_FILE, TOO_LITTLE_DATA, list_versions
from pql.schema import create_tables, source_tables


def invoke(
    state_dir: Path, *args: str, source_url: str | None = None, signing_key: str | None = None
) -> Result:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """pql"""

    register(app)
    env = {
        "PQL_STATE_DIR": str(state_dir),
        "PQL_SOURCE_URL": source_url,
        "PQL_MODEL__SIGNING_KEY": signing_key,
    }
    return CliRunner().invoke(app, list(args), env=env)


def test_list_marks_the_champion(trained: Trained) -> None:
    result = invoke(trained.settings.state_dir, "models", "list")
    assert result.exit_code == 0, result.output
    assert trained.outcome.version in result.output
    assert "*" in result.output


def test_list_says_a_version_is_unsigned_and_warns(trained: Trained) -> None:
    result = invoke(trained.settings.state_dir, "models", "list")
    assert result.exit_code == 0, result.output
    assert "unsigned" in result.output
    assert "registry is unsigned: anyone who can write" in result.output
    assert "set PQL_MODEL__SIGNING_KEY" in result.output


def test_list_and_show_say_a_signed_version_verifies_with_the_key(signed: Trained) -> None:
    state_dir = signed.settings.state_dir
    listed = invoke(state_dir, "models", "list", signing_key=SIGNING_KEY)
    assert listed.exit_code == 0, listed.output
    assert "verified" in listed.output and "registry is unsigned" not in listed.output
    shown = invoke(state_dir, "models", "show", signing_key=SIGNING_KEY)
    assert "signed; verifies with the current key" in shown.output
    assert SIGNING_KEY not in listed.output + shown.output
    other = invoke(state_dir, "models", "show", signing_key="a7" * 32)
    assert "does NOT verify with the current key" in other.output


def test_list_of_an_empty_registry_says_how_to_fill_it(tmp_path: Path) -> None:
    result = invoke(tmp_path / ".pql", "models", "list")
    assert result.exit_code == 0
    assert "run `pql train`" in result.output


def test_show_prints_metrics_against_baselines_and_the_verdicts(trained: Trained) -> None:
    result = invoke(trained.settings.state_dir, "models", "show", trained.outcome.version)
    assert result.exit_code == 0, result.output
    assert "(champion)" in result.output
    for text in ("PR-AUC", "logistic regression", "decayed points", "baseline on PR-AUC", "report.html"):
        assert text in result.output


def test_show_of_an_unknown_version_exits_1_with_the_fix(trained: Trained) -> None:
    result = invoke(trained.settings.state_dir, "models", "show", "20990101T000000Z-deadbeef")
    assert result.exit_code == 1
    assert "pql models list" in result.output


def test_promote_and_rollback_by_hand(retrained: tuple[Trained, Trained]) -> None:
    champion, challenger = retrained
    state_dir = challenger.settings.state_dir
    promoted = invoke(state_dir, "models", "promote", challenger.outcome.version)
    assert promoted.exit_code == 0, promoted.output
    assert f"{challenger.outcome.version} is now the champion" in promoted.output
    rolled = invoke(state_dir, "models", "rollback")
    assert rolled.exit_code == 0, rolled.output
    assert f"{champion.outcome.version} is the champion again" in rolled.output


def test_rollback_without_an_earlier_champion_exits_1(trained: Trained) -> None:
    result = invoke(trained.settings.state_dir, "models", "rollback")
    assert result.exit_code == 1
    assert "only champion so far" in result.output


def test_promoting_a_tampered_version_exits_1_and_names_the_checksum(
    retrained: tuple[Trained, Trained],
) -> None:
    _, challenger = retrained
    (challenger.outcome.path / MODEL_FILE).write_bytes(b"changed")
    result = invoke(challenger.settings.state_dir, "models", "promote", challenger.outcome.version)
    assert result.exit_code == 1
    assert "sha256" in result.output


def test_train_with_an_unreadable_end_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke(tmp_path / ".pql", "train", "--end", "next tuesday")
    assert result.exit_code == 2
    assert "not an ISO date" in result.output


def test_train_on_empty_source_tables_exits_1(tmp_path: Path) -> None:
    settings = load_settings(None, state_dir=tmp_path / ".pql")
    engine = create_engine(settings.source_database_url)
    create_tables(engine, source_tables(settings.tables))
    engine.dispose()
    result = invoke(settings.state_dir, "train")
    assert result.exit_code == 1
    assert "empty" in result.output


def test_train_on_a_world_with_too_few_conversions_exits_1_and_registers_the_fallback(
    tmp_path: Path, any_db_url: str
) -> None:
    settings = load_settings(None, state_dir=tmp_path / ".pql", source_url=any_db_url)
    engine = create_engine(settings.source_database_url)
    write_demo_world(
        engine,
        source_tables(settings.tables),
        settings,
        accounts=40,
        days=120,
        seed=3,
        end=datetime(2025, 6, 1),
    )
    engine.dispose()
    result = invoke(settings.state_dir, "train", source_url=any_db_url)
    assert result.exit_code == 1
    assert "Training refused: only" in result.output
    (entry,) = list_versions(settings.model_registry_path)
    assert entry["status"] == TOO_LITTLE_DATA and entry["is_champion"]


def test_models_without_a_subcommand_shows_help(tmp_path: Path) -> None:
    result = invoke(tmp_path / ".pql", "models")
    assert result.exit_code == 2
    assert "Usage" in result.output


def test_show_without_a_version_shows_the_champion(trained: Trained) -> None:
    result = invoke(trained.settings.state_dir, "models", "show")
    assert result.exit_code == 0, result.output
    assert f"model {trained.outcome.version} (champion)" in result.output


def test_show_without_a_version_or_a_champion_exits_1(tmp_path: Path) -> None:
    result = invoke(tmp_path / ".pql", "models", "show")
    assert result.exit_code == 1
    assert "No champion model" in result.output
