"""The aggregates the source-side checks validate, computed in the database with SQLAlchemy Core.

Each query returns a handful of rows whatever the size of the tables: counts over the run's window,
one row per event name and day, one row per plan name. The `*_examples` queries fetch at most
`EXAMPLES` offending rows, and only run when a check has already failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa

from pql.schema import SourceTables
from pql.validation.gx_runner import EXAMPLES, frame_of_query
from pql.validation.jsonable import row_text

# A bounded sample: properties are parsed in Python (JSON functions differ per database), once per text.
PROPERTIES_SAMPLE = 10_000


def has_events(conn: sa.Connection, tables: SourceTables) -> bool:
    """Whether the events table holds any row, at any time: one row read, whatever the table's size."""
    return conn.execute(sa.select(sa.literal(1)).select_from(tables.events).limit(1)).first() is not None


def _count(conn: sa.Connection, query: sa.Select) -> int:
    return int(conn.execute(query).scalar_one() or 0)


def _examples(conn: sa.Connection, query: sa.Select) -> list[str]:
    return [row_text(row) for row in frame_of_query(conn, query.limit(EXAMPLES)).to_dict("records")]


def _in_window(tables: SourceTables, start: datetime, end: datetime) -> sa.ColumnElement[bool]:
    occurred_at = tables.events.c.occurred_at
    return sa.and_(occurred_at >= start, occurred_at < end)


def _null_id(tables: SourceTables) -> sa.ColumnElement[bool]:
    e = tables.events.c
    return sa.or_(e.event_id.is_(None), e.account_id.is_(None), e.user_id.is_(None))


def _unknown_account_events(tables: SourceTables) -> sa.FromClause:
    e, a = tables.events, tables.accounts
    return e.outerjoin(a, a.c.account_id == e.c.account_id)


def _day_before(
    occurred_at: sa.ColumnElement[datetime], end: datetime, first: int, last: int
) -> sa.ColumnElement:
    """k in [first, last] such that occurred_at is in [end - k days, end - (k-1) days), as a balanced
    tree of CASEs: about log2(days) comparisons per row instead of one per day."""
    if first == last:
        return sa.literal(first)
    middle = (first + last) // 2
    return sa.case(
        (occurred_at >= end - timedelta(days=middle), _day_before(occurred_at, end, first, middle)),
        else_=_day_before(occurred_at, end, middle + 1, last),
    )


def events_daily_counts(conn: sa.Connection, tables: SourceTables, end: datetime, days: int) -> pd.DataFrame:
    """days_before, events: day k is [end - k days, end - (k-1) days), k = 1..days; empty days absent.

    Reads only `occurred_at`, the cheapest column to scan.
    """
    day = _day_before(tables.events.c.occurred_at, end, 1, days).label("days_before")
    query = (
        sa.select(day, sa.func.count().label("events"))
        .where(_in_window(tables, end - timedelta(days=days), end))
        .group_by(day)
    )
    return frame_of_query(conn, query).astype({"days_before": "int64", "events": "int64"})


def event_names(
    conn: sa.Connection, tables: SourceTables, end: datetime, days: int, new_since: datetime
) -> pd.DataFrame:
    """event_name, is_new, events: per name, events in [new_since, end) and in the days before it."""
    name = tables.events.c.event_name
    periods = ((False, end - timedelta(days=days), new_since), (True, new_since, end))
    query = sa.union_all(
        *(
            sa.select(
                name.label("event_name"), sa.literal(is_new).label("is_new"), sa.func.count().label("events")
            )
            .where(_in_window(tables, start, stop))
            .group_by(name)
            for is_new, start, stop in periods
        )
    )
    return frame_of_query(conn, query).astype({"is_new": "bool", "events": "int64"})


def new_events_counts(
    conn: sa.Connection,
    tables: SourceTables,
    start: datetime,
    end: datetime,
    future_after: datetime,
    *,
    window_start: datetime,
) -> pd.DataFrame:
    """One row over the new events, [start, end): how many, with a null id per id column, of unknown
    accounts; events repeating an event_id over the whole window [window_start, end), and their share
    of the window's events; and events anywhere in the table after `future_after`."""
    e, a = tables.events, tables.accounts
    in_window = _in_window(tables, start, end)
    row = conn.execute(
        sa.select(
            sa.func.count().label("events"),
            sa.func.count(e.c.event_id).label("with_event_id"),
            sa.func.count(e.c.account_id).label("with_account_id"),
            sa.func.count(e.c.user_id).label("with_user_id"),
        ).where(in_window)
    ).one()
    unknown = _count(
        conn,
        sa.select(sa.func.count())
        .select_from(_unknown_account_events(tables))
        .where(in_window, e.c.account_id.is_not(None), a.c.account_id.is_(None)),
    )
    future = _count(conn, sa.select(sa.func.count()).select_from(e).where(e.c.occurred_at > future_after))
    window_events, duplicates = _window_duplicates(conn, tables, window_start, end)
    events = int(row.events)
    return pd.DataFrame(
        {
            "events": [events],
            "null_event_id": [events - int(row.with_event_id)],
            "null_account_id": [events - int(row.with_account_id)],
            "null_user_id": [events - int(row.with_user_id)],
            "duplicate_events": [duplicates],
            "duplicate_rate": [duplicates / window_events if window_events else 0.0],
            "unknown_account_events": [unknown],
            "future_events": [future],
        }
    )


def _window_duplicates(
    conn: sa.Connection, tables: SourceTables, start: datetime, end: datetime
) -> tuple[int, int]:
    """The events in [start, end) and how many of them repeat an event_id of another one there: one
    aggregate over the window, which is all a run reads (a day loaded twice weeks ago skews features
    as much as one loaded twice yesterday)."""
    e = tables.events.c
    row = conn.execute(
        sa.select(
            sa.func.count().label("events"),
            sa.func.count(e.event_id).label("with_event_id"),
            sa.func.count(sa.distinct(e.event_id)).label("distinct_event_ids"),
        ).where(_in_window(tables, start, end))
    ).one()
    return int(row.events), int(row.with_event_id - row.distinct_event_ids)


def newest_properties(
    conn: sa.Connection, tables: SourceTables, start: datetime, end: datetime
) -> pd.DataFrame:
    """properties, events, event_id: each distinct properties text of the events in [start, end), with
    how many events carry it and one of them; the most frequent PROPERTIES_SAMPLE texts."""
    e = tables.events.c
    events = sa.func.count().label("events")
    query = (
        sa.select(e.properties.label("properties"), events, sa.func.min(e.event_id).label("event_id"))
        .where(_in_window(tables, start, end), e.properties.is_not(None))
        .group_by(e.properties)
        .order_by(events.desc(), e.properties)
        .limit(PROPERTIES_SAMPLE)
    )
    return frame_of_query(conn, query)


def events_examples(
    conn: sa.Connection,
    tables: SourceTables,
    check: str,
    start: datetime,
    end: datetime,
    future_after: datetime,
    *,
    window_start: datetime,
) -> list[str]:
    """Up to EXAMPLES events (or event ids / account ids with their counts) behind a failed check;
    repeated event ids are looked for over the whole window [window_start, end)."""
    e, a = tables.events, tables.accounts
    in_window = _in_window(tables, start, end)
    shown = (e.c.event_id, e.c.account_id, e.c.user_id, e.c.event_name, e.c.occurred_at)
    n = sa.func.count().label("events")
    if check == "events.ids_not_null":
        query = sa.select(*shown).where(in_window, _null_id(tables)).order_by(e.c.occurred_at)
    elif check == "events.not_in_future":
        query = sa.select(*shown).where(e.c.occurred_at > future_after).order_by(e.c.occurred_at.desc())
    elif check == "events.duplicate_rate":
        query = (
            sa.select(e.c.event_id, n)
            .where(_in_window(tables, window_start, end), e.c.event_id.is_not(None))
            .group_by(e.c.event_id)
            .having(sa.func.count() > 1)
            .order_by(n.desc(), e.c.event_id)
        )
    elif check == "events.known_accounts":
        query = (
            sa.select(e.c.account_id, n)
            .select_from(_unknown_account_events(tables))
            .where(in_window, e.c.account_id.is_not(None), a.c.account_id.is_(None))
            .group_by(e.c.account_id)
            .order_by(n.desc(), e.c.account_id)
        )
    else:
        return []
    return _examples(conn, query)


def plan_names(tables: SourceTables, as_of: datetime) -> sa.Select:
    """plan, changes: every plan name used as from_plan or to_plan before as_of, with its count."""
    p = tables.plan_changes.c
    before = p.changed_at < as_of
    used = sa.union_all(
        sa.select(p.to_plan.label("plan")).where(before),
        sa.select(p.from_plan.label("plan")).where(before, p.from_plan.is_not(None)),
    ).subquery()
    return (
        sa.select(used.c.plan, sa.func.count().label("changes")).group_by(used.c.plan).order_by(used.c.plan)
    )


def _plan_change_conditions(
    tables: SourceTables, as_of: datetime, paid: Sequence[str], trial: Sequence[str]
) -> dict[str, tuple[sa.FromClause, sa.ColumnElement[bool]]]:
    p, a = tables.plan_changes, tables.accounts
    joined = p.outerjoin(a, a.c.account_id == p.c.account_id)
    before = p.c.changed_at < as_of
    return {
        "unknown_account_changes": (joined, sa.and_(before, a.c.account_id.is_(None))),
        "paid_before_created": (
            joined,
            sa.and_(before, p.c.to_plan.in_(list(paid)), p.c.changed_at < a.c.created_at),
        ),
        "trials_ending_before_start": (
            p,
            sa.and_(
                before,
                p.c.to_plan.in_(list(trial)),
                p.c.trial_ends_at.is_not(None),
                p.c.trial_ends_at <= p.c.changed_at,
            ),
        ),
    }


PLAN_CHANGE_COUNTS = {
    "plan_changes.known_accounts": "unknown_account_changes",
    "plan_changes.paid_after_created": "paid_before_created",
    "plan_changes.trial_ends_after_start": "trials_ending_before_start",
}


def plan_change_counts(
    conn: sa.Connection, tables: SourceTables, as_of: datetime, paid: Sequence[str], trial: Sequence[str]
) -> pd.DataFrame:
    """One row: plan changes before as_of of unknown accounts, into paid before the account was
    created, and into a trial ending at or before its start."""
    conditions = _plan_change_conditions(tables, as_of, paid, trial)
    counts = {
        name: _count(conn, sa.select(sa.func.count()).select_from(source).where(where))
        for name, (source, where) in conditions.items()
    }
    return pd.DataFrame({name: [count] for name, count in counts.items()})


def plan_change_examples(
    conn: sa.Connection,
    tables: SourceTables,
    check: str,
    as_of: datetime,
    paid: Sequence[str],
    trial: Sequence[str],
) -> list[str]:
    """Up to EXAMPLES plan changes behind a failed plan-change check."""
    column = PLAN_CHANGE_COUNTS.get(check)
    if column is None:
        return []
    source, where = _plan_change_conditions(tables, as_of, paid, trial)[column]
    p, a = tables.plan_changes.c, tables.accounts.c
    shown = [p.account_id, p.changed_at, p.from_plan, p.to_plan]
    if column == "paid_before_created":
        shown.append(a.created_at.label("account_created_at"))
    if column == "trials_ending_before_start":
        shown.append(p.trial_ends_at)
    return _examples(conn, sa.select(*shown).select_from(source).where(where).order_by(p.changed_at))


def account_counts(conn: sa.Connection, tables: SourceTables) -> pd.DataFrame:
    """One row over the whole accounts table: accounts, null ids, repeated ids, null created_at."""
    a = tables.accounts.c
    row = conn.execute(
        sa.select(
            sa.func.count().label("accounts"),
            sa.func.count(a.account_id).label("with_id"),
            sa.func.count(sa.distinct(a.account_id)).label("distinct_ids"),
            sa.func.count(a.created_at).label("with_created_at"),
        ).select_from(tables.accounts)
    ).one()
    return pd.DataFrame(
        {
            "accounts": [int(row.accounts)],
            "null_ids": [int(row.accounts - row.with_id)],
            "duplicate_ids": [int(row.with_id - row.distinct_ids)],
            "null_created_at": [int(row.accounts - row.with_created_at)],
        }
    )


def account_examples(conn: sa.Connection, tables: SourceTables, check: str) -> list[str]:
    """Up to EXAMPLES accounts behind a failed accounts check."""
    a = tables.accounts.c
    if check == "accounts.unique_ids":
        n = sa.func.count().label("rows")
        repeated = (
            sa.select(a.account_id, n)
            .where(a.account_id.is_not(None))
            .group_by(a.account_id)
            .having(sa.func.count() > 1)
            .order_by(n.desc(), a.account_id)
        )
        nulls = sa.select(a.name, a.domain, a.created_at).where(a.account_id.is_(None))
        return (_examples(conn, repeated) + _examples(conn, nulls))[:EXAMPLES]
    if check == "accounts.created_at_not_null":
        return _examples(
            conn, sa.select(a.account_id, a.name).where(a.created_at.is_(None)).order_by(a.account_id)
        )
    return []


# --- the optional sales tables --------------------------------------------------------------------


@dataclass(frozen=True)
class SalesCondition:
    """One kind of bad row in a sales table: the check it fails, the batch (table) it belongs to, the
    rows to count and the columns that show one."""

    check: str
    batch: str
    source: sa.FromClause
    where: sa.ColumnElement[bool]
    shown: tuple[sa.ColumnElement, ...]


def sales_conditions(
    tables: SourceTables, as_of: datetime, future_after: datetime, decisions: Sequence[str]
) -> dict[str, SalesCondition]:
    """The bad rows of the sales tables, by the counts column that holds their number. Rows dated at or
    after as_of are not read by this run and not judged, except for a date later than `future_after`
    (the run's start plus the tolerance), which is a clock or units error whatever the as_of."""
    a, act, opp, fb = tables.accounts, tables.crm_activities, tables.opportunities, tables.pql_feedback
    act_joined = act.outerjoin(a, a.c.account_id == act.c.account_id)
    opp_joined = opp.outerjoin(a, a.c.account_id == opp.c.account_id)
    fb_joined = fb.outerjoin(a, a.c.account_id == fb.c.account_id)
    act_before, opp_before, fb_before = (
        act.c.occurred_at < as_of,
        opp.c.created_at < as_of,
        fb.c.decided_at < as_of,
    )
    act_shown = (act.c.activity_id, act.c.account_id, act.c.occurred_at)
    opp_shown = (opp.c.opportunity_id, opp.c.account_id, opp.c.created_at)
    fb_shown = (fb.c.account_id, fb.c.owner, fb.c.decided_at, fb.c.decision)
    return {
        "unknown_account_activities": SalesCondition(
            "sales.activities_known_accounts",
            "activities",
            act_joined,
            sa.and_(act_before, a.c.account_id.is_(None)),
            act_shown,
        ),
        "activities_before_account_created": SalesCondition(
            "sales.activities_after_account_created",
            "activities",
            act_joined,
            sa.and_(act_before, act.c.occurred_at < a.c.created_at),
            (*act_shown, a.c.created_at.label("account_created_at")),
        ),
        "future_activities": SalesCondition(
            "sales.not_in_future", "activities", act, act.c.occurred_at > future_after, act_shown
        ),
        "unknown_account_opportunities": SalesCondition(
            "sales.opportunities_known_accounts",
            "opportunities",
            opp_joined,
            sa.and_(opp_before, a.c.account_id.is_(None)),
            opp_shown,
        ),
        "closed_before_created": SalesCondition(
            "sales.opportunities_closed_after_created",
            "opportunities",
            opp,
            sa.and_(opp_before, opp.c.closed_at < opp.c.created_at),
            (*opp_shown, opp.c.closed_at),
        ),
        "won_without_closed_at": SalesCondition(
            "sales.won_opportunities_closed",
            "opportunities",
            opp,
            sa.and_(opp_before, opp.c.is_won.is_(True), opp.c.closed_at.is_(None)),
            (*opp_shown, opp.c.stage, opp.c.is_won),
        ),
        "negative_amounts": SalesCondition(
            "sales.amounts_not_negative",
            "opportunities",
            opp,
            sa.and_(opp_before, opp.c.amount < 0),
            (*opp_shown, opp.c.amount),
        ),
        "future_opportunities": SalesCondition(
            "sales.not_in_future", "opportunities", opp, opp.c.created_at > future_after, opp_shown
        ),
        "unknown_account_feedback": SalesCondition(
            "sales.feedback_known_accounts",
            "feedback",
            fb_joined,
            sa.and_(fb_before, a.c.account_id.is_(None)),
            fb_shown,
        ),
        "unknown_decisions": SalesCondition(
            "sales.known_decisions",
            "feedback",
            fb,
            # Case-blind and trimmed, as the PQL rules read them: 'Accepted' written by a sync counts.
            sa.and_(
                fb_before,
                sa.or_(
                    fb.c.decision.is_(None),
                    sa.func.lower(sa.func.trim(fb.c.decision)).not_in(list(decisions)),
                ),
            ),
            fb_shown,
        ),
        "future_feedback": SalesCondition(
            "sales.not_in_future", "feedback", fb, fb.c.decided_at > future_after, fb_shown
        ),
    }


def sales_counts(conn: sa.Connection, conditions: Mapping[str, SalesCondition], batch: str) -> pd.DataFrame:
    """One row: the number of rows of each condition of `batch` (one sales table)."""
    counts = {
        name: _count(conn, sa.select(sa.func.count()).select_from(c.source).where(c.where))
        for name, c in conditions.items()
        if c.batch == batch
    }
    return pd.DataFrame({name: [count] for name, count in counts.items()})


def sales_examples(
    conn: sa.Connection, conditions: Mapping[str, SalesCondition], check: str, batches: Sequence[str]
) -> list[str]:
    """Up to EXAMPLES rows behind a failed sales check, from the tables (`batches`) that were checked."""
    found: list[str] = []
    for c in conditions.values():
        if c.check == check and c.batch in batches:
            query = sa.select(*c.shown).select_from(c.source).where(c.where).order_by(*c.shown)
            found += _examples(conn, query)
    return found[:EXAMPLES]
