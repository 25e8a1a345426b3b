"""The training set: eligible, uncensored snapshots from the same builder that scoring uses.

Snapshots fall at midnight in the configured time zone (the instant a nightly run scores), every
`features.snapshot_every_days` days over `features.lookback_days`, the last one at least
`horizon_days` before the end of the data so that every label is fully observed.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa

from pql.clock import start_of_day
from pql.config import Settings
from pql.db import DataError
from pql.features.builder import build_features, snapshot_instants
from pql.features.labels import build_labels
from pql.schema import SourceTables


def data_end(engine: sa.Engine, tables: SourceTables) -> datetime:
    """The end of observed data: the latest event or plan change (naive UTC)."""
    events, changes = tables.events.c, tables.plan_changes.c
    statement = sa.select(
        sa.select(sa.func.max(events.occurred_at)).scalar_subquery(),
        sa.select(sa.func.max(changes.changed_at)).scalar_subquery(),
    )
    with engine.connect() as conn:
        latest = [moment for moment in conn.execute(statement).one() if moment is not None]
    if not latest:
        raise DataError(
            f"{tables.events.name} and {tables.plan_changes.name} are empty: there is no observed data to "
            "build a training set from. Load the source tables first (or run `pql demo`)."
        )
    return max(latest)


def snapshot_dates(end: datetime, settings: Settings) -> list[datetime]:
    """Training snapshots (naive UTC, ascending): local midnights every `snapshot_every_days`, the last
    at least `horizon_days` before `end`, spanning `lookback_days` back from the last one."""
    (end,) = snapshot_instants([end])
    latest = end - timedelta(days=settings.horizon_days)
    last_day = latest.replace(tzinfo=UTC).astimezone(settings.zone).date()
    every = settings.features.snapshot_every_days
    count = math.ceil(settings.features.lookback_days / every)
    days = [last_day - timedelta(days=every * k) for k in reversed(range(count))]
    return [start_of_day(day, settings.zone) for day in days]


def training_set(
    engine: sa.Engine, tables: SourceTables, settings: Settings, end: datetime | None = None
) -> pd.DataFrame:
    """Features and `label` of eligible, uncensored snapshots, sorted by as_of, account_id; beside the
    chosen `label`, each label's value (`label_<name>`, see `features.labels`), so the report can say
    which path the converters took.

    `end` (default: the end of observed data) bounds what labels may see, so a past `end` reproduces
    the training set that could have been built then.
    """
    observed_end = data_end(engine, tables)
    end = observed_end if end is None else min(snapshot_instants([end])[0], observed_end)
    dates = snapshot_dates(end, settings)
    labels = build_labels(engine, tables, settings, dates, data_end=end)
    features = build_features(engine, tables, settings, dates)
    rows = features.merge(labels, on=["account_id", "as_of"], how="inner", validate="one_to_one")
    kept = rows[rows["is_eligible"] & ~rows["is_censored"]].drop(columns=["is_censored"])
    return kept.sort_values(["as_of", "account_id"]).reset_index(drop=True)
