"""validate_sales: the optional sales tables (crm_activities, opportunities, pql_feedback), checked only
when in use, over rows before as_of; on clean and broken tables in every database."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from gate_worlds import AS_OF, World

from pql.config import load_settings
from pql.validation import StageResult, summary, summary_text, validate_sales

NOW = AS_OF + timedelta(hours=2)  # a nightly run starts after midnight
DAY = timedelta(days=1)
ACTIVITY = {
    "activity_id": "act_1",
    "account_id": "acc_1",
    "owner": "rep_1",
    "occurred_at": AS_OF - 3 * DAY,
    "activity_type": "call",
    "outcome": None,
}
OPPORTUNITY = {
    "opportunity_id": "opp_1",
    "account_id": "acc_2",
    "created_at": AS_OF - 10 * DAY,
    "stage": "closed won",
    "amount": 1200.0,
    "closed_at": AS_OF - 2 * DAY,
    "is_won": True,
}
FEEDBACK = {
    "account_id": "acc_3",
    "owner": "rep_1",
    "decided_at": AS_OF - DAY,
    "decision": "disqualified",
    "reason": "student",
}


def validated(world: World, settings=None) -> StageResult:
    return validate_sales(world.engine, world.tables, settings or world.settings, AS_OF, now=NOW)


def with_clean_sales(world: World) -> World:
    world.insert("crm_activities", [ACTIVITY])
    world.insert("opportunities", [OPPORTUNITY])
    world.insert("pql_feedback", [FEEDBACK])
    return world


def test_without_sales_rows_every_check_is_skipped_with_a_note_per_table(any_world: World) -> None:
    result = validated(any_world)
    assert result.status == "skipped" and not result.failed
    assert {check.status for check in result.checks} == {"skipped"}
    assert len(result.notes) == 3
    assert result.notes[0].startswith("crm_activities: not in use (absent or empty)")
    assert "rep feedback" in result.notes[2]


def test_clean_sales_tables_pass_on_each_database(any_world: World) -> None:
    result = validated(with_clean_sales(any_world))
    assert result.status == "passed"
    assert all(check.status == "passed" for check in result.checks)
    assert result.notes == []


def test_only_the_tables_in_use_are_checked(world: World) -> None:
    world.insert("pql_feedback", [FEEDBACK])
    result = validated(world)
    assert result.check("sales.known_decisions").status == "passed"
    assert result.check("sales.won_opportunities_closed").status == "skipped"
    assert sum(check.status == "passed" for check in result.checks) == 4
    assert [note.split(":")[0] for note in result.notes] == ["crm_activities", "opportunities"]


def test_a_missing_column_of_a_table_in_use_fails(world: World) -> None:
    world.execute(world.tables.crm_activities.insert().values(ACTIVITY))
    world.execute(sa.text("ALTER TABLE crm_activities DROP COLUMN activity_type"))
    check = validated(world).check("sales.required_columns")
    assert check.status == "failed"
    assert "table=crm_activities column=activity_type" in check.failures[0].examples[0]


def test_an_activity_before_its_account_existed_warns_with_both_instants(any_world: World) -> None:
    early = {**ACTIVITY, "occurred_at": AS_OF - 100 * DAY}  # accounts were created 90 days before
    any_world.insert("crm_activities", [ACTIVITY, early | {"activity_id": "act_2"}])
    check = validated(any_world).check("sales.activities_after_account_created")
    assert (check.status, check.rows) == ("warned", 1)
    assert "activity_id=act_2" in check.failures[0].examples[0]
    assert "account_created_at=" in check.failures[0].examples[0]


def test_an_activity_of_an_unknown_account_warns(any_world: World) -> None:
    any_world.insert("crm_activities", [{**ACTIVITY, "account_id": "acc_ghost"}])
    check = validated(any_world).check("sales.activities_known_accounts")
    assert (check.status, check.rows) == ("warned", 1)
    assert "account_id=acc_ghost" in check.failures[0].examples[0]


def test_an_opportunity_of_an_unknown_account_warns(any_world: World) -> None:
    any_world.insert("opportunities", [{**OPPORTUNITY, "account_id": "acc_ghost"}])
    check = validated(any_world).check("sales.opportunities_known_accounts")
    assert (check.status, check.rows) == ("warned", 1)


def test_an_opportunity_closed_before_it_was_created_warns(any_world: World) -> None:
    closed_early = {**OPPORTUNITY, "opportunity_id": "opp_2", "closed_at": AS_OF - 20 * DAY}
    any_world.insert("opportunities", [OPPORTUNITY, closed_early])
    check = validated(any_world).check("sales.opportunities_closed_after_created")
    assert (check.status, check.rows) == ("warned", 1)
    assert "opportunity_id=opp_2" in check.failures[0].examples[0]


def test_a_won_opportunity_without_closed_at_warns(any_world: World) -> None:
    any_world.insert("opportunities", [{**OPPORTUNITY, "closed_at": None}])
    check = validated(any_world).check("sales.won_opportunities_closed")
    assert (check.status, check.rows) == ("warned", 1)


def test_an_open_opportunity_not_yet_won_is_fine(any_world: World) -> None:
    any_world.insert("opportunities", [{**OPPORTUNITY, "closed_at": None, "is_won": False}])
    assert validated(any_world).check("sales.won_opportunities_closed").status == "passed"


def test_a_negative_amount_warns(any_world: World) -> None:
    any_world.insert("opportunities", [{**OPPORTUNITY, "amount": -50.0}])
    check = validated(any_world).check("sales.amounts_not_negative")
    assert (check.status, check.rows) == ("warned", 1)
    assert "amount=-50" in check.failures[0].examples[0]


@pytest.mark.parametrize("decision", ["maybe", "snoozed", None])
def test_a_decision_the_rules_cannot_use_warns(world: World, decision: str | None) -> None:
    world.insert(
        "pql_feedback", [FEEDBACK, {**FEEDBACK, "decided_at": AS_OF - 2 * DAY, "decision": decision}]
    )
    check = validated(world).check("sales.known_decisions")
    assert (check.status, check.rows) == ("warned", 1)


def test_a_decision_in_another_case_passes_as_the_rules_read_it(world: World) -> None:
    world.insert(
        "pql_feedback", [FEEDBACK, {**FEEDBACK, "decided_at": AS_OF - 2 * DAY, "decision": " Accepted"}]
    )
    assert validated(world).check("sales.known_decisions").status == "passed"


def test_an_unknown_decision_warns_on_each_database(any_world: World) -> None:
    any_world.insert("pql_feedback", [{**FEEDBACK, "decision": "maybe"}])
    assert validated(any_world).check("sales.known_decisions").status == "warned"


def test_feedback_on_an_unknown_account_warns(any_world: World) -> None:
    any_world.insert("pql_feedback", [{**FEEDBACK, "account_id": "acc_ghost"}])
    assert validated(any_world).check("sales.feedback_known_accounts").status == "warned"


def test_bad_rows_at_or_after_as_of_are_not_this_runs_business(any_world: World) -> None:
    """Rows the run does not read (dated at or after as_of, before the run's start) are not judged."""
    any_world.insert("crm_activities", [{**ACTIVITY, "account_id": "acc_ghost", "occurred_at": AS_OF}])
    later = AS_OF + timedelta(hours=1)
    any_world.insert(
        "opportunities",
        [{**OPPORTUNITY, "created_at": AS_OF, "closed_at": AS_OF - DAY, "amount": -1.0, "is_won": True}],
    )
    any_world.insert("pql_feedback", [{**FEEDBACK, "decided_at": later, "decision": "maybe"}])
    result = validated(any_world)
    assert result.status == "passed", summary_text(summary([result]))


def test_rows_later_than_the_runs_start_warn_as_in_the_future(any_world: World) -> None:
    any_world.insert("crm_activities", [{**ACTIVITY, "occurred_at": NOW + DAY}])
    any_world.insert("pql_feedback", [{**FEEDBACK, "decided_at": NOW + 2 * DAY}])
    check = validated(any_world).check("sales.not_in_future")
    assert (check.status, check.rows) == ("warned", 2)


def test_a_check_can_be_made_to_fail_through_the_policies(world: World) -> None:
    world.insert("opportunities", [{**OPPORTUNITY, "closed_at": AS_OF - 20 * DAY}])
    settings = load_settings(
        None, validation={"policies": {"sales.opportunities_closed_after_created": "fail"}}
    )
    assert validated(world, settings).failed


def test_the_message_names_the_table_column_row_count_and_what_to_do(world: World) -> None:
    world.insert(
        "pql_feedback",
        [{**FEEDBACK, "decision": "later"}, {**FEEDBACK, "account_id": "acc_4", "decision": "x"}],
    )
    text = summary_text(summary([validated(world)]), only_problems=True)
    assert "WARN sales.known_decisions: pql_feedback: every decision before as_of" in text
    assert "(unknown_decisions) failed on 2 decisions" in text
    assert "decision=later" in text
    assert "what to do: The PQL rules ignore any other decision" in text
