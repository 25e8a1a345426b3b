"""Backfills write history, not the current list; a run fanned out on Dask equals the sequential run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from distributed import LocalCluster

from pql.flows.backfill import backfill
from pql.flows.nightly import nightly
from pql.flows.partitions import partition_numbers, partition_positions
from pql.flows.summary import RunSummary

if TYPE_CHECKING:
    from conftest import World

RUN_COLUMNS = ["run_id", "scored_at"]  # differ between any two runs by design


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_backfill_writes_history_only_and_leaves_the_current_list_alone(world: World) -> None:
    nightly(as_of=world.end, config=world.config)
    current = world.table("scores")
    day = world.end - timedelta(days=1)
    (summary,) = backfill(start=day.date(), end=day.date(), config=world.config)
    assert summary.as_of == day
    pd.testing.assert_frame_equal(world.table("scores"), current)
    assert sorted(world.table("history")["as_of"].unique()) == [day, world.end]
    runs = world.table("runs")
    assert runs["kind"].tolist() == ["backfill", "nightly"]
    assert set(runs["status"]) == {"succeeded"}


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_backfill_asked_to_update_current_makes_its_last_day_the_current_list(world: World) -> None:
    first, last = world.end - timedelta(days=2), world.end - timedelta(days=1)
    summaries = backfill(start=first.date(), end=last.date(), update_current=True, config=world.config)
    assert [summary.as_of for summary in summaries] == [first, last]  # one run per day, oldest first
    assert set(world.table("scores")["as_of"]) == {last}
    assert sorted(world.table("history")["as_of"].unique()) == [first, last]


def test_an_account_always_lands_in_the_same_partition() -> None:
    ids = pd.Series([f"acct-{i}" for i in range(1000)])
    alone = partition_numbers(ids.iloc[[7, 500]], 8)
    assert partition_numbers(ids, 8)[[7, 500]].tolist() == alone.tolist()
    assert set(partition_numbers(ids, 8)) == set(range(8))


def test_partitions_cover_every_row_once_in_row_order() -> None:
    ids = pd.Series([f"acct-{i}" for i in range(101)])
    positions = partition_positions(ids, 4)
    assert sorted(int(row) for part in positions for row in part) == list(range(101))
    assert all((part[1:] > part[:-1]).all() for part in positions)


@pytest.fixture
def dask_cluster() -> Iterator[LocalCluster]:
    """A local Dask cluster (threads in this process, so it starts in a moment)."""
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        yield cluster


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_a_run_fanned_out_on_a_dask_cluster_equals_the_sequential_run(
    scored: tuple[World, RunSummary], world: World, dask_cluster: LocalCluster
) -> None:
    sequential_world, _ = scored
    world.configure(partitions=3, dask_address=dask_cluster.scheduler_address)
    nightly(as_of=world.end, config=world.config)
    for key in ("scores", "history"):
        sequential = sequential_world.table(key).drop(columns=RUN_COLUMNS)
        partitioned = world.table(key).drop(columns=RUN_COLUMNS)
        pd.testing.assert_frame_equal(partitioned, sequential, check_exact=True)
