"""The retrain flow: train a challenger on the latest history, evaluate it, promote it if it wins."""

from __future__ import annotations

from datetime import datetime

from prefect import flow

from pql.db import databases
from pql.flows import tasks
from pql.models.training import TrainOutcome


@flow(name="pql-retrain")
def retrain(end: datetime | None = None, config: str | None = None) -> TrainOutcome:
    """Train on history up to `end` (naive UTC; default: the end of observed data) and register the
    model; it becomes champion only if it beats the current one on the holdout."""
    settings = tasks.settings_from(config)
    with databases(settings) as dbs, tasks.registry_locked(settings) as step:
        outcome = step(tasks.train_model, dbs, settings, end)
    return step(tasks.publish_training_report, outcome)
