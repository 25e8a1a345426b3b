"""report.html: one self-contained page (plots as embedded PNGs) with the evidence for a model version."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, same pixels everywhere

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from pql.models.baselines import BASELINE_NAMES
from pql.models.metrics import Holdout, calibration_table, gain_curve

SCORER_NAMES = {"model": "model", **BASELINE_NAMES}
SUMMARY_METRICS = (
    ("pr_auc", "PR-AUC", 3),
    ("roc_auc", "ROC-AUC", 3),
    ("brier", "Brier", 4),
    ("precision_top_1pct", "precision top 1%", 3),
    ("precision_top_5pct", "precision top 5%", 3),
    ("precision_top_10pct", "precision top 10%", 3),
    ("lift_top_10pct", "lift top 10%", 2),
    ("precision_top_k", "precision top-K", 3),
    ("lift_top_k", "lift top-K", 2),
    ("capture_top_10pct", "conversions in top 10%", 3),
)
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:70rem;
color:#1d2430;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d8dde6}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #d8dde6;padding:.25rem .55rem;text-align:right}th{background:#f2f4f8}
td.l,th.l{text-align:left}.ci{color:#68707d;font-size:.8rem}
.verdict{padding:.5rem .8rem;border-left:4px solid #2f7d32;background:#f1f8f1;margin:.4rem 0}
.verdict.bad{border-color:#b3261e;background:#fcefee}.verdict.unclear{border-color:#b26a00;background:#fff6e8}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(30rem,1fr));gap:1rem}
figure{margin:0}img{max-width:100%;height:auto}figcaption{font-size:.85rem;color:#4a5260}
.meta td{text-align:left}
"""


@dataclass(frozen=True)
class ReportData:
    """The holdout arrays behind the plots (metadata holds every number the tables show)."""

    holdout: Holdout
    probabilities: dict[str, np.ndarray]
    uncalibrated: np.ndarray
    importance: pd.DataFrame


def _png(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(title: str, encoded: str, caption: str) -> str:
    return (
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _roc_pr(data: ReportData) -> tuple[str, str]:
    y = data.holdout.label
    roc, ax_roc = plt.subplots(figsize=(5.5, 4.5))
    pr, ax_pr = plt.subplots(figsize=(5.5, 4.5))
    for name, p in data.probabilities.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax_roc.plot(fpr, tpr, label=SCORER_NAMES.get(name, name), linewidth=2 if name == "model" else 1.2)
        precision, recall, _ = precision_recall_curve(y, p)
        ax_pr.plot(
            recall, precision, label=SCORER_NAMES.get(name, name), linewidth=2 if name == "model" else 1.2
        )
    ax_roc.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (holdout)")
    ax_pr.axhline(y.mean(), color="grey", linestyle=":", linewidth=1, label="base rate")
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall curve (holdout)")
    for ax in (ax_roc, ax_pr):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _png(roc), _png(pr)


def _gain_lift(data: ReportData) -> str:
    figure, (ax_gain, ax_lift) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, p in data.probabilities.items():
        curve = gain_curve(data.holdout, p)
        label = SCORER_NAMES.get(name, name)
        width = 2 if name == "model" else 1.2
        ax_gain.plot(curve["share_worked"] * 100, curve["share_captured"] * 100, label=label, linewidth=width)
        ax_lift.plot(curve["share_worked"][1:] * 100, curve["lift"][1:], label=label, linewidth=width)
    ax_gain.plot([0, 100], [0, 100], color="grey", linestyle=":", linewidth=1, label="random")
    ax_gain.set(
        xlabel="% of each snapshot worked (by score)", ylabel="% of conversions captured", title="Gain"
    )
    ax_lift.axhline(1, color="grey", linestyle=":", linewidth=1)
    ax_lift.set(xlabel="% of each snapshot worked (by score)", ylabel="lift over base rate", title="Lift")
    ax_lift.set_xscale("log")
    for ax in (ax_gain, ax_lift):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _png(figure)


def _calibration(data: ReportData) -> str:
    figure, ax = plt.subplots(figsize=(5.5, 4.5))
    y = data.holdout.label
    curves = {
        "model (calibrated)": data.probabilities["model"],
        "model (before calibration)": data.uncalibrated,
    }
    top = 0.0
    for label, p in curves.items():
        table = calibration_table(y, p)
        ax.plot(table["mean_probability"], table["conversion_rate"], marker="o", label=label)
        top = max(top, table["mean_probability"].max(), table["conversion_rate"].max())
    ax.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=1, label="perfect")
    ax.set(
        xlabel="mean predicted probability (decile)", ylabel="observed conversion rate", title="Calibration"
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(figure)


def _distribution(data: ReportData) -> str:
    figure, ax = plt.subplots(figsize=(5.5, 4.5))
    p = data.probabilities["model"]
    converted = data.holdout.label == 1
    bins = np.linspace(0, max(float(p.max()), 1e-6), 40)
    ax.hist(p[~converted], bins=bins, alpha=0.6, density=True, label="did not convert")
    ax.hist(p[converted], bins=bins, alpha=0.6, density=True, label="converted")
    ax.set(xlabel="predicted probability", ylabel="density", title="Score distribution (holdout)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return _png(figure)


def _importance(data: ReportData) -> str:
    top = data.importance.head(20).iloc[::-1]
    figure, ax = plt.subplots(figsize=(6.5, max(2.5, 0.28 * len(top) + 1)))
    ax.barh(top["feature"], top["importance_mean"], xerr=top["importance_std"], color="#4c72b0")
    ax.set(xlabel="drop in PR-AUC when shuffled", title="Permutation importance (holdout)")
    ax.grid(axis="x", alpha=0.3)
    return _png(figure)


def _fmt(value: Any, digits: int) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and not np.isfinite(value))
        else f"{value:.{digits}f}"
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    head = "".join(
        f'<th class="{"l" if i < left else ""}">{html.escape(h)}</th>' for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"l" if i < left else ""}">{cell}</td>' for i, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _comparison_table(metrics: dict[str, Any]) -> str:
    holdout = metrics["holdout"]
    rows = []
    for key, label, digits in SUMMARY_METRICS:
        cells = [html.escape(label)]
        for name in holdout:
            value = holdout[name].get(key)
            interval = holdout[name].get("ci", {}).get(key)
            ci = (
                f'<br><span class="ci">{_fmt(interval[0], digits)}–{_fmt(interval[1], digits)}</span>'
                if interval
                else ""
            )
            cells.append(_fmt(value, digits) + ci)
        rows.append(cells)
    return _table(["metric", *(SCORER_NAMES.get(name, name) for name in holdout)], rows)


def verdict_sentences(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(css class, sentence) per baseline: plainly whether the model beats it on PR-AUC."""
    sentences = []
    for name, row in metrics["comparison"].items():
        label = SCORER_NAMES.get(name, name)
        gap, (low, high) = row["pr_auc_gap"], row["pr_auc_gap_ci"]
        interval = f"{gap:+.4f} (95% CI {low:+.4f} to {high:+.4f})"
        if row["verdict"] == "is_the_model":
            sentences.append(
                (
                    "",
                    f"The model is the {label}, chosen over the other families on folds inside the training "
                    "window (see Model family): the baselines below are what it must beat.",
                )
            )
        elif row["verdict"] == "beats":
            sentences.append(("", f"The model beats the {label} baseline on PR-AUC: {interval}."))
        elif row["verdict"] == "does_not_beat":
            sentences.append(("bad", f"The model does NOT beat the {label} baseline on PR-AUC: {interval}."))
        else:
            sentences.append(
                (
                    "unclear",
                    f"The model is not clearly better than the {label} baseline on PR-AUC: {interval}; "
                    "the interval includes zero.",
                )
            )
    return sentences


def _meta_table(rows: Sequence[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><th class='l'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f'<table class="meta">{body}</table>'


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>'
        f"<body>{body}</body></html>\n"
    )


def _overview(meta: dict[str, Any]) -> str:
    training = meta["training"]
    dates = training.get("as_of_dates", [])
    return _meta_table(
        [
            ("version", meta["version"]),
            ("created (UTC)", meta["created"]),
            ("status", meta["status"]),
            ("data end", training.get("data_end")),
            ("snapshots", f"{len(dates)} ({dates[0][:10]} … {dates[-1][:10]})" if dates else "none"),
            ("horizon", f"{training.get('horizon_days')} days"),
            ("label", training.get("label") or "converted_to_paid"),
            (
                "rows / positive rows / converting accounts",
                f"{training.get('rows')} / {training.get('conversions')} / "
                f"{training.get('converting_accounts', 'n/a')}",
            ),
        ]
    )


# What each label counts as a conversion, as the report's first sentence says it.
LABEL_OUTCOMES = {
    "converted_to_paid": "Conversion to a paid plan (self-serve)",
    "opportunity_created": "An opportunity created",
    "closed_won": "A deal won (an opportunity closed won)",
    "converted_or_won": "Conversion to a paid plan or a deal won",
}
PATH_COLUMNS = (
    ("converting_accounts", "converting accounts"),
    ("self_serve_only", "self-serve only"),
    ("opportunity_only", "opportunity only"),
    ("both", "both"),
)


def label_outcome(meta: dict[str, Any]) -> str:
    """What the model predicts, in words; a model trained before labels were configurable: conversion."""
    return LABEL_OUTCOMES.get(meta.get("training", {}).get("label") or "converted_to_paid", "Conversion")


def path_rows(meta: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(label, cells of PATH_COLUMNS) for each label whose converters the training set counts by path;
    the label the model was trained on is marked. Empty for a model from before paths were recorded."""
    training = meta.get("training", {})
    paths = training.get("paths") or {}
    rows = []
    for name, counts in paths.get("labels", {}).items():
        shown = f"{name} (trained on)" if name == training.get("label") else name
        cells = ["n/a" if counts[key] is None else str(counts[key]) for key, _ in PATH_COLUMNS]
        rows.append((shown, cells))
    return rows


def _paths(meta: dict[str, Any]) -> str:
    rows = path_rows(meta)
    if not rows:
        return "<p>The converters' paths were not recorded for this version.</p>"
    known = meta["training"]["paths"]["opportunities"]
    note = (
        "Converting accounts in the training set per label, by the path they took in the horizon of a "
        "positive snapshot: self-serve (a change into a paid plan), opportunity (an opportunity created), "
        "or both."
        if known
        else "No opportunities table was in use: only the self-serve label is known, and whether its "
        "converters also had an opportunity is not (n/a)."
    )
    table = _table(
        ["label", *(title for _, title in PATH_COLUMNS)],
        ([html.escape(label), *cells] for label, cells in rows),
    )
    return f"<p>{html.escape(note)}</p>{table}"


def _candidate_sentence(meta: dict[str, Any]) -> str:
    candidate = meta.get("model", {}).get("candidate")
    if not candidate:
        return "Gradient-boosted trees (chosen before candidates were compared)."
    reason = candidate["reason"]
    return f"Chosen: {candidate['chosen'].replace('_', ' ')}. {reason[0].upper()}{reason[1:]}."


def left_out_lines(meta: dict[str, Any]) -> list[str]:
    """'feature: why' for every candidate feature the model does not use."""
    return [f"{column}: {why}" for column, why in meta.get("features", {}).get("left_out", {}).items()]


def _left_out(meta: dict[str, Any]) -> str:
    rows = [
        [html.escape(column), html.escape(why)]
        for column, why in meta.get("features", {}).get("left_out", {}).items()
    ]
    if not rows:
        return "<p>Every candidate feature carried information and is in the model.</p>"
    return _table(["feature", "why it is not in the model"], rows)


def render_report(meta: dict[str, Any], data: ReportData) -> str:
    """The report of a trained model: verdicts, model-vs-baselines table, plots, calibration, folds."""
    metrics, training = meta["metrics"], meta["training"]
    split = training["split"]
    roc, pr = _roc_pr(data)
    verdicts = "".join(
        f'<p class="verdict {css}">{html.escape(text)}</p>' for css, text in verdict_sentences(metrics)
    )
    promotion = meta["promotion"]
    calibration = metrics["calibration"]
    cal_rows = [
        [
            str(int(r["bin"])),
            str(int(r["rows"])),
            _fmt(r["mean_probability"], 4),
            _fmt(r["conversion_rate"], 4),
            str(int(r["conversions"])),
        ]
        for r in calibration["after"]["table"]
    ]
    fold_rows = [
        [
            f"{f['test_from'][:10]} … {f['test_to'][:10]}",
            str(f["train_snapshots"]),
            *(_fmt(f["pr_auc"].get(name), 3) for name in SCORER_NAMES),
        ]
        for f in metrics.get("folds", [])
    ]
    body = f"""
<h1>PQL model {html.escape(meta["version"])}</h1>
<p>{html.escape(label_outcome(meta))} within {training["horizon_days"]} days, trained on snapshots before
{html.escape(split["test_from"][:10])} and judged out of time on the {
        split["test_snapshots"]
    } later snapshot(s)
({html.escape(split["test_from"][:10])} … {html.escape(split["test_to"][:10])}).
Training labels end by {html.escape(split["train_label_end"][:10])}; {split["embargo_snapshots"]} snapshot(s)
in between are left out so no training label sees the test period.</p>
{_overview(meta)}
<h2>Converters by path</h2>
{_paths(meta)}
<h2>Does the model beat the baselines?</h2>
{verdicts}
<p><b>Promotion:</b> {"promoted to champion" if promotion["promoted"] else "kept as challenger"}:
{html.escape(promotion["reason"])}</p>
<h2>Model against baselines (holdout, {
        metrics["bootstrap_rounds"]
    } account-bootstrap rounds, 95% intervals)</h2>
{_comparison_table(metrics)}
<p>Top shares are taken within each snapshot (the list sales would work that day); top-K is the top
{meta["settings"]["top_k"]} accounts of each snapshot. Base rate {
        _fmt(metrics["holdout"]["model"]["base_rate"], 4)
    }.</p>
<h2>Ranking</h2>
<div class="grid">{_figure("ROC curve", roc, "ROC curves on the holdout.")}
{_figure("Precision-recall curve", pr, "Precision-recall curves on the holdout.")}</div>
<h2>Gain and lift</h2>
{
        _figure(
            "Gain and lift chart",
            _gain_lift(data),
            "Share of conversions captured when working the top of each snapshot, and lift over the "
            "base rate.",
        )
    }
<h2>Calibration</h2>
<p>Method: {html.escape(str(calibration["method"]))}. Brier on the holdout before calibration
{_fmt(calibration["before"]["brier"], 5)}, after {
        _fmt(calibration["after"]["brier"], 5)
    }; expected calibration
error before {_fmt(calibration["before"]["ece"], 5)}, after {_fmt(calibration["after"]["ece"], 5)}.</p>
<div class="grid">{
        _figure(
            "Calibration curve",
            _calibration(data),
            "Predicted against observed conversion rate by decile of predicted probability.",
        )
    }
{
        _figure(
            "Score distribution",
            _distribution(data),
            "Predicted probability for converters and non-converters.",
        )
    }</div>
{_table(["decile", "rows", "mean predicted", "observed rate", "conversions"], cal_rows)}
<h2>What drives the score</h2>
{
        _figure(
            "Permutation importance",
            _importance(data),
            "Mean drop in PR-AUC on holdout rows when one feature is shuffled "
            "(bars: standard deviation over repeats).",
        )
    }
<h2>Model family</h2>
<p>{html.escape(_candidate_sentence(meta))}</p>
<h2>Features left out</h2>
{_left_out(meta)}
<h2>Rolling-origin folds (PR-AUC)</h2>
{
        _table(["test window", "train snapshots", *SCORER_NAMES.values()], fold_rows)
        if fold_rows
        else "<p>Not enough snapshots for more than the main split.</p>"
    }
<h2>Training details</h2>
{
        _meta_table(
            [
                (
                    "train snapshots",
                    f"{split['train_snapshots']} ({split['train_from'][:10]} … {split['train_to'][:10]})",
                ),
                ("embargo snapshots", split["embargo_snapshots"]),
                (
                    "test snapshots",
                    f"{split['test_snapshots']} ({split['test_from'][:10]} … {split['test_to'][:10]})",
                ),
                (
                    "features",
                    f"{len(meta['features']['numeric'])} numeric, "
                    f"{len(meta['features']['categorical'])} categorical",
                ),
                ("fingerprint of training data", training.get("fingerprint")),
                ("libraries", ", ".join(f"{k} {v}" for k, v in meta.get("libraries", {}).items())),
            ]
        )
    }
"""
    return _page(f"PQL model {meta['version']}", body)


def render_fallback_report(meta: dict[str, Any]) -> str:
    """The report of a too-little-data entry: why training refused and which points rules score instead."""
    rules = meta["points"]["rules"]
    rows = [
        [html.escape(r["event"]), _fmt(r["points"], 2), str(r["lifespan_days"]), html.escape(r["source"])]
        for r in rules
    ]
    body = f"""
<h1>PQL model {html.escape(meta["version"])}: too little data</h1>
<p class="verdict bad">{html.escape(meta["reason"])}</p>
{_overview(meta)}
<h2>Converters by path</h2>
{_paths(meta)}
<p><b>Promotion:</b> {"promoted to champion" if meta["promotion"]["promoted"] else "not promoted"}:
{html.escape(meta["promotion"]["reason"])}</p>
<h2>Points rules used for scoring instead</h2>
{_table(["key event", "points", "lifespan (days)", "source"], rows)}
"""
    return _page(f"PQL model {meta['version']}", body)
