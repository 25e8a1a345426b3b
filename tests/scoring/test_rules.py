"""The PQL rules as sales and marketing agreed them: eligibility, thresholds, capacity, age, queue."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from pql.config import Settings
from pql.db import DataError
from pql.scoring import rules
from pql.scoring.rules import apply_pql_rules

AS_OF = datetime(2024, 6, 3)
DAY = timedelta(days=1)


@pytest.fixture
def agreement() -> Settings:
    """Entry at 60, exit at 45, 2 new PQLs per owner per day, 30 days on the list at most."""
    return Settings(
        scoring={
            "pql_entry_score": 60,
            "pql_exit_score": 45,
            "max_new_pqls_per_owner": 2,
            "max_pql_age_days": 30,
            "unowned_queue": "sdr-queue",
        }
    )


def accounts(*rows: dict) -> pd.DataFrame:
    """Scored accounts: free, eligible, scored 70 unless a row says otherwise."""
    defaults = {"plan": "free", "is_eligible": True, "score": 70.0, "days_left_in_trial": np.nan}
    frame = pd.DataFrame([defaults | row for row in rows])
    return frame.assign(probability=frame["score"] / 100)


def crm(*rows: dict) -> pd.DataFrame:
    defaults = {
        "owner": "ana",
        "has_open_opportunity": False,
        "do_not_contact": False,
        "lifecycle_stage": "lead",
    }
    return pd.DataFrame([defaults | row for row in rows])


def previous(*rows: dict) -> pd.DataFrame:
    defaults = {"is_pql": True, "routed_to": "ana", "score": 70.0}
    frame = pd.DataFrame([defaults | row for row in rows])
    return frame.assign(first_pql_at=pd.to_datetime(frame["first_pql_at"]))


NO_HISTORY = pd.DataFrame()


def one(result: pd.DataFrame, account_id: str) -> pd.Series:
    return result.set_index("account_id").loc[account_id]


def test_eligible_free_account_above_entry_becomes_a_new_pql(agreement: Settings) -> None:
    result = apply_pql_rules(
        accounts({"account_id": "a"}), crm({"account_id": "a"}), NO_HISTORY, agreement, AS_OF
    )
    row = one(result, "a")
    assert row["is_pql"] and row["pql_status"] == rules.NEW
    assert row["first_pql_at"] == pd.Timestamp(AS_OF)
    assert row["routed_to"] == "ana"
    assert row["playbook"] == "freemium_upgrade"


def test_trial_pql_gets_the_trial_conversion_playbook_and_its_days_left(agreement: Settings) -> None:
    scored = accounts({"account_id": "t", "plan": "trial", "days_left_in_trial": 4.26})
    row = one(apply_pql_rules(scored, crm({"account_id": "t"}), NO_HISTORY, agreement, AS_OF), "t")
    assert row["playbook"] == "trial_conversion"
    assert row["trial_days_left"] == 4.3


@pytest.mark.parametrize(
    ("scored", "crm_row"),
    [
        ({"plan": "paid", "is_eligible": False}, {}),
        ({}, {"has_open_opportunity": True}),
        ({"is_eligible": False, "open_opportunity_created_at": AS_OF - 3 * DAY}, {}),
        ({}, {"do_not_contact": True}),
        ({"score": 59.9}, {}),
    ],
    ids=["paid", "open-opportunity", "opportunity-open-at-as-of", "do-not-contact", "below-entry"],
)
def test_account_that_fails_one_condition_is_not_a_pql(
    agreement: Settings, scored: dict, crm_row: dict
) -> None:
    result = apply_pql_rules(
        accounts({"account_id": "a"} | scored),
        crm({"account_id": "a"} | crm_row),
        NO_HISTORY,
        agreement,
        AS_OF,
    )
    row = one(result, "a")
    assert not row["is_pql"] and row["pql_status"] == rules.NOT_PQL
    assert pd.isna(row["first_pql_at"]) and pd.isna(row["playbook"]) and pd.isna(row["routed_to"])


def test_score_exactly_at_entry_qualifies(agreement: Settings) -> None:
    result = apply_pql_rules(
        accounts({"account_id": "a", "score": 60.0}), crm({"account_id": "a"}), NO_HISTORY, agreement, AS_OF
    )
    assert one(result, "a")["is_pql"]


def test_pql_stays_while_its_score_is_between_exit_and_entry(agreement: Settings) -> None:
    started = AS_OF - 5 * DAY
    result = apply_pql_rules(
        accounts({"account_id": "a", "score": 50.0}),
        crm({"account_id": "a"}),
        previous({"account_id": "a", "first_pql_at": started}),
        agreement,
        AS_OF,
    )
    row = one(result, "a")
    assert row["is_pql"] and row["pql_status"] == rules.KEPT
    assert row["first_pql_at"] == pd.Timestamp(started)


def test_non_pql_between_exit_and_entry_does_not_qualify(agreement: Settings) -> None:
    result = apply_pql_rules(
        accounts({"account_id": "a", "score": 50.0}), crm({"account_id": "a"}), NO_HISTORY, agreement, AS_OF
    )
    assert not one(result, "a")["is_pql"]


@pytest.mark.parametrize(
    ("scored", "crm_row", "status"),
    [
        ({"score": 44.9}, {}, rules.DROPPED_BELOW_EXIT),
        ({"plan": "paid", "is_eligible": False}, {}, rules.DROPPED_CONVERTED),
        ({}, {"has_open_opportunity": True}, rules.DROPPED_OPPORTUNITY),
        (
            {"is_eligible": False, "open_opportunity_created_at": AS_OF - 3 * DAY},
            {},
            rules.DROPPED_OPPORTUNITY,
        ),
        ({"is_eligible": False, "won_opportunity_closed_at": AS_OF - DAY}, {}, rules.DROPPED_CONVERTED),
        ({}, {"do_not_contact": True}, rules.DROPPED_DO_NOT_CONTACT),
    ],
    ids=[
        "below-exit",
        "converted",
        "opportunity-opened",
        "opportunity-open-at-as-of",
        "deal-won",
        "do-not-contact",
    ],
)
def test_pql_leaves_the_list(agreement: Settings, scored: dict, crm_row: dict, status: str) -> None:
    result = apply_pql_rules(
        accounts({"account_id": "a"} | scored),
        crm({"account_id": "a"} | crm_row),
        previous({"account_id": "a", "first_pql_at": AS_OF - 3 * DAY}),
        agreement,
        AS_OF,
    )
    row = one(result, "a")
    assert not row["is_pql"] and row["pql_status"] == status
    assert pd.isna(row["first_pql_at"])


def test_pql_stays_up_to_the_maximum_age_and_retires_after_it(agreement: Settings) -> None:
    result = apply_pql_rules(
        accounts({"account_id": "exactly-30"}, {"account_id": "over-30"}),
        crm({"account_id": "exactly-30"}, {"account_id": "over-30"}),
        previous(
            {"account_id": "exactly-30", "first_pql_at": AS_OF - 30 * DAY},
            {"account_id": "over-30", "first_pql_at": AS_OF - 30 * DAY - timedelta(hours=1)},
        ),
        agreement,
        AS_OF,
    )
    assert one(result, "exactly-30")["is_pql"]
    retired = one(result, "over-30")
    assert not retired["is_pql"] and retired["pql_status"] == rules.RETIRED_MAX_AGE


def test_retired_pql_qualifies_again_only_after_dipping_below_exit(agreement: Settings) -> None:
    first = AS_OF - 31 * DAY
    state = previous({"account_id": "a", "first_pql_at": first})
    history = []
    for day, score in enumerate([80.0, 80.0, 50.0, 40.0, 80.0]):
        state = apply_pql_rules(
            accounts({"account_id": "a", "score": score}),
            crm({"account_id": "a"}),
            state,
            agreement,
            AS_OF + day * DAY,
        )
        history.append(one(state, "a")["pql_status"])
    assert history == [rules.RETIRED_MAX_AGE, rules.COOLING_OFF, rules.COOLING_OFF, rules.NOT_PQL, rules.NEW]
    assert one(state, "a")["first_pql_at"] == pd.Timestamp(AS_OF + 4 * DAY)


def test_each_owner_gets_at_most_k_new_pqls_a_day_highest_scores_first(agreement: Settings) -> None:
    scores = {"a1": 65.0, "a2": 90.0, "a3": 75.0, "a4": 61.0, "b1": 62.0}
    result = apply_pql_rules(
        accounts(*({"account_id": a, "score": s} for a, s in scores.items())),
        crm(*({"account_id": a, "owner": "ana" if a[0] == "a" else "bob"} for a in scores)),
        NO_HISTORY,
        agreement,
        AS_OF,
    )
    status = result.set_index("account_id")["pql_status"].to_dict()
    assert status == {
        "a1": rules.OVER_CAPACITY,
        "a2": rules.NEW,
        "a3": rules.NEW,
        "a4": rules.OVER_CAPACITY,
        "b1": rules.NEW,
    }


def test_pqls_kept_from_earlier_days_do_not_use_todays_capacity(agreement: Settings) -> None:
    kept = [{"account_id": f"old{i}", "first_pql_at": AS_OF - 2 * DAY} for i in range(3)]
    fresh = [{"account_id": f"new{i}"} for i in range(2)]
    result = apply_pql_rules(
        accounts(*kept, *fresh),
        crm(*({"account_id": row["account_id"]} for row in kept + fresh)),
        previous(*kept),
        agreement,
        AS_OF,
    )
    assert result["is_pql"].all()


def test_capacity_counts_pqls_added_by_an_earlier_run_the_same_day(agreement: Settings) -> None:
    morning = [{"account_id": "m1", "first_pql_at": AS_OF}]
    afternoon = AS_OF + timedelta(hours=12)
    result = apply_pql_rules(
        accounts({"account_id": "m1"}, {"account_id": "n1", "score": 90.0}, {"account_id": "n2"}),
        crm({"account_id": "m1"}, {"account_id": "n1"}, {"account_id": "n2"}),
        previous(*morning),
        agreement,
        afternoon,
    )
    status = result.set_index("account_id")["pql_status"].to_dict()
    assert status == {"m1": rules.KEPT, "n1": rules.NEW, "n2": rules.OVER_CAPACITY}


def test_unowned_accounts_go_to_the_queue_which_has_the_same_daily_capacity(agreement: Settings) -> None:
    ids = ["u1", "u2", "u3", "missing-from-crm"]
    result = apply_pql_rules(
        accounts(*({"account_id": a, "score": 90.0 - i} for i, a in enumerate(ids))),
        crm(
            {"account_id": "u1", "owner": None},
            {"account_id": "u2", "owner": "  "},
            {"account_id": "u3", "owner": None},
        ),
        NO_HISTORY,
        agreement,
        AS_OF,
    )
    pqls = result[result["is_pql"]]
    assert pqls["account_id"].tolist() == ["u1", "u2"]
    assert set(pqls["routed_to"]) == {"sdr-queue"}
    assert set(result.loc[~result["is_pql"], "pql_status"]) == {rules.OVER_CAPACITY}


def test_first_pql_at_is_kept_while_the_account_stays_a_pql(agreement: Settings) -> None:
    state = NO_HISTORY
    for day, score in enumerate([70.0, 55.0, 48.0, 90.0]):
        state = apply_pql_rules(
            accounts({"account_id": "a", "score": score}),
            crm({"account_id": "a"}),
            state,
            agreement,
            AS_OF + day * DAY,
        )
        assert one(state, "a")["is_pql"]
    assert one(state, "a")["first_pql_at"] == pd.Timestamp(AS_OF)


def test_a_pql_that_dropped_and_qualifies_again_starts_a_new_first_pql_at(agreement: Settings) -> None:
    state = NO_HISTORY
    for day, score in enumerate([70.0, 30.0, 70.0]):
        state = apply_pql_rules(
            accounts({"account_id": "a", "score": score}),
            crm({"account_id": "a"}),
            state,
            agreement,
            AS_OF + day * DAY,
        )
    assert one(state, "a")["first_pql_at"] == pd.Timestamp(AS_OF + 2 * DAY)


def test_a_kept_pql_follows_its_owner_in_the_crm(agreement: Settings) -> None:
    result = apply_pql_rules(
        accounts({"account_id": "a"}),
        crm({"account_id": "a", "owner": "bob"}),
        previous({"account_id": "a", "first_pql_at": AS_OF - DAY, "routed_to": "ana"}),
        agreement,
        AS_OF,
    )
    assert one(result, "a")["routed_to"] == "bob"


def test_duplicate_accounts_in_the_crm_snapshot_are_an_error(agreement: Settings) -> None:
    with pytest.raises(DataError, match="crm_accounts snapshot: 1 account_id"):
        apply_pql_rules(
            accounts({"account_id": "a"}),
            crm({"account_id": "a"}, {"account_id": "a"}),
            NO_HISTORY,
            agreement,
            AS_OF,
        )


def with_control(settings: Settings, share: float) -> Settings:
    return settings.model_copy(
        update={"outcomes": settings.outcomes.model_copy(update={"control_share": share})}
    )


def qualifying_accounts(
    n: int, settings: Settings, previous: pd.DataFrame = NO_HISTORY, as_of: datetime = AS_OF
) -> pd.DataFrame:
    """The rules applied to `n` eligible accounts above entry, each with an owner of its own."""
    ids = [f"acc-{i}" for i in range(n)]
    return apply_pql_rules(
        accounts(*({"account_id": i} for i in ids)),
        crm(*({"account_id": i, "owner": f"rep-{i}"} for i in ids)),
        previous,
        settings,
        as_of,
    )


def test_without_a_control_share_no_account_is_held_out(agreement: Settings) -> None:
    result = qualifying_accounts(200, agreement)
    assert not result["is_control"].any()
    assert result["is_pql"].all()


def test_held_out_pqls_are_recorded_as_control_and_never_shown_as_pqls(agreement: Settings) -> None:
    result = qualifying_accounts(400, with_control(agreement, 0.25))
    held = result[result["is_control"]]
    assert 0.15 < len(held) / len(result) < 0.35
    assert not held["is_pql"].any()
    assert held["routed_to"].isna().all()
    assert (held["first_pql_at"] == pd.Timestamp(AS_OF)).all()
    assert result.loc[~result["is_control"], "is_pql"].all()


def test_a_control_account_stays_held_out_and_keeps_its_first_pql_at(agreement: Settings) -> None:
    settings = with_control(agreement, 0.5)
    first = qualifying_accounts(60, settings)
    held = first.loc[first["is_control"], "account_id"].tolist()
    before = first[["account_id", "is_pql", "is_control", "first_pql_at", "routed_to"]]
    later = qualifying_accounts(60, settings, previous=before, as_of=AS_OF + 3 * DAY)
    again = later.set_index("account_id").loc[held]
    assert again["is_control"].all() and not again["is_pql"].any()
    assert (again["pql_status"] == rules.KEPT).all()
    assert (again["first_pql_at"] == pd.Timestamp(AS_OF)).all()
