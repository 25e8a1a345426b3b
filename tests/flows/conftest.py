"""Fixtures for the flow tests: one Prefect test server per session, one small demo world copied per test."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness

from pql.config import Settings, TablesConfig, load_settings
from pql.db import create_engine
from pql.demo.world import write_demo_world
from pql.flows.artifacts import artifact_key
from pql.flows.nightly import nightly
from pql.flows.runner import QUIET_PREFECT
from pql.flows.summary import RunSummary
from pql.schema import create_tables, output_tables, source_tables

# The world ends at this instant (exclusive): runs score as of it, or as of days before it.
WORLD_END = datetime(2026, 3, 2)


@pytest.fixture(autouse=True)
def _restored_environment() -> Iterator[None]:
    """The commands set Prefect's console defaults in the environment; undo that after each test."""
    before = {name: os.environ.get(name) for name in QUIET_PREFECT}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A temporary Prefect server and database for the whole session (starting one takes seconds)."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file holding a 400-account, 120-day demo world, written once per session."""
    path = tmp_path_factory.mktemp("world") / "world.duckdb"
    url = f"duckdb:///{path.as_posix()}"
    settings = load_settings(None, source_url=url)
    engine = create_engine(url)
    try:
        tables = source_tables(settings.tables)
        create_tables(engine, tables)
        write_demo_world(engine, tables, settings, accounts=400, days=120, seed=7, end=WORLD_END)
    finally:
        engine.dispose()
    return path


def _toml(value: object) -> str:
    return json.dumps(value)  # strings, numbers and booleans are written alike in JSON and TOML


@dataclass
class World:
    """One test's pipeline: its copy of the world (the source), its CRM and its settings file."""

    root: Path
    source_url: str
    crm_url: str
    end: datetime = WORLD_END  # the world's last instant (exclusive): the latest as_of with a full window

    @property
    def config(self) -> str:
        return str(self.root / "pql.toml")

    def configure(self, *, model: dict[str, object] | None = None, **flows: object) -> str:
        """Write the settings file: this world, no retry delays and no waiting for the run lock unless
        given, `model` settings if given; returns its path."""
        options = {"retry_delay_seconds": 0, "lock_timeout_seconds": 0, **flows}
        lines = [
            f"source_url = {_toml(self.source_url)}",
            f"crm_url = {_toml(self.crm_url)}",
            f"state_dir = {_toml((self.root / '.pql').as_posix())}",
            "[flows]",
            *(f"{key} = {_toml(value)}" for key, value in options.items()),
            "[model]",
            *(f"{key} = {_toml(value)}" for key, value in (model or {}).items()),
        ]
        Path(self.config).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self.config

    @property
    def settings(self) -> Settings:
        return load_settings(Path(self.config))

    def table(self, key: str) -> pd.DataFrame:
        """One of the pipeline's tables ('scores', 'history', 'runs'), sorted; empty if it does not exist."""
        table = getattr(output_tables(TablesConfig()), key)
        engine = create_engine(self.crm_url)
        try:
            if not sa.inspect(engine).has_table(table.name):
                return pd.DataFrame()
            with engine.connect() as conn:
                frame = pd.DataFrame(conn.execute(sa.select(table)).mappings().all())
        finally:
            engine.dispose()
        order = [name for name in ("as_of", "account_id", "started_at", "run_id") if name in frame.columns]
        return frame.sort_values(order).reset_index(drop=True) if not frame.empty else frame


def new_world(template: Path, root: Path) -> World:
    """A copy of the demo world under `root`; source and CRM share the DuckDB file."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "pql.duckdb"
    shutil.copyfile(template, path)
    url = f"duckdb:///{path.as_posix()}"
    found = World(root=root, source_url=url, crm_url=url)
    found.configure()
    return found


@pytest.fixture
def make_world(world_template: Path, tmp_path: Path) -> Callable[[str], World]:
    """Fresh copies of the demo world for this test, one folder each."""
    return lambda name: new_world(world_template, tmp_path / name)


@pytest.fixture
def world(make_world: Callable[[str], World]) -> World:
    """A fresh copy of the demo world for this test."""
    return make_world("world")


def published_report(kind: str, flow_run_id: str) -> str:
    """The markdown report a flow run published for `kind` (there must be exactly one)."""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    key = artifact_key(kind)
    (found,) = [item for item in artifacts if item.key == key and str(item.flow_run_id) == flow_run_id]
    assert found.type == "markdown"
    return str(found.data)


@pytest.fixture
def report_of() -> Callable[[str, str], str]:
    """Reads the report a flow run published: report_of(kind, flow_run_id)."""
    return published_report


@pytest.fixture(scope="session")
def scored(
    prefect_api: None, world_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[World, RunSummary]:
    """One successful sequential nightly run on its own copy of the world, read (never written) by
    several tests."""
    world = new_world(world_template, tmp_path_factory.mktemp("scored"))
    return world, nightly(as_of=world.end, config=world.config)
