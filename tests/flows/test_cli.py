"""`pql score`, `pql backfill` and `pql serve`: exit codes 0 (success), 1 (a run that failed on data)
and 2 (usage or configuration), and what each prints."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pql.cli import app

if TYPE_CHECKING:
    from conftest import World


def pql(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_score_writes_the_list_and_prints_the_run(world: World) -> None:
    code, output = pql("--config", world.config, "score", "--as-of", f"{world.end:%Y-%m-%d}")
    assert code == 0, output
    assert "pql nightly as of 2026-03-02 00:00 UTC" in output
    assert "accounts scored" in output and "top 10 PQLs" in output
    assert len(world.table("scores")) > 300


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_score_exits_1_when_the_run_fails_on_data(world: World) -> None:
    empty_window = world.end + timedelta(days=40)
    code, output = pql("--config", world.config, "score", "--as-of", f"{empty_window:%Y-%m-%d}")
    assert code == 1
    assert "run failed on data" in output and "events.window_not_empty" in output


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_score_dry_run_prints_the_changes_and_writes_nothing(world: World) -> None:
    code, output = pql("--config", world.config, "score", "--as-of", f"{world.end:%Y-%m-%d}", "--dry-run")
    assert code == 0, output
    assert "dry run: nothing written" in output and "New PQLs:" in output
    engine = sa.create_engine(world.crm_url)
    try:
        assert not sa.inspect(engine).has_table("pql_runs")
    finally:
        engine.dispose()


def test_score_exits_2_on_a_configuration_error(tmp_path: Path) -> None:
    config = tmp_path / "pql.toml"
    config.write_text("horizon_days = 0\n", encoding="utf-8")
    code, output = pql("--config", str(config), "score")
    assert code == 2
    assert "horizon_days" in output


def test_score_exits_2_on_a_date_it_cannot_read(world: World) -> None:
    code, output = pql("--config", world.config, "score", "--as-of", "yesterday")
    assert code == 2
    assert "yesterday" in output


def test_backfill_exits_2_when_the_range_is_backwards(world: World) -> None:
    code, output = pql("--config", world.config, "backfill", "2026-03-02", "2026-03-01")
    assert code == 2
    assert "is after end" in output


def test_serve_exits_2_when_prefect_yaml_and_the_settings_disagree_on_the_time_zone(world: World) -> None:
    Path(world.config).write_text('timezone = "Europe/Paris"\n', encoding="utf-8")
    prefect_yaml = Path(__file__).resolve().parents[2] / "prefect.yaml"
    code, output = pql("--config", world.config, "serve", "--file", str(prefect_yaml))
    assert code == 2
    assert "timezone: Europe/Paris" in output
