"""`pql demo` end to end: a demo world, a trained model, the nightly flow, a printed PQL table."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pql.cli import app
from pql.config import load_settings
from pql.db import create_engine
from pql.schema import output_tables


def run_demo(config: Path) -> str:
    result = CliRunner().invoke(app, ["--config", str(config), "demo", "--accounts", "400", "--days", "120"])
    assert result.exit_code == 0, result.output
    return result.output


def pql_scores(url: str) -> list[sa.Row]:
    engine = create_engine(url)
    try:
        scores = output_tables(load_settings().tables).scores
        with engine.connect() as conn:
            return conn.execute(sa.select(scores.c.account_id, scores.c.is_pql)).all()
    finally:
        engine.dispose()


def demo_config(tmp_path: Path, source_url: str | None = None) -> Path:
    lines = [f'state_dir = "{(tmp_path / ".pql").as_posix()}"', "[model]", "min_conversions = 10"]
    if source_url:
        lines.insert(0, f'source_url = "{source_url}"')
    path = tmp_path / "pql.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_demo_on_the_embedded_database_prints_pqls_and_fills_pql_scores(tmp_path: Path) -> None:
    output = run_demo(demo_config(tmp_path))
    assert "1/3 generating a demo world of 400 accounts" in output
    assert "top 10 PQLs" in output
    rows = pql_scores(f"duckdb:///{(tmp_path / '.pql' / 'pql.duckdb').as_posix()}")
    assert len(rows) > 300
    assert any(is_pql for _, is_pql in rows)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.usefixtures("prefect_api")
def test_demo_on_postgresql_prints_pqls_and_fills_pql_scores(tmp_path: Path, postgres_url: str) -> None:
    output = run_demo(demo_config(tmp_path, postgres_url))
    assert "top 10 PQLs" in output
    rows = pql_scores(postgres_url)
    assert len(rows) > 300
    assert any(is_pql for _, is_pql in rows)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_demo_reuses_an_existing_world(tmp_path: Path) -> None:
    config = demo_config(tmp_path)
    run_demo(config)
    assert "1/3 using the accounts already in" in run_demo(config)
