"""End to end on a seeded demo world: features from the database, training, registry, scoring model."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from pql.config import load_settings
from pql.db import create_engine
from pql.demo.world import write_demo_world
from pql.models.registry import load_scoring_model, read_metadata
from pql.models.training import train_and_register
from pql.schema import source_tables

WORLD_END = datetime(2025, 6, 1)


@pytest.mark.slow
def test_the_model_beats_every_baseline_it_is_not_on_pr_auc_on_a_seeded_demo_world(tmp_path: Path) -> None:
    settings = load_settings(None, state_dir=tmp_path / ".pql", model={"bootstrap_rounds": 20})
    engine = create_engine(settings.source_database_url)
    tables = source_tables(settings.tables)
    # 182 days of weekly snapshots + the 30-day horizon + the 28-day feature windows.
    write_demo_world(engine, tables, settings, accounts=3000, days=240, seed=1, end=WORLD_END)
    outcome = train_and_register(engine, tables, settings)
    engine.dispose()

    metrics = outcome.metrics
    meta = read_metadata(settings.model_registry_path, outcome.version)
    verdicts = {name: row["verdict"] for name, row in meta["metrics"]["comparison"].items()}
    for baseline in ("points", "logreg", "most_active"):
        if verdicts[baseline] != "is_the_model":  # a chosen logistic regression is the logreg baseline
            assert metrics["pr_auc"] > metrics[f"pr_auc_{baseline}"], (baseline, metrics)
    assert outcome.promoted
    assert load_scoring_model(settings).version == outcome.version
    training = meta["training"]
    assert training["data_end"] < WORLD_END.isoformat()
    assert training["split"]["train_label_end"] <= training["split"]["test_from"]
