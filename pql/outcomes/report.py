"""`pql report`: one self-contained HTML page (plots as embedded PNGs) on what PQLs achieved.

Figures are drawn with matplotlib's object API (no pyplot state), so rendering is safe in any thread
and needs no display.
"""

from __future__ import annotations

import base64
import html
import io as bytes_io
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pql.config import Settings
from pql.db import databases
from pql.outcomes.calibration import calibration_error
from pql.outcomes.cohorts import conversion_table, lift_table
from pql.outcomes.evaluation import Evaluation, evaluate

TIER_ORDER = ("very_high", "high", "medium", "low")
TOP_DRIFT_FEATURES = 5
OVERDUE_ROWS = 50

Formatter = Callable[[object], str]


def _png(figure: Figure) -> str:
    buffer = bytes_io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _axes(title: str, width: float = 8.0, height: float = 3.6) -> tuple[Figure, object]:
    figure = Figure(figsize=(width, height))
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.grid(alpha=0.3)
    return figure, axes


def weekly_volume_figure(pql_outcomes: pd.DataFrame) -> Figure | None:
    """New PQLs per week, control PQLs stacked on the treated ones."""
    if pql_outcomes.empty:
        return None
    counts = pd.crosstab(pql_outcomes["cohort_week"], pql_outcomes["segment"]).reindex(
        columns=["pql", "control"], fill_value=0
    )
    figure, axes = _axes("New PQLs per week")
    labels = [week.strftime("%Y-%m-%d") for week in counts.index]
    axes.bar(labels, counts["pql"], color="#2b6cb0", label="shown to sales")
    axes.bar(labels, counts["control"], bottom=counts["pql"], color="#a0aec0", label="control (held out)")
    axes.set_ylabel("new PQLs")
    axes.tick_params(axis="x", rotation=60, labelsize=8)
    axes.legend()
    return figure


def tier_conversion_figure(snapshot_outcomes: pd.DataFrame) -> Figure | None:
    """Conversion within the horizon of each week's eligible accounts, by tier; open markers for weeks
    whose horizon has not passed yet."""
    if snapshot_outcomes.empty:
        return None
    table = conversion_table(snapshot_outcomes, ["tier", "cohort_week"])
    figure, axes = _axes("Conversion within the horizon by tier, per weekly snapshot")
    tiers = [tier for tier in TIER_ORDER if tier in set(table["tier"])]
    tiers += sorted(set(table["tier"].dropna()) - set(tiers))
    for tier in tiers:
        rows = table[table["tier"] == tier]
        line = axes.plot(rows["cohort_week"], rows["conversion_rate"], label=str(tier))[0]
        open_rows = rows[~rows["is_complete"]]
        axes.plot(
            open_rows["cohort_week"], open_rows["conversion_rate"], "o", mfc="white", color=line.get_color()
        )
    axes.set_ylabel("conversion rate")
    axes.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    axes.legend(title="tier")
    figure.autofmt_xdate()
    return figure


def lift_figure(lift: pd.DataFrame) -> Figure | None:
    """Per week, PQL conversion over non-PQL conversion; hatched bars are weeks still in their horizon."""
    shown = lift.dropna(subset=["lift"])
    if shown.empty:
        return None
    figure, axes = _axes("Lift of PQLs over eligible non-PQLs (conversion rate ratio)")
    labels = [week.strftime("%Y-%m-%d") for week in shown["cohort_week"]]
    bars = axes.bar(labels, shown["lift"], color="#38a169")
    for bar, complete in zip(bars, shown["is_complete"], strict=True):
        if not complete:
            bar.set_hatch("//")
            bar.set_alpha(0.5)
    axes.axhline(1.0, color="black", linewidth=1)
    axes.set_ylabel("PQL rate / non-PQL rate")
    axes.tick_params(axis="x", rotation=60, labelsize=8)
    return figure


def calibration_figure(calibration: pd.DataFrame) -> Figure | None:
    """Observed conversion against the mean predicted probability, per decile."""
    if calibration.empty:
        return None
    figure, axes = _axes("Production calibration by probability decile", width=5.5, height=4.5)
    top = float(max(calibration["mean_probability"].max(), calibration["observed_rate"].max(), 0.01)) * 1.05
    axes.plot([0, top], [0, top], color="grey", linestyle="--", label="perfect calibration")
    axes.plot(calibration["mean_probability"], calibration["observed_rate"], "o-", label="deciles")
    axes.set(
        xlabel="mean predicted probability", ylabel="observed conversion rate", xlim=(0, top), ylim=(0, top)
    )
    axes.legend()
    return figure


def sla_figure(by_owner: pd.DataFrame, sla_hours: int) -> Figure | None:
    """Share of due PQLs first touched within the SLA, per owner."""
    owners = by_owner[(by_owner["owner"] != "all owners") & (by_owner["due"] > 0)]
    if owners.empty:
        return None
    figure, axes = _axes(
        f"First touch within {sla_hours} h, by owner", height=max(2.5, 0.45 * len(owners) + 1)
    )
    axes.barh(owners["owner"], owners["compliance"], color="#dd6b20")
    for position, row in enumerate(owners.itertuples(index=False)):
        axes.text(min(row.compliance, 0.85) + 0.01, position, f"{row.met}/{row.due}", va="center")
    axes.set_xlim(0, 1)
    axes.xaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    axes.invert_yaxis()
    return figure


def drift_figure(drift: pd.DataFrame, psi_warn: float, psi_fail: float) -> Figure | None:
    """PSI per run of the columns that drifted most, with the warning and failure thresholds."""
    known = drift.dropna(subset=["psi"])
    if known.empty:
        return None
    top = known.groupby("name")["psi"].max().sort_values(ascending=False).head(TOP_DRIFT_FEATURES).index
    figure, axes = _axes(f"Drift from the training reference (PSI), top {len(top)}")
    for name in top:
        rows = known[known["name"] == name].sort_values("as_of")
        axes.plot(rows["as_of"], rows["psi"], "o-", markersize=3, label=name)
    axes.axhline(psi_warn, color="#d69e2e", linestyle="--", label=f"warn {psi_warn}")
    axes.axhline(psi_fail, color="#c53030", linestyle="--", label=f"fail {psi_fail}")
    axes.set_ylabel("PSI")
    axes.legend(fontsize=8)
    figure.autofmt_xdate()
    return figure


def _percent(value: object) -> str:
    return "" if pd.isna(value) else f"{float(value):.1%}"


def _number(digits: int) -> Formatter:
    return lambda value: "" if pd.isna(value) else f"{float(value):,.{digits}f}"


def _text(value: object) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, pd.Timestamp):
        return (
            value.strftime("%Y-%m-%d %H:%M") if (value.hour or value.minute) else value.strftime("%Y-%m-%d")
        )
    return str(value)


def html_table(frame: pd.DataFrame, formats: Mapping[str, Formatter] | None = None) -> str:
    """`frame` as an HTML table, every cell escaped."""
    formats = formats or {}
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in frame.columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(formats.get(column, _text)(value))}</td>"
            for column, value in zip(frame.columns, row, strict=True)
        )
        + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure_html(figure: Figure | None, alt: str, empty: str) -> str:
    if figure is None:
        return f'<p class="empty">{html.escape(empty)}</p>'
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(figure)}">'


SLA_FORMATS: dict[str, Formatter] = {"compliance": _percent, "median_hours_to_first_touch": _number(1)}
RATE_FORMATS: dict[str, Formatter] = {
    "conversion_rate": _percent,
    "pql_rate": _percent,
    "non_pql_rate": _percent,
    "lift": _number(2),
    "median_days_to_conversion": _number(1),
    "mrr": _number(0),
}


def key_figures(evaluation: Evaluation) -> pd.DataFrame:
    """Headline numbers: per segment, accounts, mature accounts, conversions and rate among the mature."""
    rows = []
    for segment, label in (
        ("pql", "PQLs (shown to sales)"),
        ("control", "control PQLs"),
        ("non_pql", "non-PQLs"),
    ):
        outcomes = evaluation.outcomes[evaluation.outcomes["segment"] == segment]
        mature = outcomes[outcomes["is_mature"]]
        rows.append(
            {
                "group": label,
                "accounts": len(outcomes),
                "horizon passed": len(mature),
                "conversions": int(mature["is_converted"].sum()),
                "conversion_rate": mature["is_converted"].mean() if len(mature) else np.nan,
                "median_days_to_conversion": mature["days_to_conversion"].median(),
                "mrr": mature["mrr"].sum(min_count=1),
            }
        )
    return pd.DataFrame(rows)


def _uplift_html(evaluation: Evaluation, settings: Settings) -> str:
    uplift = evaluation.uplift
    share = settings.outcomes.control_share
    if uplift is None:
        state = f"on ({share:.0%} of new PQLs)" if share else "off (outcomes.control_share = 0)"
        return (
            f"<p>The control group is {html.escape(state)}; no control PQL has completed its horizon in this "
            "period, so there is no uplift estimate yet.</p>"
        )
    level = f"{uplift.confidence:.0%}"
    rows = pd.DataFrame(
        [
            {"measure": "treated PQLs (horizon passed)", "value": f"{uplift.treated:,}"},
            {"measure": "treated conversion rate", "value": _percent(uplift.treated_rate)},
            {"measure": "control PQLs (horizon passed)", "value": f"{uplift.control:,}"},
            {"measure": "control conversion rate", "value": _percent(uplift.control_rate)},
            {
                "measure": f"uplift of outreach ({level} interval)",
                "value": f"{uplift.uplift:+.1%} ({uplift.ci_low:+.1%} to {uplift.ci_high:+.1%})",
            },
            {
                "measure": "conversions added by outreach",
                "value": f"{uplift.implied_conversions:+.1f} "
                f"({uplift.implied_low:+.1f} to {uplift.implied_high:+.1f})",
            },
            {
                "measure": "cost: conversions forgone in the control group",
                "value": f"{uplift.forgone_conversions:.1f}",
            },
        ]
    )
    return html_table(rows)


def _breaches_html(evaluation: Evaluation) -> str:
    runs = evaluation.runs.dropna(subset=["monitoring_json"])
    if runs.empty:
        return '<p class="empty">No run in this period recorded monitoring results.</p>'
    latest = runs.iloc[-1]
    try:
        summary = json.loads(latest["monitoring_json"])
    except json.JSONDecodeError:
        return '<p class="empty">The latest run\'s monitoring record is not valid JSON.</p>'
    breaches = pd.DataFrame(
        summary.get("breaches", []), columns=["check", "name", "value", "threshold", "level"]
    )
    verdict = f"Latest run ({_text(latest['as_of'])}): status {summary.get('status', 'unknown')}."
    if breaches.empty:
        return f"<p>{html.escape(verdict)} No breach.</p>"
    return f"<p>{html.escape(verdict)}</p>" + html_table(breaches)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1a202c; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #cbd5e0; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #e2e8f0; padding: 0.25rem 0.6rem; text-align: right; }
th { background: #edf2f7; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 0.8rem 0; } .empty, .note { color: #4a5568; }
"""


def render_report(evaluation: Evaluation, settings: Settings) -> str:
    """The report as one HTML document with every plot embedded."""
    monitoring = settings.monitoring
    lift = lift_table(evaluation.outcomes)
    segments = conversion_table(evaluation.outcomes, ["segment", "tier", "playbook"])
    models = (
        ", ".join(sorted(evaluation.runs["model_version"].dropna().astype(str).unique())) or "none recorded"
    )
    ece = calibration_error(evaluation.calibration)
    sla = evaluation.sla
    overdue = sla.overdue.head(OVERDUE_ROWS)
    title = f"PQL outcomes {evaluation.since:%Y-%m-%d} to {evaluation.until:%Y-%m-%d}"
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        '<p class="note">'
        + html.escape(
            f"Conversion means a change into a paid plan within {evaluation.horizon_days} days of becoming "
            "a PQL (non-PQLs: of the week's first scoring run). Outcomes observed until "
            f"{evaluation.until:%Y-%m-%d %H:%M} UTC; rates count only accounts whose horizon has passed. "
            f"Model versions: {models}."
        )
        + "</p>",
        "<h2>Key figures</h2>",
        html_table(key_figures(evaluation), RATE_FORMATS),
        "<h2>Weekly PQL volume</h2>",
        _figure_html(
            weekly_volume_figure(evaluation.pql_outcomes), "weekly PQL volume", "No PQL in this period."
        ),
        "<h2>Conversion by tier over time</h2>",
        _figure_html(
            tier_conversion_figure(evaluation.snapshot_outcomes),
            "conversion by tier",
            "No scoring run in this period.",
        ),
        "<h2>Lift of PQLs over non-PQLs</h2>",
        _figure_html(lift_figure(lift), "lift of PQLs", "Not enough PQLs and non-PQLs to compare yet."),
        html_table(lift, RATE_FORMATS),
        "<h2>Conversion by segment, tier and playbook</h2>",
        '<p class="note">For non-PQLs, the playbook their plan would call for.</p>',
        html_table(segments, RATE_FORMATS),
        "<h2>Calibration</h2>",
        f'<p class="note">Weighted mean gap between predicted and observed: {html.escape(_percent(ece))}. '
        "Treated PQLs received outreach, which the model did not see in training.</p>",
        _figure_html(
            calibration_figure(evaluation.calibration),
            "calibration",
            "No snapshot has completed its horizon.",
        ),
        html_table(
            evaluation.calibration,
            {
                "mean_probability": _percent,
                "observed_rate": _percent,
                "min_probability": _percent,
                "max_probability": _percent,
            },
        ),
        "<h2>Attributable lift (control group)</h2>",
        _uplift_html(evaluation, settings),
        "<h2>Follow-up SLA</h2>",
        f'<p class="source">{html.escape(sla.source_line.capitalize())}.</p>',
        '<p class="note">'
        + html.escape(
            f"First touch within {sla.sla_hours} hours of becoming a PQL; "
            f"compliance = met / due (PQLs whose deadline has passed)."
        )
        + "</p>",
        _figure_html(sla_figure(sla.by_owner, sla.sla_hours), "SLA compliance by owner", "No PQL due yet."),
        html_table(sla.by_owner, SLA_FORMATS),
        "<h3>By playbook</h3>",
        html_table(sla.by_playbook, SLA_FORMATS),
        f"<h3>Overdue PQLs ({len(sla.overdue)})</h3>",
        html_table(overdue, {"hours_overdue": _number(1), "score": _number(0)})
        if not overdue.empty
        else '<p class="empty">None.</p>',
        "<h2>Monitoring</h2>",
        _figure_html(
            drift_figure(evaluation.drift, monitoring.psi_warn, monitoring.psi_fail),
            "feature drift",
            "No run in this period recorded monitoring results.",
        ),
        _breaches_html(evaluation),
    ]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def write_report(settings: Settings, *, since: datetime, until: datetime, out: Path) -> Path:
    """Evaluate [since, until) from the configured databases and write the HTML report to `out`."""
    with databases(settings) as dbs:
        evaluation = evaluate(dbs, settings, since=since, until=until)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(evaluation, settings), encoding="utf-8")
    return out
