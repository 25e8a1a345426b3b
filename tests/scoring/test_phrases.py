"""Reasons in plain sales language, with the account's own numbers and a comparison with its peers."""

from __future__ import annotations

import numpy as np

from pql.config import DEFAULT_KEY_EVENTS, load_settings
from pql.features.catalog import key_event_columns
from pql.scoring.phrases import peer_shares, rendered

REAL_WORLD_EVENTS = ["Submit Upgrade", {"name": "Limit Reached", "where": {"limit": "seats"}}]


def _say(
    feature: str,
    value: object,
    *,
    top: float = np.nan,
    bottom: float = np.nan,
    plan: str = "free",
    key_events: list[object] = DEFAULT_KEY_EVENTS,
) -> str:
    values = np.array([value], dtype=float if isinstance(value, int | float) else object)
    phrases, codes = rendered(
        feature,
        values,
        np.array([plan], dtype=object),
        np.array([top]),
        np.array([bottom]),
        key_event_columns(load_settings(None, key_events=key_events)),
    )
    return phrases[codes[0]]


def test_team_activity_says_the_count_and_where_it_ranks_among_the_same_plan() -> None:
    assert _say("count_active_users_7d", 7, top=0.047, bottom=0.97) == (
        "7 teammates active in the last 7 days (top 5% of free accounts)"
    )


def test_usage_limit_says_how_many_times() -> None:
    assert _say("count_hit_usage_limit_7d", 3) == "hit the usage limit 3 times in the last 7 days"
    assert _say("count_hit_usage_limit_7d", 1) == "hit the usage limit once in the last 7 days"
    assert _say("count_hit_usage_limit_28d", 0) == "never hit the usage limit in the last 28 days"


def test_a_real_world_event_name_is_said_as_the_product_logs_it() -> None:
    assert _say("count_submit_upgrade_28d", 2, key_events=REAL_WORLD_EVENTS) == (
        "Submit Upgrade: twice in the last 28 days"
    )


def test_a_property_filtered_key_event_is_said_with_its_condition() -> None:
    assert _say("count_limit_reached_limit_seats_7d", 1, key_events=REAL_WORLD_EVENTS) == (
        "Limit Reached (limit = seats): once in the last 7 days"
    )


def test_recency_says_how_long_the_account_has_been_quiet() -> None:
    assert _say("days_since_last_event", 12.4) == "no activity for 12 days"
    assert _say("days_since_last_event", 30.0, top=0.1, bottom=0.95, plan="trial") == (
        "no activity for 30 days (longer than 90% of trial accounts)"
    )
    assert _say("days_since_last_event", np.nan) == "no activity recorded yet"


def test_an_unremarkable_value_carries_no_comparison() -> None:
    assert _say("count_events_7d", 40, top=0.5, bottom=0.55) == "40 events in the last 7 days"


def test_a_low_value_is_compared_from_the_bottom() -> None:
    assert _say("employees", 3, top=0.9, bottom=0.08) == "3 employees (bottom 8% of free accounts)"


def test_categorical_and_trial_features_are_said_plainly() -> None:
    assert _say("industry", "software") == "in the software industry"
    assert _say("country", None) == "country unknown"
    assert _say("plan", "trial") == "on a trial"
    assert _say("days_left_in_trial", 3.2) == "3 days left in the trial"


def test_an_unknown_feature_falls_back_to_its_name_and_value() -> None:
    assert _say("count_seats_purchased", 4) == "count seats purchased: 4"


def test_identical_values_share_one_phrase() -> None:
    values = np.array([2.0, 2.0, 5.0, 2.0])
    plans = np.array(["free", "free", "free", "trial"], dtype=object)
    nothing = np.full(4, np.nan)
    phrases, codes = rendered("count_events_7d", values, plans, nothing, nothing)
    assert len(phrases) == 3
    assert [phrases[code] for code in codes] == ["2 events in the last 7 days"] * 2 + [
        "5 events in the last 7 days"
    ] + ["2 events in the last 7 days"]


def test_peer_shares_compare_with_accounts_of_the_same_plan_only() -> None:
    values = np.r_[np.arange(100, dtype=float), np.full(30, 1000.0)]
    plans = np.array(["free"] * 100 + ["trial"] * 30, dtype=object)
    top, bottom = peer_shares(values, plans, np.array([99, 0, 100]))
    assert top.tolist() == [0.01, 1.0, 1.0]
    assert bottom.tolist() == [1.0, 0.01, 1.0]


def test_peer_shares_are_unknown_for_missing_values_and_tiny_plans() -> None:
    values = np.r_[np.arange(50, dtype=float), [np.nan], np.arange(5, dtype=float)]
    plans = np.array(["free"] * 51 + ["trial"] * 5, dtype=object)
    top, _ = peer_shares(values, plans, np.array([50, 51]))
    assert np.isnan(top).all()
