"""Scoring on what the pipeline really hands it: the feature builder's frame, the CRM table of the
demo world, and the points model scoring falls back to before any model is trained."""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
import pytest

from pql.config import Settings
from pql.db import create_engine
from pql.demo.world import write_demo_world
from pql.features.builder import build_features
from pql.models.registry import default_points_model
from pql.schema import create_tables, output_tables, source_tables
from pql.scoring.crm import crm_snapshot
from pql.scoring.rows import pql_rows
from pql.scoring.writeback import current_scores, previous_scores, write_run

END = datetime(2024, 6, 1)


@pytest.fixture
def world(duckdb_url: str, settings: Settings):
    engine = create_engine(duckdb_url)
    sources = source_tables(settings.tables)
    create_tables(engine, sources)
    write_demo_world(engine, sources, settings, accounts=300, days=90, seed=3, end=END)
    outputs = output_tables(settings.tables)
    create_tables(engine, outputs)
    return engine, sources, outputs


def test_a_run_on_built_features_with_the_fallback_model_writes_the_pql_list(
    world, settings: Settings
) -> None:
    engine, sources, outputs = world
    features = build_features(engine, sources, settings, [END])
    model = default_points_model(settings, "no model trained yet")
    crm = crm_snapshot(engine, sources)
    rows = pql_rows(features, model, crm, previous_scores(engine, outputs, END), settings, END)
    write_run(
        engine,
        outputs,
        rows,
        {"run_id": "r1", "as_of": END, "started_at": END, "model_version": model.version},
    )

    scores = current_scores(engine, outputs).set_index("account_id")
    assert len(scores) == len(features)
    pqls = scores[scores["is_pql"]]
    assert len(pqls) > 0
    plan = features.set_index("account_id")["plan"]
    blocked = crm.set_index("account_id")
    assert plan[pqls.index].isin(["free", "trial"]).all()
    assert not blocked.loc[blocked.index.intersection(pqls.index), "do_not_contact"].any()
    assert pqls.groupby("routed_to").size().max() <= settings.scoring.max_new_pqls_per_owner
    # The points link saturates: at a probability of 1 nothing can move it, so nothing explains it.
    unsaturated = pqls[pqls["probability"] < 0.9999]
    assert len(unsaturated) > 0 and unsaturated["reasons_text"].str.len().gt(0).all()
    groups = {reason["group"] for text in pqls["reasons_json"] for reason in json.loads(text)}
    assert groups <= {
        "team_invites",
        "integrations",
        "usage_limits",
        "pricing_interest",
        "projects",
        "exports",
    }
    trials = pqls[plan[pqls.index].eq("trial")]
    assert trials["playbook"].eq("trial_conversion").all() and trials["trial_days_left"].notna().all()
    paid = plan[scores.index].eq("paid")
    assert paid.any() and scores.loc[paid, "tier"].isna().all()
    assert pd.Series(scores.loc[~paid, "tier"]).isin(["very_high", "high", "medium", "low"]).all()
