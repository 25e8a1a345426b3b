"""Fixtures: the clean source world of `gate_worlds` in DuckDB, or in each supported database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gate_worlds import World, make_world

from pql.config import Settings


@pytest.fixture
def world(duckdb_url: str, settings: Settings) -> Iterator[World]:
    """The clean world in DuckDB."""
    yield from make_world(duckdb_url, settings)


@pytest.fixture
def any_world(any_db_url: str, settings: Settings) -> Iterator[World]:
    """The clean world in each supported database."""
    yield from make_world(any_db_url, settings)
