"""Production evaluation end to end on a simulated history written to a real database."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from pql.config import Settings
from pql.db import Databases
from pql.outcomes.evaluation import Evaluation, evaluate

from .conftest import MONDAY, World, shared_world

WEEKS = 10
UNTIL = MONDAY + timedelta(weeks=WEEKS, days=35)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Evaluation, pd.DataFrame]:
    """One simulated history (3,000 accounts, 10 weekly runs) and its evaluation, shared by this module."""
    with shared_world(tmp_path_factory, accounts=3_000, weeks=WEEKS, seed=8) as (settings, history):
        dbs = Databases(settings)
        try:
            return evaluate(dbs, settings, since=MONDAY, until=UNTIL), history
        finally:
            dbs.dispose()


def test_every_account_that_qualified_is_one_pql_outcome(evaluated: tuple[Evaluation, pd.DataFrame]) -> None:
    evaluation, history = evaluated
    qualified = history[history["is_pql"] | history["is_control"]]
    assert sorted(evaluation.pql_outcomes["account_id"]) == sorted(qualified["account_id"].unique())
    controls = set(qualified.loc[qualified["is_control"], "account_id"])
    assert (
        set(evaluation.pql_outcomes.loc[evaluation.pql_outcomes["segment"] == "control", "account_id"])
        == controls
    )


def test_no_account_is_a_non_pql_in_or_after_the_week_it_qualified(
    evaluated: tuple[Evaluation, pd.DataFrame],
) -> None:
    evaluation, _ = evaluated
    entered = evaluation.pql_outcomes.set_index("account_id")["cohort_week"]
    baseline = evaluation.non_pql_outcomes
    entered_week = baseline["account_id"].map(entered)
    assert not (entered_week <= baseline["cohort_week"]).any()
    assert baseline["cohort_week"].nunique() == WEEKS


def test_the_uplift_interval_covers_the_simulated_effect_of_outreach(
    evaluated: tuple[Evaluation, pd.DataFrame],
) -> None:
    uplift = evaluated[0].uplift
    # The simulation converts treated PQLs at 30% and control PQLs at 15%.
    assert uplift.ci_low < 0.15 < uplift.ci_high
    assert uplift.uplift == pytest.approx(0.15, abs=0.08)
    assert uplift.treated + uplift.control == len(evaluated[0].pql_outcomes)


def test_pqls_convert_several_times_more_often_than_non_pqls(
    evaluated: tuple[Evaluation, pd.DataFrame],
) -> None:
    outcomes = evaluated[0].outcomes
    rate = outcomes[outcomes["is_mature"]].groupby("segment")["is_converted"].mean()
    assert rate["pql"] > 5 * rate["non_pql"]


def test_sla_covers_the_treated_pqls_only(evaluated: tuple[Evaluation, pd.DataFrame]) -> None:
    evaluation, _ = evaluated
    treated = (evaluation.pql_outcomes["segment"] == "pql").sum()
    total = evaluation.sla.by_owner.set_index("owner").loc["all owners"]
    assert total["pqls"] == treated
    assert total["pending"] == 0
    assert evaluation.sla.touch_source == "crm_accounts.last_touch_at"


def test_drift_history_comes_from_the_run_ledger(evaluated: tuple[Evaluation, pd.DataFrame]) -> None:
    drift = evaluated[0].drift
    seats = drift[drift["name"] == "seats"].sort_values("as_of")
    assert len(seats) == WEEKS
    assert seats["psi"].iloc[-1] == pytest.approx(0.05 + 0.03 * (WEEKS - 1))


def test_an_empty_history_evaluates_to_empty_tables(world: World, settings: Settings) -> None:
    dbs = Databases(settings.model_copy(update={"source_url": world.url}))
    try:
        evaluation = evaluate(dbs, dbs.settings, since=datetime(2025, 1, 1), until=datetime(2025, 2, 1))
    finally:
        dbs.dispose()
    assert evaluation.outcomes.empty
    assert evaluation.calibration.empty
    assert evaluation.uplift is None
    assert evaluation.sla.by_owner["owner"].tolist() == ["all owners"]
