"""`pql inspect`: what the source holds, and whether (and with which settings) `pql train` can train.

The report is built once as a JSON document (`models.inspection`); `--json` prints it, the default
prints the same content as text. Model code is imported inside the command, so `pql --help` stays quick.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from pql.commands import cli_errors, console, settings_of
from pql.db import DataError, databases, missing_database_file, redacted


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _day(moment: str | None) -> str:
    return "-" if moment is None else moment[:10]


def _snapshots(count: int) -> str:
    return "1 snapshot" if count == 1 else f"{count} snapshots"


def _minute(moment: str) -> str:
    return moment[:16].replace("T", " ")


def _source_lines(source: dict[str, Any]) -> list[str]:
    events, changes, per_day = source["events"], source["plan_changes"], source["events"]["per_day"]
    lines = [
        "SOURCE",
        f"  accounts        {_n(source['accounts']):>12}",
        f"  users           {_n(source['users']):>12}",
        f"  events          {_n(events['rows']):>12}  {_day(events['first'])} .. {_day(events['last'])}",
        f"  plan changes    {_n(changes['rows']):>12}  {_day(changes['first'])} .. {_day(changes['last'])}",
    ]
    if per_day["days_with_events"]:
        lines.append(
            f"  events per day  median {per_day['median']:,.0f}, min {per_day['min']:,}, "
            f"max {per_day['max']:,} over {per_day['days_with_events']:,} UTC days with events; "
            f"{per_day['days_without_events']:,} days without any in between"
        )
    names = source["event_names"]
    shown = len(names["top"])
    lines.append(f"  event names     {_n(names['distinct']):>12}  distinct; the {shown} most frequent:")
    lines += [f"    {_n(row['events']):>12}  {row['name']}" for row in names["top"]]
    lines.append("  to_plan values (plan changes, accounts, meaning from [plans])")
    for row in source["plans"]:
        meaning = (
            row["maps_to"]
            if row["maps_to"]
            else "UNMAPPED: feature builds stop on it; add it to plans.free, plans.trial or plans.paid"
        )
        lines.append(f"    {_n(row['changes']):>12}  {_n(row['accounts']):>8}  {row['to_plan']} -> {meaning}")
    lines.append("  sales tables (optional, owned by sales; in use when they hold rows)")
    for row in source["sales_tables"].values():
        if row["in_use"]:
            span = f"{_day(row['first'])} .. {_day(row['last'])}"
            lines.append(f"    {row['table']:<16}{_n(row['rows']):>10}  {span}")
        else:
            lines.append(f"    {row['table']:<16}    absent or empty: load it for {row['enables']}")
    lines.append("  converting accounts per month (their first change into a paid plan)")
    months = source["converting_accounts_per_month"]
    lines += [f"    {row['month']}  {_n(row['converting_accounts']):>8}" for row in months] or ["    none"]
    return lines


def _window(row: dict[str, Any]) -> str:
    return (
        f"horizon_days = {row['horizon_days']}, snapshot_every_days = {row['snapshot_every_days']}, "
        f"lookback_days = {row['lookback_days']}"
    )


def _readiness_lines(row: dict[str, Any]) -> list[str]:
    verdict = "can train" if row["can_train"] else "cannot train"
    lines = [
        f"    {verdict}: {_snapshots(row['snapshots'])} {_day(row['first_snapshot'])} .. "
        f"{_day(row['last_snapshot'])}, {row['converting_accounts']:,} converting accounts "
        f"({row['positive_rows']:,} positive snapshot rows)"
    ]
    split = row["out_of_time_split"]
    if split:
        lines.append(
            f"    out-of-time split: train {_day(split['train_from'])} .. {_day(split['train_to'])} "
            f"({_snapshots(split['train_snapshots'])}), test {_day(split['test_from'])} .. "
            f"{_day(split['test_to'])} ({_snapshots(split['test_snapshots'])}), "
            f"{split['embargo_snapshots']} embargoed between"
        )
    lines += [f"    - {problem}" for problem in row["problems"]]
    lines += [f"    note: {note}" for note in row["notes"]]
    return lines


def _training_lines(training: dict[str, Any]) -> list[str]:
    lines = [
        "TRAINING",
        f"  observed data   {_day(training['history_start'])} .. {_minute(training['data_end'])} UTC; "
        f"model.min_conversions = {training['min_conversions']}",
        f"  your settings   {_window(training['configured'])}",
        *_readiness_lines(training["configured"]),
    ]
    suggested = training["suggested"]
    if suggested:
        lines.append(f"  suggested       {_window(suggested)}")
        lines += _readiness_lines(suggested)
        lines.append("    in pql.toml:")
        lines += [f"      {line}" for line in suggested["toml"].splitlines()]
    lines.append(f"  next step       {training['next_step']}")
    return lines


def _feature_lines(features: dict[str, Any]) -> list[str]:
    rows, window = features["training_rows"], _window(features["settings"])
    families = [f"  {family['summary']}" for family in features["families"]]
    return [f"FEATURE FAMILIES  ({rows:,} training rows; {window})", *families]


def _key_event_lines(key_events: dict[str, Any]) -> list[str]:
    lines = [
        f"SUGGESTED KEY EVENTS  ({key_events['snapshots']} snapshots, {key_events['eligible_rows']:,} "
        f"eligible rows, {key_events['converting_rows']:,} converting; {_window(key_events['settings'])})",
        f"  lift: conversion rate of eligible accounts that did the event in the {key_events['window_days']} "
        "days before a snapshot over that of those that did not; events done by at least "
        f"{key_events['min_converting_accounts']} converting accounts",
    ]
    suggested = key_events["suggested"]
    if not suggested:
        return [*lines, "  no event name has enough converting accounts and a lift above 1"]
    lines.append(f"  {'lift':>6}  {'accounts':>9}  {'converting':>10}  event")
    for row in suggested:
        lift = "all" if row["lift"] is None else f"{row['lift']:.2f}"
        mark = "  (a key event already)" if row["configured"] else ""
        lines.append(
            f"  {lift:>6}  {row['accounts']:>9,}  {row['converting_accounts']:>10,}  {row['name']}{mark}"
        )
    return [*lines, "  paste into pql.toml:", f"  {key_events['toml']}"]


def report_lines(document: dict[str, Any]) -> list[str]:
    """The text report: the same content as the JSON document."""
    return [
        f"pql inspect: {document['database']} (read only)",
        "",
        *_source_lines(document["source"]),
        "",
        *_training_lines(document["training"]),
        "",
        *_feature_lines(document["features"]),
        "",
        *_key_event_lines(document["key_events"]),
    ]


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    @cli_errors
    def inspect(
        ctx: typer.Context,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON document (the same content) instead of text.")
        ] = False,
    ) -> None:
        """Profile the source database (read only): can `pql train` train now, and with which settings."""
        from pql.models.inspection import inspect_source

        settings = settings_of(ctx)
        url = settings.source_database_url
        missing = missing_database_file(url)
        if missing is not None:
            raise DataError(
                f"The source database file {missing} does not exist. Run `pql init` to create it with the "
                "contract tables, then load your data (`pql load TABLE FILE`), or run `pql demo-data`."
            )
        with databases(settings) as dbs:
            document = inspect_source(dbs.source, dbs.source_tables, settings, redacted(url)).document()
        if as_json:
            typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
            return
        for line in report_lines(document):
            console.print(line, highlight=False, markup=False)
