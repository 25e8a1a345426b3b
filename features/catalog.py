"""Every feature the builder produces: its name, family, definition, window, unit and reason group.

This is the single source of the feature list. The builder's output columns, the model's input
columns and the generated reference (`docs/features.md`) all come from `feature_specs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pql.config import (
    LONGEST_WINDOW_DAYS,
    MAX_SLUG_LENGTH,
    ConfigError,
    KeyEvent,
    Settings,
    short_hash,
    slug_of,
)

ACTIVITY_WINDOWS_DAYS = (1, 7, 28)
ACTIVE_DAYS_WINDOWS_DAYS = (7, 28)
ACTIVE_USERS_WINDOWS_DAYS = (7, 28)
NEW_USERS_WINDOWS_DAYS = (14, 28)
KEY_EVENT_WINDOWS_DAYS = (7, 28)
MOMENTUM_RECENT_DAYS = 7
MOMENTUM_PRIOR_DAYS = 21

# Reason groups for the default key events, in words a sales rep uses; other key events are their own group.
KEY_EVENT_GROUPS = {
    "invite_teammate": "team_invites",
    "connect_integration": "integrations",
    "hit_usage_limit": "usage_limits",
    "view_pricing": "pricing_interest",
    "create_project": "projects",
    "export_report": "exports",
}

# The rules every definition below relies on (rendered at the top of the reference).
CONVENTIONS = (
    (
        "Point in time",
        "Every feature for a snapshot `as_of` uses only rows strictly before it: events with "
        "`occurred_at < as_of`, users and accounts with `created_at < as_of`, plan changes with "
        "`changed_at < as_of`. A snapshot has one row per account created before `as_of`.",
    ),
    (
        "Instants",
        "`as_of` and every stored timestamp are naive UTC. A local date or time in the configured "
        "`timezone` is converted once, at the edge (`pql.clock.to_utc_naive`), before it reaches the "
        "builder.",
    ),
    (
        "Windows",
        "A window of N days is the half-open interval `[as_of - N x 24 h, as_of)`: an event exactly "
        "N days before `as_of` is inside it, an event at `as_of` is not.",
    ),
    (
        "Days",
        "Day k before `as_of` is `[as_of - k x 24 h, as_of - (k-1) x 24 h)`. For the nightly `as_of` "
        "(midnight in the configured time zone) these are that zone's calendar days, except around a "
        "daylight-saving change, where they are shifted by the hour gained or lost. A day counted by "
        "`count_active_days_*` is one of these, so the 7-day count is never above 7. Durations "
        "(`days_*`) are exact fractional days: seconds / 86400.",
    ),
    (
        "Missing values",
        "Counts are 0 when nothing happened (an account with no events has `count_events_28d = 0`). "
        "A feature is null only when it is unknown or undefined: no event ever before `as_of` "
        "(recency), no full baseline to compare with (momentum), no users (share), not in a trial "
        "(trial days), a blank firmographic column.",
    ),
    (
        "Scope",
        "Events and users without an `account_id`, and events of account ids missing from `accounts`, "
        "belong to no account and are ignored.",
    ),
    (
        "Plan",
        "The plan at `as_of` is the `to_plan` of the account's latest plan change strictly before it, "
        "mapped to `free`, `trial` or `paid` through `plans` in the settings; an account with no plan change "
        "yet is `free`. A trial whose `trial_ends_at` is at or before `as_of` has ended, so the account "
        "counts as `free` until a later change says otherwise. A `to_plan` missing from the settings "
        "stops the build with an error naming it. An account is eligible for scoring when it is not on "
        "a paid plan at `as_of`.",
    ),
)

Kind = Literal["numeric", "categorical"]
# Every family, in catalog order (what `features.exclude` accepts besides feature names).
FAMILIES = (
    "activity",
    "people",
    "breadth",
    "key_events",
    "recency",
    "momentum",
    "lifecycle",
    "trial",
    "fit",
    "attributes",
)


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column: what it is, over which window, in which unit, and its reason group."""

    name: str
    family: str
    kind: Kind
    definition: str
    window: str
    group: str
    unit: str


def _window(days: int) -> str:
    return f"[as_of - {days}d, as_of)"


def _plural(days: int) -> str:
    return "1 day" if days == 1 else f"{days} days"


def _activity() -> list[FeatureSpec]:
    specs = [
        FeatureSpec(
            f"count_events_{days}d",
            "activity",
            "numeric",
            f"Events of the account in the last {_plural(days)}.",
            _window(days),
            "engagement",
            "events",
        )
        for days in ACTIVITY_WINDOWS_DAYS
    ]
    specs += [
        FeatureSpec(
            f"count_active_days_{days}d",
            "activity",
            "numeric",
            f"Days, of the last {days}, with at least one event of the account (0 to {days}).",
            _window(days),
            "engagement",
            "days",
        )
        for days in ACTIVE_DAYS_WINDOWS_DAYS
    ]
    return specs


def _people() -> list[FeatureSpec]:
    specs = [
        FeatureSpec(
            "count_users",
            "people",
            "numeric",
            "Users of the account created before as_of.",
            "before as_of",
            "team_activity",
            "users",
        )
    ]
    specs += [
        FeatureSpec(
            f"count_active_users_{days}d",
            "people",
            "numeric",
            f"Distinct users with at least one event of the account in the last {days} days.",
            _window(days),
            "team_activity",
            "users",
        )
        for days in ACTIVE_USERS_WINDOWS_DAYS
    ]
    specs.append(
        FeatureSpec(
            f"share_users_active_{LONGEST_WINDOW_DAYS}d",
            "people",
            "numeric",
            f"count_active_users_{LONGEST_WINDOW_DAYS}d / count_users; null when the account has no users "
            "(above 1 only when events name users missing from the users table).",
            _window(LONGEST_WINDOW_DAYS),
            "team_activity",
            "share (0-1)",
        )
    )
    specs += [
        FeatureSpec(
            f"count_new_users_{days}d",
            "people",
            "numeric",
            f"Users of the account created in the last {days} days.",
            _window(days),
            "team_activity",
            "users",
        )
        for days in NEW_USERS_WINDOWS_DAYS
    ]
    return specs


def _breadth() -> list[FeatureSpec]:
    days = LONGEST_WINDOW_DAYS
    return [
        FeatureSpec(
            f"count_distinct_event_types_{days}d",
            "breadth",
            "numeric",
            f"Distinct event names among the account's events in the last {days} days.",
            _window(days),
            "breadth",
            "event types",
        )
    ]


@dataclass(frozen=True)
class KeyEventColumns:
    """A configured key event and the slug naming its feature columns (`count_<slug>_<N>d`)."""

    event: KeyEvent
    slug: str

    def column(self, days: int) -> str:
        return f"count_{self.slug}_{days}d"

    @property
    def group(self) -> str:
        return KEY_EVENT_GROUPS.get(self.event.name, self.slug) if not self.event.where else self.slug


def _builtin_names() -> set[str]:
    return {spec.name for spec in (*_activity(), *_people(), *_breadth())}


def key_event_columns(settings: Settings) -> list[KeyEventColumns]:
    """Every key event with its column slug, in configured order.

    The slug is the event name folded to a plain identifier ("Submit Upgrade" -> submit_upgrade). Two
    events that fold alike, or one whose columns would take a built-in feature's name, carry a short
    digest of their definition instead, so each slug is unique and never depends on list order.
    """
    builtin = _builtin_names()
    slugs = [event.base_slug() for event in settings.key_events]

    def clashes(slug: str) -> bool:
        taken = any(f"count_{slug}_{days}d" in builtin for days in KEY_EVENT_WINDOWS_DAYS)
        return taken or slugs.count(slug) > 1

    resolved = []
    for event, slug in zip(settings.key_events, slugs, strict=True):
        if clashes(slug):
            slug = f"{slug[: MAX_SLUG_LENGTH - 7].rstrip('_')}_{short_hash(event.key)}"
        resolved.append(KeyEventColumns(event, slug))
    return resolved


def _quoted(event: KeyEvent) -> str:
    conditions = " and ".join(f"`{key}` = {value!r}" for key, value in event.where_text().items())
    return f"`{event.name}`" + (f" events whose properties have {conditions}" if conditions else " events")


def _key_events(settings: Settings) -> list[FeatureSpec]:
    return [
        FeatureSpec(
            key.column(days),
            "key_events",
            "numeric",
            f"{_quoted(key.event)} of the account in the last {days} days.",
            _window(days),
            key.group,
            "events",
        )
        for key in key_event_columns(settings)
        for days in KEY_EVENT_WINDOWS_DAYS
    ]


def _recency(settings: Settings) -> list[FeatureSpec]:
    keys = ", ".join(f"`{event.display}`" for event in settings.key_events)
    return [
        FeatureSpec(
            "days_since_last_event",
            "recency",
            "numeric",
            "Days from the account's last event before as_of to as_of; null when it has no event "
            "before as_of.",
            "before as_of",
            "recency",
            "days",
        ),
        FeatureSpec(
            "days_since_last_key_event",
            "recency",
            "numeric",
            f"Days from the account's last key event ({keys}) before as_of to as_of; null when none.",
            "before as_of",
            "recency",
            "days",
        ),
    ]


def _momentum() -> list[FeatureSpec]:
    recent, prior = MOMENTUM_RECENT_DAYS, MOMENTUM_PRIOR_DAYS
    return [
        FeatureSpec(
            f"ratio_momentum_{recent}d_vs_prior_{prior}d",
            "momentum",
            "numeric",
            f"Events in the last {recent} days divided by the weekly average of the {prior} days before "
            f"them (events in [as_of - {recent + prior}d, as_of - {recent}d) x {recent} / {prior}); "
            f"1 is a steady pace, above 1 speeding up. Null when the account is younger than "
            f"{recent + prior} days (its baseline is incomplete) or had no event in those {prior} days "
            "(no pace to compare with).",
            f"[as_of - {recent + prior}d, as_of)",
            "momentum",
            "ratio",
        )
    ]


def _lifecycle() -> list[FeatureSpec]:
    return [
        FeatureSpec(
            "days_tenure",
            "lifecycle",
            "numeric",
            "Days from the account's created_at to as_of.",
            "before as_of",
            "tenure",
            "days",
        ),
        FeatureSpec(
            "plan",
            "lifecycle",
            "categorical",
            "Plan at as_of: 'free', 'trial' or 'paid' (see Plan above).",
            "before as_of",
            "plan",
            "category",
        ),
        FeatureSpec(
            "days_in_trial",
            "trial",
            "numeric",
            "Days from the start of the current trial (the plan change into it) to as_of; "
            "null when not in a trial at as_of.",
            "before as_of",
            "trial",
            "days",
        ),
        FeatureSpec(
            "days_left_in_trial",
            "trial",
            "numeric",
            "Days from as_of to the current trial's trial_ends_at (above 0); null when not in a trial "
            "at as_of or when the trial has no end date.",
            "before as_of",
            "trial",
            "days",
        ),
    ]


def _fit() -> list[FeatureSpec]:
    return [
        FeatureSpec(
            "employees",
            "fit",
            "numeric",
            "Company size from accounts.employees; null when unknown.",
            "account attribute",
            "company_size",
            "employees",
        ),
        FeatureSpec(
            "industry",
            "fit",
            "categorical",
            "accounts.industry; null when unknown.",
            "account attribute",
            "industry",
            "category",
        ),
        FeatureSpec(
            "country",
            "fit",
            "categorical",
            "accounts.country; null when unknown.",
            "account attribute",
            "country",
            "category",
        ),
    ]


@dataclass(frozen=True)
class AttributeColumn:
    """A user-declared account attribute as a feature: where it comes from and what it is called.

    `source` is "accounts" (a column of the accounts table, `name` its physical name) or "attributes"
    (the time-stamped attributes table, `name` the attribute's name as stored there)."""

    feature: str
    kind: Kind
    source: Literal["accounts", "attributes"]
    name: str


def attribute_columns(settings: Settings) -> list[AttributeColumn]:
    """Every declared attribute, accounts columns first, each with a unique feature name."""
    declared = [
        AttributeColumn(column, kind, "accounts", column)
        for column, kind in settings.tables.accounts.attributes.items()
    ]
    declared += [
        AttributeColumn(slug_of(name, name, "attribute", MAX_SLUG_LENGTH + 10), kind, "attributes", name)
        for name, kind in settings.tables.account_attributes.attributes.items()
    ]
    taken = {spec.name for spec in (*_activity(), *_people(), *_breadth(), *_key_events(settings))}
    taken |= {spec.name for spec in (*_recency(settings), *_momentum(), *_lifecycle(), *_fit())}
    seen: dict[str, str] = {}
    for attribute in declared:
        clash = attribute.feature in taken or attribute.feature in seen
        if clash:
            other = seen.get(attribute.feature, "a built-in feature")
            raise ConfigError(
                f"attribute {attribute.name!r} would be the feature {attribute.feature!r}, already the name "
                f"of {other}. Rename the column or attribute, or drop one of them."
            )
        seen[attribute.feature] = repr(attribute.name)
    return declared


def _attribute_definition(attribute: AttributeColumn, settings: Settings) -> str:
    if attribute.source == "accounts":
        return (
            f"accounts.{attribute.name}; null when unknown. Current state: declare only what is fixed "
            "before any sales contact (see the README on leakage)."
        )
    table = settings.tables.account_attributes.name
    number = "" if attribute.kind == "categorical" else ", as a number"
    return (
        f"The latest value of attribute {attribute.name!r} in {table} with valid_from < as_of{number}; "
        "null when none."
    )


def _attributes(settings: Settings) -> list[FeatureSpec]:
    return [
        FeatureSpec(
            attribute.feature,
            "attributes",
            attribute.kind,
            _attribute_definition(attribute, settings),
            "account attribute" if attribute.source == "accounts" else "before as_of",
            attribute.feature,
            "category" if attribute.kind == "categorical" else "value",
        )
        for attribute in attribute_columns(settings)
    ]


def feature_specs(settings: Settings) -> list[FeatureSpec]:
    """Every feature column, in output order, for the configured key events."""
    specs = [
        *_activity(),
        *_people(),
        *_breadth(),
        *_key_events(settings),
        *_recency(settings),
        *_momentum(),
        *_lifecycle(),
        *_fit(),
        *_attributes(settings),
    ]
    return specs


def excluded_features(settings: Settings) -> dict[str, str]:
    """Feature -> why it is kept out of the model by `features.exclude` (family or feature names)."""
    specs = feature_specs(settings)
    families = {spec.family for spec in specs} | set(FAMILIES)
    names = {spec.name for spec in specs}
    unknown = [item for item in settings.features.exclude if item not in families | names]
    if unknown:
        raise ConfigError(
            f"features.exclude: {', '.join(repr(u) for u in unknown)} is neither a feature family "
            f"({', '.join(sorted(families))}) nor a feature name (see docs/features.md or `pql inspect`)."
        )
    switched_off = set(settings.features.exclude)
    how = {family: f"switched off in features.exclude (family {family})" for family in families}
    return {
        spec.name: how[spec.family] if spec.family in switched_off else "switched off in features.exclude"
        for spec in specs
        if spec.family in switched_off or spec.name in switched_off
    }


def model_columns(settings: Settings) -> tuple[list[str], list[str]]:
    """(numeric, categorical) candidate model input columns, in catalog order, less `features.exclude`.

    Training keeps those that carry information in its rows (`models.columns`); a model scores with
    its own list."""
    excluded = excluded_features(settings)
    specs = [spec for spec in feature_specs(settings) if spec.name not in excluded]
    numeric = [spec.name for spec in specs if spec.kind == "numeric"]
    categorical = [spec.name for spec in specs if spec.kind == "categorical"]
    return numeric, categorical
