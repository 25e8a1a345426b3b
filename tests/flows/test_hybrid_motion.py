"""The hybrid motion end to end through the CLI: `pql train` on a deal-won label with the opportunities
table, its refusal without that table, and scoring that keeps accounts with an open opportunity off the
tiers, point-in-time, on DuckDB and PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from shape_worlds import DAY, END, ShapeWorld, config_file, with_opportunities, write_world
from typer.testing import CliRunner

from pql.cli import app
from pql.commands import EXIT_USAGE
from pql.config import load_settings
from pql.db import create_engine
from pql.models.registry import list_versions, read_metadata
from pql.schema import output_tables

DATABASES = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
SCORED_AT = END - 20 * DAY


def _pql(config: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.output


def _url(database: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if database == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"duckdb:///{(tmp_path / 'source.duckdb').as_posix()}"


@pytest.fixture(scope="module")
def world() -> ShapeWorld:
    return with_opportunities()


def _open_at(world: ShapeWorld, as_of: datetime) -> dict[str, str]:
    """account_id -> the reason scoring must give, for free accounts with an opportunity open at as_of."""
    opportunities = world.tables["opportunities"]
    still_open = opportunities[
        (opportunities["created_at"] < as_of)
        & (opportunities["closed_at"].isna() | (opportunities["closed_at"] >= as_of))
    ]
    changes = world.tables["plan_changes"]
    paid = set(changes.loc[(changes["to_plan"] == "paid") & (changes["changed_at"] < as_of), "account_id"])
    first = still_open.groupby("account_id")["created_at"].min()
    return {
        account_id: f"open opportunity (created {created:%Y-%m-%d})"
        for account_id, created in first.items()
        if account_id not in paid
    }


def _scores(url: str) -> pd.DataFrame:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            table = output_tables(load_settings(None).tables).scores
            return pd.DataFrame(conn.execute(sa.select(table)).mappings().all())
    finally:
        engine.dispose()


def test_pql_train_on_a_sales_label_without_opportunities_says_which_table_to_load(
    world: ShapeWorld, tmp_path: Path
) -> None:
    tables = {name: frame for name, frame in world.tables.items() if name != "opportunities"}
    url = f"duckdb:///{(tmp_path / 'source.duckdb').as_posix()}"
    write_world(ShapeWorld(world.name, tables, world.settings), url)
    config = config_file(world, tmp_path, url)

    result = CliRunner().invoke(app, ["--config", str(config), "train"])

    assert result.exit_code == EXIT_USAGE
    (line,) = [line for line in result.output.splitlines() if "features.label" in line]
    assert "'closed_won' needs the opportunities table" in line
    assert "`pql load opportunities FILE`" in line


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("database", DATABASES)
def test_a_hybrid_world_trains_on_closed_won_and_scores_open_opportunities_as_ineligible(
    database: str, world: ShapeWorld, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _url(database, tmp_path, request)
    write_world(world, url)
    config = config_file(world, tmp_path, url)

    assert "(trained)" in _pql(config, "train")

    settings = load_settings(config)
    (version,) = [row["version"] for row in list_versions(settings.model_registry_path, None)]
    training = read_metadata(settings.model_registry_path, version)["training"]
    assert training["label"] == "closed_won"
    won = training["paths"]["labels"]["closed_won"]
    assert won["converting_accounts"] == training["converting_accounts"] >= 20
    assert won["self_serve_only"] == 0  # every won deal was an opportunity created in the horizon
    shown = _pql(config, "models", "show", version)
    assert "label      closed_won" in shown and "closed_won (trained on)" in shown

    _pql(config, "score", "--as-of", SCORED_AT.date().isoformat())
    scores = _scores(url).set_index("account_id")
    expected = _open_at(world, SCORED_AT)
    said = scores["ineligible_reason"].dropna()
    assert expected and said[said.str.startswith("open opportunity")].to_dict() == expected
    assert scores.loc[list(expected), "tier"].isna().all()
