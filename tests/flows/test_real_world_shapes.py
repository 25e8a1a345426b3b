"""Data shaped like real products, not like the demo: `pql inspect`, `pql train`, `pql score` and
`pql pqls` work end to end on each shape, on DuckDB and PostgreSQL, and the reasons and talking points
name the right things."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from shape_worlds import END, ShapeWorld, attributes_only, config_file, named_events, no_trials, write_world
from typer.testing import CliRunner

from pql.cli import app
from pql.config import load_settings
from pql.db import create_engine
from pql.models.registry import champion_version, read_metadata
from pql.schema import output_tables


def _pql(config: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.output


def _scores(url: str) -> pd.DataFrame:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            table = output_tables(load_settings(None).tables).scores
            return pd.DataFrame(conn.execute(sa.select(table)).mappings().all())
    finally:
        engine.dispose()


def _url(database: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if database == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"duckdb:///{(tmp_path / 'source.duckdb').as_posix()}"


DATABASES = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


def _walk_through(world: ShapeWorld, url: str, root: Path) -> tuple[Path, pd.DataFrame, dict]:
    """What a new user does: inspect, train, score, read the list. Returns the config, the written
    scores and the champion's metadata."""
    write_world(world, url)
    config = config_file(world, root, url)
    inspected = json.loads(_pql(config, "inspect", "--json"))
    assert inspected["training"]["can_train"], inspected["training"]
    assert "registered model" in _pql(config, "train")
    settings = load_settings(config)
    champion = champion_version(settings.model_registry_path)
    assert champion is not None
    meta = read_metadata(settings.model_registry_path, champion)
    assert meta["status"] == "trained"
    _pql(config, "score", "--as-of", END.date().isoformat())
    _pql(config, "pqls")
    scores = _scores(url)
    assert len(scores) == len(world.tables["accounts"])
    return config, scores, meta


def _reasons(scores: pd.DataFrame) -> str:
    return "\n".join(scores.loc[scores["tier"].notna(), "reasons_text"].dropna())


WORLDS: dict[str, Callable[[], ShapeWorld]] = {
    "named_events": named_events,
    "no_trials": no_trials,
    "attributes_only": attributes_only,
}


@pytest.fixture(scope="module")
def worlds() -> dict[str, ShapeWorld]:
    return {name: make() for name, make in WORLDS.items()}


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("database", DATABASES)
def test_event_names_as_trackers_emit_them_train_score_and_explain(
    database: str, worlds: dict[str, ShapeWorld], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    world = worlds["named_events"]

    _, scores, meta = _walk_through(world, _url(database, tmp_path, request), tmp_path)

    assert "count_submit_upgrade_28d" in [*meta["features"]["numeric"]]
    said = _reasons(scores)
    assert "Submit Upgrade:" in said or "Add Friend:" in said
    assert "submit_upgrade" not in said
    talking_points = scores.loc[scores["is_pql"].astype(bool), "talking_point"]
    assert talking_points.notna().all()
    told = "\n".join(talking_points)
    generic = [
        f"they use {name} a lot: ask what they are building with it"
        for name in ("Submit Upgrade", "Add Friend")
    ]
    assert any(line in told for line in generic)
    assert "submit_upgrade" not in told and "add_friend" not in told


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("database", DATABASES)
def test_a_product_without_trials_or_firmographics_trains_and_says_what_it_left_out(
    database: str, worlds: dict[str, ShapeWorld], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    world = worlds["no_trials"]

    config, scores, meta = _walk_through(world, _url(database, tmp_path, request), tmp_path)

    left_out = meta["features"]["left_out"]
    assert left_out["days_in_trial"].startswith("no account was ever in a trial")
    assert left_out["employees"].startswith("the accounts table has no value")
    shown = _pql(config, "models", "show")
    assert "days_in_trial: no account was ever in a trial" in shown
    assert scores["tier"].notna().sum() == scores["ineligible_reason"].isna().sum()


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("database", DATABASES)
def test_attributes_and_conversions_without_any_event_train_score_and_explain(
    database: str, worlds: dict[str, ShapeWorld], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    world = worlds["attributes_only"]

    _, scores, meta = _walk_through(world, _url(database, tmp_path, request), tmp_path)

    assert {"signup_channel", "seats"} <= {*meta["features"]["numeric"], *meta["features"]["categorical"]}
    said = _reasons(scores)
    assert "signed up through paid search" in said and "Seats: " in said
    paid = scores[scores["ineligible_reason"].notna()]
    assert len(paid) == world.converting_accounts() and paid["tier"].isna().all()
