"""Benchmark: `pql train` on a demo world of 100,000 accounts with 12 weekly snapshots.

Writes a seeded demo world into DuckDB (kept in benchmarks/out/train/; `--reuse` skips regenerating
it), then times `models.training.train_and_register` with the default model settings and a lookback
of 12 weekly snapshots: the training set built in the database, the model, its fit-only sibling and
the three baselines fitted, the out-of-time evaluation (bootstrap intervals, permutation importance),
the report and the registry entry. The model is compared in the same run with the baselines it must
beat: decayed points, logistic regression and "most active".

    .venv/bin/python benchmarks/train.py [--accounts 100000] [--snapshots 12] [--seed 0] [--reuse]
        [--threads 1]

scikit-learn runs on `--threads` OpenMP threads (default 1): on a machine shared with other jobs,
OpenMP's spinning worker threads made the booster 3-4x slower with 2 threads than with 1 on 2 cores.

Target: training under 2 minutes on 2 cores. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
# `python benchmarks/train.py` puts this folder first on sys.path, where benchmarks/features.py would
# shadow the `features` package.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]

END = datetime(2026, 3, 2)
HORIZON_DAYS = 30
FEATURE_WINDOW_DAYS = 28
OUT = HERE / "out" / "train"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--snapshots", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="reuse the world written by an earlier run")
    parser.add_argument(
        "--threads", type=int, default=1, help="OpenMP/BLAS threads for scikit-learn (default 1, see above)"
    )
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    from pql.config import load_settings
    from pql.db import create_engine
    from pql.demo.world import write_demo_world
    from pql.models.registry import read_metadata
    from pql.models.training import train_and_register
    from pql.schema import source_tables

    lookback_days = 7 * args.snapshots
    # The world must cover every snapshot's 28-day feature windows and the last snapshot's horizon.
    days = lookback_days + HORIZON_DAYS + FEATURE_WINDOW_DAYS + 7
    folder = OUT / f"world_{args.accounts}_{days}_{args.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "world.duckdb"
    settings = load_settings(
        None,
        state_dir=folder / ".pql",
        source_url=f"duckdb:///{database}",
        horizon_days=HORIZON_DAYS,
        features={"lookback_days": lookback_days, "snapshot_every_days": 7},
    )
    # A fresh registry each run: the model is compared with the points fallback, not an earlier run.
    shutil.rmtree(settings.model_registry_path, ignore_errors=True)
    engine = create_engine(settings.source_database_url)
    tables = source_tables(settings.tables)
    world_s = None
    if not (args.reuse and (folder / "complete").exists()):
        print(f"writing a demo world: {args.accounts:,} accounts over {days} days ...", flush=True)
        started = time.perf_counter()
        summary = write_demo_world(
            engine, tables, settings, accounts=args.accounts, days=days, seed=args.seed, end=END
        )
        world_s = time.perf_counter() - started
        (folder / "complete").write_text(json.dumps({"events": summary.events}))
        print(
            f"  {summary.events:,} events, {summary.conversions:,} conversions in {world_s:.0f} s", flush=True
        )

    started = time.perf_counter()
    with threadpool_limits(args.threads):
        outcome = train_and_register(engine, tables, settings)
    train_s = time.perf_counter() - started
    engine.dispose()

    meta = read_metadata(settings.model_registry_path, outcome.version)
    training, timings, holdout = meta["training"], meta["timings_s"], meta["metrics"]["holdout"]
    split = training["split"]
    print(
        f"training set: {training['rows']:,} rows, {training['conversions']:,} conversions, "
        f"{len(training['as_of_dates'])} snapshots ({split['train_snapshots']} train, "
        f"{split['embargo_snapshots']} embargo, {split['test_snapshots']} test)"
    )
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"train_and_register wall time: {train_s:.1f} s")
    print(f"holdout ({meta['metrics']['bootstrap_rounds']} bootstrap rounds, 95% intervals):")
    for name, row in holdout.items():
        low, high = row["ci"]["pr_auc"]
        print(
            f"  {name:<12} PR-AUC {row['pr_auc']:.4f} [{low:.4f}, {high:.4f}]  ROC-AUC {row['roc_auc']:.4f}  "
            f"Brier {row['brier']:.5f}  lift top 10% {row['lift_top_10pct']:.2f}  "
            f"capture top 10% {row['capture_top_10pct']:.3f}"
        )
    for name, row in meta["metrics"]["comparison"].items():
        low, high = row["pr_auc_gap_ci"]
        print(
            f"  model vs {name}: PR-AUC {row['pr_auc_gap']:+.4f} [{low:+.4f}, {high:+.4f}]: {row['verdict']}"
        )
    print(f"report: {outcome.path / 'report.html'}")
    print(
        json.dumps(
            {
                "accounts": args.accounts,
                "snapshots": len(training["as_of_dates"]),
                "rows": training["rows"],
                "conversions": training["conversions"],
                "world_s": None if world_s is None else round(world_s, 1),
                "train_s": round(train_s, 1),
                "training_set_s": round(timings["training_set_s"], 1),
                "fit_s": round(timings["fit_s"] + timings["baselines_s"], 1),
                "evaluation_s": round(timings["evaluation_s"] + timings["folds_s"] + timings["report_s"], 1),
                "pr_auc": round(holdout["model"]["pr_auc"], 4),
                "pr_auc_points": round(holdout["points"]["pr_auc"], 4),
                "pr_auc_logreg": round(holdout["logreg"]["pr_auc"], 4),
                "pr_auc_most_active": round(holdout["most_active"]["pr_auc"], 4),
                "lift_top10": round(holdout["model"]["lift_top_10pct"], 3),
                "lift_top10_points": round(holdout["points"]["lift_top_10pct"], 3),
                "model_s": round(train_s - timings["training_set_s"], 1),
                "threads": args.threads,
                "target_train_s": 120,
            }
        )
    )


if __name__ == "__main__":
    main()
