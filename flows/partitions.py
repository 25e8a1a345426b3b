"""Scoring fanned out over partitions of account_id, on Prefect's Dask task runner.

What costs time in scoring is the model: one prediction for the score, one for fit, and one per
reason group (each group's features set to the reference and the accounts scored again). Predictions
are row-wise, so they are what fans out: every prediction call is split by a stable hash of
`account_id` (an account always lands in the same partition, on any machine), each partition is
predicted by a task on Dask, and the results are put back in row order. Everything ranked over the
whole population (tiers, grades, peer comparisons in reasons, the PQL rules) runs once, on all
accounts, exactly as in a sequential run, so a partitioned run returns exactly what a sequential one
returns.

Dask is the optional `dask` extra: it is imported only when a run fans out, so the flows import and a
run with `flows.partitions = 1` works without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import TaskRunner
from prefect.utilities.annotations import unmapped

from pql.config import ConfigError, Settings
from pql.flows.retries import task_options
from pql.scoring.model_protocol import ScoringModel

if TYPE_CHECKING:
    from prefect_dask import DaskTaskRunner

LOCAL_WORKERS = 4
DASK_EXTRA = "pip install 'pql-pipeline[dask]'"


class DaskNotInstalled(ConfigError):
    """The settings fan scoring out on Dask, and the `dask` extra is not installed."""


def partition_numbers(account_ids: pd.Series, partitions: int) -> np.ndarray:
    """The partition (0 .. partitions-1) of each account, from a stable 64-bit hash of its id."""
    hashes = pd.util.hash_pandas_object(account_ids.astype(str), index=False).to_numpy()
    return (hashes % np.uint64(partitions)).astype(np.int64)


def partition_positions(account_ids: pd.Series, partitions: int) -> list[np.ndarray]:
    """Row positions of each non-empty partition, in row order within each."""
    numbers = partition_numbers(account_ids, partitions)
    positions = [np.flatnonzero(numbers == number) for number in range(partitions)]
    return [rows for rows in positions if len(rows)]


@task(name="predict-partition", cache_policy=NO_CACHE, persist_result=False)
def predict_partition(features: pd.DataFrame, model: ScoringModel, fit: bool) -> np.ndarray:
    """The model's probabilities (or fit-only probabilities) for one partition of accounts."""
    return model.predict_fit_proba(features) if fit else model.predict_proba(features)


@dataclass
class PartitionedModel:
    """A scoring model whose predictions run per account partition on a started Dask task runner.

    It stands in for the model it wraps wherever scoring takes one (`scoring.model_protocol`).
    """

    model: ScoringModel
    partitions: int
    runner: TaskRunner
    settings: Settings

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def is_fallback(self) -> bool:
        return self.model.is_fallback

    @property
    def numeric_columns(self) -> list[str]:
        return self.model.numeric_columns

    @property
    def categorical_columns(self) -> list[str]:
        return self.model.categorical_columns

    @property
    def reference_values(self) -> dict[str, object]:
        return self.model.reference_values

    def _predict(self, features: pd.DataFrame, fit: bool) -> np.ndarray:
        positions = partition_positions(features["account_id"], self.partitions)
        if len(positions) <= 1:
            return predict_partition.fn(features, self.model, fit)
        # Dask runs tasks in worker threads, where a timeout cannot interrupt anything (Prefect warns on
        # every task); the scoring task that waits for these, in the flow's thread, carries the timeout.
        predict = predict_partition.with_options(**{**task_options(self.settings), "timeout_seconds": None})
        futures = self.runner.map(
            predict,
            {
                "features": [features.iloc[rows] for rows in positions],
                "model": unmapped(self.model),
                "fit": unmapped(fit),
            },
        )
        result = np.empty(len(features), dtype=np.float64)
        for rows, future in zip(positions, futures, strict=True):
            result[rows] = future.result()
        return result

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return self._predict(features, fit=False)

    def encoded(self) -> None:
        """None: what-if predictions for reasons go through `predict_proba`, so they fan out too."""
        return None

    def predict_fit_proba(self, features: pd.DataFrame) -> np.ndarray:
        return self._predict(features, fit=True)


def dask_runner(settings: Settings) -> DaskTaskRunner:
    """The Dask task runner: the cluster at `flows.dask_address`, else a local cluster for this run."""
    try:  # here, not at the top: Dask is an optional extra that only a fanned-out run needs
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        where = (
            f"on the Dask cluster at flows.dask_address ({settings.flows.dask_address})"
            if settings.flows.dask_address
            else "on a local Dask cluster"
        )
        raise DaskNotInstalled(
            f"flows.partitions = {settings.flows.partitions} fans scoring out {where}, but Dask is not "
            f"installed ({exc.name or 'prefect_dask'} is missing): {DASK_EXTRA}, or set flows.partitions = 1."
        ) from exc
    if settings.flows.dask_address:
        return DaskTaskRunner(address=settings.flows.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": min(settings.flows.partitions, LOCAL_WORKERS),
            "threads_per_worker": 1,
            "dashboard_address": None,
        }
    )


@contextmanager
def _workers_report_here() -> Iterator[None]:
    """Make Dask worker processes report their task runs to this flow run's API.

    With no API URL configured, Prefect runs the flow against a temporary local server; each local
    worker process would otherwise start a temporary server of its own.
    """
    context = FlowRunContext.get()
    if PREFECT_API_URL.value() or context is None or context.client is None:
        yield
        return
    with temporary_settings({PREFECT_API_URL: str(context.client.api_url)}):
        yield


@contextmanager
def fanned_out(model: ScoringModel, settings: Settings) -> Iterator[ScoringModel]:
    """`model` itself, or with `flows.partitions` > 1 the model predicting per partition on Dask
    (the cluster runs for the duration of the block)."""
    if settings.flows.partitions == 1:
        yield model
        return
    with _workers_report_here(), dask_runner(settings) as runner:
        yield PartitionedModel(model, settings.flows.partitions, runner, settings)
