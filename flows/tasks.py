"""One small typed task per step of a run. Tasks call the pipeline's public functions and nothing else.

Retries (transient database errors only, with exponential back-off) and the timeout come from the
settings, so tasks are run through `Steps`, which applies them and times each step for the ledger.
No task caches or persists its result: every run reads the databases afresh.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.runtime import flow_run
from prefect.tasks import Task

from pql import validation
from pql.clock import start_of_day, to_utc_naive, today_in
from pql.config import ConfigError, Settings, load_settings
from pql.db import Databases, databases
from pql.features import gate
from pql.features.builder import build_features as features_for
from pql.flows import ledger
from pql.flows.alerts import AlertsOutcome, announce_new_pqls
from pql.flows.artifacts import publish_run_artifact, publish_training_artifact
from pql.flows.locking import RunLock, run_lock
from pql.flows.partitions import fanned_out
from pql.flows.retries import task_options
from pql.flows.secrets import with_secret_urls
from pql.flows.summary import RunSummary, best_pqls, run_summary
from pql.models.registry import LoadedModel, load_scoring_model
from pql.models.registry_lock import registry_lock
from pql.models.training import TooLittleDataError, TrainOutcome, train_and_register
from pql.monitoring.drift import enforce_breach_policy, monitoring_summary
from pql.outcomes.io import trailing_pql_volumes
from pql.scoring.crm import account_names, crm_snapshot
from pql.scoring.diff import changes_frame
from pql.scoring.rows import pql_rows
from pql.scoring.writeback import current_scores, previous_scores, write_run_on

P = ParamSpec("P")
R = TypeVar("R")

step = task(cache_policy=NO_CACHE, persist_result=False)


def settings_from(config: str | None) -> Settings:
    """The run's settings: `config` (a pql.toml path), else $PQL_CONFIG or ./pql.toml, with PQL_* env;
    database URLs named as Prefect Secret blocks are read from the blocks."""
    return with_secret_urls(load_settings(Path(config) if config else None))


def default_as_of(settings: Settings) -> datetime:
    """The nightly as_of: the start of today in the configured time zone (naive UTC)."""
    return start_of_day(today_in(settings.zone), settings.zone)


def utc_naive(moment: datetime) -> datetime:
    """A flow parameter as the naive UTC the databases hold: naive values already are, aware ones
    (typed into the Prefect UI with an offset) are converted."""
    return to_utc_naive(moment, ZoneInfo("UTC"))


def nightly_as_of(as_of: datetime | None, settings: Settings) -> datetime:
    """`as_of` as naive UTC, else the start of today in the configured time zone."""
    return default_as_of(settings) if as_of is None else utc_naive(as_of)


def as_of_dates(start: date, end: date, settings: Settings) -> list[datetime]:
    """The start of every day from `start` to `end` inclusive, in the configured time zone."""
    if start > end:
        raise ConfigError(f"backfill: start {start} is after end {end}; give the earlier date first.")
    days = pd.date_range(start, end, freq="D")
    return [start_of_day(day.date(), settings.zone) for day in days]


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:  # outside a flow run (a task's .fn() in a test): plain logging
        return logging.getLogger("pql.flows")


class Steps:
    """Runs a flow's tasks with the settings' retries and timeout, timing each into `timings`."""

    def __init__(self, settings: Settings, timings: dict[str, float] | None = None) -> None:
        self.options = task_options(settings)
        self.timings = {} if timings is None else timings
        # The CRM run lock a write must hold (see `recorded`); a plain lock with nothing to check when
        # the run holds none (a dry run, a retrain).
        self.lock = RunLock()

    def __call__(self, step_task: Task[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        try:
            return step_task.with_options(**self.options)(*args, **kwargs)
        finally:
            self.timings[step_task.name] = time.perf_counter() - started


@step(name="open-run")
def open_run(dbs: Databases, run: ledger.RunRecord) -> None:
    """Record the run in pql_runs as running (creating the pipeline's tables if they are missing), and
    earlier runs left running as abandoned."""
    abandoned = ledger.open_run(dbs.crm, dbs.output_tables, run)
    if abandoned:
        _logger().warning(
            "marked %d earlier run(s) abandoned (they ended without finishing): %s",
            len(abandoned),
            ", ".join(abandoned),
        )


@step(name="record-failure")
def record_failure(dbs: Databases, settings: Settings, run: ledger.RunRecord, error: BaseException) -> None:
    """Record the run as failed, with its error and any failing expectations."""
    ledger.record_failure(dbs.crm, dbs.output_tables, run, error, settings)


def new_run(kind: str, as_of: datetime, *, dry_run: bool = False) -> ledger.RunRecord:
    """A run record for this flow run."""
    return ledger.RunRecord(kind=kind, as_of=as_of, flow_run_id=flow_run.get_id(), dry_run=dry_run)


@contextmanager
def recorded(dbs: Databases, settings: Settings, run: ledger.RunRecord) -> Iterator[Steps]:
    """The body of a run, holding the CRM run lock and recorded in the ledger (both skipped for a dry
    run, which writes nothing). A failure is recorded, then raised again."""
    steps = Steps(settings, run.timings)
    if run.dry_run:
        yield steps
        return
    log = _logger()
    holder = f"pql {run.kind} run {run.run_id[:8]} (flow run {run.flow_run_id})"
    timeout = settings.flows.lock_timeout_seconds
    with run_lock(settings, timeout_seconds=timeout, holder=holder, on_wait=log.warning) as lock:
        steps.lock = lock
        steps(open_run, dbs, run)
        try:
            yield steps
        except BaseException as exc:
            log.error("run %s failed: %s", run.run_id, ledger.failure_text(exc, settings))
            try:
                steps(record_failure, dbs, settings, run, exc)
            except Exception as ledger_error:  # the CRM may be what failed; keep the original error
                log.error(
                    "could not record the failure in pql_runs: %s",
                    ledger.failure_text(ledger_error, settings),
                )
            raise


def _checked(results: list[validation.StageResult], settings: Settings, run: ledger.RunRecord) -> None:
    """Keep the results in the run folder (unless a dry run) and stop the run on a `fail` check."""
    if not run.dry_run:
        validation.write_results(results, settings, run.run_id)
    validation.raise_for_failures(results)


@step(name="validate-source")
def validate_source(
    dbs: Databases, settings: Settings, run: ledger.RunRecord
) -> list[validation.StageResult]:
    """The source gates (events window, plan changes, accounts, the sales tables in use) and the CRM
    tables' columns."""
    tables = dbs.source_tables
    results = [
        validation.validate_events(dbs.source, tables, settings, run.as_of, now=run.started_at),
        validation.validate_plan_changes(dbs.source, tables, settings, run.as_of),
        validation.validate_accounts(dbs.source, tables, settings),
        validation.validate_sales(dbs.source, tables, settings, run.as_of, now=run.started_at),
        validation.validate_crm_tables(dbs.crm, dbs.output_tables, settings),
    ]
    _checked(results, settings, run)
    return results


@step(name="build-features")
def build_features(dbs: Databases, settings: Settings, as_of: datetime) -> pd.DataFrame:
    """Point-in-time features of every account as of `as_of`, computed in the source database."""
    return features_for(dbs.source, dbs.source_tables, settings, [as_of])


@step(name="validate-features")
def validate_features(
    features: pd.DataFrame,
    settings: Settings,
    earlier: list[validation.StageResult],
    run: ledger.RunRecord,
    model: LoadedModel,
) -> tuple[pd.DataFrame, list[validation.StageResult]]:
    """The features gate over the columns `model` reads: the rows kept (quarantined rows set aside)
    and the results so far."""
    used = [*model.numeric_columns, *model.categorical_columns]
    result = gate.validate_features(features, settings, used)
    results = [*earlier, result]
    _checked(results, settings, run)
    return (features if result.kept is None else result.kept), results


@step(name="load-model")
def load_model(dbs: Databases, settings: Settings) -> LoadedModel:
    """The champion model, or the points baseline (flagged as a fallback) when there is none and no
    earlier run scored with a trained model (a registry that lost it fails the run, unless
    `model.fallback = "points"`)."""
    scored_before = ledger.last_trained_model(dbs.crm, dbs.output_tables)
    model = load_scoring_model(settings, scored_before=scored_before)
    log = _logger()
    for line in model.warnings:
        log.warning(line)
    if model.is_fallback:
        log.warning("scoring with the points baseline (%s)", model.metadata.get("reason", model.version))
    return model


@step(name="read-crm")
def read_crm(dbs: Databases, as_of: datetime) -> pd.DataFrame:
    """The sales-owned CRM snapshot: owner, open opportunity, do-not-contact per account, and the
    latest rep decision before `as_of` when `pql_feedback` is in use."""
    return crm_snapshot(dbs.source, dbs.source_tables, as_of)


def _never_scored(dbs: Databases) -> bool:
    """Whether the CRM has no pipeline tables yet (a dry run before the first run)."""
    return not sa.inspect(dbs.crm).has_table(dbs.output_tables.history.name)


@step(name="read-previous-scores")
def read_previous(dbs: Databases, as_of: datetime) -> pd.DataFrame:
    """The PQL state left by the latest run before `as_of`, which the rules start from."""
    if _never_scored(dbs):
        return pd.DataFrame()
    return previous_scores(dbs.crm, dbs.output_tables, as_of)


@step(name="score-accounts")
def score_accounts(
    features: pd.DataFrame,
    model: LoadedModel,
    crm: pd.DataFrame,
    previous: pd.DataFrame,
    settings: Settings,
    as_of: datetime,
) -> pd.DataFrame:
    """Scores, tiers, reasons and PQL rules for every account (predictions on Dask when partitioned)."""
    with fanned_out(model, settings) as scoring_model:
        return pql_rows(features, scoring_model, crm, previous, settings, as_of)


@step(name="validate-output")
def validate_output(
    rows: pd.DataFrame,
    features: pd.DataFrame,
    settings: Settings,
    earlier: list[validation.StageResult],
    run: ledger.RunRecord,
) -> tuple[pd.DataFrame, list[validation.StageResult]]:
    """The scores and output gates: the rows to write (quarantined rows set aside) and all results."""
    scores = validation.validate_scores(rows, features, settings)
    output = validation.validate_output(rows, settings)
    results = [*earlier, scores, output]
    _checked(results, settings, run)
    return (rows if output.kept is None else output.kept), results


@step(name="write-run")
def write_scores(
    dbs: Databases,
    rows: pd.DataFrame,
    model: LoadedModel,
    results: list[validation.StageResult],
    monitoring: dict[str, Any],
    run: ledger.RunRecord,
    update_current: bool,
    lock: RunLock,
) -> None:
    """Set quarantined rows aside and write scores, history and the run's ledger row: one transaction,
    committed only while the run holds the CRM run lock (taken again first if its session was lost)."""
    lock.ensure_held()
    with ledger.fresh_transaction(dbs.crm) as conn:
        lock.verify_on(conn)
        quarantined = validation.write_quarantine(
            conn, dbs.output_tables, results, batch_id=run.run_id, at=run.started_at
        )
        record = run.row(
            model_version=model.version,
            used_fallback=model.is_fallback,
            quarantined_rows=quarantined,
            validation_json=validation.summary(results),
            monitoring_json=monitoring,
            data_docs_path=ledger.data_docs_link(dbs.settings, run),
            finished_at=ledger.utc_now(),
        )
        write_run_on(conn, dbs.output_tables, rows, record, update_current=update_current)


@step(name="send-alerts")
def send_alerts(rows: pd.DataFrame, settings: Settings, run: ledger.RunRecord) -> AlertsOutcome | None:
    """Post each owner's new PQLs to the alerts webhook and record the outcome in pql_runs; never fails
    the run. Only a written nightly run alerts: not a dry run, not a backfill (its dates are past), and
    nothing when `alerts.webhook_url` is unset."""
    if run.dry_run or run.kind != "nightly" or not settings.alerts.enabled:
        return None
    with databases(settings) as dbs:
        return announce_new_pqls(dbs, rows, settings, run, _logger())


@step(name="monitor-drift")
def monitor_drift(
    dbs: Databases,
    features: pd.DataFrame,
    rows: pd.DataFrame,
    model: LoadedModel,
    settings: Settings,
    as_of: datetime,
) -> dict[str, Any]:
    """PSI of features and score against the model's training reference, and PQL volume against the
    trailing runs; raises MonitoringBreach (before anything is written) when the policy says fail."""
    volumes = [] if _never_scored(dbs) else trailing_pql_volumes(dbs.crm, dbs.output_tables, before=as_of)
    summary = monitoring_summary(features, rows, model.training_distribution, volumes, settings)
    enforce_breach_policy(summary)
    return summary


@step(name="planned-changes")
def planned_changes(dbs: Databases, rows: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """What writing `rows` would change in the sales list: new and dropped PQLs, tier moves."""
    current = pd.DataFrame() if _never_scored(dbs) else current_scores(dbs.crm, dbs.output_tables)
    return changes_frame(current, rows, settings)


@step(name="read-account-names")
def read_account_names(dbs: Databases, rows: pd.DataFrame) -> dict[str, str]:
    """The names of the run's best PQLs, for its report."""
    return account_names(dbs.source, dbs.source_tables, best_pqls(rows)["account_id"])


@step(name="train-and-register")
def train_model(dbs: Databases, settings: Settings, end: datetime | None) -> TrainOutcome:
    """Build the training set, train, backtest against the baselines, register, promote if better.

    Refused for too little data, it still publishes the report of the points baseline it registered.
    """
    window_end = None if end is None else utc_naive(end)
    try:
        return train_and_register(dbs.source, dbs.source_tables, settings, window_end)
    except TooLittleDataError as refused:
        publish_training_artifact(refused.outcome)
        raise


@step(name="publish-training-report")
def publish_training_report(outcome: TrainOutcome) -> TrainOutcome:
    """Publish the retrain's markdown report as a Prefect artifact of this flow run."""
    publish_training_artifact(outcome)
    return outcome


@contextmanager
def registry_locked(settings: Settings) -> Iterator[Steps]:
    """The body of a retrain, holding the model registry's lock; yields its steps."""
    holder = f"pql retrain (flow run {flow_run.get_id()})"
    timeout = settings.flows.lock_timeout_seconds
    with registry_lock(settings, timeout_seconds=timeout, holder=holder, on_wait=_logger().warning):
        yield Steps(settings)


@step(name="publish-report")
def publish_report(
    rows: pd.DataFrame,
    model: LoadedModel,
    results: list[validation.StageResult],
    settings: Settings,
    run: ledger.RunRecord,
    names: dict[str, str],
    changes: pd.DataFrame | None,
    monitoring: dict[str, Any] | None = None,
    alerts: AlertsOutcome | None = None,
) -> RunSummary:
    """The run's summary, published as a markdown artifact of this flow run."""
    summary = run_summary(
        kind=run.kind,
        as_of=run.as_of,
        rows=rows,
        model=model,
        validation=validation.summary(results),
        settings=settings,
        names=names,
        run_id=None if run.dry_run else run.run_id,
        flow_run_id=run.flow_run_id,
        changes=changes,
        monitoring=monitoring,
        model_warnings=model.warnings,
        data_docs=ledger.data_docs_link(settings, run),
        alerts=None if alerts is None else alerts.line,
    )
    publish_run_artifact(summary)
    return summary
