"""Great Expectations, natively: the gates' Expectation Suites, run through Checkpoints, with Data Docs.

Each stage (events, features, ...) validates one or more frames ("batches"): the stage's own rows for
row-level checks, or aggregates computed in the database. Each batch has its own Expectation Suite,
`pql.<stage>.<batch>`, stored as GX's own JSON in `pql/validation/expectations/` (laid out as a GX file
context's expectations store, so GX opens and edits it). pql's extra information rides in `meta`, which
GX keeps as it is: per suite `meta.pql` (stage, batch, unit, whether the frame is the stage's own rows,
the columns that identify a row, stage settings), per expectation the check it belongs to (`check`),
the columns that explain a failing row (`show`) and the column counting the rows behind an aggregate
(`rows_from`). Suite parameters (`{"$PARAMETER": "name"}`) are filled from the settings at run time.

One ephemeral context per process holds every suite, with a ValidationDefinition and a Checkpoint per
batch suite (a Checkpoint validates one dataframe: each batch is its own frame). A frame is validated
twice at most: once by its Checkpoint with the cheap BASIC result format, then only the expectations
that failed again with COMPLETE, to learn exactly which rows failed. `data_docs.write_data_docs` renders
a run's Checkpoint results as GX Data Docs.
"""

from __future__ import annotations

import copy
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
SUITES = "expectations"  # laid out as a GX file context's expectations store: pql/<stage>/<batch>.json


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of a batch suite, as pql reads it (its kwargs as GX stores them)."""

    check: str
    type: str
    kwargs: Mapping[str, Any]
    rows_from: str | None = None
    show: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class BatchSuite:
    """The Expectation Suite run on one frame of a stage, and its GX JSON document."""

    stage: str
    name: str
    show: tuple[str, ...]
    unit: str
    rows: bool
    expectations: tuple[ExpectationSpec, ...]
    version: int = 1
    description: str = ""
    document: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def suite_name(self) -> str:
        return f"pql.{self.stage}.{self.name}"

    @property
    def checks(self) -> list[str]:
        return list(dict.fromkeys(spec.check for spec in self.expectations))

    def gx_suite(self) -> Any:
        """A new GX `ExpectationSuite` of this batch (a new object each time: a store assigns ids)."""
        import great_expectations as gx

        return gx.ExpectationSuite(**copy.deepcopy(dict(self.document)))


@dataclass(frozen=True)
class StageSuite:
    """The batch suites of one stage, plus any stage-specific settings they declare."""

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
    """A frame, the suite run on it, and the Checkpoint's (first, BASIC pass) GX result, as the GX
    object (for Data Docs) and as JSON."""

    suite: BatchSuite
    frame: pd.DataFrame
    expectations: list[ExpectationRun]
    gx_result: dict[str, Any]
    validation: Any = field(default=None, repr=False)

    def failed_checks(self) -> list[str]:
        return list(dict.fromkeys(run.check for run in self.expectations if not run.success))


def _spec(entry: Mapping[str, Any]) -> ExpectationSpec:
    meta = entry.get("meta") or {}
    return ExpectationSpec(
        check=meta["check"],
        type=entry["type"],
        kwargs=dict(entry.get("kwargs", {})),
        rows_from=meta.get("rows_from"),
        show=tuple(meta.get("show", ())),
    )


def _expectation(spec: ExpectationSpec, meta: Mapping[str, Any]) -> Any:
    """The GX expectation of `spec`; raises on one GX does not know or whose kwargs it refuses."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    return ExpectationConfiguration(type=spec.type, kwargs=dict(spec.kwargs), meta=dict(meta)).to_domain_obj()


def _batch_suite(document: Mapping[str, Any], where: str) -> BatchSuite:
    """One batch suite from its GX JSON, checked by GX itself."""
    pql = document["meta"]["pql"]
    notes = (document["meta"].get("notes") or {}).get("content") or []
    entries = document.get("expectations", [])
    unnamed = [entry["type"] for entry in entries if "check" not in (entry.get("meta") or {})]
    if unnamed:
        raise ValueError(f"{where}: {', '.join(unnamed)} names no check (meta.check): which policy applies?")
    specs = tuple(_spec(entry) for entry in entries)
    for spec in specs:
        try:
            _expectation(spec, {})
        except Exception as exc:  # GX's own error, whatever its class: say which file holds it
            raise ValueError(f"{where}: {spec.type} is not a valid expectation: {exc}") from exc
    return BatchSuite(
        stage=pql["stage"],
        name=pql["batch"],
        show=tuple(pql.get("show", ())),
        unit=pql.get("unit", "rows"),
        rows=bool(pql.get("rows", False)),
        expectations=specs,
        version=int(pql.get("version", 1)),
        description=" ".join(notes),
        document=document,
    )


_BATCH_KEYS = {"stage", "batch", "order", "version", "unit", "rows", "show", "stage_description"}


@functools.cache
def load_suite(stage: str) -> StageSuite:
    """The stage's batch suites, `pql/validation/expectations/pql/<stage>/<batch>.json` (GX suite
    `pql.<stage>.<batch>`), in their `meta.pql.order`. The stage's version is the highest of its
    suites' `meta.pql.version`; stage settings (any other `meta.pql` key) are merged into `extra`."""
    folder = resources.files("pql.validation").joinpath(SUITES, "pql", stage)
    files = [entry for entry in folder.iterdir() if entry.name.endswith(".json")] if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"no Expectation Suite for stage {stage!r}: "
            f"expected pql/validation/{SUITES}/pql/{stage}/<batch>.json"
        )
    documents = [(entry.name, json.loads(entry.read_text(encoding="utf-8"))) for entry in files]
    documents.sort(key=lambda named: (named[1]["meta"]["pql"].get("order", 0), named[0]))
    batches = {}
    description = ""
    extra: dict[str, Any] = {}
    for file_name, document in documents:
        where = f"pql/validation/{SUITES}/pql/{stage}/{file_name}"
        batch = _batch_suite(document, where)
        if batch.stage != stage or document["name"] != batch.suite_name:
            raise ValueError(f"{where}: suite {document['name']!r} is not named pql.{stage}.<batch>")
        batches[batch.name] = batch
        pql = document["meta"]["pql"]
        description = description or pql.get("stage_description", "")
        extra.update({key: value for key, value in pql.items() if key not in _BATCH_KEYS})
    version = max(batch.version for batch in batches.values())
    return StageSuite(stage, version, description, batches, extra)


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


def quiet_config(**sites: Any) -> Any:
    """An in-memory context's configuration: no progress bars, no analytics, only `sites` for docs."""
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    return DataContextConfig(
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        analytics_enabled=False,
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites or None,
    )


@dataclass
class _Gx:
    """The process's GX context, its whole-frame batch definition, and a Checkpoint per batch suite
    (with the position in the suite of each stored expectation id)."""

    context: Any
    batch_definition: Any
    checkpoints: dict[str, tuple[Any, dict[str, int]]] = field(default_factory=dict)


@functools.cache
def _built() -> _Gx:
    """One ephemeral GX context with a pandas dataframe asset and a whole-frame batch definition."""
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral", project_config=quiet_config())
    asset = context.data_sources.add_pandas("pql").add_dataframe_asset("frame")
    return _Gx(context, asset.add_batch_definition_whole_dataframe("whole_frame"))


def _gx() -> _Gx:
    """The process's GX context, built on first use (by one thread only)."""
    with _CONTEXT_LOCK:
        return _built()


def _batch_definition() -> Any:
    """The process's one GX batch definition."""
    return _gx().batch_definition


def prepare() -> None:
    """Import GX and build the process's context now, in the calling thread: a run does this in its
    main thread before Prefect starts any thread (a module half-imported by one thread is not safe
    for another), so the first gate does not pay for it either; likewise GX's Data Docs renderers."""
    _gx()
    import pql.validation.data_docs  # noqa: F401


def checkpoint(suite: BatchSuite) -> tuple[Any, dict[str, int]]:
    """The Checkpoint of `suite` (its suite and ValidationDefinition added to the context on first use),
    and the suite position of each expectation id the context's store gave."""
    import great_expectations as gx

    with _CONTEXT_LOCK:
        built = _built()
        found = built.checkpoints.get(suite.suite_name)
        if found is None:
            context = built.context
            stored = context.suites.add(suite.gx_suite())
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=suite.suite_name, data=built.batch_definition, suite=stored)
            )
            found = (
                context.checkpoints.add(
                    gx.Checkpoint(
                        name=suite.suite_name, validation_definitions=[definition], result_format="BASIC"
                    )
                ),
                {expectation.id: position for position, expectation in enumerate(stored.expectations)},
            )
            built.checkpoints[suite.suite_name] = found
        return found


def _run_checkpoint(
    frame: pd.DataFrame, suite: BatchSuite, parameters: Mapping[str, Any]
) -> tuple[Any, dict[int, Any]]:
    """The Checkpoint's GX result on `frame`, and its expectation results by position in the suite."""
    with _LOCK:  # also while a Checkpoint is added: a run reads the stores it is added to
        run, positions = checkpoint(suite)
        outcome = run.run(batch_parameters={"dataframe": frame}, expectation_parameters=dict(parameters))
        ((key, result),) = outcome.run_results.items()
        # Kept by the caller (and in the run folder): a long-lived process must not pile them up.
        _gx().context.validation_results_store.remove_key(key)
    return result, {positions[item.expectation_config.id]: item for item in result.results}


def _subset_suite(name: str, entries: Sequence[tuple[int, ExpectationSpec]]) -> Any:
    """A throw-away suite of some expectations of a batch suite, each marked with its position."""
    import great_expectations as gx

    # Built one by one: ExpectationSuite(expectations=...) logs and drops an invalid one instead of raising.
    expectations = [
        _expectation(spec, {"check": spec.check, "position": position}) for position, spec in entries
    ]
    return gx.ExpectationSuite(name=name, expectations=expectations)


def _failing_rows(
    frame: pd.DataFrame,
    suite: BatchSuite,
    entries: Sequence[tuple[int, ExpectationSpec]],
    parameters: Mapping[str, Any],
) -> dict[int, Any]:
    """The second pass: only the failed expectations, with COMPLETE results (their failing rows)."""
    with _LOCK:
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        again = batch.validate(
            _subset_suite(suite.suite_name, entries),
            result_format={"result_format": "COMPLETE", "return_unexpected_index_query": False},
            expectation_parameters=dict(parameters),
        )
    return {int(result.expectation_config.meta["position"]): result for result in again.results}


def _error(result: Any) -> str | None:
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "the expectation raised an error")
    return None


def run_batch(
    frame: pd.DataFrame, suite: BatchSuite, parameters: Mapping[str, Any] | None = None
) -> BatchRun:
    """Validate `frame` through the Checkpoint of `suite`. GX names failing rows by index label, so a
    frame holding (some of) a stage's input rows keeps the input's positions as its index."""
    parameters = parameters or {}
    entries = list(enumerate(suite.expectations))
    # GX fingerprints every column of a batch: hand it only the columns it checks.
    checked = frame[[name for name in _referenced(suite) if name in frame.columns]]
    validation, results = _run_checkpoint(checked, suite, parameters)
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
        for position, result in _failing_rows(checked, suite, failed, parameters).items():
            labels = (result.result or {}).get("unexpected_index_list")
            if labels is not None:
                runs[position].unexpected_index = np.asarray(labels, dtype=np.int64)
    return BatchRun(suite, frame, runs, validation.to_json_dict(), validation)


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
