"""Rep feedback in the PQL rules: disqualified and done take an account off the list for a cooldown,
accepted keeps a PQL listed and marks it sales-accepted."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from pql.config import Settings
from pql.scoring import rules
from pql.scoring.rules import apply_pql_rules

AS_OF = datetime(2026, 5, 10)
DAY = timedelta(days=1)
DECIDED = datetime(2026, 5, 2, 15, 30)  # a working afternoon, UTC


@pytest.fixture
def agreement() -> Settings:
    """Entry at 60, exit at 45, 30 days on the list at most, 90 days of cooldown after a decision."""
    return Settings(
        scoring={
            "pql_entry_score": 60,
            "pql_exit_score": 45,
            "max_pql_age_days": 30,
            "feedback_cooldown_days": 90,
        }
    )


def scored(score: float = 70.0, **row: object) -> pd.DataFrame:
    """One free, eligible account "a" with the given score."""
    values = {"account_id": "a", "plan": "free", "is_eligible": True, "score": score} | row
    frame = pd.DataFrame([values | {"days_left_in_trial": np.nan}])
    return frame.assign(probability=frame["score"] / 100)


def crm(
    decision: str | None = None,
    decided_at: datetime = DECIDED,
    by: str | None = "ana",
    note: str | None = None,
) -> pd.DataFrame:
    """Account "a" owned by ana, with the latest rep decision before as_of when given."""
    row = {"account_id": "a", "owner": "ana", "has_open_opportunity": False, "do_not_contact": False}
    if decision is not None:
        row |= {
            "sales_decision": decision,
            "sales_decided_at": pd.Timestamp(decided_at),
            "sales_decided_by": by,
            "sales_note": note,
        }
    return pd.DataFrame([row])


def on_the_list_since(first_pql_at: datetime) -> pd.DataFrame:
    return pd.DataFrame([{"account_id": "a", "is_pql": True, "first_pql_at": pd.Timestamp(first_pql_at)}])


def only(result: pd.DataFrame) -> pd.Series:
    return result.iloc[0]


def test_a_disqualified_pql_leaves_the_list_and_says_whose_decision_and_until_when(
    agreement: Settings,
) -> None:
    row = only(
        apply_pql_rules(
            scored(),
            crm("disqualified", note="not a fit"),
            on_the_list_since(AS_OF - 10 * DAY),
            agreement,
            AS_OF,
        )
    )
    assert not row["is_pql"] and row["pql_status"] == rules.LEFT_DISQUALIFIED
    assert pd.isna(row["first_pql_at"]) and pd.isna(row["routed_to"])
    assert (
        row["left_reason"]
        == "disqualified by ana on 2026-05-02 (not a fit); may qualify again from 2026-08-01"
    )
    assert row["sales_decision"] == "disqualified"
    assert row["sales_decided_at"] == pd.Timestamp(DECIDED)
    assert not row["is_sales_accepted"]


def test_a_done_pql_leaves_the_list_too(agreement: Settings) -> None:
    row = only(apply_pql_rules(scored(), crm("done"), on_the_list_since(AS_OF - 10 * DAY), agreement, AS_OF))
    assert not row["is_pql"] and row["pql_status"] == rules.LEFT_DONE
    assert row["left_reason"] == "marked done by ana on 2026-05-02; may qualify again from 2026-08-01"


def test_the_cooldown_ends_on_the_first_night_after_it_in_the_configured_time_zone() -> None:
    settings = Settings(timezone="America/New_York", scoring={"feedback_cooldown_days": 90})
    # 2026-05-02 02:00 UTC is still 1 May in New York; 90 days later is 30 July 22:00 there.
    decided = datetime(2026, 5, 2, 2)
    row = only(
        apply_pql_rules(
            scored(), crm("disqualified", decided_at=decided, by=None), pd.DataFrame(), settings, AS_OF
        )
    )
    assert row["left_reason"] == "disqualified on 2026-05-01; may qualify again from 2026-07-31"


@pytest.mark.parametrize("decision", ["disqualified", "done"])
def test_an_account_stays_off_the_list_during_the_cooldown_however_high_it_scores(
    agreement: Settings, decision: str
) -> None:
    cooling = DECIDED + 89 * DAY
    row = only(apply_pql_rules(scored(95.0), crm(decision), pd.DataFrame(), agreement, cooling))
    assert not row["is_pql"] and row["pql_status"] == rules.SALES_COOLDOWN
    assert row["left_reason"].endswith("may qualify again from 2026-08-01")


@pytest.mark.parametrize("decision", ["disqualified", "done"])
def test_after_the_cooldown_an_account_that_still_qualifies_comes_back_with_a_new_first_pql_at(
    agreement: Settings, decision: str
) -> None:
    back = datetime(2026, 8, 1)
    row = only(apply_pql_rules(scored(), crm(decision), pd.DataFrame(), agreement, back))
    assert row["is_pql"] and row["pql_status"] == rules.NEW
    assert row["first_pql_at"] == pd.Timestamp(back)
    assert pd.isna(row["left_reason"]) and row["sales_decision"] == decision


def test_after_the_cooldown_an_account_below_entry_does_not_come_back(agreement: Settings) -> None:
    row = only(
        apply_pql_rules(scored(55.0), crm("disqualified"), pd.DataFrame(), agreement, datetime(2026, 8, 1))
    )
    assert not row["is_pql"] and row["pql_status"] == rules.NOT_PQL and pd.isna(row["left_reason"])


def test_the_whole_stay_a_rep_ends_is_forgotten_so_the_return_is_a_new_stay(agreement: Settings) -> None:
    """Run by run: on the list, disqualified, held off, back after the cooldown as a new PQL."""
    settings = agreement.model_copy(
        update={"scoring": agreement.scoring.model_copy(update={"feedback_cooldown_days": 3})}
    )
    decided = AS_OF + 6 * DAY + timedelta(hours=10)
    state, seen = pd.DataFrame(), []
    for day in range(12):
        as_of = AS_OF + day * DAY
        feedback = crm("disqualified", decided_at=decided) if as_of > decided else crm()
        state = apply_pql_rules(scored(), feedback, state, settings, as_of)
        seen.append(only(state)["pql_status"])
    assert seen == [
        rules.NEW,
        *[rules.KEPT] * 6,
        rules.LEFT_DISQUALIFIED,
        rules.SALES_COOLDOWN,
        rules.SALES_COOLDOWN,
        rules.NEW,
        rules.KEPT,
    ]
    assert only(state)["first_pql_at"] == pd.Timestamp(AS_OF + 10 * DAY)


def test_with_no_cooldown_a_disqualified_pql_that_still_qualifies_starts_a_new_stay(
    agreement: Settings,
) -> None:
    settings = agreement.model_copy(
        update={"scoring": agreement.scoring.model_copy(update={"feedback_cooldown_days": 0})}
    )
    row = only(
        apply_pql_rules(scored(), crm("disqualified"), on_the_list_since(AS_OF - 10 * DAY), settings, AS_OF)
    )
    assert row["is_pql"] and row["pql_status"] == rules.NEW and row["first_pql_at"] == pd.Timestamp(AS_OF)


def test_a_decision_older_than_the_current_stay_does_not_end_it(agreement: Settings) -> None:
    """Disqualified in January, back in May after the cooldown: the January decision is history."""
    row = only(
        apply_pql_rules(
            scored(),
            crm("disqualified", decided_at=datetime(2026, 1, 5)),
            on_the_list_since(AS_OF - 5 * DAY),
            agreement,
            AS_OF,
        )
    )
    assert row["is_pql"] and row["pql_status"] == rules.KEPT and pd.isna(row["left_reason"])


def test_an_accepted_pql_stays_listed_below_the_exit_score_and_is_marked(agreement: Settings) -> None:
    row = only(
        apply_pql_rules(scored(30.0), crm("accepted"), on_the_list_since(AS_OF - 10 * DAY), agreement, AS_OF)
    )
    assert row["is_pql"] and row["pql_status"] == rules.KEPT and row["is_sales_accepted"]
    assert row["first_pql_at"] == pd.Timestamp(AS_OF - 10 * DAY) and row["routed_to"] == "ana"
    assert pd.isna(row["left_reason"])


def test_an_accepted_pql_stays_listed_beyond_the_maximum_age(agreement: Settings) -> None:
    row = only(
        apply_pql_rules(
            scored(), crm("accepted"), on_the_list_since(DECIDED - DAY), agreement, AS_OF + 60 * DAY
        )
    )
    assert row["is_pql"] and row["is_sales_accepted"]


def test_an_accepted_pql_still_leaves_when_it_converts(agreement: Settings) -> None:
    paid = scored(plan="paid", is_eligible=False)
    row = only(apply_pql_rules(paid, crm("accepted"), on_the_list_since(AS_OF - 10 * DAY), agreement, AS_OF))
    assert not row["is_pql"] and row["pql_status"] == rules.DROPPED_CONVERTED and not row["is_sales_accepted"]


def test_an_acceptance_of_an_earlier_stay_does_not_mark_a_new_one(agreement: Settings) -> None:
    row = only(
        apply_pql_rules(
            scored(), crm("accepted", decided_at=datetime(2026, 1, 5)), pd.DataFrame(), agreement, AS_OF
        )
    )
    assert row["is_pql"] and row["pql_status"] == rules.NEW and not row["is_sales_accepted"]


def test_a_held_out_accepted_pql_is_not_counted_as_sales_accepted(agreement: Settings) -> None:
    settings = agreement.model_copy(
        update={"outcomes": agreement.outcomes.model_copy(update={"control_share": 0.999})}
    )
    row = only(
        apply_pql_rules(scored(), crm("accepted"), on_the_list_since(AS_OF - 10 * DAY), settings, AS_OF)
    )
    assert row["is_control"] and not row["is_pql"] and not row["is_sales_accepted"]


def test_without_feedback_the_rules_give_what_they_gave_before(agreement: Settings) -> None:
    previous = on_the_list_since(AS_OF - 40 * DAY)
    plain = apply_pql_rules(scored(50.0), crm(), previous, agreement, AS_OF)
    assert plain["pql_status"].tolist() == [rules.RETIRED_MAX_AGE]
    assert plain[["sales_decision", "left_reason"]].isna().all().all()
    assert not plain["is_sales_accepted"].any() and plain["sales_decided_at"].isna().all()


def test_the_cooldown_is_90_days_by_default_and_never_negative() -> None:
    assert Settings().scoring.feedback_cooldown_days == 90
    assert Settings(scoring={"feedback_cooldown_days": 0}).scoring.feedback_cooldown_days == 0
    with pytest.raises(ValidationError, match="feedback_cooldown_days"):
        Settings(scoring={"feedback_cooldown_days": -1})
