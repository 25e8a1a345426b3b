"""The PQL rules sales and marketing agreed on, applied to one run's scores.

An account becomes a PQL when it is eligible (on the free plan or in a trial, no open opportunity:
neither `crm_accounts.has_open_opportunity` nor, when the `opportunities` table is in use, one open at
`as_of` by its dates; not do-not-contact), its score is at or above the entry threshold, and its owner
still has room for new PQLs today (at most `max_new_pqls_per_owner`, highest scores first). Unowned
accounts are routed to `unowned_queue`, which has the same daily room as one owner.

A PQL stays a PQL while it is eligible, its score is at or above the (lower) exit threshold and it has
been on the list for at most `max_pql_age_days`; `first_pql_at` keeps the day the stay began.
A PQL retired for age keeps its `first_pql_at` and cannot come back until its score has dipped below
the exit threshold (a fresh surge, not the same one); any other PQL that leaves may qualify again
later, starting a new `first_pql_at`.

A rep's decision (`pql_feedback`, the latest before `as_of`) overrides the score: `disqualified` or
`done` takes the account off the list (`left_disqualified`, `left_done`) and keeps it off for
`feedback_cooldown_days` after the decision (`sales_cooldown`); after that it may qualify again like any
account, with a new `first_pql_at`. `accepted` during a stay keeps the PQL listed (sales owns it now)
however its score moves or however long it stays, until it converts, an opportunity opens, it becomes
do-not-contact or a later decision ends it; the row is then `is_sales_accepted`.

Previous state is the one left by the latest run strictly before `as_of`, so re-running a date gives
the same list.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from pql.config import FEEDBACK_DECISIONS, ScoringConfig, Settings
from pql.db import DataError
from pql.scoring.control import is_control
from pql.scoring.playbook import playbooks, trial_days_left

NEW = "new"
KEPT = "kept"
OVER_CAPACITY = "over_capacity"
COOLING_OFF = "cooling_off"
RETIRED_MAX_AGE = "retired_max_age"
DROPPED_CONVERTED = "dropped_converted"
DROPPED_OPPORTUNITY = "dropped_opportunity"
DROPPED_DO_NOT_CONTACT = "dropped_do_not_contact"
DROPPED_BELOW_EXIT = "dropped_below_exit"
LEFT_DISQUALIFIED = "left_disqualified"
LEFT_DONE = "left_done"
SALES_COOLDOWN = "sales_cooldown"
NOT_PQL = "not_pql"
LEFT_LIST = (
    RETIRED_MAX_AGE,
    DROPPED_CONVERTED,
    DROPPED_OPPORTUNITY,
    DROPPED_DO_NOT_CONTACT,
    DROPPED_BELOW_EXIT,
    LEFT_DISQUALIFIED,
    LEFT_DONE,
)
# Statuses of an account a rep's decision keeps off the list; its `left_reason` says whose and until when.
HELD_BY_SALES = (LEFT_DISQUALIFIED, LEFT_DONE, SALES_COOLDOWN)
ACCEPTED, DISQUALIFIED, DONE = FEEDBACK_DECISIONS
_DECIDED = {DISQUALIFIED: "disqualified", DONE: "marked done"}
PQL_PLANS = ("free", "trial")

SCORED_COLUMNS = ("account_id", "probability", "score", "plan", "is_eligible")
CRM_COLUMNS = ("account_id", "owner", "has_open_opportunity", "do_not_contact")
PREVIOUS_COLUMNS = ("account_id", "is_pql", "first_pql_at")
# Optional in `crm`: the latest rep decision before as_of (`scoring.crm.feedback_snapshot`).
FEEDBACK_COLUMNS = ("sales_decision", "sales_decided_at", "sales_decided_by", "sales_note")


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise DataError(f"{what} ({len(frame)} rows) lack column(s) {', '.join(missing)}.")
    duplicated = int(frame["account_id"].duplicated().sum())
    if duplicated:
        raise DataError(
            f"{what}: {duplicated} account_id value(s) appear more than once; "
            "each account must have one row. Remove the duplicates at the source."
        )


def _flag(values: pd.Series) -> np.ndarray:
    """A nullable boolean column as bools, unknown meaning False."""
    return values.astype(object).where(values.notna(), False).astype(bool).to_numpy()


def _local_day(moments: pd.Series, settings: Settings) -> pd.Series:
    aware = pd.to_datetime(moments).dt.tz_localize("UTC").dt.tz_convert(settings.zone)
    return aware.dt.normalize().dt.tz_localize(None)


def _text(value: object) -> str:
    return "" if pd.isna(value) else str(value).strip()


def _first_day_from(moments: pd.Series, settings: Settings) -> pd.Series:
    """The first local day whose start is at or after each moment: the first nightly run it reaches."""
    aware = pd.to_datetime(moments).dt.tz_localize("UTC").dt.tz_convert(settings.zone)
    return aware.dt.ceil("D", ambiguous=False, nonexistent="shift_forward").dt.tz_localize(None)


def _left_reasons(facts: pd.DataFrame, until: pd.Series, held: np.ndarray, settings: Settings) -> np.ndarray:
    """The text "disqualified by ana on 2026-05-02 (not a fit); may qualify again from 2026-07-31" for
    the rows a rep's decision holds off the list, None for the others."""
    reasons = np.full(len(facts), None, dtype=object)
    if not held.any():
        return reasons
    rows = facts[held]
    decided = _local_day(rows["sales_decided_at"], settings).dt.strftime("%Y-%m-%d")
    again = _first_day_from(until[held], settings).dt.strftime("%Y-%m-%d")
    rows = rows.assign(on=decided.to_numpy(), back=again.to_numpy())
    for place, row in zip(np.flatnonzero(held), rows.itertuples(index=False), strict=True):
        by = _text(row.sales_decided_by)
        note = _text(row.sales_note)
        reasons[place] = (
            f"{_DECIDED[row.sales_decision]}{f' by {by}' if by else ''} on {row.on}"
            f"{f' ({note})' if note else ''}; may qualify again from {row.back}"
        )
    return reasons


def _room_today(previous: pd.DataFrame, settings: Settings, as_of: pd.Timestamp) -> pd.Series:
    """New PQLs each routed_to may still receive today: capacity minus earlier runs of the same day."""
    capacity = settings.scoring.max_new_pqls_per_owner
    if previous.empty or "routed_to" not in previous:
        return pd.Series(dtype=float)
    day = _local_day(pd.Series([as_of]), settings).iloc[0]
    earlier = previous[_flag(previous["is_pql"]) & _local_day(previous["first_pql_at"], settings).eq(day)]
    return capacity - earlier.groupby("routed_to").size()


def apply_pql_rules(
    scored: pd.DataFrame,
    crm: pd.DataFrame,
    previous: pd.DataFrame,
    settings: Settings,
    as_of: datetime,
) -> pd.DataFrame:
    """`scored` plus is_pql, is_control, first_pql_at, routed_to, playbook, trial_days_left, pql_status
    and the rep feedback: sales_decision, sales_decided_at, is_sales_accepted, left_reason.

    With `outcomes.control_share` > 0, that share of qualifying accounts (salted hash of account_id) is
    held out: `is_control` true, `is_pql` false, not routed, but `first_pql_at` kept.

    `scored` needs account_id, probability, score, plan, is_eligible (and days_left_in_trial for the
    playbook); `crm` is `scoring.crm.crm_snapshot` (with the FEEDBACK_COLUMNS when `pql_feedback` is
    in use; without them no decision applies); `previous` is `scoring.writeback.previous_scores`
    (empty on the first run).
    """
    _require(scored, SCORED_COLUMNS, "scored accounts")
    _require(crm, CRM_COLUMNS, "crm_accounts snapshot")
    if not previous.empty:
        _require(previous, PREVIOUS_COLUMNS, "previous scores")
    rules, outcomes = settings.scoring, settings.outcomes
    as_of = pd.Timestamp(as_of)
    frame = scored.reset_index(drop=True)
    crm = crm.reindex(columns=[*CRM_COLUMNS, *FEEDBACK_COLUMNS])
    facts = frame[["account_id"]].merge(crm, on="account_id", how="left")
    prior = previous[list(PREVIOUS_COLUMNS)] if not previous.empty else pd.DataFrame(columns=PREVIOUS_COLUMNS)
    # A held-out (control) PQL qualified like any other: for hysteresis and first_pql_at it was a PQL.
    if "is_control" in previous.columns:
        prior = prior.assign(is_pql=_flag(previous["is_pql"]) | _flag(previous["is_control"]))
    prior = prior.rename(columns={"first_pql_at": "prior_first_pql_at"})
    facts = facts.merge(prior, on="account_id", how="left")

    score = frame["score"].to_numpy(dtype=float)
    plan = frame["plan"].astype(object)
    # An opportunity open at as_of (the dated `opportunities` table, through the features) makes the
    # account ineligible without taking it off a PQL plan: it leaves the list for the opportunity.
    open_at_as_of = (
        frame["open_opportunity_created_at"].notna().to_numpy()
        if "open_opportunity_created_at" in frame
        else np.zeros(len(frame), dtype=bool)
    )
    on_pql_plan = (_flag(frame["is_eligible"]) | open_at_as_of) & plan.isin(PQL_PLANS).to_numpy()
    opportunity = _flag(facts["has_open_opportunity"]) | open_at_as_of
    do_not_contact = _flag(facts["do_not_contact"])
    eligible = on_pql_plan & ~opportunity & ~do_not_contact
    was_pql = _flag(facts["is_pql"])
    prior_first = pd.to_datetime(facts["prior_first_pql_at"])

    decision = facts["sales_decision"].astype(object)
    decided_at = pd.to_datetime(facts["sales_decided_at"])
    ends = decision.isin((DISQUALIFIED, DONE)).to_numpy()
    until = decided_at + pd.Timedelta(days=rules.feedback_cooldown_days)
    blocked = ends & (until > as_of).to_numpy()
    # A decision made during the previous stay is about that stay (one made before it began is not).
    during_stay = (decided_at >= prior_first).to_numpy()
    removed = was_pql & ends & (blocked | during_stay)
    accepted = was_pql & ~removed & decision.eq(ACCEPTED).to_numpy() & during_stay
    stays = was_pql & ~removed
    # A stay a rep ended is over: no memory of it for age or the retired accounts' re-entry rule.
    prior_first = prior_first.where(~removed, pd.NaT)
    left_by_sales = np.where(decision.eq(DISQUALIFIED).to_numpy(), LEFT_DISQUALIFIED, LEFT_DONE)

    age_days = ((as_of - prior_first) / pd.Timedelta(days=1)).to_numpy(dtype=float)
    above_exit = score >= rules.pql_exit_score
    cooling = ~stays & prior_first.notna().to_numpy() & above_exit
    candidate = ~stays & ~cooling & ~blocked & eligible & (score >= rules.pql_entry_score)

    status = np.select(
        [
            stays & ~on_pql_plan,
            stays & opportunity,
            stays & do_not_contact,
            stays & ~accepted & ~above_exit,
            stays & ~accepted & (age_days > rules.max_pql_age_days),
            stays,
            removed & blocked,
            blocked,
            cooling,
            candidate,
            removed,
        ],
        [
            DROPPED_CONVERTED,
            DROPPED_OPPORTUNITY,
            DROPPED_DO_NOT_CONTACT,
            DROPPED_BELOW_EXIT,
            RETIRED_MAX_AGE,
            KEPT,
            left_by_sales,
            SALES_COOLDOWN,
            COOLING_OFF,
            OVER_CAPACITY,
            left_by_sales,
        ],
        NOT_PQL,
    ).astype(object)

    owner = facts["owner"].astype(object).where(facts["owner"].notna(), "").astype(str).str.strip()
    routed = owner.where(owner.ne(""), rules.unowned_queue).astype(object)
    status[_within_capacity(frame, routed, candidate, _room_today(previous, settings, as_of), rules)] = NEW
    # A PQL whose stay a rep ended and that qualifies again at once but finds no room has still left.
    waiting = removed & (status == OVER_CAPACITY)
    status[waiting] = left_by_sales[waiting]

    qualified = np.isin(status, (NEW, KEPT))
    # The control group is drawn after every rule, capacity included, so it mirrors the treated PQLs.
    held_out = (
        qualified & is_control(frame["account_id"], outcomes.control_share, outcomes.control_salt).to_numpy()
    )
    is_pql = qualified & ~held_out
    keeps_first = np.isin(status, (KEPT, RETIRED_MAX_AGE, COOLING_OFF))
    first_pql_at = prior_first.where(keeps_first, pd.NaT).where(status != NEW, as_of)
    days_left = frame.get("days_left_in_trial")
    return frame.assign(
        is_pql=is_pql,
        is_control=held_out,
        first_pql_at=first_pql_at.astype("datetime64[us]"),
        routed_to=routed.where(is_pql, None).astype(object),
        playbook=playbooks(plan, pd.Series(is_pql)),
        trial_days_left=trial_days_left(plan, days_left),
        pql_status=status,
        sales_decision=decision.where(decision.notna(), None),
        sales_decided_at=decided_at.astype("datetime64[us]"),
        is_sales_accepted=is_pql & accepted,
        left_reason=_left_reasons(facts, until, np.isin(status, HELD_BY_SALES), settings),
    )


def _within_capacity(
    frame: pd.DataFrame,
    routed: pd.Series,
    candidate: np.ndarray,
    room_today: pd.Series,
    rules: ScoringConfig,
) -> np.ndarray:
    """Candidates that fit their owner's room today, highest score (then probability) first."""
    queue = pd.DataFrame(
        {
            "routed_to": routed[candidate].to_numpy(),
            "score": frame["score"].to_numpy()[candidate],
            "probability": frame["probability"].to_numpy()[candidate],
            "account_id": frame["account_id"].to_numpy()[candidate],
            "row": np.flatnonzero(candidate),
        }
    ).sort_values(["score", "probability", "account_id"], ascending=[False, False, True])
    place = queue.groupby("routed_to", sort=False).cumcount().to_numpy()
    room = queue["routed_to"].map(room_today).fillna(rules.max_new_pqls_per_owner).to_numpy()
    allowed = np.zeros(len(frame), dtype=bool)
    allowed[queue["row"].to_numpy()[place < room]] = True
    return allowed
