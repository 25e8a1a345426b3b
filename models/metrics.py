"""How well a score ranks and predicts conversions on a holdout, with cluster-bootstrap intervals.

Every metric is computed from one sorted pass with per-row weights, so the point estimate (all weights
1) and each bootstrap round (weights = how often the round drew the row's account) share one code path
and the bootstrap stays O(rows) per round. Ties are scored as their expectation under random
tie-breaking, which matters for coarse scores such as "events in the last 28 days".

Top-share metrics (precision, lift, capture in the top 1/5/10% and at top-K) are per snapshot: at each
`as_of` sales would work the top of that day's list, so the budget is taken within each snapshot and
the hits are pooled over snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TOP_SHARES = (0.01, 0.05, 0.10)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Holdout:
    """The rows a score is judged on: labels, snapshot codes and account (cluster) codes."""

    label: np.ndarray
    snapshot: np.ndarray
    account: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.label)


def holdout_of(frame: pd.DataFrame) -> Holdout:
    """The evaluation view of a frame with `account_id`, `as_of` and `label` columns."""
    return Holdout(
        label=frame["label"].to_numpy(dtype=np.float64),
        snapshot=pd.factorize(frame["as_of"], sort=True)[0],
        account=pd.factorize(frame["account_id"])[0],
    )


@dataclass(frozen=True)
class _Ranking:
    """One score's rows in two orders, with what each metric reads already laid out in that order.

    Pooled order (descending score) feeds the ROC and PR curves and the Brier score; snapshot order
    (snapshot, then descending score) feeds the top shares. `*_starts` mark runs of tied scores.
    """

    account: np.ndarray
    label: np.ndarray
    squared_error: np.ndarray
    starts: np.ndarray
    snap_account: np.ndarray
    snap_label: np.ndarray
    snap_starts: np.ndarray
    snap_of_group: np.ndarray
    n_snapshots: int


def _ranking(probability: np.ndarray, holdout: Holdout) -> _Ranking:
    order = np.argsort(-probability, kind="stable")
    ranked = probability[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    snap_order = np.lexsort((-probability, holdout.snapshot))
    s_score, s_snap = probability[snap_order], holdout.snapshot[snap_order]
    snap_starts = np.flatnonzero(np.r_[True, (s_score[1:] != s_score[:-1]) | (s_snap[1:] != s_snap[:-1])])
    return _Ranking(
        account=holdout.account[order],
        label=holdout.label[order],
        squared_error=(ranked - holdout.label[order]) ** 2,
        starts=starts,
        snap_account=holdout.account[snap_order],
        snap_label=holdout.label[snap_order],
        snap_starts=snap_starts,
        snap_of_group=s_snap[snap_starts],
        n_snapshots=int(holdout.snapshot.max()) + 1 if holdout.rows else 0,
    )


def _grouped(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums over runs of tied scores (the values themselves when no score is tied)."""
    return values if len(starts) == len(values) else np.add.reduceat(values, starts)


def _curves(ranking: _Ranking, w: np.ndarray) -> tuple[float, float, float, float]:
    """(ROC-AUC, PR-AUC as average precision, positives, negatives) of rows weighted `w` (pooled order).

    The AUCs are NaN when a class is absent.
    """
    wy = w * ranking.label
    tp = _grouped(wy, ranking.starts).cumsum()
    fp = _grouped(w - wy, ranking.starts).cumsum()
    positives, negatives = float(tp[-1]), float(fp[-1])
    if positives <= 0 or negatives <= 0:
        return float("nan"), float("nan"), positives, negatives
    tpr, fpr = tp / positives, fp / negatives
    # Trapezoids between consecutive thresholds, starting from the origin.
    roc_auc = float(np.dot(np.diff(fpr, prepend=0.0), tpr + np.r_[0.0, tpr[:-1]]) / 2)
    flagged = tp + fp
    precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
    return roc_auc, float(np.dot(np.diff(tpr, prepend=0.0), precision)), positives, negatives


def _top(
    ranking: _Ranking, w: np.ndarray, budgets: dict[str, tuple[str, float]]
) -> dict[str, tuple[float, float]]:
    """Per budget: (weighted rows worked, weighted conversions among them), pooled over snapshots.

    `w` are the row weights in snapshot order. A budget is `("share", q)`: the top q of each
    snapshot, or `("rows", k)`: the top k of each snapshot.
    """
    group_w = _grouped(w, ranking.snap_starts)
    group_wy = _grouped(w * ranking.snap_label, ranking.snap_starts)
    snap_total = np.bincount(ranking.snap_of_group, weights=group_w, minlength=ranking.n_snapshots)
    snap_offset = np.r_[0.0, np.cumsum(snap_total)[:-1]]
    before = np.cumsum(group_w) - group_w - snap_offset[ranking.snap_of_group]
    rate = np.divide(group_wy, group_w, out=np.zeros_like(group_wy), where=group_w > 0)
    result = {}
    for name, (kind, size) in budgets.items():
        per_snapshot = size * snap_total if kind == "share" else np.full(ranking.n_snapshots, size)
        taken = np.clip(per_snapshot[ranking.snap_of_group] - before, 0.0, group_w)
        result[name] = (float(taken.sum()), float(np.dot(taken, rate)))
    return result


def _weighted_metrics(ranking: _Ranking, draws: np.ndarray, top_k: int) -> dict[str, float]:
    """Every metric with each row weighted by how often its account was drawn (`draws[account]`)."""
    w = draws[ranking.account]
    roc_auc, pr_auc, positives, negatives = _curves(ranking, w)
    total = positives + negatives
    base_rate = positives / total if total > 0 else float("nan")
    metrics = {
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "brier": float(np.dot(w, ranking.squared_error) / total) if total > 0 else float("nan"),
        "base_rate": base_rate,
    }
    budgets = {f"top_{round(share * 100)}pct": ("share", share) for share in TOP_SHARES}
    budgets["top_k"] = ("rows", float(top_k))
    for name, (flagged, hits) in _top(ranking, draws[ranking.snap_account], budgets).items():
        precision = hits / flagged if flagged > 0 else float("nan")
        metrics[f"precision_{name}"] = precision
        metrics[f"lift_{name}"] = precision / base_rate if base_rate > 0 else float("nan")
        if name == "top_10pct":
            metrics["capture_top_10pct"] = hits / positives if positives > 0 else float("nan")
    return metrics


def _accounts(holdout: Holdout) -> int:
    return int(holdout.account.max()) + 1 if holdout.rows else 0


def point_metrics(holdout: Holdout, probability: np.ndarray, top_k: int) -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier, base rate, precision/lift in the top 1/5/10% and top-K, capture in top 10%."""
    ranking = _ranking(np.asarray(probability, dtype=np.float64), holdout)
    return _weighted_metrics(ranking, np.ones(_accounts(holdout)), top_k)


@dataclass(frozen=True)
class Bootstrap:
    """Percentile intervals per scorer and metric, and of each scorer's PR-AUC gap to the reference."""

    intervals: dict[str, dict[str, tuple[float, float]]]
    pr_auc_gap: dict[str, tuple[float, float]]
    rounds: int


def bootstrap_intervals(
    holdout: Holdout,
    probabilities: dict[str, np.ndarray],
    *,
    top_k: int,
    rounds: int,
    seed: int,
    reference: str,
) -> Bootstrap:
    """Account-cluster bootstrap: each round redraws accounts (with all their snapshots) with replacement.

    All scorers see the same draws, so `pr_auc_gap[name]` is a paired interval of
    PR-AUC(reference) - PR-AUC(name): above zero throughout means the reference is better.
    """
    rng = np.random.default_rng(seed)
    rankings = {name: _ranking(np.asarray(p, dtype=np.float64), holdout) for name, p in probabilities.items()}
    n_accounts = _accounts(holdout)
    draws: dict[str, list[dict[str, float]]] = {name: [] for name in probabilities}
    for _ in range(rounds):
        counts = np.bincount(rng.integers(0, n_accounts, n_accounts), minlength=n_accounts).astype(np.float64)
        for name in probabilities:
            draws[name].append(_weighted_metrics(rankings[name], counts, top_k))
    tail = (1 - CONFIDENCE) / 2 * 100
    intervals = {}
    for name, rows in draws.items():
        frame = pd.DataFrame(rows)
        intervals[name] = {
            metric: (float(np.nanpercentile(values, tail)), float(np.nanpercentile(values, 100 - tail)))
            for metric, values in frame.items()
            if np.isfinite(values).any()
        }
    reference_pr = np.array([row["pr_auc"] for row in draws[reference]])
    gaps = {}
    for name, rows in draws.items():
        if name == reference:
            continue
        gap = reference_pr - np.array([row["pr_auc"] for row in rows])
        gaps[name] = (float(np.nanpercentile(gap, tail)), float(np.nanpercentile(gap, 100 - tail)))
    return Bootstrap(intervals, gaps, rounds)


def calibration_table(label: np.ndarray, probability: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Rows binned by predicted probability (quantile bins): predicted vs observed conversion rate."""
    frame = pd.DataFrame({"label": np.asarray(label, dtype=float), "probability": probability})
    codes = pd.qcut(frame["probability"].rank(method="first"), q=min(bins, len(frame)), labels=False)
    table = (
        frame.groupby(codes)
        .agg(
            rows=("label", "size"),
            mean_probability=("probability", "mean"),
            conversion_rate=("label", "mean"),
            conversions=("label", "sum"),
        )
        .reset_index(drop=True)
    )
    table.insert(0, "bin", np.arange(1, len(table) + 1))
    table["conversions"] = table["conversions"].astype(int)
    return table


def calibration_error(table: pd.DataFrame) -> float:
    """Expected calibration error: row-weighted mean |predicted - observed| over the table's bins."""
    gap = (table["mean_probability"] - table["conversion_rate"]).abs()
    return float((gap * table["rows"]).sum() / table["rows"].sum())


def gain_curve(holdout: Holdout, probability: np.ndarray, points: int = 100) -> pd.DataFrame:
    """Share of conversions captured when working the top x% of every snapshot (the power curve), and lift."""
    ranking = _ranking(np.asarray(probability, dtype=np.float64), holdout)
    shares = np.linspace(0.0, 1.0, points + 1)[1:]
    budgets = {str(i): ("share", float(share)) for i, share in enumerate(shares)}
    found = _top(ranking, np.ones(holdout.rows), budgets)
    positives = holdout.label.sum()
    base_rate = positives / holdout.rows
    captured = np.array([found[str(i)][1] for i in range(len(shares))]) / positives
    precision = np.array([hits / flagged for flagged, hits in (found[str(i)] for i in range(len(shares)))])
    return pd.DataFrame(
        {
            "share_worked": np.r_[0.0, shares],
            "share_captured": np.r_[0.0, captured],
            "lift": np.r_[np.nan, precision / base_rate],
        }
    )
