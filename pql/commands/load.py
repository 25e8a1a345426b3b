"""`pql load`: load an export (CSV, Parquet, JSON lines) into a contract table of the source database."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pql.commands import cli_errors, console, settings_of
from pql.commands.progress import progress_bar
from pql.db import databases, redacted
from pql.loading import (
    DEFAULT_CHUNK_ROWS,
    DERIVED_ID_COLUMNS,
    NO_ID_COLUMN,
    TABLES,
    UNIT_NAMES,
    VENDOR_NAMES,
    LoadReport,
    MappingError,
    file_format,
    load_file,
    parse_mapping,
)

ContractTable = StrEnum("ContractTable", {name: name for name in TABLES})


class FileFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"
    jsonl = "jsonl"


def derived_ids_line(report: LoadReport) -> str:
    """The line saying how many event ids were derived, from which columns and why."""
    line = (
        f"event_id derived for {report.derived_ids:,} rows from {', '.join(DERIVED_ID_COLUMNS)} "
        f"({report.derived_id_reason})"
    )
    # Derived ids never match a vendor's own: loading the file again with the map would store every
    # event twice, so point at an unmapped id column now.
    unmapped = {*report.packed_columns, *report.ignored_columns}
    candidates = [name for name in VENDOR_NAMES["event_id"] if name in unmapped]
    if report.derived_id_reason == NO_ID_COLUMN and candidates:
        line += f"; if {candidates[0]} holds unique ids, load with --map event_id={candidates[0]} instead"
    return line


def summary_lines(report: LoadReport) -> list[str]:
    """What the command prints about a finished load."""
    lines = [
        f"{report.path.name} ({report.format}) -> {report.table}",
        f"  input rows   {report.input_rows:>12,}",
        f"  loaded       {report.loaded:>12,}",
        f"  quarantined  {report.quarantined:>12,}",
        f"  duplicates   {report.duplicates:>12,}  ({report.duplicates_in_file:,} repeated within the file, "
        f"{report.duplicates_in_table:,} already in the table)",
        f"loaded + quarantined + duplicates = {report.loaded + report.quarantined + report.duplicates:,}"
        f" = input rows",
    ]
    if report.derived_id_reason:
        lines.append(derived_ids_line(report))
    for column, unit in report.epoch_units.items():
        lines.append(f"epoch numbers in {column} read as {UNIT_NAMES[unit]}")
    if report.packed_columns:
        lines.append(f"packed into properties: {', '.join(report.packed_columns)}")
    if report.ignored_columns:
        lines.append(f"ignored columns (no contract column reads them): {', '.join(report.ignored_columns)}")
    if report.quarantined:
        lines.append(f"quarantined rows are in {report.quarantine_table}, batch_id {report.batch_id}:")
        lines += [f"  {count:>10,}  {problem}" for problem, count in report.problems.items()]
        lines.append(
            f"  see them with: SELECT row_number, reason, row_json FROM {report.quarantine_table} "
            f"WHERE batch_id = '{report.batch_id}' ORDER BY row_number"
        )
    return lines


def register(app: typer.Typer) -> None:
    @app.command("load")
    @cli_errors
    def load(
        ctx: typer.Context,
        table: Annotated[
            ContractTable, typer.Argument(metavar="TABLE", help="The contract table to load into.")
        ],
        file: Annotated[
            Path,
            typer.Argument(
                metavar="FILE", exists=True, dir_okay=False, readable=True, help="The export file to load."
            ),
        ],
        format_: Annotated[
            FileFormat | None,
            typer.Option("--format", help="File format (default: from the extension; .gz allowed)."),
        ] = None,
        map_: Annotated[
            list[str] | None,
            typer.Option(
                "--map",
                metavar="TARGET=SOURCE",
                help="Read contract column TARGET from export column SOURCE (a dotted path reaches into "
                "nested JSON, e.g. account_id=context.groupId). Repeatable.",
            ),
        ] = None,
        chunk_rows: Annotated[
            int, typer.Option("--chunk-rows", min=1, help="Rows read and written at a time.")
        ] = DEFAULT_CHUNK_ROWS,
    ) -> None:
        """Load an export into a contract table: bad rows are quarantined, duplicates skipped."""
        try:
            fmt = file_format(file, format_.value if format_ else None)
        except MappingError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--format'") from exc
        settings = settings_of(ctx)
        try:
            mapping = parse_mapping(map_ or [], table.value, settings.tables)
        except MappingError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--map'") from exc
        with databases(settings) as dbs, progress_bar(f"reading {file.name}", "rows") as progress:
            report = load_file(
                dbs.source,
                settings.tables,
                table.value,
                file,
                fmt=fmt,
                mapping=mapping,
                chunk_rows=chunk_rows,
                progress=progress,
            )
        console.print(f"source database: {redacted(settings.source_database_url)}", highlight=False)
        for line in summary_lines(report):
            console.print(line, highlight=False, markup=False)
