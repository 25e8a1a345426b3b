"""Great Expectations, quietly: one in-memory context per process, suites read from `suites/*.json`.

A suite file holds one stage (events, features, ...). A stage validates one or more frames
("batches"): the stage's own rows for row-level checks, or aggregates computed in the database. Each
expectation names the check it belongs to; its kwargs may use GX suite parameters
(`{"$PARAMETER": "name"}`) filled from the settings at run time; `show` lists extra columns that
explain a failing row (they appear in examples and quarantine reasons).

Every frame is validated twice at most: once with the cheap BASIC result format, then only the
expectations that failed again with COMPLETE, to learn exactly which rows failed.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

EXAMPLES = 5

_LOCK = threading.Lock()  # one validation at a time: GX's validator is not thread-safe
_CONTEXT_LOCK = threading.Lock()


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of a suite file, before its columns are expanded."""

    check: str
    type: str
    kwargs: Mapping[str, Any]
    rows_from: str | None = None
    show: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchSuite:
    """The expectations run on one frame of a stage."""

    stage: str
    name: str
    show: tuple[str, ...]
    unit: str
    rows: bool
    expectations: tuple[ExpectationSpec, ...]

    @property
    def suite_name(self) -> str:
        return f"{self.stage}.{self.name}"

    @property
    def checks(self) -> list[str]:
        return list(dict.fromkeys(spec.check for spec in self.expectations))


@dataclass(frozen=True)
class StageSuite:
    """A suite file: the batches of one stage, plus any stage-specific settings it declares."""

    stage: str
    version: int
    description: str
    batches: Mapping[str, BatchSuite]
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ExpectationRun:
    """What one expectation found on one frame."""

    check: str
    type: str
    columns: list[str]
    success: bool
    result: dict[str, Any]
    error: str | None = None
    unexpected_index: np.ndarray | None = None  # index labels of the failing rows (failures only)
    rows_from: str | None = None
    show: tuple[str, ...] = ()


@dataclass
class BatchRun:
    """A frame, the suite run on it, and the GX results (as JSON) of the first, BASIC pass."""

    suite: BatchSuite
    frame: pd.DataFrame
    expectations: list[ExpectationRun]
    gx_result: dict[str, Any]

    def failed_checks(self) -> list[str]:
        return list(dict.fromkeys(run.check for run in self.expectations if not run.success))


def _spec(entry: Mapping[str, Any]) -> ExpectationSpec:
    return ExpectationSpec(
        check=entry["check"],
        type=entry["type"],
        kwargs=dict(entry.get("kwargs", {})),
        rows_from=entry.get("rows_from"),
        show=tuple(entry.get("show", ())),
    )


@functools.cache
def load_suite(stage: str) -> StageSuite:
    """The stage's suite file, `pql/validation/suites/<stage>.json`."""
    text = resources.files("pql.validation").joinpath("suites", f"{stage}.json").read_text(encoding="utf-8")
    data = json.loads(text)
    batches = {
        name: BatchSuite(
            stage=stage,
            name=name,
            show=tuple(batch.get("show", ())),
            unit=batch.get("unit", "rows"),
            rows=bool(batch.get("rows", False)),
            expectations=tuple(_spec(entry) for entry in batch["expectations"]),
        )
        for name, batch in data["batches"].items()
    }
    known = {"stage", "version", "description", "batches"}
    extra = {key: value for key, value in data.items() if key not in known}
    return StageSuite(data["stage"], int(data["version"]), data.get("description", ""), batches, extra)


def _referenced(suite: BatchSuite) -> list[str]:
    """The frame columns the expectations and their row conditions read (examples read the frame)."""
    names = []
    for spec in suite.expectations:
        names += _columns_of(spec.kwargs)
        condition = spec.kwargs.get("row_condition")
        if isinstance(condition, Mapping) and "column" in condition:
            names.append(condition["column"]["name"])
    return list(dict.fromkeys(names))


def _columns_of(kwargs: Mapping[str, Any]) -> list[str]:
    if "column" in kwargs:
        return [kwargs["column"]]
    if "column_list" in kwargs:
        return list(kwargs["column_list"])
    return [kwargs[key] for key in ("column_A", "column_B") if key in kwargs]


@functools.cache
def _built() -> Any:
    """One GX context, with progress bars and analytics off, and a whole-frame batch definition."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        analytics_enabled=False,
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    asset = context.data_sources.add_pandas("pql").add_dataframe_asset("frame")
    return asset.add_batch_definition_whole_dataframe("whole_frame")


def _batch_definition() -> Any:
    """The process's one GX batch definition, built on first use (by one thread only)."""
    with _CONTEXT_LOCK:
        return _built()


def prepare() -> None:
    """Import GX and build the process's context now, in the calling thread: a run does this in its
    main thread before Prefect starts any thread (a module half-imported by one thread is not safe
    for another), so the first gate does not pay for it either."""
    _batch_definition()


def _gx_suite(name: str, entries: Sequence[tuple[int, ExpectationSpec]]) -> Any:
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    # Built one by one: ExpectationSuite(expectations=...) logs and drops an invalid one instead of raising.
    expectations = [
        ExpectationConfiguration(
            type=spec.type, kwargs=dict(spec.kwargs), meta={"check": spec.check, "position": position}
        ).to_domain_obj()
        for position, spec in entries
    ]
    return gx.ExpectationSuite(name=name, expectations=expectations)


def _by_position(results: Any) -> dict[int, Any]:
    """GX results keyed by the expectation's position in the suite (GX does not keep the order)."""
    return {int(result.expectation_config.meta["position"]): result for result in results.results}


def _validate(frame: pd.DataFrame, suite: Any, result_format: Any, parameters: Mapping[str, Any]) -> Any:
    with _LOCK:
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        return batch.validate(suite, result_format=result_format, expectation_parameters=dict(parameters))


def _error(result: Any) -> str | None:
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "the expectation raised an error")
    return None


def run_batch(
    frame: pd.DataFrame, suite: BatchSuite, parameters: Mapping[str, Any] | None = None
) -> BatchRun:
    """Validate `frame` against `suite`. GX names failing rows by index label, so a frame holding (some
    of) a stage's input rows keeps the input's positions as its index."""
    parameters = parameters or {}
    entries = list(enumerate(suite.expectations))
    # GX fingerprints every column of a batch: hand it only the columns it checks.
    checked = frame[[name for name in _referenced(suite) if name in frame.columns]]
    first = _validate(checked, _gx_suite(suite.suite_name, entries), "BASIC", parameters)
    results = _by_position(first)
    runs = [
        ExpectationRun(
            check=spec.check,
            type=spec.type,
            columns=_columns_of(spec.kwargs),
            success=bool(results[position].success),
            result=dict(results[position].result or {}),
            error=_error(results[position]),
            rows_from=spec.rows_from,
            show=spec.show,
        )
        for position, spec in entries
    ]
    failed = [entries[i] for i, run in enumerate(runs) if not run.success and run.error is None]
    if failed:
        again = _validate(
            checked,
            _gx_suite(suite.suite_name, failed),
            {"result_format": "COMPLETE", "return_unexpected_index_query": False},
            parameters,
        )
        for position, result in _by_position(again).items():
            labels = (result.result or {}).get("unexpected_index_list")
            if labels is not None:
                runs[position].unexpected_index = np.asarray(labels, dtype=np.int64)
    return BatchRun(suite, frame, runs, first.to_json_dict())


def frame_of_query(conn: sa.Connection, query: sa.Executable) -> pd.DataFrame:
    """The (small) result of `query` as a DataFrame, columns named by the query's labels."""
    result = conn.execute(query)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def run_query(
    conn: sa.Connection,
    query: sa.Executable,
    suite: BatchSuite,
    parameters: Mapping[str, Any] | None = None,
) -> BatchRun:
    """Validate the result of a SQL query (an aggregate, never a whole table) against `suite`."""
    return run_batch(frame_of_query(conn, query), suite, parameters)
