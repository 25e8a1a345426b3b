"""Benchmark: generate a 10-million-event demo world into DuckDB, against a 1-million-event baseline.

Both worlds cover the same 180 days and differ only in their number of accounts, so the comparison
shows how time and memory scale with the number of events. Each world is generated in a fresh child
process on a fresh temporary DuckDB file, so that each peak RSS (`resource.getrusage`) is its own.
Alongside the peak RSS the child reports DuckDB's own buffer memory at the end: DuckDB keeps recently
written blocks cached (bounded by its `memory_limit`), which is the part of the peak that grows with
the table; the generator's own memory depends on the accounts and the chunk size only.

    .venv/bin/python benchmarks/demo_world.py [--accounts 20000] [--baseline-accounts 2000] [--days 180]

Target: 10 million events in about two minutes on 2 cores, with bounded memory. Last line: one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

END = datetime(2026, 3, 2)
SEED = 0


def generate(accounts: int, days: int) -> dict[str, object]:
    """Write one world into a fresh DuckDB file (in this process) and measure it."""
    from pql.config import load_settings
    from pql.db import create_engine
    from pql.demo.world import write_demo_world
    from pql.schema import source_tables

    with tempfile.TemporaryDirectory(prefix="pql-demo-bench-") as folder:
        settings = load_settings(None, state_dir=Path(folder) / ".pql")
        engine = create_engine(f"duckdb:///{Path(folder) / 'world.duckdb'}")
        started = time.perf_counter()
        summary = write_demo_world(
            engine, source_tables(settings.tables), settings, accounts=accounts, days=days, seed=SEED, end=END
        )
        seconds = time.perf_counter() - started
        with engine.connect() as conn:
            duckdb_mb = conn.exec_driver_sql("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").scalar()
        engine.dispose()
        file_mb = (Path(folder) / "world.duckdb").stat().st_size / 2**20
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "events": summary.events,
        "accounts": summary.accounts,
        "users": summary.users,
        "days": days,
        "conversions": summary.conversions,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "events_per_s": round(summary.events / seconds),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "duckdb_buffer_mb": round(duckdb_mb / 2**20, 1),
        "database_file_mb": round(file_mb, 1),
    }


def measured_in_child(accounts: int, days: int) -> dict[str, object]:
    """`generate` in a fresh interpreter, so its peak RSS is not the parent's or another world's."""
    command = [sys.executable, __file__, "--child", "--accounts", str(accounts), "--days", str(days)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--accounts", type=int, default=20_000, help="accounts of the large world (~10M events)"
    )
    parser.add_argument(
        "--baseline-accounts", type=int, default=2_000, help="accounts of the ~1M-event baseline"
    )
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(generate(args.accounts, args.days)))
        return

    baseline = measured_in_child(args.baseline_accounts, args.days)
    large = measured_in_child(args.accounts, args.days)
    for label, run in (("baseline", baseline), ("large", large)):
        print(
            f"{label:>8}: {run['events']:>11,} events  {run['accounts']:>7,} accounts"
            f"  {run['seconds']:>7.1f} s (cpu {run['cpu_seconds']:.1f} s)  {run['events_per_s']:>9,} events/s"
            f"  peak RSS {run['peak_rss_mb']:>7.1f} MB (DuckDB buffers {run['duckdb_buffer_mb']:.1f} MB)"
        )
    event_ratio = large["events"] / baseline["events"]
    rss_ratio = large["peak_rss_mb"] / baseline["peak_rss_mb"]
    time_ratio = large["seconds"] / baseline["seconds"]
    print(f"events x{event_ratio:.1f} -> time x{time_ratio:.1f}, peak RSS x{rss_ratio:.2f}")
    result = {
        "benchmark": "demo_world",
        "database": "duckdb",
        **{key: large[key] for key in ("events", "accounts", "seconds", "events_per_s", "peak_rss_mb")},
        "large": large,
        "baseline": baseline,
        "event_ratio": round(event_ratio, 2),
        "peak_rss_ratio": round(rss_ratio, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
