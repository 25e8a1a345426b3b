"""Validation results: per check, per stage and per run; as a summary dict, JSON files and text.

`evaluate` turns GX runs into a `StageResult` under the configured policies (splitting the rows
into kept and quarantined when a quarantine check failed). `summary` is what `pql_runs.validation_json`
holds, `summary_text` what the CLI prints, `write_results` puts the full GX results and their Data Docs in
the run folder, and `raise_for_failures` stops the run before the write-back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pql.config import Settings
from pql.db import DataError
from pql.validation.checks import CHECKS, Policy
from pql.validation.gx_runner import EXAMPLES, BatchRun, BatchSuite, ExpectationRun
from pql.validation.jsonable import plain, row_text, text
from pql.validation.quarantine import split_rows

log = logging.getLogger(__name__)

Status = Literal["passed", "warned", "quarantined", "failed", "skipped"]
_SEVERITY: dict[str, int] = {"passed": 0, "skipped": 0, "warned": 1, "quarantined": 2, "failed": 3}
_POLICY_STATUS: dict[Policy, Status] = {"fail": "failed", "warn": "warned", "quarantine": "quarantined"}


@dataclass(frozen=True)
class ExpectationFailure:
    """One expectation that did not hold: on how many rows (or days, names...), with examples."""

    expectation: str
    columns: tuple[str, ...]
    rows: int | None
    of: int | None
    unit: str
    examples: tuple[str, ...]
    observed: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "expectation": self.expectation,
            "columns": list(self.columns),
            "rows": self.rows,
            "of": self.of,
            "unit": self.unit,
            "examples": list(self.examples),
            "observed": plain(self.observed),
        }


@dataclass(frozen=True)
class CheckResult:
    """One check of one run: its policy, what happened, and the expectations that failed."""

    name: str
    policy: Policy
    status: Status
    failures: tuple[ExpectationFailure, ...] = ()
    rows: int | None = None  # distinct rows (or events, days...) behind the failures

    def as_dict(self) -> dict[str, Any]:
        check = CHECKS[self.name]
        return {
            "check": self.name,
            "policy": self.policy,
            "status": self.status,
            "description": check.description,
            "hint": check.hint,
            "rows": self.rows,
            "expectations": [failure.as_dict() for failure in self.failures],
        }


@dataclass
class StageResult:
    """One stage's checks, its GX results (as JSON, and the Checkpoints' result objects with their suites
    for Data Docs), for row stages the kept / quarantined split, and notes: what a person should know
    about a stage that passed (why checks were skipped, what that means)."""

    stage: str
    suite_version: int
    checks: list[CheckResult]
    gx_results: list[dict[str, Any]] = field(default_factory=list)
    validations: list[tuple[BatchSuite, Any]] = field(default_factory=list, repr=False)
    kept: pd.DataFrame | None = None
    quarantined: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> Status:
        return _worst(check.status for check in self.checks)

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def quarantined_rows(self) -> int:
        return 0 if self.quarantined is None else len(self.quarantined)

    def check(self, name: str) -> CheckResult:
        return next(check for check in self.checks if check.name == name)


class ValidationFailed(DataError):
    """A `fail` check did not hold: the run stops before the write-back. Carries the run's summary."""

    def __init__(self, summary: dict[str, Any]) -> None:
        self.summary = summary
        super().__init__(summary_text(summary, only_problems=True))


def _worst(statuses: Any) -> Status:
    return max(statuses, key=lambda status: _SEVERITY[status], default="passed")


def _example_rows(frame: pd.DataFrame, index: np.ndarray, columns: Sequence[str]) -> tuple[str, ...]:
    shown = [column for column in dict.fromkeys(columns) if column in frame.columns]
    rows = frame.loc[index[:EXAMPLES], shown]
    return tuple(row_text(row) for row in rows.to_dict("records"))


def _failure(batch: BatchRun, run: ExpectationRun) -> ExpectationFailure:
    suite, result = batch.suite, run.result
    if run.error is not None:
        return ExpectationFailure(run.type, tuple(run.columns), None, None, suite.unit, (run.error,))
    if run.unexpected_index is not None:
        index = run.unexpected_index
        if run.rows_from is not None:
            rows, of = int(pd.to_numeric(batch.frame.loc[index, run.rows_from]).sum()), None
        else:
            rows, of = int(result.get("unexpected_count", len(index))), result.get("element_count")
        examples = _example_rows(batch.frame, index, [*suite.show, *run.columns, *run.show])
        return ExpectationFailure(run.type, tuple(run.columns), rows, of, suite.unit, examples)
    observed = result.get("observed_value")
    missing = result.get("details", {}).get("mismatched", {}).get("missing")
    examples = (
        tuple(f"missing {name}" for name in missing[:EXAMPLES])
        if missing
        else (f"observed {text(observed)}",)
    )
    return ExpectationFailure(run.type, tuple(run.columns), None, None, suite.unit, examples, observed)


def _reasons(batch: BatchRun, run: ExpectationRun) -> list[tuple[int, str]]:
    """(row position, reason) for each row `run` found failing; `show` columns say what was wrong."""
    reason = f"{run.check}: {run.type}({', '.join(run.columns)})"
    positions = run.unexpected_index.tolist() if run.unexpected_index is not None else []
    if not run.show:
        return [(position, reason) for position in positions]
    details = batch.frame.loc[positions, [*run.columns, *run.show]].to_dict("records")
    return [(p, f"{reason} {row_text(row)}") for p, row in zip(positions, details, strict=True)]


def evaluate(
    stage: str,
    suite_version: int,
    batches: Sequence[BatchRun],
    policies: Mapping[str, Policy],
    *,
    rows: pd.DataFrame | None = None,
    skipped: Sequence[str] = (),
    examples: Mapping[str, Sequence[str]] | None = None,
    notes: Sequence[str] = (),
) -> StageResult:
    """The stage's result under `policies`, carrying `notes`.

    `rows` is the stage's input frame (index 0..n-1) when its rows can be quarantined: a `quarantine`
    check that failed on a row batch (indexed like `rows`) splits them into kept and quarantined, with
    their reasons. `examples` replaces the examples of a check whose frame is an aggregate (they come
    from a bounded query of the offending rows).
    """
    examples = examples or {}
    failures: dict[str, list[ExpectationFailure]] = {}
    counted: dict[str, int] = {}  # rows counted by an aggregate (they cannot be told apart)
    positions: dict[str, set[tuple[str, int]]] = {}  # rows known by position in their frame
    reasons: dict[int, list[str]] = {}
    for batch in batches:
        for run in batch.expectations:
            failures.setdefault(run.check, [])
            if run.success:
                continue
            failure = _failure(batch, run)
            if examples.get(run.check):
                failure = replace(failure, examples=tuple(examples[run.check])[:EXAMPLES])
            failures[run.check].append(failure)
            if run.rows_from is not None or run.unexpected_index is None:
                if failure.rows is not None:
                    counted[run.check] = counted.get(run.check, 0) + failure.rows
            else:
                found = {(batch.suite.name, int(i)) for i in run.unexpected_index}
                positions[run.check] = positions.get(run.check, set()) | found
                if batch.suite.rows and policies[run.check] == "quarantine":
                    for position, reason in _reasons(batch, run):
                        reasons.setdefault(position, []).append(reason)
    checks = []
    for name, found in failures.items():
        status: Status = _POLICY_STATUS[policies[name]] if found else "passed"
        known = name in counted or name in positions
        count = counted.get(name, 0) + len(positions.get(name, ())) if known else None
        checks.append(CheckResult(name, policies[name], status, tuple(found), count))
    checks += [CheckResult(name, policies[name], "skipped") for name in skipped if name not in failures]
    result = StageResult(
        stage,
        suite_version,
        checks,
        [batch.gx_result for batch in batches],
        [(batch.suite, batch.validation) for batch in batches if batch.validation is not None],
        notes=list(notes),
    )
    if rows is not None:
        result.kept, result.quarantined = split_rows(rows, reasons)
    return result


def summary(results: Sequence[StageResult]) -> dict[str, Any]:
    """The run's validation as JSON-ready data (for `pql_runs.validation_json`)."""
    checks = [check for result in results for check in result.checks]
    return {
        "status": _worst(result.status for result in results),
        "failed": [check.name for check in checks if check.status == "failed"],
        "warned": [check.name for check in checks if check.status == "warned"],
        "quarantined": [check.name for check in checks if check.status == "quarantined"],
        "quarantined_rows": sum(result.quarantined_rows for result in results),
        "stages": [
            {
                "stage": result.stage,
                "suite_version": result.suite_version,
                "status": result.status,
                "passed": [check.name for check in result.checks if check.status == "passed"],
                "skipped": [check.name for check in result.checks if check.status == "skipped"],
                "notes": list(result.notes),
                "problems": [
                    check.as_dict() for check in result.checks if check.status not in ("passed", "skipped")
                ],
            }
            for result in results
        ],
    }


def _count(rows: int | None, of: int | None, unit: str) -> str:
    if rows is None:
        return ""
    return f"{rows:,} {unit}" + (f" of {of:,}" if of else "")


def summary_text(data: Mapping[str, Any], *, only_problems: bool = False) -> str:
    """Plain text for people: one line per stage with its notes below it (unless `only_problems`), one
    line per problem check, each failed expectation below it."""
    problems = [problem for stage in data["stages"] for problem in stage["problems"]]
    counts = ", ".join(f"{len(data[key])} {key}" for key in ("failed", "warned", "quarantined") if data[key])
    head = f"validation {data['status']}" + (f" (checks: {counts})" if counts else "")
    if data["quarantined_rows"]:
        head += f"; {data['quarantined_rows']:,} row(s) set aside in quarantine"
    lines = [head]
    if not only_problems:
        for stage in data["stages"]:
            lines.append(f"  {stage['stage']}: {stage['status']} ({len(stage['passed'])} checks passed)")
            lines += [f"    note: {note}" for note in stage["notes"]]
    for problem in problems:
        label = {"failed": "FAIL", "warned": "WARN", "quarantined": "QUARANTINE"}[problem["status"]]
        lines.append(f"  {label} {problem['check']}: {problem['description']}")
        for failure in problem["expectations"]:
            columns = ", ".join(failure["columns"])
            count = _count(failure["rows"], failure["of"], failure["unit"])
            lines.append(
                f"    {failure['expectation']}({columns})"
                + (f" failed on {count}" if count else "")
                + (f"; e.g. {'; '.join(failure['examples'])}" if failure["examples"] else "")
            )
        lines.append(f"    what to do: {problem['hint']}")
    return "\n".join(lines)


def run_folder(settings: Settings, run_id: str) -> Path:
    """`<state_dir>/runs/<run_id>`: everything a run leaves on disk."""
    return settings.state_dir / "runs" / run_id


def data_docs_index(settings: Settings, run_id: str) -> Path:
    """`<run folder>/data_docs/index.html`: the run's Great Expectations Data Docs."""
    return run_folder(settings, run_id) / "data_docs" / "index.html"


def write_results(results: Sequence[StageResult], settings: Settings, run_id: str) -> list[Path]:
    """Write each stage's full GX results and the summary to `<run folder>/validation/` (returning their
    paths), and the results as GX Data Docs to `<run folder>/data_docs/` (`data_docs_index`): a page per
    Checkpoint result and per suite, named by the run id."""
    folder = run_folder(settings, run_id) / "validation"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for result in results:
        path = folder / f"{result.stage}.json"
        document = {
            "stage": result.stage,
            "suite_version": result.suite_version,
            "results": result.gx_results,
        }
        path.write_text(json.dumps(plain(document), indent=1), encoding="utf-8")
        paths.append(path)
    path = folder / "summary.json"
    path.write_text(json.dumps(summary(results), indent=1), encoding="utf-8")
    from pql.validation.data_docs import write_data_docs  # imports GX: only when results are written

    runs = [validation for result in results for validation in result.validations]
    docs = data_docs_index(settings, run_id).parent
    try:
        write_data_docs(docs, runs, run_id)
    except Exception as exc:  # the pages only present the results written above; never fail a run for them
        log.warning("Data Docs not written to %s (the results are in %s): %s", docs, folder, exc)
    return [*paths, path]


def raise_for_failures(results: Sequence[StageResult]) -> None:
    """Raise `ValidationFailed` (exit code 1) when any `fail` check did not hold."""
    if any(result.failed for result in results):
        raise ValidationFailed(summary(results))
