"""Settings: one `pql.toml`, overridden key by key from `PQL_*` environment variables."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import string
import tomllib
import types
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

CONFIG_FILE_ENV = "PQL_CONFIG"
ENV_PREFIX = "PQL_"
# PQL_* variables read by the CLI, the test suite, the benchmarks and the CI runner, not by Settings.
OTHER_VARIABLES = frozenset(
    {CONFIG_FILE_ENV, "PQL_TEST_POSTGRES_URL", "PQL_BENCH_POSTGRES_URL", "PQL_CI_PG_PORT"}
)
# A database URL kept in a Prefect Secret block (see flows/secrets.py), resolved when a flow starts.
SECRET_URL_SCHEME = "prefect_secret://"
URL_KEYS = ("source_url", "crm_url")
DEFAULT_CONFIG_FILE = Path("pql.toml")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class ConfigError(Exception):
    """A configuration problem, worded for the person who has to fix it (exit code 2)."""


def registry_location_problem(location: str) -> str | None:
    """Why fsspec cannot open the registry URL `location` here (unknown protocol, or the package that
    implements it is not installed), or None; a plain path has no problem."""
    if "://" not in location:
        return None
    import fsspec
    from fsspec.registry import known_implementations

    protocol = location.split("://", 1)[0].lower()
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        return f"unknown fsspec protocol {protocol}:// (use a local path, file://, memory://, s3://, gs://)"
    except ImportError:
        package = known_implementations[protocol]["class"].split(".", 1)[0]
        return f"the {protocol}:// filesystem needs the {package} package: pip install {package}"
    return None


def _plain_identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError("must be a plain SQL identifier: a letter or _, then letters, digits or _ (max 63)")
    return value


Identifier = Annotated[str, AfterValidator(_plain_identifier)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountsColumns(_Strict):
    account_id: Identifier = "account_id"
    name: Identifier = "name"
    domain: Identifier = "domain"
    created_at: Identifier = "created_at"
    employees: Identifier = "employees"
    industry: Identifier = "industry"
    country: Identifier = "country"


class UsersColumns(_Strict):
    user_id: Identifier = "user_id"
    account_id: Identifier = "account_id"
    created_at: Identifier = "created_at"
    role: Identifier = "role"


class EventsColumns(_Strict):
    event_id: Identifier = "event_id"
    user_id: Identifier = "user_id"
    account_id: Identifier = "account_id"
    event_name: Identifier = "event_name"
    occurred_at: Identifier = "occurred_at"
    properties: Identifier = "properties"


class PlanChangesColumns(_Strict):
    account_id: Identifier = "account_id"
    changed_at: Identifier = "changed_at"
    from_plan: Identifier = "from_plan"
    to_plan: Identifier = "to_plan"
    trial_ends_at: Identifier = "trial_ends_at"
    mrr: Identifier = "mrr"


class CrmAccountsColumns(_Strict):
    account_id: Identifier = "account_id"
    owner: Identifier = "owner"
    lifecycle_stage: Identifier = "lifecycle_stage"
    has_open_opportunity: Identifier = "has_open_opportunity"
    last_touch_at: Identifier = "last_touch_at"
    do_not_contact: Identifier = "do_not_contact"


AttributeKind = Literal["numeric", "categorical"]
_KIND = "'numeric' or 'categorical'"
# Contract column names an attribute column may not take.
_ACCOUNTS_CONTRACT = frozenset(AccountsColumns.model_fields)


class AccountsTable(_Strict):
    name: Identifier = "accounts"
    columns: AccountsColumns = AccountsColumns()
    attributes: dict[Identifier, AttributeKind] = Field(
        default_factory=dict,
        description=f"extra column of the accounts table -> {_KIND}; each becomes a model feature",
    )

    @field_validator("attributes")
    @classmethod
    def _not_contract_columns(cls, value: dict[str, AttributeKind]) -> dict[str, AttributeKind]:
        taken = sorted(set(value) & _ACCOUNTS_CONTRACT)
        if taken:
            raise ValueError(f"{', '.join(taken)} is a contract column of accounts already")
        return value


class AccountAttributesColumns(_Strict):
    account_id: Identifier = "account_id"
    name: Identifier = "name"
    value: Identifier = "value"
    valid_from: Identifier = "valid_from"


class AccountAttributesTable(_Strict):
    """Optional: time-stamped account attributes, one row per account, attribute and change."""

    name: Identifier = "account_attributes"
    columns: AccountAttributesColumns = AccountAttributesColumns()
    attributes: dict[str, AttributeKind] = Field(
        default_factory=dict,
        description=f"attribute name (as stored in the table's name column) -> {_KIND}",
    )

    @field_validator("attributes")
    @classmethod
    def _named(cls, value: dict[str, AttributeKind]) -> dict[str, AttributeKind]:
        if any(not name.strip() for name in value):
            raise ValueError("an attribute name cannot be blank")
        return value


class UsersTable(_Strict):
    name: Identifier = "users"
    columns: UsersColumns = UsersColumns()


class EventsTable(_Strict):
    name: Identifier = "events"
    columns: EventsColumns = EventsColumns()


class PlanChangesTable(_Strict):
    name: Identifier = "plan_changes"
    columns: PlanChangesColumns = PlanChangesColumns()


class CrmAccountsTable(_Strict):
    name: Identifier = "crm_accounts"
    columns: CrmAccountsColumns = CrmAccountsColumns()


class CrmActivitiesColumns(_Strict):
    activity_id: Identifier = "activity_id"
    account_id: Identifier = "account_id"
    owner: Identifier = "owner"
    occurred_at: Identifier = "occurred_at"
    activity_type: Identifier = "activity_type"
    outcome: Identifier = "outcome"


class CrmActivitiesTable(_Strict):
    """Optional, owned by sales: one row per sales activity (email, call, meeting, task, …)."""

    name: Identifier = "crm_activities"
    columns: CrmActivitiesColumns = CrmActivitiesColumns()


class OpportunitiesColumns(_Strict):
    opportunity_id: Identifier = "opportunity_id"
    account_id: Identifier = "account_id"
    created_at: Identifier = "created_at"
    stage: Identifier = "stage"
    amount: Identifier = "amount"
    closed_at: Identifier = "closed_at"
    is_won: Identifier = "is_won"


class OpportunitiesTable(_Strict):
    """Optional, owned by sales: one row per opportunity."""

    name: Identifier = "opportunities"
    columns: OpportunitiesColumns = OpportunitiesColumns()


class PqlFeedbackColumns(_Strict):
    account_id: Identifier = "account_id"
    owner: Identifier = "owner"
    decided_at: Identifier = "decided_at"
    decision: Identifier = "decision"
    reason: Identifier = "reason"


class PqlFeedbackTable(_Strict):
    """Optional, owned by sales: one row per rep decision on a PQL (accepted, disqualified, done)."""

    name: Identifier = "pql_feedback"
    columns: PqlFeedbackColumns = PqlFeedbackColumns()


# A rep's decisions on a PQL, as `pql_feedback.decision` holds them.
FEEDBACK_DECISIONS = ("accepted", "disqualified", "done")


class TablesConfig(_Strict):
    """Physical names of the contract tables (source side) and of the pipeline's own tables."""

    accounts: AccountsTable = AccountsTable()
    users: UsersTable = UsersTable()
    events: EventsTable = EventsTable()
    plan_changes: PlanChangesTable = PlanChangesTable()
    crm_accounts: CrmAccountsTable = CrmAccountsTable()
    account_attributes: AccountAttributesTable = AccountAttributesTable()
    crm_activities: CrmActivitiesTable = CrmActivitiesTable()
    opportunities: OpportunitiesTable = OpportunitiesTable()
    pql_feedback: PqlFeedbackTable = PqlFeedbackTable()
    pql_scores: Identifier = "pql_scores"
    pql_score_history: Identifier = "pql_score_history"
    pql_runs: Identifier = "pql_runs"
    quarantine: Identifier = "pql_quarantine"


class PlansConfig(_Strict):
    """Which `to_plan` values mean what. Conversion is a change into a paid plan."""

    free: list[str] = ["free"]
    trial: list[str] = ["trial"]
    paid: list[str] = ["paid"]

    @model_validator(mode="after")
    def _disjoint(self) -> PlansConfig:
        # A to_plan value in two lists would make an account both converted and not.
        for first, second in (("free", "trial"), ("free", "paid"), ("trial", "paid")):
            shared = sorted(set(getattr(self, first)) & set(getattr(self, second)))
            if shared:
                values = ", ".join(repr(value) for value in shared)
                raise ValueError(
                    f"{values} is in both plans.{first} and plans.{second}; a plan value can mean only one "
                    "thing: keep it in one list"
                )
        return self


# What a positive is, for the hybrid motion: a self-serve change to a paid plan (the default), an
# opportunity created, a deal won, or either path. The sales labels read the `opportunities` table.
Label = Literal["converted_to_paid", "opportunity_created", "closed_won", "converted_or_won"]
LABELS: tuple[Label, ...] = ("converted_to_paid", "opportunity_created", "closed_won", "converted_or_won")
SALES_LABELS: tuple[Label, ...] = ("opportunity_created", "closed_won", "converted_or_won")


class FeaturesConfig(_Strict):
    snapshot_every_days: int = Field(7, ge=1, le=90, description="an integer from 1 to 90")
    lookback_days: int = Field(182, ge=7, le=1830, description="an integer from 7 to 1830")
    label: Label = Field(
        "converted_to_paid",
        description="'converted_to_paid', 'opportunity_created', 'closed_won' or 'converted_or_won'",
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="feature families (activity, trial, fit, ...) or feature names kept out of the model",
    )
    phrases: dict[str, str] = Field(
        default_factory=dict,
        description="feature name -> how reasons say its value, with {value}: 'signed up through {value}'",
    )


class PointsRule(_Strict):
    points: float = Field(description="points for one event (any number)")
    lifespan_days: int = Field(ge=1, le=365, description="an integer from 1 to 365")


class ModelConfig(_Strict):
    seed: int = Field(0, ge=0, description="a non-negative integer")
    min_conversions: int = Field(50, ge=1, description="an integer >= 1")
    promotion_margin_pr_auc: float = Field(0.005, ge=0, le=1, description="a number from 0 to 1")
    top_k: int = Field(100, ge=1, description="an integer >= 1 (accounts sales can work per run)")
    bootstrap_rounds: int = Field(200, ge=10, le=5000, description="an integer from 10 to 5000")
    points: dict[str, PointsRule] = Field(
        default_factory=dict, description="per key event: {points = N, lifespan_days = N}"
    )
    candidates: list[Literal["gradient_boosting", "logistic_regression"]] = Field(
        default_factory=lambda: ["gradient_boosting", "logistic_regression"],
        min_length=1,
        description="a non-empty list of 'gradient_boosting' and 'logistic_regression'",
    )
    # A secret: set it through PQL_MODEL__SIGNING_KEY, not in pql.toml. SecretStr keeps it out of reprs.
    signing_key: SecretStr | None = Field(
        None,
        min_length=32,
        description="at least 32 characters (e.g. `openssl rand -hex 32`), from PQL_MODEL__SIGNING_KEY",
    )
    fallback: Literal["fail", "points"] = Field(
        "fail",
        description="'fail' or 'points': what scoring does when the registry lost the champion that "
        "scored earlier runs",
    )


# The longest feature window: the source gates check the events the features read.
LONGEST_WINDOW_DAYS = 28
TIERS = ("very_high", "high", "medium", "low")


# What a talking point may quote from the reason it is about (see scoring/talking_points.py).
TALKING_POINT_PLACEHOLDERS = ("reason", "value", "times", "percentile", "event", "attribute")


def _talk_track(value: str) -> str:
    """A talking point template: text with named placeholders only (no attribute, index or format)."""
    try:
        parsed = [(field, spec, conversion) for _, field, spec, conversion in string.Formatter().parse(value)]
    except ValueError as exc:
        raise ValueError(f"not a template ({exc}); write a literal brace twice: {{{{ or }}}}") from exc
    allowed = ", ".join(f"{{{name}}}" for name in TALKING_POINT_PLACEHOLDERS)
    for field, spec, conversion in parsed:
        if field is not None and field not in TALKING_POINT_PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{field}}}; a talking point may use {allowed}")
        if field is not None and (spec or conversion):
            raise ValueError(f"{{{field}}} takes no format or conversion; write it plainly as {{{field}}}")
    return value


TalkingPointTemplate = Annotated[str, AfterValidator(_talk_track)]


class ScoringConfig(_Strict):
    tier_policy: Literal["quantile", "threshold"] = Field("quantile", description="'quantile' or 'threshold'")
    # Cumulative top shares: top 1% very high, next to 10% high, next to 30% medium, rest low.
    tier_quantiles: dict[str, float] = {"very_high": 0.01, "high": 0.10, "medium": 0.30}
    tier_probabilities: dict[str, float] = {"very_high": 0.5, "high": 0.25, "medium": 0.10}
    pql_entry_score: float = Field(60.0, ge=0, le=100, description="a score from 0 to 100")
    pql_exit_score: float = Field(45.0, ge=0, le=100, description="a score from 0 to 100, below entry")
    max_new_pqls_per_owner: int = Field(10, ge=1, description="an integer >= 1")
    max_pql_age_days: int = Field(30, ge=1, description="an integer >= 1")
    unowned_queue: str = Field("pql-queue", min_length=1, description="a non-empty queue name")
    talking_points: dict[str, TalkingPointTemplate] = Field(
        default_factory=dict,
        description="reason group -> a short talk track for a rep ('' says nothing for that group)",
    )
    # Days a rep's `disqualified` or `done` decision keeps an account off the list (`pql_feedback`).
    feedback_cooldown_days: int = Field(90, ge=0, description="a non-negative integer (0: no cooldown)")

    @model_validator(mode="after")
    def _consistent(self) -> ScoringConfig:
        if self.pql_exit_score > self.pql_entry_score:
            raise ValueError(
                "pql_exit_score must not be above pql_entry_score (hysteresis needs exit <= entry)"
            )
        for name, cuts in (
            ("tier_quantiles", self.tier_quantiles),
            ("tier_probabilities", self.tier_probabilities),
        ):
            if set(cuts) != set(TIERS[:-1]):
                raise ValueError(f"{name} needs exactly the keys {', '.join(TIERS[:-1])}")
            values = [cuts[tier] for tier in TIERS[:-1]]
            if not all(0 < v <= 1 for v in values):
                raise ValueError(f"{name} values must be in (0, 1]")
        q = [self.tier_quantiles[t] for t in TIERS[:-1]]
        p = [self.tier_probabilities[t] for t in TIERS[:-1]]
        if q != sorted(q) or p != sorted(p, reverse=True):
            raise ValueError(
                "tier cut-offs must grow from very_high to medium (quantiles) or fall (probabilities)"
            )
        return self


CheckPolicy = Literal["fail", "warn", "quarantine"]


class ValidationConfig(_Strict):
    policies: dict[str, CheckPolicy] = Field(
        default_factory=dict, description="check name -> 'fail', 'warn' or 'quarantine'"
    )
    future_tolerance_minutes: int = Field(5, ge=0, description="a non-negative integer")
    max_duplicate_event_rate: float = Field(0.001, ge=0, le=1, description="a number from 0 to 1")
    volume_spike_ratio: float = Field(10.0, gt=1, description="a number > 1")


class FlowsConfig(_Strict):
    task_timeout_seconds: int = Field(3600, ge=1, description="an integer >= 1")
    retries: int = Field(3, ge=0, le=10, description="an integer from 0 to 10")
    retry_delay_seconds: int = Field(10, ge=0, description="a non-negative integer")
    partitions: int = Field(1, ge=1, le=1024, description="an integer from 1 to 1024")
    dask_address: str | None = None
    # How long a run waits for another run writing to the same CRM before it gives up.
    lock_timeout_seconds: int = Field(600, ge=0, description="a non-negative integer (0: fail at once)")


class OutcomesConfig(_Strict):
    sla_hours: int = Field(24, ge=1, description="an integer >= 1")
    control_share: float = Field(0.0, ge=0, lt=1, description="a number from 0 (off) to below 1")
    control_salt: str = "pql-control"


class MonitoringConfig(_Strict):
    psi_warn: float = Field(0.1, ge=0, description="a non-negative number")
    psi_fail: float = Field(0.25, ge=0, description="a non-negative number")
    volume_ratio_warn: float = Field(3.0, gt=1, description="a number > 1")
    breach_policy: Literal["warn", "fail"] = Field("warn", description="'warn' or 'fail'")


# Placeholders an alert's link template may use, filled with the PQL's values (URL-quoted).
LINK_PLACEHOLDERS = ("account_id", "owner")
_WEBHOOK_SCHEMES = ("https://", "http://", SECRET_URL_SCHEME)


class AlertsConfig(_Strict):
    """Posting each owner's new PQLs to a webhook after a successful nightly run (off without a URL)."""

    # A secret (a Slack webhook URL is its own credential): set it through PQL_ALERTS__WEBHOOK_URL or a
    # Prefect Secret block (prefect_secret://NAME), not in pql.toml. SecretStr keeps it out of reprs.
    webhook_url: SecretStr | None = Field(
        None,
        description="an http(s) URL or prefect_secret://<block name>, from PQL_ALERTS__WEBHOOK_URL",
    )
    format: Literal["slack", "json"] = Field(
        "slack", description="'slack' (an incoming-webhook payload) or 'json' (a plain document)"
    )
    link_template: str | None = Field(
        None,
        description="a URL with {account_id} and/or {owner}, e.g. https://crm.example.com/accounts/{account_id}",
    )
    max_per_owner: int = Field(10, ge=1, le=40, description="an integer from 1 to 40 (PQLs listed per post)")
    retries: int = Field(2, ge=0, le=10, description="an integer from 0 to 10 (tries after the first)")
    backoff_seconds: float = Field(2.0, ge=0, description="a non-negative number (doubles at each retry)")
    max_delay_seconds: float = Field(
        60.0, ge=0, description="a non-negative number (the longest wait, Retry-After included)"
    )
    timeout_seconds: float = Field(10.0, gt=0, le=300, description="a number above 0, at most 300")

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        if not text:
            return None
        if not text.startswith(_WEBHOOK_SCHEMES) or text in _WEBHOOK_SCHEMES:
            raise ValueError("must be an http:// or https:// URL, or prefect_secret://<block name>")
        return SecretStr(text)

    @field_validator("link_template")
    @classmethod
    def _placeholders(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from exc
        unknown = sorted({name for name in fields if name not in LINK_PLACEHOLDERS})
        if unknown:
            allowed = ", ".join(f"{{{name}}}" for name in LINK_PLACEHOLDERS)
            shown = ", ".join(f"{{{name}}}" for name in unknown)
            raise ValueError(f"unknown placeholder {shown}; the template may use {allowed}")
        return value

    @property
    def enabled(self) -> bool:
        """Whether alerts are on: a webhook URL is set."""
        return self.webhook_url is not None


PropertyValue = str | int | float | bool
# A feature column is `count_<slug>_<N>d`; PostgreSQL keeps 63 bytes of an identifier.
MAX_SLUG_LENGTH = 52
_HASH_LENGTH = 6


def _slug_text(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "_", folded.lower()).strip("_")


def short_hash(text: str) -> str:
    """A stable 6-hex-digit digest of `text` (sha1), to tell apart names that slug alike."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:_HASH_LENGTH]


class KeyEvent(_Strict):
    """An event name (data, any non-empty string), optionally narrowed by conditions on its properties.

    `where = {limit = "seats"}` keeps only events whose JSON `properties` hold `"limit": "seats"`;
    values are compared as text, so `{plan_seats = 10}` matches `"plan_seats": 10` and `"10"` alike.
    """

    name: str = Field(min_length=1, description="an event name as the product logs it (any text)")
    where: dict[str, PropertyValue] = Field(
        default_factory=dict, description="property name -> value the event must carry"
    )
    label: str | None = Field(None, description="how reasons and reports name it (default: the name)")

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("an event name cannot be blank")
        return value

    @field_validator("where")
    @classmethod
    def _named_properties(cls, value: dict[str, PropertyValue]) -> dict[str, PropertyValue]:
        if any(not key.strip() for key in value):
            raise ValueError("a property name cannot be blank")
        return value

    @property
    def key(self) -> str:
        """The definition as one stable string (name and conditions), for digests."""
        return json.dumps([self.name, sorted(self.where.items())], ensure_ascii=False)

    @property
    def display(self) -> str:
        """How people read it: the label, else the name with its conditions."""
        if self.label:
            return self.label
        conditions = ", ".join(f"{key} = {value}" for key, value in self.where.items())
        return f"{self.name} ({conditions})" if conditions else self.name

    def where_text(self) -> dict[str, str]:
        """Conditions as the text the database compares (JSON's spelling of booleans)."""
        return {
            key: json.dumps(value) if isinstance(value, bool) else str(value)
            for key, value in self.where.items()
        }

    def base_slug(self) -> str:
        """The plain-identifier stem of its feature columns, before any clash is resolved."""
        parts = [_slug_text(self.name)]
        parts += [f"{_slug_text(key)}_{_slug_text(str(value))}" for key, value in self.where.items()]
        return slug_of("_".join(part for part in parts if part), self.key, "event")


def slug_of(text: str, key: str, fallback: str, max_length: int = MAX_SLUG_LENGTH) -> str:
    """`text` folded to a plain identifier (ASCII letters, digits, _; starts with a letter), at most
    `max_length` long; a digest of `key` stands in for what folding or shortening lost."""
    slug = _slug_text(text)
    if not slug or len(slug) > max_length:
        stem = slug[: max_length - _HASH_LENGTH - 1].rstrip("_") or fallback
        slug = f"{stem}_{short_hash(key)}"
    return slug if slug[0].isalpha() else f"{fallback[0]}_{slug}"


def _key_event(value: object) -> object:
    return {"name": value} if isinstance(value, str) else value


DEFAULT_KEY_EVENTS = [
    "invite_teammate",
    "connect_integration",
    "hit_usage_limit",
    "view_pricing",
    "create_project",
    "export_report",
]


class Settings(BaseSettings):
    """Everything the pipeline can be told. Defaults give a working embedded (DuckDB) setup."""

    model_config = SettingsConfigDict(
        env_prefix="PQL_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    source_url: str | None = Field(None, description="a SQLAlchemy URL, e.g. postgresql+psycopg://u@h/db")
    crm_url: str | None = Field(None, description="a SQLAlchemy URL; defaults to source_url")
    state_dir: Path = Field(Path(".pql"), description="a directory path")
    registry_path: str | None = Field(
        None,
        description="a directory path or an fsspec URL (file://, memory://, s3://, gs://); defaults to "
        "<state_dir>/models",
    )
    timezone: str = Field("UTC", description="an IANA time zone such as 'Europe/Paris'")
    horizon_days: int = Field(30, ge=1, le=365, description="an integer from 1 to 365")
    key_events: list[Annotated[KeyEvent, BeforeValidator(_key_event)]] = Field(
        default_factory=lambda: [KeyEvent(name=name) for name in DEFAULT_KEY_EVENTS],
        min_length=1,
        description="a non-empty list of event names (any text), or tables {name = ..., where = {...}}",
    )
    tables: TablesConfig = TablesConfig()
    plans: PlansConfig = PlansConfig()
    features: FeaturesConfig = FeaturesConfig()
    model: ModelConfig = ModelConfig()
    scoring: ScoringConfig = ScoringConfig()
    validation: ValidationConfig = ValidationConfig()
    flows: FlowsConfig = FlowsConfig()
    outcomes: OutcomesConfig = OutcomesConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    alerts: AlertsConfig = AlertsConfig()

    @field_validator("key_events")
    @classmethod
    def _distinct_key_events(cls, value: list[KeyEvent]) -> list[KeyEvent]:
        seen: set[str] = set()
        for event in value:
            if event.key in seen:
                raise ValueError(f"{event.display!r} is listed twice")
            seen.add(event.key)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("unknown time zone") from exc
        return value

    @field_validator("registry_path", mode="before")
    @classmethod
    def _openable_registry(cls, value: object) -> object:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, str):
            problem = registry_location_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("source_url", "crm_url")
    @classmethod
    def _parsable_url(cls, value: str | None) -> str | None:
        if value is None or value.startswith(SECRET_URL_SCHEME):
            return value
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError("not a SQLAlchemy URL (dialect+driver://user:password@host/database)") from exc
        try:
            url.get_dialect()
        except NoSuchModuleError as exc:
            # Caught here rather than at the first connection, so a typo is a configuration error.
            raise ValueError(
                f"unknown database dialect or driver {url.drivername!r} (e.g. postgresql+psycopg, "
                "duckdb, sqlite)"
            ) from exc
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init arguments; the environment must win over them.
        return env_settings, init_settings

    @property
    def source_database_url(self) -> str:
        return self.source_url or f"duckdb:///{(self.state_dir / 'pql.duckdb').as_posix()}"

    @property
    def crm_database_url(self) -> str:
        return self.crm_url or self.source_database_url

    @property
    def model_registry_path(self) -> Path | str:
        """The registry: a local folder as a Path, or an fsspec URL as written."""
        if self.registry_path is None:
            return self.state_dir / "models"
        return self.registry_path if "://" in self.registry_path else Path(self.registry_path)

    @property
    def key_event_names(self) -> list[str]:
        """The distinct event names the key events count, in configured order."""
        return list(dict.fromkeys(event.name for event in self.key_events))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


# Settings that hold secrets: never printed, not even when invalid.
SECRET_KEYS = frozenset({("model", "signing_key"), ("alerts", "webhook_url")})


def _env_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part) for part in loc).upper()


def _field_at(loc: tuple[Any, ...]) -> FieldInfo | None:
    """The Settings field at a location (the deepest one reached: a dict field holds the rest)."""
    model: Any = Settings
    field = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return field
        field = fields[part]
        model = field.annotation
    return field


def _allowed(loc: tuple[Any, ...]) -> str | None:
    """The field description ('what is allowed') for a validation error location."""
    field = _field_at(loc)
    return field.description if field is not None else None


def _password_in(url: str) -> str | None:
    """The password of a database URL, even one SQLAlchemy cannot parse (everything between the
    user's ':' and the last '@', so a password holding '@' is masked whole)."""
    found = re.match(r"^[^:/]*://[^:/@]*:(.*)@", url)
    return found.group(1) if found and found.group(1) else None


def _masked(text: str, url: str) -> str:
    """`text` with the password of `url` replaced by ***, the way `pql.db.redacted` shows URLs."""
    password = _password_in(url)
    return text.replace(password, "***") if password else text


def _origin(loc: tuple[Any, ...], origin: str) -> str:
    """Where a bad value came from: its environment variable(s), else the file."""
    name = _env_name(loc)
    variables = [variable for variable in os.environ if variable.upper().startswith(name + "__")]
    return name if name in os.environ else ", ".join(sorted(variables)) or origin


def _describe(error: dict[str, Any], origin: str) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(part) for part in loc)
    where = _origin(loc, origin)
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key '{key}'. Remove it or check its spelling against the README."
    allowed = _allowed(loc)
    # A rejected secret is still a secret: never echo it.
    shown = "(hidden)" if loc in SECRET_KEYS else repr(error.get("input"))
    message = f"{where}: invalid value for '{key}': {shown} ({error['msg']})."
    message += f" Allowed: {allowed}." if allowed else ""
    value = error.get("input")
    return _masked(message, value) if key in URL_KEYS and isinstance(value, str) else message


def _variable_names(model: type[BaseModel], prefix: str) -> list[str]:
    """Every environment variable name Settings reads: each field, nested models included."""
    names = []
    for name, field in model.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        names.append(variable)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names += _variable_names(field.annotation, variable + "__")
    return names


def _is_complex(annotation: Any) -> bool:
    """Whether pydantic-settings reads the field's environment value as JSON (lists, tables, models)."""
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_complex(arg) for arg in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return get_origin(annotation) in (list, dict, set, tuple)


def _json_example(variable: str, value: str, annotation: Any) -> str:
    if get_origin(annotation) is list:
        items = [item.strip() for item in value.split(",") if item.strip()]
        return f"{variable}='{json.dumps(items)}'"
    return f'{variable}=\'{{"key": "value"}}\' (a JSON object)'


def _dict_entry(loc: tuple[str, ...]) -> bool:
    """Whether `loc` reaches into a table setting (PQL_MODEL__POINTS__X: an entry of model.points)."""
    for size in range(1, len(loc)):
        field = _field_at(loc[:size]) if _env_name(loc[:size]) in _KNOWN_VARIABLES else None
        if field is not None and get_origin(field.annotation) is dict:
            return True
    return False


def _variable_problem(variable: str, value: str) -> str | None:
    """What is wrong with one PQL_* environment variable, or None."""
    loc = tuple(variable.upper().removeprefix(ENV_PREFIX).lower().split("__"))
    if _env_name(loc) not in _KNOWN_VARIABLES:
        if _dict_entry(loc):
            return None
        close = difflib.get_close_matches(variable.upper(), sorted(_KNOWN_VARIABLES), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]}?" if close else " See the Configuration section of the README."
        return f"{variable}: unknown setting.{hint} Unset it or fix its name."
    field = _field_at(loc)
    if field is None or not _is_complex(field.annotation):
        return None
    try:
        json.loads(value)
    except json.JSONDecodeError:
        return (
            f"{variable}: {value!r} is not JSON; a list or table setting is written as JSON in the "
            f"environment, e.g. {_json_example(variable, value, field.annotation)}."
        )
    return None


def _environment_problems() -> list[str]:
    """One message per PQL_* variable that Settings does not know or cannot read."""
    problems = []
    for variable, value in sorted(os.environ.items()):
        if variable.upper().startswith(ENV_PREFIX) and variable.upper() not in OTHER_VARIABLES:
            problem = _variable_problem(variable, value)
            if problem:
                problems.append(problem)
    return problems


def config_path(explicit: Path | None = None) -> Path | None:
    """The configuration file to read: explicit, then $PQL_CONFIG, then ./pql.toml if present."""
    if explicit is not None:
        return explicit
    if os.environ.get(CONFIG_FILE_ENV):
        return Path(os.environ[CONFIG_FILE_ENV])
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None


def _file_settings(path: Path) -> dict[str, Any]:
    """The settings file's contents; any reason it cannot be read is a ConfigError naming it."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path}: configuration file not found. Create it or unset {CONFIG_FILE_ENV}."
        ) from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a folder, not a settings file. Give the path of a pql.toml.") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}). "
            "Save the file as UTF-8."
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot be read ({exc.strerror}). Check the path and its permissions."
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}. Fix the syntax at that line.") from exc


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read and validate the settings; raise ConfigError with one readable message per problem."""
    path = config_path(path)
    data: dict[str, Any] = _file_settings(path) if path is not None else {}
    data.update(overrides)
    # Checked first: pydantic-settings ignores an unknown top-level variable and fails on bad JSON
    # with a message that does not name the variable.
    problems = _environment_problems()
    if problems:
        raise ConfigError("\n".join(problems))
    try:
        return Settings(**data)
    except ValidationError as exc:
        origin = str(path) if path is not None else "settings"
        message = "\n".join(_describe(err, origin) for err in exc.errors())
        if any(tuple(err["loc"]) in SECRET_KEYS for err in exc.errors()):
            # pydantic's own error quotes the input: keep it out of tracebacks and flow run logs.
            raise ConfigError(message) from None
        raise ConfigError(message) from exc
    except SettingsError as exc:
        raise ConfigError(f"environment: {exc}. Check the PQL_* variables.") from exc


_KNOWN_VARIABLES = frozenset(_variable_names(Settings, ENV_PREFIX))
