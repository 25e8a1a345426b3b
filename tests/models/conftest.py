"""Fixtures for the model tests: fast settings on a temporary registry, and small training sets."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from model_frames import SIGNING_KEY, WINDOW_END, Trained, fast_settings, training_frame
from threadpoolctl import threadpool_limits

from pql.config import Settings, load_settings
from pql.models.training import train_on_frame


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_model() -> Iterator[None]:
    """Small boosters fit fastest on one thread; OpenMP spinning only slows them on a busy machine."""
    with threadpool_limits(1):
        yield


@pytest.fixture
def model_settings(tmp_path: Path) -> Settings:
    return fast_settings(tmp_path / ".pql")


@pytest.fixture(scope="session")
def frame() -> pd.DataFrame:
    """300 accounts x 14 weekly snapshots with a learnable conversion signal (read-only: copy to change)."""
    return training_frame(load_settings(None))


TRAINED_AT = datetime(2025, 5, 8, 12, 0)
RETRAINED_AT = datetime(2025, 5, 9, 12, 0)


@pytest.fixture(scope="session")
def _pristine_registry(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame) -> Trained:
    settings = fast_settings(tmp_path_factory.mktemp("pristine") / ".pql")
    outcome = train_on_frame(frame, settings, window_end=WINDOW_END, created=TRAINED_AT)
    return Trained(settings, outcome)


@pytest.fixture(scope="session")
def _pristine_retrained(
    tmp_path_factory: pytest.TempPathFactory, _pristine_registry: Trained, frame: pd.DataFrame
) -> tuple[Trained, Trained]:
    state_dir = tmp_path_factory.mktemp("retrained") / ".pql"
    shutil.copytree(_pristine_registry.settings.state_dir, state_dir)
    settings = fast_settings(state_dir)
    first = _private(_pristine_registry, state_dir)
    second = train_on_frame(frame, settings, window_end=WINDOW_END, created=RETRAINED_AT)
    return first, Trained(settings, second)


@pytest.fixture(scope="session")
def _pristine_signed(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame) -> Trained:
    settings = fast_settings(tmp_path_factory.mktemp("signed") / ".pql", signing_key=SIGNING_KEY)
    outcome = train_on_frame(frame, settings, window_end=WINDOW_END, created=TRAINED_AT)
    return Trained(settings, outcome)


def _private(pristine: Trained, state_dir: Path) -> Trained:
    if not state_dir.exists():
        shutil.copytree(pristine.settings.state_dir, state_dir)
    key = pristine.settings.model.signing_key
    settings = fast_settings(state_dir, **({} if key is None else {"signing_key": key.get_secret_value()}))
    outcome = replace(pristine.outcome, path=settings.model_registry_path / pristine.outcome.version)
    return Trained(settings, outcome)


@pytest.fixture
def trained(_pristine_registry: Trained, tmp_path: Path) -> Trained:
    """A private copy of a registry with one trained champion (tests may tamper with it)."""
    return _private(_pristine_registry, tmp_path / ".pql")


@pytest.fixture
def signed(_pristine_signed: Trained, tmp_path: Path) -> Trained:
    """A private copy of a registry with one champion trained and signed under SIGNING_KEY."""
    return _private(_pristine_signed, tmp_path / ".pql")


@pytest.fixture
def retrained(_pristine_retrained: tuple[Trained, Trained], tmp_path: Path) -> tuple[Trained, Trained]:
    """A private copy of that registry after a second training on the same data: (champion, challenger)."""
    first, second = _pristine_retrained
    state_dir = tmp_path / ".pql"
    shutil.copytree(second.settings.state_dir, state_dir)
    return _private(first, state_dir), _private(second, state_dir)
