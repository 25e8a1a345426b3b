"""`pql inspect`: can this source train a model now, with which settings, features and key events.

The facts come from aggregates computed in the database (`features.profile`); the judgement applies
the models' own rules: `model.min_conversions` converting accounts, an honest out-of-time split
(`models.backtest`) and the columns that carry information in the training rows (`models.columns`,
on the training set `pql train` would build), so inspect and train agree. That is why this module
sits with the models, above the features it reads.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from pql.config import Settings
from pql.features.catalog import (
    FAMILIES,
    KEY_EVENT_WINDOWS_DAYS,
    LONGEST_WINDOW_DAYS,
    feature_specs,
    key_event_columns,
    model_columns,
)
from pql.features.profile import (
    SALES_TABLES,
    EventOutcomes,
    SourceProfile,
    check_source_tables,
    event_outcomes,
    snapshot_conversions,
    source_profile,
)
from pql.features.training import data_end, snapshot_dates, training_set
from pql.models.backtest import TimeSplit
from pql.models.columns import ColumnChoice, usable_columns
from pql.models.readiness import (
    DAY,
    History,
    Readiness,
    TrainingWindow,
    analysed_window,
    candidate_windows,
    first_trainable,
    next_step,
    readiness,
    what_would_help,
)
from pql.schema import SourceTables
from pql.validation.jsonable import plain

MIN_KEY_EVENT_CONVERTERS = 5
TOP_KEY_EVENTS = 10
PLAN_KINDS = ("paid", "trial", "free")  # the builder's precedence when a value is listed twice


def plan_kind(plan: str, settings: Settings) -> str | None:
    """'paid', 'trial' or 'free' for a `to_plan` value, None when `[plans]` does not map it."""
    return next((kind for kind in PLAN_KINDS if plan in getattr(settings.plans, kind)), None)


def unmapped_plans(profile: SourceProfile, settings: Settings) -> list[str]:
    return [plan for plan, _, _ in profile.plans if plan_kind(plan, settings) is None]


def with_plans_as_free(settings: Settings, plans: Sequence[str]) -> Settings:
    """The settings with `plans` added to plans.free: the builder stops on unmapped values, and inspect
    still has to say what the rest of the data allows."""
    if not plans:
        return settings
    free = settings.plans.model_copy(update={"free": [*settings.plans.free, *plans]})
    return settings.model_copy(update={"plans": free})


# Families whose features exist only once the user declares them.
NOTHING_DECLARED = {
    "attributes": "none declared (add columns to tables.accounts.attributes or attribute names to "
    "tables.account_attributes.attributes)",
}


@dataclass(frozen=True)
class FamilyReport:
    """A feature family: used, partly used, left out (with reasons) or switched off in the settings."""

    family: str
    used: tuple[str, ...]
    left_out: dict[str, str]
    switched_off: bool = False

    @property
    def status(self) -> str:
        if self.switched_off:
            return "switched off"
        if not self.used and not self.left_out:
            return "none declared"
        if not self.left_out:
            return "used"
        return "partly used" if self.used else "left out"

    def line(self) -> str:
        """'trial: left out: no account was ever in a trial (...)', in the reader's terms."""
        if self.switched_off:
            return f"{self.family}: switched off in features.exclude"
        if not self.used and not self.left_out:
            return f"{self.family}: {NOTHING_DECLARED.get(self.family, 'no feature in this family')}"
        if not self.left_out:
            return f"{self.family}: used"
        reasons = list(dict.fromkeys(self.left_out.values()))
        if not self.used and len(reasons) == 1:
            return f"{self.family}: left out: {reasons[0]}"
        parts = []
        for reason in reasons:
            columns = [column for column, why in self.left_out.items() if why == reason]
            # A key event that never occurs is named by its own sentence, not by its column names.
            parts.append(reason if reason.startswith("`") else f"{', '.join(columns)} left out: {reason}")
        return f"{self.family}: {'; '.join(parts)}"


def source_reasons(settings: Settings, profile: SourceProfile, tables: SourceTables) -> dict[str, str]:
    """Columns the source itself leaves empty, each with the fact that explains it."""
    reasons = {}
    if not any(plan in settings.plans.trial for plan, _, _ in profile.plans):
        trial = "no account was ever in a trial (no to_plan in plans.trial)"
        reasons |= {spec.name: trial for spec in feature_specs(settings) if spec.family == "trial"}
    accounts = tables.accounts
    for column, filled in profile.filled_account_columns.items():
        if not filled:
            reasons[column] = f"{accounts.name}.{accounts.c[column].name} is empty"
    for key in key_event_columns(settings):
        if not profile.key_event_occurrences.get(key.event.key, 0):
            never = f"`{key.event.display}` never occurs in {tables.events.name}: its counts will be left out"
            reasons |= {key.column(days): never for days in KEY_EVENT_WINDOWS_DAYS}
    return reasons


def family_reports(
    settings: Settings, choice: ColumnChoice, profile: SourceProfile, tables: SourceTables
) -> list[FamilyReport]:
    """Every feature family (the catalog's, in order, then any other a spec names) with its columns'
    fate in `choice`; a column left out for lack of data gets the source fact behind it when there is one."""
    specs = feature_specs(settings)
    switched = set(settings.features.exclude)
    used_columns = set(choice.columns)
    facts = source_reasons(settings, profile, tables)
    reports = []
    for family in dict.fromkeys([*FAMILIES, *(spec.family for spec in specs)]):
        columns = [spec.name for spec in specs if spec.family == family]
        left_out = {}
        for column in columns:
            if column in used_columns:
                continue
            why = choice.left_out.get(column, "not a model column")
            left_out[column] = why if why.startswith("switched off") else facts.get(column, why)
        used = tuple(column for column in columns if column in used_columns)
        reports.append(FamilyReport(family, used, left_out, switched_off=family in switched))
    return reports


@dataclass(frozen=True)
class KeyEventLift:
    """How much more often eligible accounts that did an event in the window went on to convert."""

    name: str
    lift: float | None  # None: no eligible row without the event converted (every conversion did it)
    rate_with: float
    rate_without: float
    accounts: int
    converting_accounts: int
    configured: bool


def ranked_key_events(
    outcomes: EventOutcomes,
    settings: Settings,
    top: int = TOP_KEY_EVENTS,
    min_converters: int = MIN_KEY_EVENT_CONVERTERS,
) -> list[KeyEventLift]:
    """Event names with lift above 1 and at least `min_converters` converting accounts, best first.

    Rates are pooled over snapshots: converting rows / eligible rows, with the event and without it."""
    configured = set(settings.key_event_names)
    lifts = []
    for row in outcomes.per_event.itertuples(index=False):
        rows_without = outcomes.rows - row.rows
        if row.converting_accounts < min_converters or rows_without <= 0 or row.rows <= 0:
            continue
        rate_with = row.converting_rows / row.rows
        rate_without = (outcomes.converting_rows - row.converting_rows) / rows_without
        lift = rate_with / rate_without if rate_without > 0 else None
        if lift is not None and lift <= 1:
            continue
        lifts.append(
            KeyEventLift(
                str(row.event_name),
                lift,
                rate_with,
                rate_without,
                int(row.accounts),
                int(row.converting_accounts),
                str(row.event_name) in configured,
            )
        )
    lifts.sort(key=lambda k: (-(k.lift if k.lift is not None else math.inf), -k.converting_accounts, k.name))
    return lifts[:top]


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    """`text` as a TOML basic string: quotes, backslashes and control characters escaped, the rest
    (spaces, non-ASCII) kept as is."""
    escaped = "".join(
        _TOML_ESCAPES.get(ch) or (f"\\u{ord(ch):04X}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch)
        for ch in text
    )
    return f'"{escaped}"'


def key_events_toml(names: Sequence[str]) -> str:
    """A ready-to-paste `key_events = [...]` line."""
    return f"key_events = [{', '.join(toml_string(name) for name in names)}]"


def events_per_day(per_day: dict[date, int]) -> dict[str, Any]:
    """Median, min and max events over days with events, and the days without any in between."""
    if not per_day:
        return {"median": None, "min": None, "max": None, "days_with_events": 0, "days_without_events": 0}
    counts = list(per_day.values())
    span = (max(per_day) - min(per_day)).days + 1
    return {
        "median": statistics.median(counts),
        "min": min(counts),
        "max": max(counts),
        "days_with_events": len(counts),
        "days_without_events": span - len(counts),
    }


def conversions_per_month(per_day: dict[date, int]) -> list[dict[str, Any]]:
    """Accounts per month of their first change into a paid plan, months without any included."""
    if not per_day:
        return []
    months: dict[str, int] = {}
    for day, count in per_day.items():
        months[f"{day:%Y-%m}"] = months.get(f"{day:%Y-%m}", 0) + count
    first, last = min(per_day), max(per_day)
    every = pd.period_range(f"{first:%Y-%m}", f"{last:%Y-%m}", freq="M")
    return [{"month": str(month), "converting_accounts": months.get(str(month), 0)} for month in every]


@dataclass(frozen=True)
class Inspection:
    """Everything `pql inspect` reports; `document()` is its JSON form."""

    database: str
    settings: Settings
    profile: SourceProfile
    history: History
    unmapped: tuple[str, ...]
    configured: Readiness
    suggested: Readiness | None
    next_step: str
    analysed: TrainingWindow
    training_rows: int
    families: list[FamilyReport]
    outcomes: EventOutcomes
    key_events: list[KeyEventLift]

    @property
    def can_train(self) -> bool:
        return self.configured.can_train

    def document(self) -> dict[str, Any]:
        """The report as plain JSON with stable keys (README: `pql inspect --json`)."""
        return plain(
            {
                "database": self.database,
                "source": self._source(),
                "training": {
                    "can_train": self.can_train,
                    "history_start": self.history.start,
                    "data_end": self.history.end,
                    "min_conversions": self.settings.model.min_conversions,
                    "configured": _readiness_document(self.configured),
                    "suggested": _readiness_document(self.suggested) if self.suggested else None,
                    "next_step": self.next_step,
                },
                "features": {
                    "settings": _window_document(self.analysed),
                    "training_rows": self.training_rows,
                    "families": [_family_document(report) for report in self.families],
                },
                "key_events": self._key_events(),
            }
        )

    def _source(self) -> dict[str, Any]:
        profile = self.profile
        return {
            "accounts": profile.accounts.rows,
            "users": profile.users,
            "events": {
                "rows": profile.events.rows,
                "first": profile.events.first,
                "last": profile.events.last,
                "per_day": events_per_day(profile.events_per_day),
            },
            "plan_changes": {
                "rows": profile.plan_changes.rows,
                "first": profile.plan_changes.first,
                "last": profile.plan_changes.last,
            },
            "event_names": {
                "distinct": profile.distinct_event_names,
                "top": [{"name": name, "events": count} for name, count in profile.event_names],
            },
            "plans": [
                {
                    "to_plan": plan,
                    "changes": changes,
                    "accounts": accounts,
                    "maps_to": plan_kind(plan, self.settings),
                }
                for plan, changes, accounts in profile.plans
            ],
            "unmapped_plans": list(self.unmapped),
            "converting_accounts_per_month": conversions_per_month(profile.first_conversions_per_day),
            "sales_tables": {
                name: {
                    "table": getattr(self.settings.tables, name).name,
                    "in_use": span is not None,
                    "rows": span.rows if span else 0,
                    "first": span.first if span else None,
                    "last": span.last if span else None,
                    "enables": SALES_TABLES[name][1],
                }
                for name, span in profile.sales.items()
            },
        }

    def _key_events(self) -> dict[str, Any]:
        names = [event.name for event in self.key_events]
        return {
            "settings": _window_document(self.analysed),
            "window_days": self.outcomes.window_days,
            "min_converting_accounts": MIN_KEY_EVENT_CONVERTERS,
            "snapshots": self.outcomes.snapshots,
            "eligible_rows": self.outcomes.rows,
            "converting_rows": self.outcomes.converting_rows,
            "suggested": [
                {
                    "name": event.name,
                    "lift": event.lift,
                    "rate_with": event.rate_with,
                    "rate_without": event.rate_without,
                    "accounts": event.accounts,
                    "converting_accounts": event.converting_accounts,
                    "configured": event.configured,
                }
                for event in self.key_events
            ],
            "toml": key_events_toml(names) if names else None,
        }


def _window_document(window: TrainingWindow) -> dict[str, int]:
    return {
        "horizon_days": window.horizon_days,
        "snapshot_every_days": window.snapshot_every_days,
        "lookback_days": window.lookback_days,
    }


def _split_document(split: TimeSplit | None) -> dict[str, object] | None:
    return split.describe() if split is not None else None


def _readiness_document(checked: Readiness) -> dict[str, Any]:
    return {
        **_window_document(checked.window),
        "can_train": checked.can_train,
        "snapshots": len(checked.dates),
        "first_snapshot": checked.dates[0] if checked.dates else None,
        "last_snapshot": checked.dates[-1] if checked.dates else None,
        "converting_accounts": checked.converting_accounts,
        "positive_rows": checked.positive_rows,
        "out_of_time_split": _split_document(checked.split),
        "problems": list(checked.problems),
        "notes": list(checked.notes),
        "toml": checked.window.toml(),
    }


def _family_document(report: FamilyReport) -> dict[str, Any]:
    return {
        "family": report.family,
        "status": report.status,
        "used": list(report.used),
        "left_out": report.left_out,
        "summary": report.line(),
    }


def early_window_notes(checked: Readiness, history: History) -> list[str]:
    """A note when snapshots holding accounts see feature windows cut by the start of the data."""
    if not checked.dates or checked.dates[0] >= history.earliest_snapshot:
        return []
    window_start = checked.dates[0] - LONGEST_WINDOW_DAYS * DAY
    return [
        f"the first snapshot's {LONGEST_WINDOW_DAYS}-day feature window starts {window_start:%Y-%m-%d}, "
        f"before the first observed data ({history.start:%Y-%m-%d}) while accounts existed before it: "
        "early snapshots undercount their activity"
    ]


def unmapped_problems(unmapped: Sequence[str]) -> list[str]:
    return [
        f"to_plan {plan!r} is not in plans.free, plans.trial or plans.paid: feature builds stop on it"
        for plan in unmapped
    ]


def columns_problems(choice: ColumnChoice, rows: int) -> list[str]:
    if choice.columns:
        return []
    return [
        f"no candidate feature takes more than one value in the {rows} training rows: check that "
        "events.account_id and users.account_id match accounts.account_id"
    ]


def _evaluator(
    engine: sa.Engine,
    tables: SourceTables,
    settings: Settings,
    end: datetime,
    first_account_at: datetime | None,
) -> Callable[[TrainingWindow], Readiness]:
    """Readiness of a window from the database, each window counted once."""
    checked: dict[TrainingWindow, Readiness] = {}

    def evaluate(window: TrainingWindow) -> Readiness:
        if window not in checked:
            applied = window.applied_to(settings)
            conversions = snapshot_conversions(engine, tables, applied, snapshot_dates(end, applied))
            checked[window] = readiness(window, conversions, applied, first_account_at)
        return checked[window]

    return evaluate


def column_choice(frame: pd.DataFrame, split: TimeSplit | None, settings: Settings) -> ColumnChoice:
    """The columns `pql train` would learn from: chosen on the training side of the split, as it does."""
    rows = frame[split.train_rows(frame)] if split is not None else frame
    return usable_columns(rows, *model_columns(settings), settings)


def inspect_source(engine: sa.Engine, tables: SourceTables, settings: Settings, database: str) -> Inspection:
    """Profile the source (read only) and judge whether, and with which settings, training can run."""
    check_source_tables(engine, tables)
    profile = source_profile(engine, tables, settings)
    unmapped = tuple(unmapped_plans(profile, settings))
    # Counted as free meanwhile, so the rest of the report still says what the data allows.
    working = with_plans_as_free(settings, unmapped)
    end = data_end(engine, tables)
    history = History.observed(profile.history_start or end, end, profile.accounts.first)
    evaluate = _evaluator(engine, tables, working, end, profile.accounts.first)

    configured = evaluate(TrainingWindow.of(settings))
    notes = early_window_notes(configured, history)
    found, evaluated = first_trainable(candidate_windows(settings, history), evaluate)
    # Yours is kept when it trains on fully observed snapshots; empty early snapshots are harmless.
    keep = configured.can_train and not notes
    suggested = None if keep or found is None or found.window == configured.window else found
    analysed = analysed_window(configured, suggested, evaluated)
    applied = analysed.window.applied_to(working)
    frame = training_set(engine, tables, applied)
    choice = column_choice(frame, analysed.split, applied)
    # Constant features are a fact of the data, not of a window: no setting fixes them.
    constant = columns_problems(choice, len(frame))
    blockers = [*unmapped_problems(unmapped), *constant]
    if constant:
        step = constant[0][0].upper() + constant[0][1:] + "."
    elif configured.can_train or suggested is not None:
        step = next_step(suggested, unmapped)
    else:
        step = what_would_help(settings, history, evaluated)
    configured = replace(configured, problems=(*blockers, *configured.problems), notes=tuple(notes))
    if suggested is not None:
        suggested = replace(suggested, problems=(*blockers, *suggested.problems))
    outcomes = event_outcomes(engine, tables, applied, analysed.dates or snapshot_dates(end, applied))
    return Inspection(
        database=database,
        settings=settings,
        profile=profile,
        history=history,
        unmapped=unmapped,
        configured=configured,
        suggested=suggested,
        next_step=step,
        analysed=analysed.window,
        training_rows=len(frame),
        families=family_reports(applied, choice, profile, tables),
        outcomes=outcomes,
        key_events=ranked_key_events(outcomes, settings),
    )
