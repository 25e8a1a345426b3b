"""The markdown report each run publishes as a Prefect artifact: what an operator looks at first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import create_markdown_artifact

from pql.flows.summary import RunSummary
from pql.models.registry import REPORT_FILE
from pql.models.storage import existing_file
from pql.models.training import TrainOutcome
from pql.scoring.diff import change_counts

MISSING = "–"
UNTIERED = "not tiered (ineligible)"


def _cell(value: Any) -> str:
    """A value safe inside a markdown table cell: pipes escaped, line breaks as <br>."""
    if value is None or value == "":
        return MISSING
    text = str(value).replace("|", "\\|").replace("\r", "")
    return "<br>".join(line for line in text.split("\n") if line.strip())


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def _link(path: str | None) -> str | None:
    """A markdown link to a local file (the Data Docs index), its path as the text."""
    if not path:
        return None
    return f"[{path}]({Path(path).resolve().as_uri()})"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else MISSING


def _overview(summary: RunSummary) -> list[str]:
    model = f"`{summary.model_version}`"
    if summary.used_fallback:
        model += " **fallback: points baseline** (no usable champion model; run `pql train`)"
    for warning in summary.model_warnings:
        model += f"<br>**warning:** {warning}"
    rows = [
        ("as of (UTC)", f"{summary.as_of:%Y-%m-%d %H:%M}"),
        ("run id", f"`{summary.run_id}`" if summary.run_id else "dry run: nothing written"),
        ("model", model),
        ("model report", f"`{summary.model_report}`" if summary.model_report else None),
        ("data docs", _link(summary.data_docs)),
        ("accounts scored", f"{summary.accounts_scored:,}"),
        ("PQLs", f"{summary.pqls:,}"),
        ("new PQLs", f"{summary.new_pqls:,}"),
        ("dropped PQLs", f"{summary.dropped_pqls:,}"),
    ]
    return _table(("", ""), rows)


def _validation(validation: dict[str, Any]) -> list[str]:
    if not validation:
        return ["No validation results were recorded."]
    lines = [f"Status: **{validation.get('status', 'unknown')}**"]
    if validation.get("quarantined_rows"):
        lines[0] += f", {validation['quarantined_rows']:,} row(s) quarantined"
    stages = validation.get("stages", [])
    notes = [f"- {stage['stage']}: {note}" for stage in stages for note in stage.get("notes", [])]
    if notes:
        lines += ["", *notes]
    problems = [problem for stage in stages for problem in stage.get("problems", [])]
    if problems:
        lines.append("")
        lines += _table(
            ("check", "status", "rows", "what to do"),
            ((p["check"], p["status"], p.get("rows"), p.get("hint")) for p in problems),
        )
    passed = sum(len(stage.get("passed", [])) for stage in stages)
    lines += ["", f"{passed} check(s) passed."]
    return lines


def _monitoring(monitoring: dict[str, Any]) -> list[str]:
    if not monitoring:
        return ["No monitoring results were recorded."]
    lines = [f"Status: **{monitoring.get('status', 'unknown')}**"]
    for breach in monitoring.get("breaches", []):
        lines.append(
            f"- {breach['check']} `{breach['name']}` = {breach['value']} "
            f"(at or above the {breach['level']} threshold {breach['threshold']})"
        )
    return lines


def run_markdown(summary: RunSummary) -> str:
    """The run's report as markdown: counts, tiers, validation, model and the top PQLs with reasons."""
    title = f"# pql {summary.kind} run{' (dry run)' if summary.dry_run else ''}"
    lines = [title, "", *_overview(summary), "", "## Tiers", ""]
    tiered = [*summary.tiers.items(), (UNTIERED, summary.ineligible)]
    lines += _table(
        ("tier", "accounts", "share"),
        ((tier, f"{count:,}", _share(count, summary.accounts_scored)) for tier, count in tiered),
    )
    if summary.changes is not None:
        counts = change_counts(summary.changes)
        lines += ["", "## What would change", ""]
        lines += _table(("change", "accounts"), ((name.replace("_", " "), n) for name, n in counts.items()))
    lines += ["", "## Validation", "", *_validation(summary.validation)]
    lines += ["", "## Monitoring", "", *_monitoring(summary.monitoring)]
    if summary.alerts:
        lines += ["", "## Alerts", "", summary.alerts]
    lines += ["", f"## Top {len(summary.top_pqls)} PQLs", ""]
    if summary.top_pqls:
        lines += _table(
            ("#", "account", "routed to", "score", "tier", "playbook", "reasons"),
            (
                (
                    rank,
                    f"{pql['name']} (`{pql['account_id']}`)" if pql.get("name") else f"`{pql['account_id']}`",
                    pql.get("routed_to"),
                    f"{pql['score']:.1f}",
                    pql["tier"],
                    pql.get("playbook"),
                    pql.get("reasons"),
                )
                for rank, pql in enumerate(summary.top_pqls, start=1)
            ),
        )
    else:
        lines.append("No account qualified as a PQL in this run.")
    return "\n".join(lines) + "\n"


def training_markdown(outcome: TrainOutcome) -> str:
    """The retrain run's report: the version registered, whether it became champion and why, its
    holdout metrics against the baselines, and where its full report is."""
    report = existing_file(outcome.path, REPORT_FILE)
    lines = ["# pql retrain run", ""]
    lines += _table(
        ("", ""),
        (
            ("version", f"`{outcome.version}`"),
            ("status", outcome.status),
            ("champion", ("yes: " if outcome.promoted else "no, kept as challenger: ") + outcome.reason),
            ("model report", None if report is None else f"`{report}`"),
        ),
    )
    scalar = {key: value for key, value in outcome.metrics.items() if isinstance(value, int | float)}
    if scalar:
        lines += ["", "## Holdout metrics", ""]
        lines += _table(("metric", "value"), ((key, f"{value:.4g}") for key, value in scalar.items()))
    return "\n".join(lines) + "\n"


def publish_training_artifact(outcome: TrainOutcome) -> UUID:
    """Publish the retrain run's report as a markdown artifact of the current flow run."""
    role = "champion" if outcome.promoted else "challenger"
    return create_markdown_artifact(
        markdown=training_markdown(outcome),
        key=artifact_key("retrain"),
        description=f"pql retrain: model {outcome.version}, {role}",
    )


def artifact_key(kind: str) -> str:
    """One key per kind of run, so the latest report of each kind is one click away in the UI."""
    return f"pql-{kind}-report"


def publish_run_artifact(summary: RunSummary) -> UUID:
    """Publish the run's report as a markdown artifact of the current flow run."""
    return create_markdown_artifact(
        markdown=run_markdown(summary),
        key=artifact_key(summary.kind),
        description=f"pql {summary.kind} run as of {summary.as_of:%Y-%m-%d %H:%M} UTC",
    )
