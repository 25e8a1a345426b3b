"""Labels: did the account reach the chosen outcome within the horizon after `as_of`?

Grain: one row per (account_id, as_of) for every account created before `as_of`, the same rows as the
feature builder. Labels read only data at or after `as_of`, in the horizon `[as_of, as_of + horizon)`:

- `converted_to_paid` (the default, self-serve): a plan change into a paid plan;
- `opportunity_created`: an opportunity created (the optional `opportunities` table);
- `closed_won`: an opportunity won (`is_won` true) and closed;
- `converted_or_won`: either path, `converted_to_paid` or `closed_won`.

A sales label needs the `opportunities` table in use (`pql.schema.in_use`); choosing one without it
is a configuration error. A snapshot whose horizon runs past the end of the observed data
(`as_of + horizon > data_end`) is right-censored: its label is not yet known, so it is flagged and kept
out of training.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa

from pql.config import LABELS, SALES_LABELS, ConfigError, Settings
from pql.features.builder import naive_timestamps, snapshot_instants
from pql.features.sql import bound_parameter_count, check_parameter_budget, parameter_limit, rows_cte
from pql.schema import TIMESTAMP, SourceTables, in_use

LABEL_COLUMNS = ["account_id", "as_of", "label", *(f"label_{name}" for name in LABELS), "is_censored"]
SNAPSHOT_COLUMNS = [("as_of", TIMESTAMP), ("horizon_end", TIMESTAMP)]

# Rendered in the feature reference.
LABEL_NOTES = (
    (
        "label",
        "The outcome `features.label` chooses, 1 when it happens with `as_of <= moment < as_of + "
        "horizon_days`, else 0. It reads only data at or after `as_of`. `converted_to_paid` (the default): "
        "a change into a paid plan (setting `plans.paid`), at `changed_at`. `opportunity_created`: an "
        "opportunity created, at `created_at`. `closed_won`: an opportunity with `is_won` true, at "
        "`closed_at`. `converted_or_won`: either `converted_to_paid` or `closed_won`. The three sales labels "
        "read the optional `opportunities` table; choosing one without it is a configuration error.",
    ),
    (
        "is_eligible",
        "The account is not on a paid plan at `as_of`, and (when the `opportunities` table is in use) has no "
        "opportunity open at `as_of` (created before it and not closed before it); for a sales label it "
        "has also won no opportunity closed before `as_of`. An ineligible snapshot is neither scored nor a "
        "training example, never a positive.",
    ),
    (
        "is_censored",
        "`as_of + horizon_days` is after the end of the observed data (the latest event or plan change): "
        "the outcome is not known yet, so the snapshot is kept out of training.",
    ),
    (
        "Training snapshots",
        "Midnights in the configured time zone, every `features.snapshot_every_days` days over "
        "`features.lookback_days`, the last one at least `horizon_days` before the end of the data. The "
        "training set is the eligible, uncensored rows of those snapshots, from the same builder as scoring, "
        "with every label's value beside the chosen one (`label_<name>`).",
    ),
)


def _check_label_definition(settings: Settings, tables: SourceTables, opportunities: bool) -> None:
    label = settings.features.label
    if label in SALES_LABELS and not opportunities:
        name = tables.opportunities.name
        raise ConfigError(
            f"features.label = '{label}' needs the {name} table, which is missing or empty: load it with "
            f"`pql load opportunities FILE`, or set features.label = 'converted_to_paid'."
        )


def _events_in_horizon(
    snapshots: sa.CTE, name: str, table: sa.Table, moment: sa.ColumnElement, *where: sa.ColumnElement[bool]
) -> sa.CTE:
    """(as_of, account_id) of every account with a row of `table` whose `moment` is in the horizon."""
    in_horizon = sa.and_(moment >= snapshots.c.as_of, moment < snapshots.c.horizon_end)
    return (
        sa.select(snapshots.c.as_of, table.c.account_id)
        .select_from(table.join(snapshots, in_horizon))
        .where(*where)
        .group_by(snapshots.c.as_of, table.c.account_id)
        .cte(name)
    )


def labels_statement(
    tables: SourceTables, settings: Settings, instants: Sequence[datetime], *, opportunities: bool = False
) -> sa.Select:
    """One row per account created before each snapshot, with one 0/1 column per outcome in the horizon:
    `converted_to_paid` (a change into a paid plan), and when `opportunities` is read,
    `opportunity_created` (an opportunity created) and `closed_won` (an opportunity won: `is_won`, closed)."""
    horizon = timedelta(days=settings.horizon_days)
    snapshots = rows_cte(
        "label_snapshots", SNAPSHOT_COLUMNS, [(moment, moment + horizon) for moment in instants]
    )
    changes, opps = tables.plan_changes, tables.opportunities
    outcomes = {
        "converted_to_paid": _events_in_horizon(
            snapshots,
            "conversions",
            changes,
            changes.c.changed_at,
            changes.c.to_plan.in_(settings.plans.paid),
        )
    }
    if opportunities:
        outcomes["opportunity_created"] = _events_in_horizon(
            snapshots, "opportunities_created", opps, opps.c.created_at
        )
        outcomes["closed_won"] = _events_in_horizon(
            snapshots, "opportunities_won", opps, opps.c.closed_at, opps.c.is_won.is_(True)
        )
    accounts = tables.accounts.c
    joined = tables.accounts.join(snapshots, accounts.created_at < snapshots.c.as_of)
    for cte in outcomes.values():
        joined = joined.outerjoin(
            cte, sa.and_(cte.c.account_id == accounts.account_id, cte.c.as_of == snapshots.c.as_of)
        )
    flags = [
        sa.case((cte.c.account_id.is_not(None), 1), else_=0).label(name) for name, cte in outcomes.items()
    ]
    return (
        sa.select(accounts.account_id, snapshots.c.as_of, *flags)
        .select_from(joined)
        .order_by(snapshots.c.as_of, accounts.account_id)
    )


def _outcome_columns(raw: pd.DataFrame) -> dict[str, pd.Series]:
    """Every label's 0/1 column; the sales ones are unknown (<NA>) without the opportunities table."""
    unknown = pd.Series(pd.NA, index=raw.index, dtype="Int64")
    paid = raw["converted_to_paid"].astype("Int64")
    created = raw["opportunity_created"].astype("Int64") if "opportunity_created" in raw else unknown
    won = raw["closed_won"].astype("Int64") if "closed_won" in raw else unknown
    either = (paid + won).clip(upper=1)  # unknown when the won deals are
    return {
        "converted_to_paid": paid,
        "opportunity_created": created,
        "closed_won": won,
        "converted_or_won": either.astype("Int64"),
    }


def build_labels(
    engine: sa.Engine,
    tables: SourceTables,
    settings: Settings,
    as_of: Sequence[datetime],
    data_end: datetime,
) -> pd.DataFrame:
    """`account_id, as_of, label (0/1), label_<name>` for each of the four labels (0/1, <NA> for the
    sales ones without the opportunities table), `is_censored`, for every account created before each
    `as_of`. `label` is the one `features.label` chooses."""
    opportunities = in_use(engine, tables.opportunities)
    _check_label_definition(settings, tables, opportunities)
    instants = snapshot_instants(as_of)
    if parameter_limit(engine.dialect) is not None and instants:
        single = labels_statement(tables, settings, instants[:1], opportunities=opportunities)
        needed = bound_parameter_count(single, engine.dialect) + (len(instants) - 1) * len(SNAPSHOT_COLUMNS)
        check_parameter_budget(needed, engine.dialect, f"Labels for {len(instants)} snapshot dates")
    if instants:
        statement = labels_statement(tables, settings, instants, opportunities=opportunities)
        with engine.connect() as conn:
            result = conn.execute(statement)
            raw = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    else:
        raw = pd.DataFrame({name: pd.Series(dtype="object") for name in ("account_id", "as_of", LABELS[0])})
    outcomes = _outcome_columns(raw)
    horizon = pd.Timedelta(days=settings.horizon_days)
    end = snapshot_instants([data_end])[0]
    as_of_values = naive_timestamps(raw["as_of"])
    return pd.DataFrame(
        {
            "account_id": raw["account_id"].astype("str"),
            "as_of": as_of_values,
            "label": outcomes[settings.features.label].astype("int64"),
            **{f"label_{name}": outcomes[name] for name in LABELS},
            "is_censored": (as_of_values + horizon > pd.Timestamp(end)).to_numpy(dtype=bool),
        }
    )


def converters_by_path(rows: pd.DataFrame) -> dict[str, Any] | None:
    """Per label, its converting accounts in `rows` (a training set) by the path they took: self-serve
    (a change into a paid plan in the horizon of a positive snapshot), opportunity (an opportunity
    created in it), or both. None when `rows` carry no per-label columns.

    `{"opportunities": known, "labels": {name: {converting_accounts, self_serve_only, opportunity_only,
    both}}}`; without the opportunities table only `converted_to_paid` is known and its opportunity
    counts are None."""
    if any(f"label_{name}" not in rows for name in LABELS):
        return None
    known = bool(len(rows)) and bool(rows["label_opportunity_created"].notna().all())
    paths = pd.DataFrame(
        {
            "account_id": rows["account_id"],
            "self_serve": rows["label_converted_to_paid"].fillna(0).astype(bool),
            "opportunity": rows["label_opportunity_created"].fillna(0).astype(bool),
        }
    )
    labels: dict[str, dict[str, int | None]] = {}
    for name in LABELS if known else LABELS[:1]:
        positive = rows[f"label_{name}"].fillna(0).astype(bool)
        took = paths[positive.to_numpy()].groupby("account_id")[["self_serve", "opportunity"]].any()
        self_serve, opportunity = took["self_serve"], took["opportunity"]
        labels[name] = {
            "converting_accounts": len(took),
            "self_serve_only": int((self_serve & ~opportunity).sum()),
            "opportunity_only": int((~self_serve & opportunity).sum()) if known else None,
            "both": int((self_serve & opportunity).sum()) if known else None,
        }
    return {"opportunities": known, "labels": labels}
