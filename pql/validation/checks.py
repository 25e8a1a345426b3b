"""The data-quality checks, their stable names, and the policy each one runs under.

A check is one rule a person can switch between `fail` (stop before the write-back), `warn` (record
and continue) and `quarantine` (set the offending rows aside). Only checks that judge individual rows
can quarantine; checks on aggregates (a rate, a daily volume, a table's columns) can only fail or warn.
Missing required columns always fail: nothing after them could run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pql.config import ConfigError, Settings

Policy = Literal["fail", "warn", "quarantine"]
ROW_POLICIES: tuple[Policy, ...] = ("fail", "warn", "quarantine")
AGGREGATE_POLICIES: tuple[Policy, ...] = ("fail", "warn")
FAIL_ONLY: tuple[Policy, ...] = ("fail",)


@dataclass(frozen=True)
class Check:
    """One named rule: what it checks, what to do when it does not hold, and its policies."""

    name: str
    default: Policy
    allowed: tuple[Policy, ...]
    description: str
    hint: str

    @property
    def stage(self) -> str:
        return self.name.split(".", 1)[0]


_CHECKS = (
    Check(
        "events.required_columns",
        "fail",
        FAIL_ONLY,
        "The events table exists and has every contract column.",
        "Rename the column back, or map it with tables.events.columns.<name> in the settings.",
    ),
    Check(
        "events.window_not_empty",
        "fail",
        AGGREGATE_POLICIES,
        "The 28 days before as_of hold at least one event.",
        "Check that events are still being loaded into the source database up to as_of.",
    ),
    Check(
        "events.ids_not_null",
        "warn",
        AGGREGATE_POLICIES,
        "The newest day's events (the day before as_of) have an event_id, an account_id and a user_id.",
        "Events without an account_id belong to no account and are ignored; fix them at the source.",
    ),
    Check(
        "events.known_accounts",
        "warn",
        AGGREGATE_POLICIES,
        "The newest day's events belong to accounts present in the accounts table.",
        "Load the missing accounts; until then their events are ignored.",
    ),
    Check(
        "events.not_in_future",
        "fail",
        AGGREGATE_POLICIES,
        "No event is later than the run's start plus validation.future_tolerance_minutes.",
        "Future timestamps point to a clock, time-zone or units error (milliseconds read as seconds?) "
        "in the loader; fix the timestamps at the source.",
    ),
    Check(
        "events.duplicate_rate",
        "fail",
        AGGREGATE_POLICIES,
        "The share of the newest day's events repeating an event_id is at most "
        "validation.max_duplicate_event_rate.",
        "Deduplicate the events (a load that ran twice?) or raise validation.max_duplicate_event_rate.",
    ),
    Check(
        "events.known_names",
        "warn",
        AGGREGATE_POLICIES,
        "Event names of the newest day are key events or were seen in the 27 days before it.",
        "A new event name is reported, not fatal; add it to key_events if it should count as one.",
    ),
    Check(
        "events.key_events_seen",
        "warn",
        AGGREGATE_POLICIES,
        "Every configured key event occurs at least once in the 28-day window.",
        "A key event that vanished may have been renamed in the product; update key_events.",
    ),
    Check(
        "events.properties_valid",
        "warn",
        AGGREGATE_POLICIES,
        "The newest day's event properties are JSON objects whose numbers are >= 0 and below 10^9 "
        "(the 10,000 most frequent distinct properties texts).",
        "Key events with property conditions read them; fix the producer (negative or absurd counts "
        "usually mean an overflow or a units mistake).",
    ),
    Check(
        "events.no_empty_days",
        "fail",
        AGGREGATE_POLICIES,
        "Each of the 7 days before as_of has at least one event.",
        "An empty day usually means the event load stopped; reload the missing days before scoring.",
    ),
    Check(
        "events.volume_spike",
        "fail",
        AGGREGATE_POLICIES,
        "No day of the last 7 has validation.volume_spike_ratio times (or more) the average daily "
        "volume of the 21 days before.",
        "A spike usually means a duplicated or replayed load; deduplicate it, or raise "
        "validation.volume_spike_ratio if the growth is real.",
    ),
    Check(
        "plan_changes.required_columns",
        "fail",
        FAIL_ONLY,
        "The plan_changes table exists and has every contract column.",
        "Rename the column back, or map it with tables.plan_changes.columns.<name> in the settings.",
    ),
    Check(
        "plan_changes.known_plans",
        "fail",
        AGGREGATE_POLICIES,
        "Every from_plan and to_plan before as_of is listed in plans.free, plans.trial or plans.paid.",
        "Add the plan name to plans.free, plans.trial or plans.paid in the settings.",
    ),
    Check(
        "plan_changes.known_accounts",
        "warn",
        AGGREGATE_POLICIES,
        "Plan changes before as_of belong to accounts present in the accounts table.",
        "Load the missing accounts; plan changes of unknown accounts are ignored.",
    ),
    Check(
        "plan_changes.paid_after_created",
        "warn",
        AGGREGATE_POLICIES,
        "No change into a paid plan happens before the account's created_at.",
        "Check the accounts' created_at and the billing export's time zone.",
    ),
    Check(
        "plan_changes.trial_ends_after_start",
        "warn",
        AGGREGATE_POLICIES,
        "A change into a trial plan has trial_ends_at after changed_at (or no end date).",
        "Fix trial_ends_at at the source; such trials count as already ended.",
    ),
    Check(
        "accounts.required_columns",
        "fail",
        FAIL_ONLY,
        "The accounts and crm_accounts tables exist and have every contract column.",
        "Rename the column back, or map it with tables.accounts/crm_accounts.columns.<name> in the settings.",
    ),
    Check(
        "accounts.unique_ids",
        "fail",
        AGGREGATE_POLICIES,
        "Every account has one non-null account_id, used by no other account.",
        "Deduplicate the accounts table (or declare account_id its primary key).",
    ),
    Check(
        "accounts.created_at_not_null",
        "warn",
        AGGREGATE_POLICIES,
        "Every account has a created_at.",
        "Accounts without created_at are never scored; fill it in at the source.",
    ),
    Check(
        "sales.required_columns",
        "fail",
        FAIL_ONLY,
        "Each sales table in use (crm_activities, opportunities, pql_feedback holding rows) has every "
        "contract column.",
        "Rename the column back, or map it with tables.<table>.columns.<name> in the settings; or empty "
        "the table to stop using it.",
    ),
    Check(
        "sales.activities_known_accounts",
        "warn",
        AGGREGATE_POLICIES,
        "crm_activities: every activity before as_of has an account_id present in the accounts table.",
        "Load the missing accounts or fix account_id in the CRM export; until then those activities are "
        "ignored (no follow-up SLA from them).",
    ),
    Check(
        "sales.activities_after_account_created",
        "warn",
        AGGREGATE_POLICIES,
        "crm_activities: no activity before as_of has an occurred_at before its account's created_at.",
        "Check the time zone of the activities export and the accounts' created_at; an activity cannot "
        "precede the account it is about.",
    ),
    Check(
        "sales.opportunities_known_accounts",
        "warn",
        AGGREGATE_POLICIES,
        "opportunities: every opportunity created before as_of has an account_id present in the accounts "
        "table.",
        "Map the CRM's account ids to the product's (account_id) or load the missing accounts; those "
        "opportunities make no label and no account ineligible.",
    ),
    Check(
        "sales.opportunities_closed_after_created",
        "warn",
        AGGREGATE_POLICIES,
        "opportunities: no opportunity created before as_of has a closed_at before its created_at.",
        "Fix closed_at or created_at in the CRM export (a time zone or a date field mixed up?).",
    ),
    Check(
        "sales.won_opportunities_closed",
        "warn",
        AGGREGATE_POLICIES,
        "opportunities: every opportunity created before as_of with is_won true has a closed_at.",
        "Fill in closed_at: a won opportunity without it counts as open (its account stays ineligible) "
        "and never makes a closed_won label.",
    ),
    Check(
        "sales.amounts_not_negative",
        "warn",
        AGGREGATE_POLICIES,
        "opportunities: no opportunity created before as_of has a negative amount.",
        "Fix the amount in the CRM export (a refund or credit note loaded as an opportunity?).",
    ),
    Check(
        "sales.feedback_known_accounts",
        "warn",
        AGGREGATE_POLICIES,
        "pql_feedback: every decision before as_of has an account_id present in the accounts table.",
        "Fix account_id in the feedback export; decisions on unknown accounts do nothing.",
    ),
    Check(
        "sales.known_decisions",
        "warn",
        AGGREGATE_POLICIES,
        "pql_feedback: every decision before as_of is exactly accepted, disqualified or done (lower-case).",
        "The PQL rules ignore any other decision; write one of the three (`pql load pql_feedback` "
        "lower-cases them and quarantines the rest).",
    ),
    Check(
        "sales.not_in_future",
        "warn",
        AGGREGATE_POLICIES,
        "No activity (occurred_at), opportunity (created_at) or decision (decided_at) is later than the "
        "run's start plus validation.future_tolerance_minutes.",
        "Future timestamps point to a time-zone or units error in the sales export; fix them at the "
        "source (rows at or after as_of are not read by the run).",
    ),
    Check(
        "crm.table_schema",
        "fail",
        FAIL_ONLY,
        "The pipeline's tables in the CRM database (scores, history, runs, quarantine), where they "
        "exist, have every column the pipeline writes.",
        "Restore the table's columns, or drop the table and run `pql init` to recreate it.",
    ),
    Check(
        "features.required_columns",
        "fail",
        FAIL_ONLY,
        "The feature frame has account_id, as_of, plan, is_eligible and every model column.",
        "Build features with the same settings (key_events) the pipeline runs with.",
    ),
    Check(
        "features.unique_key",
        "fail",
        ROW_POLICIES,
        "One feature row per (account_id, as_of).",
        "Duplicate account ids in the accounts table duplicate feature rows; deduplicate them.",
    ),
    Check(
        "features.ids_not_null",
        "quarantine",
        ROW_POLICIES,
        "Every feature row has account_id, as_of, plan and is_eligible.",
        "Rows without them cannot be scored or written; look at the quarantined rows.",
    ),
    Check(
        "features.plan_known",
        "quarantine",
        ROW_POLICIES,
        "The plan of every feature row is free, trial or paid.",
        "Map every plan name through plans.free, plans.trial or plans.paid in the settings.",
    ),
    Check(
        "features.value_ranges",
        "quarantine",
        ROW_POLICIES,
        "Counts and durations are >= 0 and shares are within [0, 1].",
        "Negative or out-of-range values come from bad source rows; look at the quarantined rows.",
    ),
    Check(
        "features.null_rates",
        "warn",
        AGGREGATE_POLICIES,
        "Each feature column's share of nulls is under its limit (0 for counts; see the features suite).",
        "A column that turned null usually means a source column went empty; check the source table.",
    ),
    Check(
        "scores.required_columns",
        "fail",
        FAIL_ONLY,
        "The score frame has account_id, probability, score and tier.",
        "Validate the frame returned by scoring.scores.score_frame.",
    ),
    Check(
        "scores.range",
        "fail",
        ROW_POLICIES,
        "Every score is within [0, 100] and every probability within [0, 1].",
        "The model produced impossible values; retrain it or fall back to the points baseline.",
    ),
    Check(
        "scores.one_per_eligible_account",
        "fail",
        AGGREGATE_POLICIES,
        "Exactly one score per eligible account, and none for accounts without features.",
        "Score exactly the eligible rows of one feature build.",
    ),
    Check(
        "scores.tier_known",
        "fail",
        ROW_POLICIES,
        "Every tier is one of the configured tiers or 'low' (ineligible accounts have none).",
        "Score with the same scoring.tier_* settings the validation runs with.",
    ),
    Check(
        "scores.tier_eligibility",
        "fail",
        ROW_POLICIES,
        "Every eligible account has a tier and no ineligible account (on a paid plan) has one.",
        "Score with scoring.scores.score_frame, which tiers eligible accounts only, from the same features.",
    ),
    Check(
        "scores.tier_distribution",
        "warn",
        AGGREGATE_POLICIES,
        "Tiers follow the policy: under 'quantile' each tier's cumulative share of eligible accounts "
        "is close to its cut-off; under 'threshold' each tier matches its probability bounds.",
        "Many tied scores (the points baseline) or a tiny population bend the shares; check the model.",
    ),
    Check(
        "output.required_columns",
        "fail",
        FAIL_ONLY,
        "The rows to write have account_id, score, is_pql, routed_to, playbook and reasons_json.",
        "Apply the PQL rules and the reasons before validating the output.",
    ),
    Check(
        "output.unique_accounts",
        "fail",
        ROW_POLICIES,
        "At most one output row per account_id.",
        "Score each account once per run.",
    ),
    Check(
        "output.pql_routed",
        "quarantine",
        ROW_POLICIES,
        "Every PQL is routed to an owner or a queue (routed_to is not empty).",
        "Set scoring.unowned_queue, or give the account an owner in the CRM.",
    ),
    Check(
        "output.pql_reasons",
        "quarantine",
        ROW_POLICIES,
        "Every PQL has at least one reason.",
        "A PQL without reasons cannot be worked by sales; look at the quarantined rows.",
    ),
    Check(
        "output.pql_playbook",
        "quarantine",
        ROW_POLICIES,
        "Every PQL has a playbook.",
        "A PQL without a playbook cannot be worked by sales; look at the quarantined rows.",
    ),
)

CHECKS: dict[str, Check] = {check.name: check for check in _CHECKS}


def check_policies(settings: Settings) -> dict[str, Policy]:
    """The policy of every check: `validation.policies` over the defaults, refused if it cannot apply."""
    configured = settings.validation.policies
    problems = []
    for name, policy in configured.items():
        check = CHECKS.get(name)
        if check is None:
            problems.append(
                f"validation.policies: unknown check {name!r}. Known checks: {', '.join(CHECKS)}."
            )
        elif policy not in check.allowed:
            problems.append(
                f"validation.policies.{name}: {policy!r} is not possible for this check; "
                f"use {' or '.join(repr(p) for p in check.allowed)}."
            )
    if problems:
        raise ConfigError("\n".join(problems))
    return {name: configured.get(name, check.default) for name, check in CHECKS.items()}
