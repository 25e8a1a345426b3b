"""Outcome arithmetic on small cases worked out by hand."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from pql.config import PlansConfig
from pql.outcomes.cohorts import (
    conversion_table,
    conversions,
    lift_table,
    non_pql_outcomes,
    plan_at,
    pql_outcomes,
    snapshot_outcomes,
    week_of,
    weekly_run_ids,
    with_conversion,
)

UTC = ZoneInfo("UTC")
PLANS = PlansConfig()
T0 = datetime(2025, 1, 6)  # a Monday


def _changes(rows: list[tuple]) -> pd.DataFrame:
    """(account_id, changed_at, to_plan, trial_ends_at, mrr) tuples as a plan_changes frame."""
    frame = pd.DataFrame(rows, columns=["account_id", "changed_at", "to_plan", "trial_ends_at", "mrr"])
    frame["changed_at"] = pd.to_datetime(frame["changed_at"])
    frame["trial_ends_at"] = pd.to_datetime(frame["trial_ends_at"])
    return frame


def _entries(rows: list[tuple]) -> pd.DataFrame:
    """(account_id, entered_at, tier, playbook, is_control) tuples as PQL entries."""
    frame = pd.DataFrame(rows, columns=["account_id", "entered_at", "tier", "playbook", "is_control"])
    frame["entered_at"] = pd.to_datetime(frame["entered_at"])
    return frame.assign(probability=0.3, score=70.0, routed_to="ana")


def _conversion(starts: list[tuple], changes: list[tuple], observed_until: datetime) -> pd.DataFrame:
    frame = pd.DataFrame(starts, columns=["account_id", "start_at"])
    return with_conversion(
        frame, conversions(_changes(changes), PLANS), horizon_days=30, observed_until=observed_until
    )


def test_weeks_start_on_monday_in_the_configured_zone() -> None:
    moments = pd.Series(pd.to_datetime(["2025-01-06 00:00", "2025-01-12 23:59", "2025-01-12 16:00"]))
    assert week_of(moments, UTC).dt.strftime("%Y-%m-%d").tolist() == [
        "2025-01-06",
        "2025-01-06",
        "2025-01-06",
    ]
    # 16:00 UTC on Sunday is already Monday 01:00 in Tokyo.
    assert week_of(moments, ZoneInfo("Asia/Tokyo")).dt.strftime("%Y-%m-%d").tolist()[2] == "2025-01-13"


def test_a_conversion_at_the_start_counts_and_one_at_the_horizon_does_not() -> None:
    out = _conversion(
        [("a", T0), ("b", T0)],
        [("a", T0, "paid", None, 10.0), ("b", datetime(2025, 2, 5), "paid", None, 20.0)],
        observed_until=datetime(2025, 6, 1),
    )
    assert out["is_converted"].tolist() == [True, False]
    assert out["days_to_conversion"].iloc[0] == 0
    assert np.isnan(out["days_to_conversion"].iloc[1])


def test_a_conversion_before_the_start_is_not_an_outcome_but_the_next_one_is() -> None:
    out = _conversion(
        [("a", T0)],
        [
            ("a", datetime(2024, 12, 1), "paid", None, 5.0),
            ("a", datetime(2025, 1, 9, 12), "paid", None, 40.0),
        ],
        observed_until=datetime(2025, 6, 1),
    )
    assert out["is_converted"].tolist() == [True]
    assert out["days_to_conversion"].tolist() == [3.5]
    assert out["mrr"].tolist() == [40.0]


def test_conversions_after_the_end_of_observation_are_not_counted_and_the_outcome_is_immature() -> None:
    out = _conversion(
        [("a", T0)], [("a", datetime(2025, 1, 20), "paid", None, None)], observed_until=datetime(2025, 1, 15)
    )
    assert out["is_converted"].tolist() == [False]
    assert out["is_mature"].tolist() == [False]


def test_an_outcome_is_mature_once_its_whole_horizon_is_observed() -> None:
    starts = [("a", T0), ("b", datetime(2025, 1, 7))]
    out = _conversion(starts, [], observed_until=datetime(2025, 2, 5))
    assert out["is_mature"].tolist() == [True, False]


def test_the_plan_at_a_moment_comes_from_changes_strictly_before_it() -> None:
    changes = _changes(
        [
            ("a", datetime(2025, 1, 1), "free", None, None),
            ("a", T0, "paid", None, 30.0),
            ("b", datetime(2025, 1, 1), "trial", datetime(2025, 1, 15), None),
        ]
    )
    points = pd.DataFrame(
        {
            "account_id": ["a", "a", "b", "b", "c"],
            "at": [T0, datetime(2025, 1, 7), T0, datetime(2025, 1, 15), T0],
        },
        index=[5, 4, 3, 2, 1],
    )
    plan = plan_at(points, changes, PLANS)
    assert plan.tolist() == ["free", "paid", "trial", "free", "free"]
    assert plan.index.tolist() == [5, 4, 3, 2, 1]


def test_cohort_table_by_tier_worked_by_hand() -> None:
    # Week of 6 Jan: three high-tier PQLs, one converts after 4 days at 50 MRR; one medium PQL converts
    # after 10 days with no amount. Week of 13 Jan: one high-tier PQL, no conversion.
    entries = _entries(
        [
            ("a", T0, "high", "freemium_upgrade", False),
            ("b", datetime(2025, 1, 8), "high", "freemium_upgrade", False),
            ("c", datetime(2025, 1, 10), "high", "trial_conversion", False),
            ("d", datetime(2025, 1, 7), "medium", "trial_conversion", False),
            ("e", datetime(2025, 1, 14), "high", "freemium_upgrade", False),
        ]
    )
    changes = conversions(
        _changes(
            [
                ("b", datetime(2025, 1, 12), "paid", None, 50.0),
                ("d", datetime(2025, 1, 17), "paid", None, None),
            ]
        ),
        PLANS,
    )
    outcomes = pql_outcomes(entries, changes, horizon_days=30, observed_until=datetime(2025, 3, 1), zone=UTC)
    table = conversion_table(outcomes, ["cohort_week", "tier"]).set_index(["cohort_week", "tier"])
    high = table.loc[(pd.Timestamp("2025-01-06"), "high")]
    assert (high["accounts"], high["conversions"]) == (3, 1)
    assert high["conversion_rate"] == pytest.approx(1 / 3)
    assert high["median_days_to_conversion"] == 4.0
    assert high["mrr"] == 50.0
    medium = table.loc[(pd.Timestamp("2025-01-06"), "medium")]
    assert (medium["accounts"], medium["conversions"], medium["median_days_to_conversion"]) == (1, 1, 10.0)
    assert np.isnan(medium["mrr"])
    later = table.loc[(pd.Timestamp("2025-01-13"), "high")]
    assert (later["accounts"], later["conversions"], later["conversion_rate"]) == (1, 0, 0.0)
    assert table["is_complete"].all()


def test_control_pqls_form_their_own_segment() -> None:
    entries = _entries(
        [("a", T0, "high", "freemium_upgrade", False), ("b", T0, "high", "freemium_upgrade", True)]
    )
    outcomes = pql_outcomes(
        entries,
        conversions(_changes([]), PLANS),
        horizon_days=30,
        observed_until=datetime(2025, 3, 1),
        zone=UTC,
    )
    assert outcomes.set_index("account_id")["segment"].to_dict() == {"a": "pql", "b": "control"}


def _snapshots(rows: list[tuple]) -> pd.DataFrame:
    """(account_id, as_of, tier, is_pql) tuples as weekly snapshot rows."""
    frame = pd.DataFrame(rows, columns=["account_id", "as_of", "tier", "is_pql"])
    return frame.assign(as_of=pd.to_datetime(frame["as_of"]), probability=0.1, score=30.0, is_control=False)


def test_non_pqls_are_eligible_accounts_that_had_not_qualified_by_the_end_of_the_week() -> None:
    week1, week2 = T0, datetime(2025, 1, 13)
    snapshots = _snapshots(
        [
            ("never", week1, "low", False),  # a non-PQL in both weeks
            ("never", week2, "low", False),
            ("later", week1, "low", False),  # qualifies in week 2: a non-PQL in week 1 only
            ("later", week2, "low", False),
            ("midweek", week1, "low", False),  # qualifies on Wednesday of week 1: never a non-PQL
            ("paid", week1, "low", False),  # already paid: not eligible
        ]
    )
    entries = _entries(
        [
            ("later", datetime(2025, 1, 15), "high", "freemium_upgrade", False),
            ("midweek", datetime(2025, 1, 8), "high", "freemium_upgrade", False),
        ]
    )
    changes = _changes(
        [
            ("never", datetime(2024, 12, 1), "free", None, None),
            ("later", datetime(2024, 12, 1), "trial", datetime(2025, 2, 1), None),
            ("paid", datetime(2024, 12, 1), "paid", None, 99.0),
            ("never", datetime(2025, 1, 10), "paid", None, 25.0),
        ]
    )
    snapshot = snapshot_outcomes(
        snapshots, changes, PLANS, horizon_days=30, observed_until=datetime(2025, 4, 1), zone=UTC
    )
    baseline = non_pql_outcomes(snapshot, entries, UTC)
    seen = set(zip(baseline["account_id"], baseline["cohort_week"].dt.strftime("%m-%d"), strict=True))
    assert seen == {("never", "01-06"), ("later", "01-06")}
    assert baseline.set_index("account_id")["playbook"].to_dict() == {
        "never": "freemium_upgrade",
        "later": "trial_conversion",
    }
    assert baseline.set_index("account_id")["is_converted"].to_dict() == {"never": True, "later": False}


def test_lift_is_the_pql_rate_over_the_non_pql_rate_of_each_week() -> None:
    rows = [("pql", True)] * 2 + [("pql", False)] * 3 + [("non_pql", True)] + [("non_pql", False)] * 9
    outcomes = pd.DataFrame(
        {
            "account_id": [f"x{i}" for i in range(len(rows))],
            "segment": [segment for segment, _ in rows],
            "cohort_week": pd.Timestamp("2025-01-06"),
            "is_converted": [converted for _, converted in rows],
            "days_to_conversion": np.nan,
            "mrr": np.nan,
            "is_mature": True,
        }
    )
    lift = lift_table(outcomes)
    assert lift[["pqls", "non_pqls"]].iloc[0].tolist() == [5, 10]
    assert lift["pql_rate"].iloc[0] == pytest.approx(0.4)
    assert lift["non_pql_rate"].iloc[0] == pytest.approx(0.1)
    assert lift["lift"].iloc[0] == pytest.approx(4.0)


def test_each_week_is_represented_by_the_latest_run_of_its_first_scored_date() -> None:
    runs = pd.DataFrame(
        {
            "run_id": ["mon", "mon-rerun", "tue", "next-mon"],
            "as_of": pd.to_datetime(["2025-01-06", "2025-01-06", "2025-01-07", "2025-01-13"]),
            "scored_at": pd.to_datetime(
                ["2025-01-06 02:00", "2025-01-06 05:00", "2025-01-07 02:00", "2025-01-13 02:00"]
            ),
        }
    )
    assert weekly_run_ids(runs, UTC) == ["mon-rerun", "next-mon"]
