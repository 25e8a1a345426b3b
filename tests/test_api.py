"""The Python API (`pql.connect()`): the README's notebook walk-through runs as written, and each method
does what the command it stands for does, on a small demo world that one module-wide run trained and
scored."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from prefect.testing.utilities import prefect_test_harness

import pql
from pql.api import Project, UnknownAccountError
from pql.config import ConfigError
from pql.demo.world import write_demo_world
from pql.features.training import training_set
from pql.flows.locking import RunLockBusy
from pql.flows.locking import registry_lock as flow_registry_lock
from pql.flows.runner import QUIET_PREFECT
from pql.models.registry import champion_version, promote
from pql.schema import create_tables

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
# Relative paths: a copy of the folder is a whole project of its own.
SETTINGS = """\
source_url = "duckdb:///pql.duckdb"
state_dir = ".pql"
[flows]
retry_delay_seconds = 0
lock_timeout_seconds = 0
[model]
min_conversions = 10
bootstrap_rounds = 10
candidates = ["gradient_boosting"]
"""


def walk_through() -> str:
    """The first ```python block after the README's "Python API" heading."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python API") :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "README: no ```python block in the Python API section"
    return found.group(1)


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def _restored_environment() -> Iterator[None]:
    """`score` sets Prefect's console defaults in the environment; undo that after each test."""
    before = {name: os.environ.get(name) for name in QUIET_PREFECT}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def scored_folder(prefect_api: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project folder (pql.toml, DuckDB, registry) whose demo world ends at the start of today, with
    a champion trained through the API and one scoring run written to the CRM."""
    folder = tmp_path_factory.mktemp("scored")
    (folder / "pql.toml").write_text(SETTINGS, encoding="utf-8")
    before = {name: os.environ.get(name) for name in QUIET_PREFECT}
    with contextlib.chdir(folder), pql.connect() as project:
        create_tables(project.source, project.source_tables)
        write_demo_world(
            project.source, project.source_tables, project.settings, accounts=300, days=120, seed=7
        )
        outcome = project.train()
        if (
            not outcome.promoted
        ):  # a small world's model may lose to the points baseline: score with it anyway
            promote(
                project.settings.model_registry_path, outcome.version, project.settings, reason="the test"
            )
        summary = project.score(dry_run=False)
        assert summary.run_id is not None and summary.pqls > 0
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
    yield folder


@pytest.fixture
def folder(scored_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own copy of the scored project, as the working directory."""
    copy = tmp_path / "project"
    shutil.copytree(scored_folder, copy)
    monkeypatch.chdir(copy)
    return copy


@pytest.fixture
def project(folder: Path) -> Iterator[Project]:
    with pql.connect() as opened:
        yield opened


def crm_table(project: Project, name: str) -> pd.DataFrame:
    with project.crm.connect() as conn:
        frame = pd.read_sql(sa.text(f"SELECT * FROM {name}"), conn)
    return frame.sort_values(list(frame.columns[:2])).reset_index(drop=True)


@pytest.mark.usefixtures("prefect_api")
def test_the_readme_walk_through_runs_as_written(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(walk_through(), str(README), "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    assert "<pql.Project source=duckdb:///pql.duckdb" in printed
    assert "score" in printed and "model " in printed


def test_import_pql_stays_light_and_connect_is_there_on_first_use() -> None:
    code = (
        "import sys, pql, pql.config\n"
        "heavy = [m for m in ('prefect', 'sklearn', 'great_expectations', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert pql.connect.__module__ == 'pql.api'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_connect_with_a_bad_setting_raises_the_configuration_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("horizon_days = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="horizon_days"):
        pql.connect(config)


def test_connect_to_a_settings_file_that_does_not_exist_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: configuration file not found"):
        pql.connect(tmp_path / "missing.toml")


def test_a_project_prints_its_databases_with_passwords_masked() -> None:
    project = pql.connect(crm_url="postgresql+psycopg://pql:S3cret@db.internal:5432/crm")
    shown = repr(project)
    assert "crm=postgresql+psycopg://pql:***@db.internal:5432/crm" in shown
    assert "source=duckdb:///.pql/pql.duckdb" in shown and "S3cret" not in shown


@pytest.mark.usefixtures("prefect_api")
def test_a_database_url_kept_in_a_prefect_secret_block_is_read_from_it(folder: Path) -> None:
    from prefect.blocks.system import Secret

    url = f"duckdb:///{(folder / 'pql.duckdb').as_posix()}"
    Secret(value=url).save("pql-api-test-source", overwrite=True)
    with pql.connect(source_url="prefect_secret://pql-api-test-source") as project:
        assert "source=prefect_secret://pql-api-test-source" in repr(project)
        assert project.source.url.render_as_string() == url
        assert len(project.pqls()) > 0


def test_engines_are_made_once_and_close_disposes_them(project: Project) -> None:
    engine = project.source
    assert project.source is engine and project.crm is engine  # one URL, one engine
    project.close()
    assert project.source is not engine  # a closed project opens afresh when used again


def test_features_are_one_row_per_account_that_existed_at_the_instant(project: Project) -> None:
    as_of = project.today() - timedelta(days=3)
    features = project.features(as_of)
    with project.source.connect() as conn:
        query = sa.text("SELECT count(*) FROM accounts WHERE created_at < :as_of")
        accounts = conn.execute(query, {"as_of": as_of}).scalar_one()
    assert features["account_id"].is_unique and len(features) == accounts
    assert set(features["as_of"]) == {as_of}


def test_dates_and_texts_are_read_in_the_configured_time_zone_and_naive_datetimes_as_utc() -> None:
    project = pql.connect(timezone="Europe/Paris")
    midnight_in_paris = datetime(2026, 2, 28, 23)
    assert project.instant("2026-03-01") == project.instant(date(2026, 3, 1)) == midnight_in_paris
    assert project.instant(datetime(2026, 3, 1)) == datetime(2026, 3, 1)  # as the frames hold it
    with pytest.raises(ValueError, match="'yesterday' is not an ISO date"):
        project.instant("yesterday")


def test_the_training_set_is_the_one_pql_train_builds(project: Project) -> None:
    built = project.training_set()
    expected = training_set(project.source, project.source_tables, project.settings)
    pd.testing.assert_frame_equal(built, expected)
    assert built["label"].sum() > 0


def test_train_takes_the_registry_lock_the_retrain_flow_holds(project: Project) -> None:
    settings = project.settings
    before = champion_version(settings.model_registry_path)
    retrain = flow_registry_lock(settings, timeout_seconds=0, holder="pql retrain (flow run 42)")
    with retrain, pytest.raises(RunLockBusy, match=r"flow run 42"):
        project.train()
    assert champion_version(settings.model_registry_path) == before


@pytest.mark.usefixtures("prefect_api")
def test_score_is_a_dry_run_by_default_and_writes_nothing(project: Project) -> None:
    scores, runs = crm_table(project, "pql_scores"), crm_table(project, "pql_runs")
    summary = project.score()
    assert summary.dry_run and summary.run_id is None and summary.changes is not None
    assert summary.accounts_scored == len(scores)
    pd.testing.assert_frame_equal(crm_table(project, "pql_scores"), scores)
    pd.testing.assert_frame_equal(crm_table(project, "pql_runs"), runs)


@pytest.mark.usefixtures("prefect_api")
def test_settings_given_to_connect_reach_the_scoring_flow(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no pql.toml here: the flow sees the project only through the overrides
    state = folder / ".pql"
    url = f"duckdb:///{(folder / 'pql.duckdb').as_posix()}"
    with pql.connect(source_url=url, state_dir=state, flows={"retry_delay_seconds": 0}) as project:
        summary = project.score()
    assert summary.model_version == champion_version(state / "models")
    assert summary.accounts_scored > 0


def test_pqls_lists_the_current_pqls_best_first_with_names(project: Project) -> None:
    listed = project.pqls()
    assert len(listed) > 0 and listed["is_pql"].all()
    assert listed["score"].is_monotonic_decreasing
    assert listed["name"].notna().all()


def test_pqls_of_an_owner_are_only_theirs(project: Project) -> None:
    everyone = project.pqls()
    owner = everyone["routed_to"].value_counts().index[0]
    theirs = project.pqls(owner=owner)
    assert set(theirs["routed_to"]) == {owner}
    assert list(theirs["account_id"]) == list(everyone.loc[everyone["routed_to"] == owner, "account_id"])


def test_pqls_top_keeps_the_best(project: Project) -> None:
    assert list(project.pqls(top=2)["account_id"]) == list(project.pqls()["account_id"][:2])


def test_explain_reads_the_stored_score_of_a_pql(project: Project) -> None:
    best = project.pqls(top=1).iloc[0]
    explained = project.explain(best["account_id"])
    assert explained.stored and explained.is_pql
    assert (explained.score, explained.tier, explained.playbook) == (
        best["score"],
        best["tier"],
        best["playbook"],
    )
    assert explained.name == best["name"] and explained.model_version == best["model_version"]
    lines = best["reasons_text"].splitlines()
    assert [f"{'+' if r.direction == 'up' else '-'} {r.phrase}" for r in explained.reasons] == lines
    assert all((r.impact_points > 0) == (r.direction == "up") for r in explained.reasons)
    assert explained.reasons[0].phrase in str(explained)


def test_explain_and_pqls_carry_the_talking_point_of_a_pql(project: Project) -> None:
    best = project.pqls(top=1).iloc[0]
    explained = project.explain(best["account_id"])
    assert explained.talking_point and explained.talking_point == best["talking_point"]
    assert f"say: {explained.talking_point}" in str(explained)


def test_explain_gives_no_talking_point_to_an_account_that_is_no_pql(project: Project) -> None:
    scores = crm_table(project, "pql_scores")
    quiet = scores.loc[~scores["is_pql"].astype(bool), "account_id"].iloc[0]
    explained = project.explain(quiet)
    assert explained.stored and not explained.is_pql
    assert explained.talking_point is None and "say:" not in str(explained)


def test_explain_computes_an_as_of_without_a_stored_score_with_the_champion(project: Project) -> None:
    account = project.pqls(top=1).iloc[0]["account_id"]
    as_of = project.today() - timedelta(days=1)
    explained = project.explain(account, as_of=as_of)
    assert not explained.stored
    assert (explained.account_id, explained.as_of) == (account, as_of)
    assert explained.model_version == champion_version(project.settings.model_registry_path)
    assert 0 <= explained.score <= 100


def test_explain_of_an_unknown_account_names_it(project: Project) -> None:
    with pytest.raises(UnknownAccountError, match="'acme-does-not-exist'"):
        project.explain("acme-does-not-exist")
