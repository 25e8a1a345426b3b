"""The backfill flow: score a range of past dates into the history, oldest first."""

from __future__ import annotations

from datetime import date

from prefect import flow

from pql.flows import tasks
from pql.flows.scoring_run import scoring_run
from pql.flows.summary import RunSummary


@flow(name="pql-backfill")
def backfill(
    start: date, end: date, update_current: bool = False, config: str | None = None
) -> list[RunSummary]:
    """One scoring run per day from `start` to `end` (inclusive), each as of that day's start.

    Past dates go to pql_score_history only; with `update_current`, the last date also replaces the
    current list in pql_scores (refused if pql_scores already holds a newer date).
    """
    settings = tasks.settings_from(config)
    dates = tasks.as_of_dates(start, end, settings)
    last = dates[-1] if update_current else None
    return [
        scoring_run(as_of=as_of, kind="backfill", update_current=as_of == last, config=config)
        for as_of in dates
    ]
