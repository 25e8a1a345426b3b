"""Shared fixtures: settings on a temporary state directory, and one empty database per engine."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pql.config import Settings, load_settings

POSTGRES_ENV = "PQL_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's own pql.toml or PQL_* variables."""
    for name in list(os.environ):
        if name.startswith("PQL_") and name != POSTGRES_ENV:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _fresh_postgres_database() -> Iterator[str]:
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (set by .ci/run)")
    name = f"pql_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database of its own, dropped afterwards."""
    yield from _fresh_postgres_database()


@pytest.fixture
def duckdb_url(tmp_path: Path) -> str:
    return f"duckdb:///{(tmp_path / 'source.duckdb').as_posix()}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'source.sqlite').as_posix()}"


@pytest.fixture(params=["duckdb", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each supported engine in turn: an empty database."""
    if request.param == "postgres":
        yield from _fresh_postgres_database()
    elif request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'any.sqlite').as_posix()}"
    else:
        yield f"duckdb:///{(tmp_path / 'any.duckdb').as_posix()}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings on a temporary state directory (embedded DuckDB)."""
    return load_settings(None, state_dir=tmp_path / ".pql")
