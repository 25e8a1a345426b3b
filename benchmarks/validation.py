"""What the data-quality gates cost next to the rest of a nightly run, on a 100,000-account world.

Builds (or reuses) a demo world in DuckDB and a model trained on it (the champion the nightly scores
with, as in production; the points fallback would make the run unrealistically cheap), then measures
two ways:

1. Steps: every step of a scoring run called directly, in the nightly flow's order (source gates,
   feature build, features gate, model, CRM reads, scoring with reasons and rules, scores and output
   gates, results files, write-back). The first pass warms the database file and the libraries; the
   figures are the median of the passes after it. The imports a run pays once per process are timed
   in fresh interpreters: the pipeline's own (`import pql.flows.nightly`) and, on top of them, Great
   Expectations' import and context.
2. Flow: the real nightly, `pql score`, in a fresh process on the same world: its wall time, and the
   time of its validate-* steps from the run ledger (`pql_runs.timings_json`). The command loads Great
   Expectations while Prefect starts; a deployment's flow-run process has no such wait to hide the
   import in, so the worst case counts the whole import (timed in fresh interpreters) as validation.

    .venv/bin/python benchmarks/validation.py                  # 100,000 accounts, 120 days
    .venv/bin/python benchmarks/validation.py --accounts 20000 --days 90 --passes 2

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/features.py would shadow the `features` package when this file is run as a script.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from pql import validation
from pql.config import Settings, load_settings
from pql.db import create_engine
from pql.demo.world import write_demo_world
from pql.features.builder import build_features
from pql.features.gate import validate_features
from pql.models.registry import CHAMPION_FILE, load_scoring_model
from pql.models.training import train_and_register
from pql.schema import create_tables, output_tables, source_tables
from pql.scoring.crm import crm_snapshot
from pql.scoring.rows import pql_rows
from pql.scoring.writeback import previous_scores, write_run

OUT = Path(__file__).parent / "out"
END = datetime(2026, 11, 1)  # the world ends here (exclusive); runs score as of it
TARGET_PCT = 10.0
VALIDATION_STEPS = ("validate-source", "validate-features", "validate-output")
R = TypeVar("R")


def timed(timings: dict[str, float], name: str, call: Callable[[], R]) -> R:
    started = time.perf_counter()
    result = call()
    timings[name] = time.perf_counter() - started
    return result


def world(accounts: int, days: int, seed: int, rebuild: bool) -> tuple[Path, dict[str, int]]:
    """The world's DuckDB file, written unless one for the same arguments exists; its row counts."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"validation_world_{accounts}_{days}_{seed}.duckdb"
    url = f"duckdb:///{path.as_posix()}"
    tables = source_tables(load_settings(None).tables)
    if rebuild or not path.exists():
        path.unlink(missing_ok=True)
        engine = create_engine(url)
        try:
            size = {"accounts": accounts, "days": days, "seed": seed}
            written = write_demo_world(engine, tables, load_settings(None, source_url=url), **size, end=END)
        finally:
            engine.dispose()
        print(f"world written in {written.seconds:.0f} s: {path}", flush=True)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            counts = {
                name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
                for name, table in (("accounts", tables.accounts), ("events", tables.events))
            }
    finally:
        engine.dispose()
    return path, counts


def champion_registry(world_path: Path, rebuild: bool) -> Path:
    """A model registry with a champion trained on the world, trained unless one exists (not timed)."""
    registry = world_path.with_name(world_path.stem + "_models")
    url = f"duckdb:///{world_path.as_posix()}"
    settings = load_settings(None, source_url=url, registry_path=registry)
    if rebuild or not (registry / CHAMPION_FILE).exists():
        shutil.rmtree(registry, ignore_errors=True)
        engine = create_engine(url)
        try:
            started = time.perf_counter()
            outcome = train_and_register(engine, source_tables(settings.tables), settings)
        finally:
            engine.dispose()
        print(f"champion {outcome.version} trained in {time.perf_counter() - started:.0f} s", flush=True)
    return registry


def one_pass(settings: Settings) -> tuple[dict[str, float], dict[str, float], str]:
    """(other steps, validation steps, validation status) of one scoring run as of END."""
    other: dict[str, float] = {}
    gates: dict[str, float] = {}
    source = create_engine(settings.source_database_url)
    crm = create_engine(settings.crm_database_url)
    tables, outputs = source_tables(settings.tables), output_tables(settings.tables)
    started_at = END + timedelta(hours=2)
    v = validation
    try:
        results = [
            timed(gates, "events", lambda: v.validate_events(source, tables, settings, END, now=started_at)),
            timed(gates, "plan_changes", lambda: v.validate_plan_changes(source, tables, settings, END)),
            timed(gates, "accounts", lambda: v.validate_accounts(source, tables, settings)),
            timed(gates, "crm_tables", lambda: v.validate_crm_tables(crm, outputs, settings)),
        ]
        features = timed(other, "build_features", lambda: build_features(source, tables, settings, [END]))
        checked = timed(gates, "features", lambda: validate_features(features, settings))
        results.append(checked)
        features = checked.kept
        model = timed(other, "load_model", lambda: load_scoring_model(settings))
        snapshot = timed(other, "read_crm", lambda: crm_snapshot(source, tables))
        timed(other, "create_output_tables", lambda: create_tables(crm, outputs))
        previous = timed(other, "read_previous", lambda: previous_scores(crm, outputs, END))
        rows = timed(other, "score", lambda: pql_rows(features, model, snapshot, previous, settings, END))
        results.append(timed(gates, "scores", lambda: v.validate_scores(rows, features, settings)))
        output = timed(gates, "output", lambda: v.validate_output(rows, settings))
        results.append(output)
        run_id = f"bench-{time.time_ns()}"
        timed(gates, "results_files", lambda: v.write_results(results, settings, run_id))
        summary = timed(gates, "summary", lambda: v.summary(results))
        record = {
            "run_id": run_id,
            "kind": "nightly",
            "as_of": END,
            "started_at": started_at,
            "model_version": model.version,
            "used_fallback": model.is_fallback,
            "validation_json": summary,
            "finished_at": started_at,
        }
        timed(other, "write_run", lambda: write_run(crm, outputs, output.kept, record, update_current=True))
    finally:
        source.dispose()
        crm.dispose()
    return other, gates, summary["status"]


def seconds_in_fresh_interpreter(code: str, repeat: int = 3) -> float:
    """The least of `repeat` fresh interpreters' printed seconds for `code` (which prints them)."""
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(repeat)
    ]
    return min(runs)


def import_costs() -> tuple[float, float]:
    """(the pipeline's imports, Great Expectations' import + context on top of them), in seconds."""
    pipeline = seconds_in_fresh_interpreter(
        "import time; t = time.perf_counter(); import pql.flows.nightly; print(time.perf_counter() - t)"
    )
    gx = seconds_in_fresh_interpreter(
        "import time, pql.flows.nightly; t = time.perf_counter(); "
        "from pql.validation.gx_runner import _batch_definition; _batch_definition(); "
        "print(time.perf_counter() - t)"
    )
    return pipeline, gx


def flow_run(source: Path, registry: Path, folder: Path) -> dict[str, Any]:
    """The real nightly (`pql score`) in a fresh process: wall time and its ledger's step timings."""
    folder.mkdir(parents=True, exist_ok=True)
    crm = folder / "crm.duckdb"
    crm.unlink(missing_ok=True)
    config = folder / "pql.toml"
    config.write_text(
        f'source_url = "duckdb:///{source.as_posix()}"\n'
        f'crm_url = "duckdb:///{crm.as_posix()}"\n'
        f'state_dir = "{folder.as_posix()}"\n'
        f'registry_path = "{registry.as_posix()}"\n',
        encoding="utf-8",
    )
    env = {**os.environ, "PREFECT_HOME": str(folder / "prefect_home")}
    command = [
        str(Path(sys.executable).parent / "pql"),
        "--config",
        str(config),
        "score",
        "--as-of",
        f"{END:%Y-%m-%d}",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    engine = create_engine(f"duckdb:///{crm.as_posix()}")
    try:
        with engine.connect() as conn:
            runs = output_tables(load_settings(None).tables).runs
            row = conn.execute(sa.select(runs.c.status, runs.c.timings_json)).first()
    finally:
        engine.dispose()
    if row is None:
        raise SystemExit(f"`pql score` recorded no run (exit {done.returncode}):\n{done.stderr[-2000:]}")
    steps = json.loads(row.timings_json)
    return {"exit_code": done.returncode, "status": row.status, "wall_s": wall, "steps_s": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--passes", type=int, default=3, help="direct scoring runs; the first only warms up")
    parser.add_argument("--rebuild", action="store_true", help="write the world again even if it exists")
    parser.add_argument("--no-flow", action="store_true", help="skip the `pql score` run")
    args = parser.parse_args()

    path, counts = world(args.accounts, args.days, args.seed, args.rebuild)
    registry = champion_registry(path, args.rebuild)
    state = OUT / "validation_state"
    settings = load_settings(
        None,
        source_url=f"duckdb:///{path.as_posix()}",
        crm_url=f"duckdb:///{(state / 'crm.duckdb').as_posix()}",
        state_dir=state,
        registry_path=registry,
    )
    champion = load_scoring_model(settings)
    pipeline_imports, gx_imports = import_costs()
    passes = [one_pass(settings) for _ in range(max(args.passes, 2))]
    measured = passes[1:]
    other = {name: statistics.median(p[0][name] for p in measured) for name in measured[0][0]}
    gates = {name: statistics.median(p[1][name] for p in measured) for name in measured[0][1]}
    other_total, gates_total = sum(other.values()), sum(gates.values())
    overhead = 100 * gates_total / other_total
    flow = None if args.no_flow else flow_run(path, registry, OUT / "validation_flow")

    print(f"\nworld: {counts['accounts']:,} accounts, {counts['events']:,} events; as_of {END:%Y-%m-%d}")
    print(f"model: {champion.version}" + (" (points fallback)" if champion.is_fallback else ""))
    print(f"1. steps, median of {len(measured)} passes after a warm-up; validation status: {passes[-1][2]}")
    print("   nightly steps other than validation (s)")
    for name, seconds in other.items():
        print(f"     {name:<22}{seconds:8.2f}")
    print(f"     {'total':<22}{other_total:8.2f}")
    print("   validation (s)")
    for name, seconds in gates.items():
        print(f"     {name:<22}{seconds:8.2f}")
    print(f"     {'total':<22}{gates_total:8.2f}")
    print(f"   once per process: pipeline imports {pipeline_imports:.2f} s, ", end="")
    print(f"GX import + context {gx_imports:.2f} s")
    print(f"   overhead per run: {overhead:.1f}%")
    flow_figures: dict[str, Any] = {}
    if flow is not None:
        validate = sum(flow["steps_s"].get(step, 0.0) for step in VALIDATION_STEPS)
        flow_figures = {
            "status": flow["status"],
            "wall_s": round(flow["wall_s"], 3),
            "validation_steps_s": {step: flow["steps_s"].get(step) for step in VALIDATION_STEPS},
            "validation_total_s": round(validate, 3),
            "overhead_pct": round(100 * validate / (flow["wall_s"] - validate), 2),
            # As if nothing hid the import: all of it paid inside the first gate.
            "overhead_gx_import_unhidden_pct": round(
                100 * (validate + gx_imports) / (flow["wall_s"] - validate), 2
            ),
        }
        print(f"2. `pql score` in a fresh process: {flow['wall_s']:.1f} s wall, run {flow['status']}")
        for step in VALIDATION_STEPS:
            print(f"     {step:<22}{flow['steps_s'].get(step, 0.0):8.2f}")
        print(f"   overhead: {flow_figures['overhead_pct']:.1f}% of the rest of the run's wall; ", end="")
        print(f"{flow_figures['overhead_gx_import_unhidden_pct']:.1f}% with the whole GX import counted")
    print(f"target: validation < {TARGET_PCT:.0f}% of the rest of the nightly run")
    print(
        json.dumps(
            {
                "benchmark": "validation",
                "accounts": counts["accounts"],
                "events": counts["events"],
                "as_of": END.isoformat(),
                "model_version": champion.version,
                "model_is_fallback": champion.is_fallback,
                "passes_measured": len(measured),
                "validation_status": passes[-1][2],
                "other_steps_s": {name: round(seconds, 3) for name, seconds in other.items()},
                "other_steps_total_s": round(other_total, 3),
                "validation_s": {name: round(seconds, 3) for name, seconds in gates.items()},
                "validation_total_s": round(gates_total, 3),
                "pipeline_imports_s": round(pipeline_imports, 3),
                "gx_import_and_context_s": round(gx_imports, 3),
                "overhead_per_run_pct": round(overhead, 2),
                "flow": flow_figures,
                "target_pct": TARGET_PCT,
            }
        )
    )


if __name__ == "__main__":
    main()
