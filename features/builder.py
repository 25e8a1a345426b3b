"""The point-in-time feature builder: one SQL statement for any number of `as_of` snapshots.

Grain of the result: one row per (account_id, as_of) for every account created before `as_of`.

The statement is a chain of named CTEs:

- `snapshots`: one row per `as_of`, with every boundary the windows need bound as a parameter
  (the previous `as_of`, and the start of each of the 28 days before `as_of`);
- `account_grid`: every account at every snapshot;
- `windowed_events`: events in `[as_of - 28d, as_of)` of each snapshot, tagged with their day (1..28);
- `daily_activity` -> `activity`: events per account and day, then window counts, active days and
  key-event counts; `user_activity` -> `active_users` and `event_type_activity` -> `breadth`: distinct
  users and event names, counted without COUNT(DISTINCT), which row stores can only do by sorting;
- `period_last_events`, `period_last_key_events` -> `recency`: the last event (and key event) before
  each `as_of`. Each event falls in exactly one period between consecutive snapshots, so the scan is
  linear in events however many snapshots there are; a running maximum over the periods up to `as_of`
  then gives the latest event before it;
- `team`: users and new users before `as_of`;
- `ranked_plan_changes` -> `plan_at_as_of`: the latest plan change strictly before `as_of`;
- `opportunities_at_as_of` (only when the optional `opportunities` table is in use): the earliest
  creation of an opportunity open at `as_of` (created before it, not closed before it) and the latest
  close of a won one closed before it; both only ever make an account ineligible;
- the final SELECT: the grid of accounts created before `as_of`, left-joined to all of the above.

Only per-account rows come back; durations and ratios are then derived from them in pandas
(`derived_features`), which keeps the SQL free of dialect-specific date arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pql.config import SALES_LABELS, KeyEvent, Settings
from pql.db import DataError
from pql.features.catalog import (
    ACTIVE_DAYS_WINDOWS_DAYS,
    ACTIVE_USERS_WINDOWS_DAYS,
    ACTIVITY_WINDOWS_DAYS,
    KEY_EVENT_WINDOWS_DAYS,
    LONGEST_WINDOW_DAYS,
    MOMENTUM_PRIOR_DAYS,
    MOMENTUM_RECENT_DAYS,
    NEW_USERS_WINDOWS_DAYS,
    AttributeColumn,
    attribute_columns,
    feature_specs,
    key_event_columns,
)
from pql.features.sql import (
    bound_parameter_count,
    check_parameter_budget,
    count_where,
    key_event_condition,
    parameter_limit,
    rows_cte,
)
from pql.schema import TIMESTAMP, SourceTables, in_use

DAY = timedelta(days=1)
# Lower bound of the first period: before any timestamp a source can hold.
EARLIEST = datetime(1, 1, 1)
SECONDS_PER_DAY = 86400.0
# Bound per snapshot row: as_of, period_start and each day's start.
SNAPSHOT_PARAMETERS = 2 + LONGEST_WINDOW_DAYS
TIMESTAMP_COLUMNS = (
    "as_of",
    "created_at",
    "last_event_at",
    "last_key_event_at",
    "plan_changed_at",
    "trial_ends_at",
    "open_opportunity_created_at",
    "won_opportunity_closed_at",
)
# Eligibility facts after `is_eligible`: why an account is out, not features (no model reads them).
OPPORTUNITY_COLUMNS = ("open_opportunity_created_at", "won_opportunity_closed_at")


def snapshot_instants(as_of: Sequence[datetime]) -> list[datetime]:
    """Distinct snapshot instants, sorted, naive UTC (aware values are converted, naive ones are UTC)."""
    instants = set()
    for value in as_of:
        if isinstance(value, date) and not isinstance(value, datetime):
            raise ValueError(
                f"as_of {value!r} is a date, not an instant: turn a local date into one with "
                "pql.clock.start_of_day(day, settings.zone)."
            )
        moment = pd.Timestamp(value)
        if moment.tzinfo is not None:
            moment = moment.tz_convert("UTC").tz_localize(None)
        instants.add(moment.to_pydatetime())
    return sorted(instants)


def naive_timestamps(values: pd.Series) -> pd.Series:
    """Timestamps as the one dtype every frame here uses (`as_of` included): naive datetime64[us]."""
    return pd.to_datetime(values).astype("datetime64[us]")


def _day_start(day: int) -> str:
    return f"day_{day}_start"


def snapshots_cte(instants: Sequence[datetime]) -> sa.CTE:
    """One row per snapshot: `as_of`, the previous `as_of` (`period_start`) and each day's start."""
    columns = [("as_of", TIMESTAMP), ("period_start", TIMESTAMP)]
    columns += [(_day_start(day), TIMESTAMP) for day in range(1, LONGEST_WINDOW_DAYS + 1)]
    rows = []
    previous = EARLIEST
    for moment in instants:
        rows.append((moment, previous, *(moment - day * DAY for day in range(1, LONGEST_WINDOW_DAYS + 1))))
        previous = moment
    return rows_cte("snapshots", columns, rows)


def _reads_properties(settings: Settings) -> bool:
    return any(event.where for event in settings.key_events)


def _windowed_events(
    tables: SourceTables, snapshots: sa.CTE, instants: Sequence[datetime], settings: Settings
) -> sa.CTE:
    events = tables.events.c
    day_index = sa.case(
        *(
            (events.occurred_at >= snapshots.c[_day_start(day)], sa.literal_column(str(day)))
            for day in range(1, LONGEST_WINDOW_DAYS)
        ),
        else_=sa.literal_column(str(LONGEST_WINDOW_DAYS)),
    )
    in_window = sa.and_(
        events.occurred_at >= snapshots.c[_day_start(LONGEST_WINDOW_DAYS)],
        events.occurred_at < snapshots.c.as_of,
    )
    return (
        sa.select(
            snapshots.c.as_of,
            events.account_id,
            events.user_id,
            events.event_name,
            *([events.properties] if _reads_properties(settings) else []),
            day_index.label("day_index"),
        )
        .select_from(tables.events.join(snapshots, in_window))
        # Constant bounds as well, so engines can prune the scan before the join.
        .where(
            events.account_id.is_not(None),
            events.occurred_at >= instants[0] - LONGEST_WINDOW_DAYS * DAY,
            events.occurred_at < instants[-1],
        )
        .cte("windowed_events")
    )


def _daily_activity(windowed: sa.CTE, settings: Settings) -> sa.CTE:
    """Events per account, snapshot and day (1..28), in total and per key event."""
    w = windowed.c
    properties = w.properties if _reads_properties(settings) else None
    key_counts = [
        count_where(key_event_condition(w.event_name, properties, key.event)).label(f"events_{key.slug}")
        for key in key_event_columns(settings)
    ]
    return (
        sa.select(w.as_of, w.account_id, w.day_index, sa.func.count().label("events"), *key_counts)
        .group_by(w.as_of, w.account_id, w.day_index)
        .cte("daily_activity")
    )


def _activity(daily: sa.CTE, settings: Settings) -> sa.CTE:
    d = daily.c

    def total(column: sa.ColumnElement[int], days: int) -> sa.ColumnElement[int]:
        return sa.cast(sa.func.sum(sa.case((d.day_index <= days, column), else_=0)), sa.BigInteger)

    columns = [total(d.events, days).label(f"count_events_{days}d") for days in ACTIVITY_WINDOWS_DAYS]
    columns += [
        count_where(d.day_index <= days).label(f"count_active_days_{days}d")
        for days in ACTIVE_DAYS_WINDOWS_DAYS
    ]
    columns += [
        total(d[f"events_{key.slug}"], days).label(key.column(days))
        for key in key_event_columns(settings)
        for days in KEY_EVENT_WINDOWS_DAYS
    ]
    return sa.select(d.as_of, d.account_id, *columns).group_by(d.as_of, d.account_id).cte("activity")


def _active_users(windowed: sa.CTE) -> sa.CTE:
    """Users with an event in each window; a user's most recent active day decides the windows."""
    w = windowed.c
    users = (
        sa.select(w.as_of, w.account_id, w.user_id, sa.func.min(w.day_index).label("latest_day"))
        .where(w.user_id.is_not(None))
        .group_by(w.as_of, w.account_id, w.user_id)
        .cte("user_activity")
    )
    u = users.c
    columns = [
        count_where(u.latest_day <= days).label(f"count_active_users_{days}d")
        for days in ACTIVE_USERS_WINDOWS_DAYS
    ]
    return sa.select(u.as_of, u.account_id, *columns).group_by(u.as_of, u.account_id).cte("active_users")


def _breadth(windowed: sa.CTE) -> sa.CTE:
    w = windowed.c
    types = (
        sa.select(w.as_of, w.account_id, w.event_name)
        .group_by(w.as_of, w.account_id, w.event_name)
        .cte("event_type_activity")
    )
    t = types.c
    count = sa.func.count().label(f"count_distinct_event_types_{LONGEST_WINDOW_DAYS}d")
    return sa.select(t.as_of, t.account_id, count).group_by(t.as_of, t.account_id).cte("breadth")


def _period_last_events(
    tables: SourceTables,
    snapshots: sa.CTE,
    instants: Sequence[datetime],
    name: str,
    key_events: Sequence[KeyEvent] | None = None,
) -> sa.CTE:
    """Per account, the last event (of `key_events`, if given) in each period between snapshots."""
    events = tables.events.c
    in_period = sa.and_(
        events.occurred_at >= snapshots.c.period_start, events.occurred_at < snapshots.c.as_of
    )
    conditions = [events.account_id.is_not(None), events.occurred_at < instants[-1]]
    if key_events is not None:
        # A filter rather than a CASE inside MAX: columnar engines push it into the scan.
        plain = [event.name for event in key_events if not event.where]
        either = [events.event_name.in_(plain)] if plain else []
        either += [
            key_event_condition(events.event_name, events.properties, event)
            for event in key_events
            if event.where
        ]
        conditions.append(sa.or_(*either))
    return (
        sa.select(snapshots.c.as_of, events.account_id, sa.func.max(events.occurred_at).label("last_at"))
        .select_from(tables.events.join(snapshots, in_period))
        .where(*conditions)
        .group_by(snapshots.c.as_of, events.account_id)
        .cte(name)
    )


def _recency(grid: sa.CTE, last_events: sa.CTE, last_key_events: sa.CTE) -> sa.CTE:
    """Running maximum over the periods up to each `as_of`: the latest event strictly before it."""

    def running_max(column: sa.ColumnElement[datetime]) -> sa.ColumnElement[datetime]:
        return sa.func.max(column).over(partition_by=grid.c.account_id, order_by=grid.c.as_of, rows=(None, 0))

    def same_period(cte: sa.CTE) -> sa.ColumnElement[bool]:
        return sa.and_(cte.c.account_id == grid.c.account_id, cte.c.as_of == grid.c.as_of)

    joined = grid.outerjoin(last_events, same_period(last_events)).outerjoin(
        last_key_events, same_period(last_key_events)
    )
    return (
        sa.select(
            grid.c.as_of,
            grid.c.account_id,
            running_max(last_events.c.last_at).label("last_event_at"),
            running_max(last_key_events.c.last_at).label("last_key_event_at"),
        )
        .select_from(joined)
        .cte("recency")
    )


def _team(tables: SourceTables, snapshots: sa.CTE) -> sa.CTE:
    users = tables.users.c
    columns = [sa.func.count().label("count_users")]
    columns += [
        count_where(users.created_at >= snapshots.c[_day_start(days)]).label(f"count_new_users_{days}d")
        for days in NEW_USERS_WINDOWS_DAYS
    ]
    return (
        sa.select(snapshots.c.as_of, users.account_id, *columns)
        .select_from(tables.users.join(snapshots, users.created_at < snapshots.c.as_of))
        .where(users.account_id.is_not(None))
        .group_by(snapshots.c.as_of, users.account_id)
        .cte("team")
    )


def _plan_at_as_of(tables: SourceTables, snapshots: sa.CTE, settings: Settings) -> sa.CTE:
    changes = tables.plan_changes.c
    plans = settings.plans
    kind = sa.case(
        (changes.to_plan.in_(plans.paid), sa.literal("paid")),
        (changes.to_plan.in_(plans.trial), sa.literal("trial")),
        (changes.to_plan.in_(plans.free), sa.literal("free")),
    )
    # Two changes at the same instant are a data problem; prefer the paid one so eligibility errs on
    # the side of not pitching an account that already pays.
    tie_break = sa.case((changes.to_plan.in_(plans.paid), 0), (changes.to_plan.in_(plans.trial), 1), else_=2)
    ranked = (
        sa.select(
            snapshots.c.as_of,
            changes.account_id,
            changes.to_plan,
            kind.label("plan_kind"),
            changes.changed_at.label("plan_changed_at"),
            changes.trial_ends_at,
            sa.func.row_number()
            .over(
                partition_by=(snapshots.c.as_of, changes.account_id),
                order_by=(changes.changed_at.desc(), tie_break),
            )
            .label("recency_rank"),
        )
        .select_from(tables.plan_changes.join(snapshots, changes.changed_at < snapshots.c.as_of))
        .cte("ranked_plan_changes")
    )
    latest = ranked.c
    return (
        sa.select(
            latest.as_of,
            latest.account_id,
            latest.to_plan,
            latest.plan_kind,
            latest.plan_changed_at,
            latest.trial_ends_at,
        )
        .where(latest.recency_rank == 1)
        .cte("plan_at_as_of")
    )


def _opportunities_at_as_of(tables: SourceTables, snapshots: sa.CTE) -> sa.CTE:
    """Per account and snapshot, from opportunities created strictly before `as_of`: the earliest
    creation of one still open at `as_of` (no close, or a close at or after it) and the latest close of
    a won one closed strictly before it. Nothing created at or after `as_of` is read."""
    o = tables.opportunities.c
    is_open = sa.or_(o.closed_at.is_(None), o.closed_at >= snapshots.c.as_of)
    won_before = sa.and_(o.is_won.is_(True), o.closed_at < snapshots.c.as_of)
    return (
        sa.select(
            snapshots.c.as_of,
            o.account_id,
            sa.func.min(sa.case((is_open, o.created_at))).label("open_opportunity_created_at"),
            sa.func.max(sa.case((won_before, o.closed_at))).label("won_opportunity_closed_at"),
        )
        .select_from(tables.opportunities.join(snapshots, o.created_at < snapshots.c.as_of))
        .group_by(snapshots.c.as_of, o.account_id)
        .cte("opportunities_at_as_of")
    )


def _attributes_at_as_of(tables: SourceTables, snapshots: sa.CTE, settings: Settings) -> sa.CTE | None:
    """Per account and snapshot, the latest value of each configured attribute with valid_from < as_of."""
    keyed = [attribute for attribute in attribute_columns(settings) if attribute.source == "attributes"]
    if not keyed:
        return None
    t = tables.account_attributes.c
    ranked = (
        sa.select(
            snapshots.c.as_of,
            t.account_id,
            t.name,
            t.value,
            sa.func.row_number()
            .over(
                partition_by=(snapshots.c.as_of, t.account_id, t.name),
                # Two values from the same instant are a data problem; the larger text wins, always.
                order_by=(t.valid_from.desc(), t.value.desc()),
            )
            .label("recency_rank"),
        )
        .select_from(tables.account_attributes.join(snapshots, t.valid_from < snapshots.c.as_of))
        .where(t.name.in_([attribute.name for attribute in keyed]))
        .cte("ranked_attributes")
    )
    r = ranked.c
    values = [
        sa.func.max(sa.case((r.name == sa.bindparam(None, attribute.name, type_=sa.Text()), r.value))).label(
            attribute.feature
        )
        for attribute in keyed
    ]
    return (
        sa.select(r.as_of, r.account_id, *values)
        .where(r.recency_rank == 1)
        .group_by(r.as_of, r.account_id)
        .cte("attributes_at_as_of")
    )


def _count_columns(settings: Settings) -> dict[str, str]:
    """Every SQL-computed count column and the CTE that holds it."""
    columns = {f"count_events_{days}d": "activity" for days in ACTIVITY_WINDOWS_DAYS}
    columns |= {f"count_active_days_{days}d": "activity" for days in ACTIVE_DAYS_WINDOWS_DAYS}
    columns["count_users"] = "team"
    columns |= {f"count_active_users_{days}d": "active_users" for days in ACTIVE_USERS_WINDOWS_DAYS}
    columns |= {f"count_new_users_{days}d": "team" for days in NEW_USERS_WINDOWS_DAYS}
    columns[f"count_distinct_event_types_{LONGEST_WINDOW_DAYS}d"] = "breadth"
    columns |= {
        key.column(days): "activity" for key in key_event_columns(settings) for days in KEY_EVENT_WINDOWS_DAYS
    }
    return columns


def features_statement(
    tables: SourceTables, settings: Settings, instants: Sequence[datetime], *, opportunities: bool = False
) -> sa.Select:
    """The one SELECT computing per-account rows for every instant in `instants` (sorted, distinct);
    `opportunities`: whether the optional `opportunities` table is read (`pql.schema.in_use`)."""
    snapshots = snapshots_cte(instants)
    accounts = tables.accounts.c
    grid = (
        sa.select(
            snapshots.c.as_of,
            accounts.account_id,
            accounts.created_at,
            accounts.employees,
            accounts.industry,
            accounts.country,
            *tables.attribute_columns,
        )
        .select_from(tables.accounts.join(snapshots, sa.true()))
        .cte("account_grid")
    )
    windowed = _windowed_events(tables, snapshots, instants, settings)
    ctes = {
        "activity": _activity(_daily_activity(windowed, settings), settings),
        "active_users": _active_users(windowed),
        "breadth": _breadth(windowed),
        "team": _team(tables, snapshots),
    }
    recency = _recency(
        grid,
        _period_last_events(tables, snapshots, instants, "period_last_events"),
        _period_last_events(tables, snapshots, instants, "period_last_key_events", settings.key_events),
    )
    plan = _plan_at_as_of(tables, snapshots, settings)
    attributes = _attributes_at_as_of(tables, snapshots, settings)
    opportunity = _opportunities_at_as_of(tables, snapshots) if opportunities else None

    def same_row(cte: sa.CTE) -> sa.ColumnElement[bool]:
        return sa.and_(cte.c.account_id == grid.c.account_id, cte.c.as_of == grid.c.as_of)

    joined = grid
    optional = [cte for cte in (attributes, opportunity) if cte is not None]
    for cte in (*ctes.values(), recency, plan, *optional):
        joined = joined.outerjoin(cte, same_row(cte))
    opportunity_values = [
        opportunity.c[name] if opportunity is not None else sa.null().cast(TIMESTAMP).label(name)
        for name in OPPORTUNITY_COLUMNS
    ]
    declared = {column.name: column for column in tables.attribute_columns}

    def attribute_value(attribute: AttributeColumn) -> sa.ColumnElement:
        if attribute.source == "accounts":
            return grid.c[declared[attribute.name].key].label(attribute.feature)
        assert attributes is not None  # built whenever an attribute comes from the table
        return attributes.c[attribute.feature]

    attribute_values = [attribute_value(attribute) for attribute in attribute_columns(settings)]
    counts = [
        sa.func.coalesce(ctes[source].c[name], 0).label(name)
        for name, source in _count_columns(settings).items()
    ]
    return (
        sa.select(
            grid.c.account_id,
            grid.c.as_of,
            grid.c.created_at,
            grid.c.employees,
            grid.c.industry,
            grid.c.country,
            *counts,
            recency.c.last_event_at,
            recency.c.last_key_event_at,
            plan.c.to_plan,
            plan.c.plan_kind,
            plan.c.plan_changed_at,
            plan.c.trial_ends_at,
            *attribute_values,
            *opportunity_values,
        )
        .select_from(joined)
        .where(grid.c.created_at < grid.c.as_of)
        .order_by(grid.c.as_of, grid.c.account_id)
    )


def _days_between(start: pd.Series, end: pd.Series) -> pd.Series:
    return (end - start).dt.total_seconds() / SECONDS_PER_DAY


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """numerator / denominator, null where the denominator is 0."""
    denominator = denominator.astype("float64")
    return numerator.astype("float64") / denominator.where(denominator != 0)


def _plan_kind(raw: pd.DataFrame, tables: SourceTables) -> pd.Series:
    unknown = raw["to_plan"].notna() & raw["plan_kind"].isna()
    if unknown.any():
        names = sorted(raw.loc[unknown, "to_plan"].astype(str).unique())
        column = tables.plan_changes.c.to_plan
        raise DataError(
            f"{tables.plan_changes.name}.{column.name}: {int(unknown.sum())} account snapshot(s) are on "
            f"plan(s) {', '.join(repr(n) for n in names)}, which the settings do not map. Add each to "
            "plans.free, plans.trial or plans.paid."
        )
    kind = raw["plan_kind"].where(raw["plan_kind"].notna(), "free")
    # A trial ends at trial_ends_at even when the source records no change at that instant.
    ended = (kind == "trial") & raw["trial_ends_at"].notna() & (raw["trial_ends_at"] <= raw["as_of"])
    return kind.where(~ended, "free")


def eligibility(plan: pd.Series, raw: pd.DataFrame, settings: Settings) -> np.ndarray:
    """Eligible at `as_of`: not on a paid plan, no opportunity open (when `opportunities` is in use),
    and for a sales label (`features.label`) no deal won before."""
    eligible = (plan != "paid") & raw["open_opportunity_created_at"].isna()
    if settings.features.label in SALES_LABELS:
        eligible &= raw["won_opportunity_closed_at"].isna()
    return eligible.to_numpy(dtype=bool)


def derived_features(raw: pd.DataFrame, tables: SourceTables, settings: Settings) -> pd.DataFrame:
    """The builder's output frame from the statement's per-account rows (durations, ratios, plan)."""
    raw = raw.copy()
    for column in TIMESTAMP_COLUMNS:
        raw[column] = naive_timestamps(raw[column])
    out = pd.DataFrame({"account_id": raw["account_id"].astype("str"), "as_of": raw["as_of"]})
    for name in _count_columns(settings):
        out[name] = raw[name].astype("int64")
    out[f"share_users_active_{LONGEST_WINDOW_DAYS}d"] = _ratio(
        out[f"count_active_users_{LONGEST_WINDOW_DAYS}d"], out["count_users"]
    )
    out["days_since_last_event"] = _days_between(raw["last_event_at"], raw["as_of"])
    out["days_since_last_key_event"] = _days_between(raw["last_key_event_at"], raw["as_of"])
    recent = out[f"count_events_{MOMENTUM_RECENT_DAYS}d"]
    prior = out[f"count_events_{MOMENTUM_RECENT_DAYS + MOMENTUM_PRIOR_DAYS}d"] - recent
    # An account younger than the two periods has an incomplete baseline, not a slow one.
    full_baseline = raw["created_at"] <= raw["as_of"] - (MOMENTUM_RECENT_DAYS + MOMENTUM_PRIOR_DAYS) * DAY
    out[f"ratio_momentum_{MOMENTUM_RECENT_DAYS}d_vs_prior_{MOMENTUM_PRIOR_DAYS}d"] = _ratio(
        recent, prior * MOMENTUM_RECENT_DAYS / MOMENTUM_PRIOR_DAYS
    ).where(full_baseline)
    out["days_tenure"] = _days_between(raw["created_at"], raw["as_of"])
    plan = _plan_kind(raw, tables)
    in_trial = plan == "trial"
    out["plan"] = plan.astype("str")
    out["days_in_trial"] = _days_between(raw["plan_changed_at"], raw["as_of"]).where(in_trial)
    out["days_left_in_trial"] = _days_between(raw["as_of"], raw["trial_ends_at"]).where(in_trial)
    out["employees"] = raw["employees"].astype("float64")
    out["industry"] = raw["industry"].astype("str")
    out["country"] = raw["country"].astype("str")
    for attribute in attribute_columns(settings):
        values = raw[attribute.feature]
        out[attribute.feature] = (
            pd.to_numeric(values, errors="coerce").astype("float64")
            if attribute.kind == "numeric"
            else values.astype("str")
        )
    out["is_eligible"] = eligibility(plan, raw, settings)
    for name in OPPORTUNITY_COLUMNS:
        out[name] = raw[name]
    columns = [
        "account_id",
        "as_of",
        *(spec.name for spec in feature_specs(settings)),
        "is_eligible",
        *OPPORTUNITY_COLUMNS,
    ]
    return out[columns].reset_index(drop=True)


def build_features(
    engine: sa.Engine, tables: SourceTables, settings: Settings, as_of: Sequence[datetime]
) -> pd.DataFrame:
    """One row per (account_id, as_of) for every account created before `as_of`, from one SQL statement.

    Columns: `account_id`, `as_of` (naive UTC), every feature of `feature_specs(settings)` (including
    `plan`), `is_eligible` (`eligibility`), then `open_opportunity_created_at` and
    `won_opportunity_closed_at` (null unless the `opportunities` table is in use). Sorted by as_of,
    account_id.
    """
    feature_specs(settings)  # a misconfiguration fails before the database is touched
    instants = snapshot_instants(as_of)
    if not instants:
        shape = features_statement(tables, settings, [EARLIEST + LONGEST_WINDOW_DAYS * DAY])
        raw = pd.DataFrame({column.key: pd.Series(dtype="object") for column in shape.selected_columns})
        return derived_features(raw, tables, settings)
    opportunities = in_use(engine, tables.opportunities)
    if parameter_limit(engine.dialect) is not None:
        # Exact and cheap: one snapshot's statement, plus the parameters each further snapshot adds.
        single = features_statement(tables, settings, instants[:1], opportunities=opportunities)
        needed = bound_parameter_count(single, engine.dialect) + (len(instants) - 1) * SNAPSHOT_PARAMETERS
        check_parameter_budget(needed, engine.dialect, f"Features for {len(instants)} snapshot dates")
    statement = features_statement(tables, settings, instants, opportunities=opportunities)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # JIT-compiling this wide statement costs PostgreSQL more time than it saves; LOCAL keeps the
            # setting to this read-only transaction.
            conn.exec_driver_sql("SET LOCAL jit = off")
        result = conn.execute(statement)
        raw = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    return derived_features(raw, tables, settings)
