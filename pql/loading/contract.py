"""The contract as the loader sees it: which table takes which columns, which of them every row needs,
and which export column feeds each one.

A file column with the contract name is used as is; `--map contract_column=export_column` renames one,
and a dotted source reaches into nested JSON. `column_plan` matches a file's columns to a table's and
refuses a file that cannot feed a required column, naming the table, the column and the columns found,
with a `--map` hint.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pql.config import TablesConfig
from pql.db import DataError

Kind = Literal["id", "text", "json", "timestamp", "integer", "number", "boolean", "decision"]
NO_ID_COLUMN = "the file has no event_id column"
# What a quarantined row holds, whether a reader could not read it or one of its values is bad.
QUARANTINE_COLUMNS = ["row_number", "reason", "row_json"]


@dataclass(frozen=True)
class ContractColumn:
    """A contract column as the loader sees it: how to read it, and whether a row needs it."""

    name: str
    kind: Kind
    required: bool = False


_c = ContractColumn


CONTRACT: dict[str, tuple[ContractColumn, ...]] = {
    "accounts": (
        _c("account_id", "id", True),
        _c("name", "text"),
        _c("domain", "text"),
        _c("created_at", "timestamp", True),
        _c("employees", "integer"),
        _c("industry", "text"),
        _c("country", "text"),
    ),
    "users": (
        _c("user_id", "id", True),
        _c("account_id", "id", True),
        _c("created_at", "timestamp", True),
        _c("role", "text"),
    ),
    "events": (
        _c("event_id", "id", True),
        _c("user_id", "id"),
        _c("account_id", "id", True),
        _c("event_name", "text", True),
        _c("occurred_at", "timestamp", True),
        _c("properties", "json"),
    ),
    "plan_changes": (
        _c("account_id", "id", True),
        _c("changed_at", "timestamp", True),
        _c("from_plan", "text"),
        _c("to_plan", "text", True),
        _c("trial_ends_at", "timestamp"),
        _c("mrr", "number"),
    ),
    "crm_accounts": (
        _c("account_id", "id", True),
        _c("owner", "text"),
        _c("lifecycle_stage", "text"),
        _c("has_open_opportunity", "boolean"),
        _c("last_touch_at", "timestamp"),
        _c("do_not_contact", "boolean"),
    ),
    "account_attributes": (
        _c("account_id", "id", True),
        _c("name", "text", True),
        _c("value", "text"),
        _c("valid_from", "timestamp", True),
    ),
    "crm_activities": (
        _c("activity_id", "id", True),
        _c("account_id", "id", True),
        _c("owner", "text"),
        _c("occurred_at", "timestamp", True),
        _c("activity_type", "text"),
        _c("outcome", "text"),
    ),
    "opportunities": (
        _c("opportunity_id", "id", True),
        _c("account_id", "id", True),
        _c("created_at", "timestamp", True),
        _c("stage", "text"),
        _c("amount", "number"),
        _c("closed_at", "timestamp"),
        _c("is_won", "boolean"),
    ),
    "pql_feedback": (
        _c("account_id", "id", True),
        _c("owner", "text"),
        _c("decided_at", "timestamp", True),
        _c("decision", "decision", True),
        _c("reason", "text"),
    ),
}
TABLES = tuple(CONTRACT)

DEDUP_KEYS: dict[str, tuple[str, ...]] = {
    "accounts": ("account_id",),
    "users": ("user_id",),
    "events": ("event_id",),
    # No primary key: the same account moving to the same plan at the same instant is the same fact.
    "plan_changes": ("account_id", "changed_at", "to_plan"),
    "crm_accounts": ("account_id",),
    # The same attribute of the same account taking effect at the same instant is the same fact.
    "account_attributes": ("account_id", "name", "valid_from"),
    "crm_activities": ("activity_id",),
    "opportunities": ("opportunity_id",),
    # A rep recording the same decision on the same account at the same instant is the same fact.
    "pql_feedback": ("account_id", "decided_at", "decision"),
}

# Export column names that usually hold a contract column; used only to suggest a --map.
VENDOR_NAMES: dict[str, tuple[str, ...]] = {
    "event_id": ("messageId", "message_id", "uuid", "$insert_id", "insert_id", "id"),
    "user_id": ("userId", "distinct_id", "person_id"),
    "account_id": ("groupId", "group_id", "context.groupId", "company_id", "org_id", "workspace_id"),
    "event_name": ("event", "event_type", "name", "action"),
    "occurred_at": ("timestamp", "event_time", "time", "sent_at", "created_at"),
    "properties": ("event_properties", "props"),
    "created_at": ("createdAt", "created", "signup_at", "timestamp"),
    "changed_at": ("timestamp", "occurred_at", "created_at", "effective_at"),
}


class MappingError(ValueError):
    """A `--map` argument that cannot be used (a usage error, exit code 2)."""


def contract_columns(table: str, names: TablesConfig | None = None) -> tuple[ContractColumn, ...]:
    """The contract columns of `table`, plus the accounts attribute columns declared in `names`."""
    if table != "accounts" or names is None:
        return CONTRACT[table]
    kinds: dict[str, Kind] = {"numeric": "number", "categorical": "text"}
    extra = tuple(_c(column, kinds[kind]) for column, kind in names.accounts.attributes.items())
    return CONTRACT[table] + extra


def parse_mapping(pairs: Sequence[str], table: str, names: TablesConfig | None = None) -> dict[str, str]:
    """`target=source` arguments as {contract column: export column or dotted path}."""
    allowed = [column.name for column in contract_columns(table, names)]
    mapping: dict[str, str] = {}
    for pair in pairs:
        target, sep, source = (part.strip() for part in pair.partition("="))
        if not sep or not target or not source:
            raise MappingError(f"'{pair}' is not TARGET=SOURCE, for example occurred_at=timestamp.")
        if target not in allowed:
            raise MappingError(
                f"'{target}' is not a column of {table}. Allowed targets: {', '.join(allowed)}."
            )
        if target in mapping and mapping[target] != source:
            raise MappingError(f"'{target}' is mapped twice ({mapping[target]} and {source}); keep one.")
        mapping[target] = source
    return mapping


@dataclass(frozen=True)
class ColumnPlan:
    """Where each contract column comes from, and what happens to the export's other columns."""

    table: str
    sources: dict[str, str]
    pack_properties: bool
    derived_id_reason: str | None = None  # why event ids are derived from the rows, when they are
    contract: tuple[ContractColumn, ...] = ()  # the table's columns (declared attributes included)

    @property
    def columns(self) -> tuple[ContractColumn, ...]:
        return self.contract or CONTRACT[self.table]

    @property
    def derives_ids(self) -> bool:
        return self.derived_id_reason is not None

    @property
    def id_source(self) -> str:
        """The export column event ids come from, or would come from (a JSON lines key may appear late)."""
        return self.sources.get("event_id", "event_id")

    def leftovers(self, columns: Sequence[str]) -> list[str]:
        """The export columns no contract column reads, whole or through a dotted path (packed into
        properties, or ignored)."""
        used = {path_head(source, columns) for source in self.sources.values()}
        return [column for column in columns if column not in used]


def path_head(source: str, columns: Sequence[str]) -> str | None:
    """The export column a (possibly dotted) source path starts in, or None if it is not in the file."""
    if source in columns:
        return source
    parts = source.split(".")
    for end in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:end])
        if head in columns:
            return head
    return None


def _suggestion(target: str, columns: Sequence[str]) -> str:
    known = [name for name in VENDOR_NAMES.get(target, ()) if path_head(name, columns) is not None]
    close = difflib.get_close_matches(target, [c for c in columns if c not in known], n=2, cutoff=0.6)
    candidates = known + close
    if not candidates:
        return f"Add the column to the export, or map it: --map {target}=<export column>."
    options = " or ".join(f"--map {target}={name}" for name in candidates[:3])
    return f"Map the export's column to it, for example {options}."


def column_plan(
    table: str,
    columns: Sequence[str],
    mapping: Mapping[str, str],
    *,
    derive_ids: bool = True,
    names: TablesConfig | None = None,
) -> ColumnPlan:
    """Match contract columns to export columns: explicit `mapping` first, then same-named columns.

    An events file without an event_id column gets ids derived from its rows (unless `derive_ids` is
    False). Raises DataError naming the table, the missing column and the columns found, with a `--map`
    hint.
    """
    sources: dict[str, str] = {}
    problems: list[str] = []
    derived_id_reason: str | None = None
    contract = contract_columns(table, names)
    for column in contract:
        source = mapping.get(column.name)
        if source is not None:
            if path_head(source, columns) is None:
                problems.append(
                    f"--map {column.name}={source}: the file has no column '{source.split('.')[0]}'."
                )
            sources[column.name] = source
        elif column.name in columns:
            sources[column.name] = column.name
        elif column.name == "event_id" and derive_ids:
            derived_id_reason = NO_ID_COLUMN
        elif column.required:
            problems.append(
                f"required column '{column.name}' is missing. {_suggestion(column.name, columns)}"
            )
    if problems:
        found = ", ".join(columns) if columns else "(none)"
        raise DataError(
            f"{table}: cannot load this file.\n"
            + "\n".join(f"- {problem}" for problem in problems)
            + f"\nColumns found: {found}."
        )
    return ColumnPlan(
        table,
        sources,
        pack_properties=table == "events" and "properties" not in sources,
        derived_id_reason=derived_id_reason,
        contract=contract,
    )
