"""`pql score` and the model registry's trust rules: a signed champion scores quietly, an unsigned one
with a warning, a forged one never runs, and a registry lost after trained models scored fails the run."""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import joblib
import pytest
from typer.testing import CliRunner

from pql.cli import app
from pql.db import databases
from pql.flows import tasks
from pql.models.registry import (
    DEFAULT_FALLBACK_VERSION,
    METADATA_FILE,
    MODEL_FILE,
    promote,
    sha256_of,
    unsigned_warning,
)
from pql.models.training import TrainOutcome, train_and_register

if TYPE_CHECKING:
    from conftest import World

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

KEY = "3c" * 32
FAST_MODEL = {"min_conversions": 10, "bootstrap_rounds": 10, "candidates": ["gradient_boosting"]}


class Tripwire:
    """A pickle that creates `marker` when it is loaded: proof that a file was (not) unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def trained_champion(world: World, **model: object) -> TrainOutcome:
    world.configure(model={**FAST_MODEL, **model})
    settings = world.settings
    with databases(settings) as dbs:
        outcome = train_and_register(dbs.source, dbs.source_tables, settings)
    if not outcome.promoted:  # a small world's model may not beat the points baseline: it scores anyway
        promote(settings.model_registry_path, outcome.version, settings, reason="the test scores with it")
    return outcome


def score(world: World) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--config", world.config, "score", "--as-of", f"{world.end:%Y-%m-%d}"])
    return result.exit_code, result.output


def test_an_unsigned_champion_scores_with_the_warning_in_the_output_the_report_and_the_log(
    world: World, report_of: Callable[[str, str], str], caplog: pytest.LogCaptureFixture
) -> None:
    outcome = trained_champion(world)
    warning = unsigned_warning(world.settings.model_registry_path)
    code, output = score(world)
    assert code == 0, output
    assert f"model {outcome.version}" in output
    assert warning in output.replace("\n", "")
    flow_run_id = re.search(r"Prefect flow run ([0-9a-f-]+)", output)
    assert flow_run_id is not None
    assert warning in report_of("nightly", flow_run_id.group(1))
    with databases(world.settings) as dbs, caplog.at_level(logging.WARNING):
        tasks.load_model.fn(dbs, world.settings)
    assert warning in caplog.messages


def test_a_forged_champion_never_runs_when_a_key_is_set(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PQL_MODEL__SIGNING_KEY", KEY)
    outcome = trained_champion(world)
    code, output = score(world)
    assert code == 0, output
    assert "registry is unsigned" not in output
    before = world.table("scores")

    marker = tmp_path / "forged-code-ran"
    joblib.dump(Tripwire(marker), outcome.path / MODEL_FILE)
    meta = json.loads((outcome.path / METADATA_FILE).read_text())
    meta["sha256"] = sha256_of(outcome.path / MODEL_FILE)
    (outcome.path / METADATA_FILE).write_text(json.dumps(meta))
    code, output = score(world)
    assert code == 1
    assert "run failed on data" in output and "signature does not verify" in output
    assert not marker.exists()
    assert world.table("scores").equals(before)
    assert world.table("runs")["status"].iloc[-1] == "failed"


def test_a_deleted_registry_fails_the_run_unless_the_points_fallback_is_chosen(world: World) -> None:
    outcome = trained_champion(world)
    code, output = score(world)
    assert code == 0, output
    before = world.table("scores")
    assert set(before["model_version"]) == {outcome.version}

    shutil.rmtree(world.settings.model_registry_path)
    code, output = score(world)
    assert code == 1, output
    assert f"earlier runs scored with trained model {outcome.version}" in output
    assert 'model.fallback = "points"' in output
    assert world.table("scores").equals(before)

    world.configure(model={**FAST_MODEL, "fallback": "points"})
    code, output = score(world)
    assert code == 0, output
    assert f"model {DEFAULT_FALLBACK_VERSION}" in output and "fallback: points baseline" in output
    assert set(world.table("scores")["model_version"]) == {DEFAULT_FALLBACK_VERSION}
