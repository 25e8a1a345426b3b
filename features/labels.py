"""Labels: did the account convert to a paid plan within the horizon after `as_of`?

Grain: one row per (account_id, as_of) for every account created before `as_of`, the same rows as the
feature builder. Labels read only data at or after `as_of`: a conversion is a plan change into a paid
plan with `as_of <= changed_at < as_of + horizon`. A snapshot whose horizon runs past the end of the
observed data (`as_of + horizon > data_end`) is right-censored: its label is not yet known, so it is
flagged and kept out of training.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa

from pql.config import ConfigError, Settings
from pql.features.builder import naive_timestamps, snapshot_instants
from pql.features.sql import bound_parameter_count, check_parameter_budget, parameter_limit, rows_cte
from pql.schema import TIMESTAMP, SourceTables

LABEL_COLUMNS = ["account_id", "as_of", "label", "is_censored"]
SNAPSHOT_COLUMNS = [("as_of", TIMESTAMP), ("horizon_end", TIMESTAMP)]

# Rendered in the feature reference.
LABEL_NOTES = (
    (
        "label",
        "1 when the account changes into a paid plan (setting `plans.paid`) with "
        "`as_of <= changed_at < as_of + horizon_days`, else 0. It reads only data at or after `as_of`.",
    ),
    (
        "is_eligible",
        "The account is not on a paid plan at `as_of`. A conversion before `as_of` makes the snapshot "
        "ineligible (it is neither scored nor a training example), never a positive.",
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
        "training set is the eligible, uncensored rows of those snapshots, from the same builder as scoring.",
    ),
    (
        "opportunity_created",
        "Not available: `crm_accounts` records only whether an opportunity is open now, not when it was "
        "created, so the label cannot be computed point-in-time. Choosing it is a configuration error.",
    ),
)


def _check_label_definition(settings: Settings, tables: SourceTables) -> None:
    if settings.features.label == "opportunity_created":
        crm = tables.crm_accounts
        raise ConfigError(
            "features.label = 'opportunity_created' cannot be computed point-in-time: "
            f"{crm.name} holds only the current state ({crm.c.has_open_opportunity.name}), with no time at "
            "which an opportunity was created, so a label for a past as_of would read the future. Use "
            "'converted_to_paid', or add a dated opportunity history to the source before choosing it."
        )


def labels_statement(tables: SourceTables, settings: Settings, instants: Sequence[datetime]) -> sa.Select:
    """One row per account created before each snapshot; `label` 1 when a paid plan starts in the horizon."""
    horizon = timedelta(days=settings.horizon_days)
    snapshots = rows_cte(
        "label_snapshots", SNAPSHOT_COLUMNS, [(moment, moment + horizon) for moment in instants]
    )
    changes = tables.plan_changes.c
    conversions = (
        sa.select(snapshots.c.as_of, changes.account_id)
        .select_from(
            tables.plan_changes.join(
                snapshots,
                sa.and_(
                    changes.changed_at >= snapshots.c.as_of, changes.changed_at < snapshots.c.horizon_end
                ),
            )
        )
        .where(changes.to_plan.in_(settings.plans.paid))
        .group_by(snapshots.c.as_of, changes.account_id)
        .cte("conversions")
    )
    accounts = tables.accounts.c
    converted = sa.case((conversions.c.account_id.is_not(None), 1), else_=0)
    return (
        sa.select(accounts.account_id, snapshots.c.as_of, converted.label("label"))
        .select_from(
            tables.accounts.join(snapshots, accounts.created_at < snapshots.c.as_of).outerjoin(
                conversions,
                sa.and_(
                    conversions.c.account_id == accounts.account_id, conversions.c.as_of == snapshots.c.as_of
                ),
            )
        )
        .order_by(snapshots.c.as_of, accounts.account_id)
    )


def build_labels(
    engine: sa.Engine,
    tables: SourceTables,
    settings: Settings,
    as_of: Sequence[datetime],
    data_end: datetime,
) -> pd.DataFrame:
    """`account_id, as_of, label (0/1), is_censored` for every account created before each `as_of`."""
    _check_label_definition(settings, tables)
    instants = snapshot_instants(as_of)
    if not instants:
        return pd.DataFrame({column: pd.Series(dtype="object") for column in LABEL_COLUMNS}).astype(
            {"account_id": "str", "as_of": "datetime64[us]", "label": "int64", "is_censored": "bool"}
        )
    if parameter_limit(engine.dialect) is not None:
        single = labels_statement(tables, settings, instants[:1])
        needed = bound_parameter_count(single, engine.dialect) + (len(instants) - 1) * len(SNAPSHOT_COLUMNS)
        check_parameter_budget(needed, engine.dialect, f"Labels for {len(instants)} snapshot dates")
    statement = labels_statement(tables, settings, instants)
    with engine.connect() as conn:
        result = conn.execute(statement)
        raw = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    horizon = pd.Timedelta(days=settings.horizon_days)
    (end,) = snapshot_instants([data_end])
    as_of_values = naive_timestamps(raw["as_of"])
    return pd.DataFrame(
        {
            "account_id": raw["account_id"].astype("str"),
            "as_of": as_of_values,
            "label": raw["label"].astype("int64"),
            "is_censored": (as_of_values + horizon > pd.Timestamp(end)).to_numpy(dtype=bool),
        }
    )
