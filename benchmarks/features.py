"""Benchmark: the point-in-time feature builder on 1 million and 10 million events.

Two demo worlds (`pql.demo.world.write_demo_world`) with the same accounts and different lengths of
history, so that events grow tenfold while accounts stay put. Each world is written to DuckDB and
copied to PostgreSQL. For one `as_of` (the end of the world) the benchmark times:

- the builder (`pql.features.builder.build_features`) on DuckDB and on PostgreSQL;
- a straightforward pandas baseline on the same DuckDB file: read the events table into pandas
  (DuckDB's fast Arrow path, the most favourable reading there is), filter to before `as_of`, group by
  account for the event-derived features (window counts, active days, active users, event types, key
  events, last event and last key event).

Every measurement runs in its own subprocess, so its peak resident memory is its own. Each is repeated
(`--repeat`) and the median wall time reported.

    .venv/bin/python benchmarks/features.py [--accounts 4000] [--repeat 3]
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:55432/pql_dev] [--reuse]

Worlds are kept in benchmarks/out/features/ (`--reuse` skips regenerating them). PostgreSQL copies live
in scratch databases created next to the given URL and dropped at the end. Targets (2 cores): the DuckDB
builder at least 10x faster than pandas at 10M events, in under 5 s; its peak memory growing by less
than 25% from 1M to 10M events. Last line: one JSON object.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script shares its name with the package it measures: keep its own folder off the import path.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import os
import resource
import statistics
import subprocess
import time
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pql.db import create_engine, redacted
from pql.demo.world import write_demo_world
from pql.features.builder import build_features
from pql.features.reference import default_settings
from pql.schema import create_tables, source_tables

END = datetime(2026, 1, 1)  # the end of both worlds and the as_of measured
OUT = Path(__file__).resolve().parent / "out" / "features"
SIZES = {"1m": 1_000_000, "10m": 10_000_000}
# Days of history giving about 1M and 10M events for 4000 demo accounts (checked and corrected below).
FIRST_GUESS_DAYS_PER_ACCOUNT = {"1m": 95 / 4000, "10m": 655 / 4000}
SIZE_TOLERANCE = 0.15
SEED = 11
# DuckDB keeps the blocks a query read in its buffer pool until it needs the memory; this cap shows the
# builder's own footprint apart from that cache.
CAPPED_MEMORY = "128MB"


def _peak_rss_mb() -> float:
    """Peak resident memory of this process image. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    from the parent through fork and exec, which would charge the benchmark's own peak to each step."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- measurements (each runs in a subprocess of its own) -------------------------------------------


def measure_builder(url: str, repeat: int, memory_limit: str | None = None) -> dict:
    settings = default_settings()
    tables = source_tables(settings.tables)
    if memory_limit:
        engine = sa.create_engine(url, connect_args={"config": {"memory_limit": memory_limit}})
    else:
        engine = create_engine(url)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    ready_rss = _peak_rss_mb()
    seconds, cpu, rows = [], [], 0
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        rows = len(build_features(engine, tables, settings, [END]))
        seconds.append(time.perf_counter() - started)
        cpu.append(_cpu_seconds() - cpu_started)
    cached_mb = None
    if engine.dialect.name == "duckdb":
        with engine.connect() as conn:
            cached = conn.exec_driver_sql(
                "SELECT sum(memory_usage_bytes) FROM duckdb_memory() WHERE tag = 'BASE_TABLE'"
            ).scalar()
        cached_mb = (cached or 0) / 2**20
    engine.dispose()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rows": rows,
        "ready_rss_mb": ready_rss,
        "peak_rss_mb": _peak_rss_mb(),
        "table_cache_mb": cached_mb,
    }


def pandas_features(events: pd.DataFrame, as_of: pd.Timestamp, key_events: list[str]) -> pd.DataFrame:
    """The event-derived features the way a pandas script computes them: filter, then group by."""
    day = pd.Timedelta(days=1)
    past = events[events["occurred_at"] < as_of]
    last = past.groupby("account_id")["occurred_at"].max().rename("last_event_at")
    last_key = (
        past[past["event_name"].isin(key_events)]
        .groupby("account_id")["occurred_at"]
        .max()
        .rename("last_key_at")
    )
    window = past[past["occurred_at"] >= as_of - 28 * day].copy()
    window["day"] = np.ceil((as_of - window["occurred_at"]) / day).astype("int64")
    by_account = window.groupby("account_id")
    out = pd.DataFrame({"count_events_28d": by_account.size()})
    for days in (1, 7):
        out[f"count_events_{days}d"] = window[window["day"] <= days].groupby("account_id").size()
    recent = window[window["day"] <= 7]
    out["count_active_days_7d"] = recent.groupby("account_id")["day"].nunique()
    out["count_active_days_28d"] = by_account["day"].nunique()
    out["count_active_users_7d"] = recent.groupby("account_id")["user_id"].nunique()
    out["count_active_users_28d"] = by_account["user_id"].nunique()
    out["count_distinct_event_types_28d"] = by_account["event_name"].nunique()
    for event in key_events:
        chosen = window[window["event_name"] == event]
        out[f"count_{event}_28d"] = chosen.groupby("account_id").size()
        out[f"count_{event}_7d"] = chosen[chosen["day"] <= 7].groupby("account_id").size()
    return out.join([last, last_key], how="outer")


def measure_pandas(duckdb_path: str, repeat: int) -> dict:
    settings = default_settings()
    ready_rss = _peak_rss_mb()
    seconds, cpu, rows = [], [], 0
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        with duckdb.connect(duckdb_path, read_only=True) as conn:
            events = conn.execute("SELECT * FROM events").df()
        rows = len(pandas_features(events, pd.Timestamp(END), settings.key_event_names))
        del events
        seconds.append(time.perf_counter() - started)
        cpu.append(_cpu_seconds() - cpu_started)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rows": rows,
        "ready_rss_mb": ready_rss,
        "peak_rss_mb": _peak_rss_mb(),
    }


def in_subprocess(kind: str, target: str, repeat: int, memory_limit: str | None = None) -> dict:
    command = [sys.executable, __file__, "--measure", kind, "--target", target, "--repeat", str(repeat)]
    if memory_limit:
        command += ["--memory-limit", memory_limit]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{kind} measurement on {redacted(target) if '://' in target else target} failed:\n"
            f"{done.stderr[-3000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- worlds --------------------------------------------------------------------------------------


def duckdb_world(size: str, accounts: int, reuse: bool) -> tuple[str, int]:
    """A DuckDB file holding a demo world of about SIZES[size] events; returns (path, events)."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"world_{size}.duckdb"
    manifest = OUT / f"world_{size}.json"
    wanted = {"accounts": accounts, "target_events": SIZES[size], "end": END.isoformat(), "seed": SEED}
    if reuse and path.exists() and manifest.exists():
        saved = json.loads(manifest.read_text())
        if {key: saved.get(key) for key in wanted} == wanted:
            return str(path), saved["events"]
    settings = default_settings()
    tables = source_tables(settings.tables)
    days = max(7, round(FIRST_GUESS_DAYS_PER_ACCOUNT[size] * accounts))
    for _ in range(3):
        path.unlink(missing_ok=True)
        engine = create_engine(f"duckdb:///{path}")
        started = time.perf_counter()
        summary = write_demo_world(engine, tables, settings, accounts=accounts, days=days, seed=SEED, end=END)
        with engine.connect() as conn:
            # Otherwise the first measurement would pay for replaying the write-ahead log.
            conn.exec_driver_sql("CHECKPOINT")
        engine.dispose()
        print(
            f"  world {size}: {accounts} accounts over {days} days -> {summary.events:,} events "
            f"({time.perf_counter() - started:.0f} s)"
        )
        ratio = SIZES[size] / summary.events
        if abs(ratio - 1) <= SIZE_TOLERANCE:
            break
        # Events grow a little faster than days (teams grow), hence the damped correction.
        days = max(7, round(days * ratio**0.85))
    manifest.write_text(json.dumps({**wanted, "events": summary.events, "days": days}))
    return str(path), summary.events


def postgres_copy(duckdb_path: str, admin_url: str, size: str) -> str:
    """A fresh PostgreSQL database holding the same rows (COPY in CSV chunks); returns its URL."""
    name = f"pql_bench_features_{size}"
    admin = make_url(admin_url)
    plain = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.set(database=name).render_as_string(hide_password=False)
    settings = default_settings()
    tables = source_tables(settings.tables)
    engine = create_engine(url)
    create_tables(engine, tables)
    indexes = [index for table in tables.all for index in table.indexes]
    for index in indexes:  # building them after the load is much faster than maintaining them during it
        index.drop(engine)
    target = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    csv = OUT / f"copy_{size}.csv"
    with duckdb.connect(duckdb_path, read_only=True) as source, psycopg.connect(target) as conn:
        for table in tables.all:
            columns = ", ".join(f'"{column.name}"' for column in table.columns)
            source.execute(
                f"COPY (SELECT {columns} FROM \"{table.name}\") TO '{csv}' (FORMAT csv, HEADER false)"
            )
            with (
                conn.cursor() as cursor,
                cursor.copy(f'COPY "{table.name}" ({columns}) FROM STDIN (FORMAT csv)') as copy,
                csv.open("rb") as handle,
            ):
                while chunk := handle.read(8 << 20):
                    copy.write(chunk)
        conn.commit()
    csv.unlink(missing_ok=True)
    for index in indexes:
        index.create(engine)
    engine.dispose()
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return url


def drop_database(admin_url: str, url: str) -> None:
    plain = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


# --- the run -------------------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def median(result: dict | None, key: str = "seconds") -> float | None:
    return None if result is None else statistics.median(result[key])


def run(accounts: int, repeat: int, postgres_url: str | None, reuse: bool) -> dict:
    started = time.perf_counter()
    print(f"feature builder benchmark: {accounts} accounts, as_of {END:%Y-%m-%d}, median of {repeat} runs")
    results: dict[str, dict] = {}
    for size in SIZES:
        path, events = duckdb_world(size, accounts, reuse)
        row: dict = {"events": events}
        row["duckdb"] = in_subprocess("builder", f"duckdb:///{path}", repeat)
        row["duckdb_capped"] = in_subprocess("builder", f"duckdb:///{path}", repeat, CAPPED_MEMORY)
        row["pandas"] = in_subprocess("pandas", path, repeat)
        if postgres_url:
            copy_started = time.perf_counter()
            url = postgres_copy(path, postgres_url, size)
            print(f"  copied {size} world to PostgreSQL in {time.perf_counter() - copy_started:.0f} s")
            try:
                row["postgres"] = in_subprocess("builder", url, repeat)
            finally:
                drop_database(postgres_url, url)
        results[size] = row
        duck, capped, pg = row["duckdb"], row["duckdb_capped"], median(row.get("postgres"))
        print(
            f"  {size}: {events:,} events, {duck['rows']} accounts\n"
            f"    DuckDB builder      {median(duck):6.2f} s wall, {median(duck, 'cpu_seconds'):6.2f} s CPU, "
            f"peak RSS {duck['peak_rss_mb']:.0f} MB ({duck['ready_rss_mb']:.0f} MB before the first build; "
            f"DuckDB's cache of table blocks read: {duck['table_cache_mb']:.0f} MB)\n"
            f"    same, memory_limit {CAPPED_MEMORY}: {median(capped):6.2f} s wall, "
            f"peak RSS {capped['peak_rss_mb']:.0f} MB\n"
            f"    PostgreSQL builder  {'skipped' if pg is None else f'{pg:6.2f} s wall'}\n"
            f"    pandas baseline     {median(row['pandas']):6.2f} s wall, "
            f"{median(row['pandas'], 'cpu_seconds'):6.2f} s CPU, "
            f"peak RSS {row['pandas']['peak_rss_mb']:.0f} MB"
        )
    small, large = results["1m"], results["10m"]
    duck_10m, pandas_10m = median(large["duckdb"]), median(large["pandas"])
    rss_1m, rss_10m = small["duckdb"]["peak_rss_mb"], large["duckdb"]["peak_rss_mb"]
    capped_1m, capped_10m = small["duckdb_capped"]["peak_rss_mb"], large["duckdb_capped"]["peak_rss_mb"]
    speedup = pandas_10m / duck_10m
    growth = rss_10m / rss_1m - 1

    def rounded(value: float | None, digits: int = 3) -> float | None:
        return None if value is None else round(value, digits)

    summary = {
        "events": large["events"],
        "accounts": accounts,
        "builder_duckdb_s": rounded(duck_10m),
        "builder_postgres_s": rounded(median(large.get("postgres"))),
        "pandas_baseline_s": rounded(pandas_10m),
        "speedup_vs_pandas": rounded(speedup, 1),
        "builder_peak_rss_mb_1m": rounded(rss_1m, 1),
        "builder_peak_rss_mb_10m": rounded(rss_10m, 1),
        "builder_rss_growth_pct": rounded(100 * growth, 1),
        "builder_duckdb_cpu_s": rounded(median(large["duckdb"], "cpu_seconds")),
        "pandas_baseline_cpu_s": rounded(median(large["pandas"], "cpu_seconds")),
        "duckdb_table_cache_mb_1m": rounded(small["duckdb"]["table_cache_mb"], 1),
        "duckdb_table_cache_mb_10m": rounded(large["duckdb"]["table_cache_mb"], 1),
        "builder_duckdb_s_capped": rounded(median(large["duckdb_capped"])),
        "builder_peak_rss_mb_1m_capped": rounded(capped_1m, 1),
        "builder_peak_rss_mb_10m_capped": rounded(capped_10m, 1),
        "builder_rss_growth_pct_capped": rounded(100 * (capped_10m / capped_1m - 1), 1),
        "events_1m": small["events"],
        "builder_duckdb_s_1m": rounded(median(small["duckdb"])),
        "builder_postgres_s_1m": rounded(median(small.get("postgres"))),
        "pandas_baseline_s_1m": rounded(median(small["pandas"])),
        "pandas_peak_rss_mb_10m": rounded(large["pandas"]["peak_rss_mb"], 1),
        "target_speedup_10x_met": speedup >= 10,
        "target_under_5s_met": duck_10m < 5,
        "target_rss_growth_under_25pct_met": growth < 0.25,
        "benchmark_s": rounded(time.perf_counter() - started, 1),
    }
    print(
        f"10M events: DuckDB builder {duck_10m:.2f} s vs pandas {pandas_10m:.2f} s = {speedup:.1f}x faster "
        f"(target 10x: {_verdict(speedup >= 10)}; under 5 s: {_verdict(duck_10m < 5)}); builder peak RSS "
        f"{rss_1m:.0f} -> {rss_10m:.0f} MB = {100 * growth:+.1f}% (target < 25%: {_verdict(growth < 0.25)}); "
        f"with memory_limit {CAPPED_MEMORY}: {capped_1m:.0f} -> {capped_10m:.0f} MB"
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("PQL_BENCH_POSTGRES_URL") or os.environ.get("PQL_TEST_POSTGRES_URL"),
        help="server for the PostgreSQL copies (default: $PQL_BENCH_POSTGRES_URL or $PQL_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--reuse", action="store_true", help="reuse the worlds in benchmarks/out/features/")
    parser.add_argument("--measure", choices=["builder", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--memory-limit", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure == "builder":
        print(json.dumps(measure_builder(args.target, args.repeat, args.memory_limit)))
    elif args.measure == "pandas":
        print(json.dumps(measure_pandas(args.target, args.repeat)))
    else:
        if not args.postgres_url:
            print("no PostgreSQL URL (--postgres-url or $PQL_TEST_POSTGRES_URL): PostgreSQL is skipped")
        print(json.dumps(run(args.accounts, args.repeat, args.postgres_url, args.reuse)))


if __name__ == "__main__":
    main()
