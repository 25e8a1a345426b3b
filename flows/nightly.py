"""The nightly flow: score every account as of the start of today and write the PQL list to the CRM."""

from __future__ import annotations

from datetime import datetime

from prefect import flow

from pql.flows import tasks
from pql.flows.scoring_run import scoring_run
from pql.flows.summary import RunSummary


@flow(name="pql-nightly")
def nightly(as_of: datetime | None = None, dry_run: bool = False, config: str | None = None) -> RunSummary:
    """Score as of `as_of` (naive UTC, or aware; default: the start of today in the configured time zone).

    A dry run computes everything and reports what would change, writing nothing (not even the ledger).
    """
    settings = tasks.settings_from(config)
    as_of = tasks.nightly_as_of(as_of, settings)
    return scoring_run(as_of=as_of, kind="nightly", dry_run=dry_run, config=config)
