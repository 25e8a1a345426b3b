"""The backfill flow: score a range of past dates into the history, oldest first."""

from __future__ import annotations

from datetime import date

from prefect import flow

from pql.flows import tasks
from pql.flows.scoring_run import scoring_run
from pql.flows.summary import RunSummary
from pql.progress import Progress, report


@flow(name="pql-backfill")
def backfill(
    start: date,
    end: date,
    update_current: bool = False,
    config: str | None = None,
    progress: Progress | None = None,
) -> list[RunSummary]:
    """One scoring run per day from `start` to `end` (inclusive), each as of that day's start.

    Past dates go to pql_score_history only; with `update_current`, the last date also replaces the
    current list in pql_scores (refused if pql_scores already holds a newer date). `progress` (a
    callback in this process, not stored with the run) is told the dates scored and the one under way.
    """
    settings = tasks.settings_from(config)
    dates = tasks.as_of_dates(start, end, settings)
    last = dates[-1] if update_current else None
    summaries = []
    for done, as_of in enumerate(dates):
        report(progress, done, len(dates), f"as of {as_of:%Y-%m-%d %H:%M} UTC")
        summaries.append(
            scoring_run(as_of=as_of, kind="backfill", update_current=as_of == last, config=config)
        )
    report(progress, len(dates), len(dates))
    return summaries
