"""The demo world's vocabulary: industries, countries, sales reps, roles and the event catalogue.

Each entry carries the hidden effect it has on the simulation (fit, base weight); none of these
effects is written to the database, so a model has to rediscover them from behaviour.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

ID_PREFIX = "demo-"

# (name, share of accounts, effect on fit). Fit is part of the hidden conversion propensity.
INDUSTRIES: tuple[tuple[str, float, float], ...] = (
    ("Software", 0.22, 0.45),
    ("Financial Services", 0.10, 0.30),
    ("Marketing & Advertising", 0.12, 0.20),
    ("E-commerce", 0.11, 0.10),
    ("Consulting", 0.09, 0.10),
    ("Healthcare", 0.08, 0.00),
    ("Media", 0.07, -0.05),
    ("Manufacturing", 0.07, -0.15),
    ("Education", 0.08, -0.35),
    ("Non-profit", 0.06, -0.50),
)
INDUSTRY_MISSING_SHARE = 0.08

COUNTRIES: tuple[tuple[str, float, float], ...] = (
    ("US", 0.34, 0.15),
    ("GB", 0.10, 0.10),
    ("DE", 0.09, 0.10),
    ("FR", 0.07, 0.00),
    ("CA", 0.06, 0.10),
    ("IN", 0.08, -0.25),
    ("BR", 0.05, -0.20),
    ("AU", 0.04, 0.05),
    ("NL", 0.04, 0.05),
    ("ES", 0.04, -0.05),
    ("JP", 0.03, 0.00),
    ("SG", 0.03, 0.05),
    ("PL", 0.03, -0.10),
)
COUNTRY_MISSING_SHARE = 0.05
EMPLOYEES_MISSING_SHARE = 0.10

SALES_REPS: tuple[str, ...] = (
    "Alex Morgan",
    "Priya Shah",
    "Diego Alvarez",
    "Mei Chen",
    "Sam O'Neill",
    "Fatima Noor",
)
UNOWNED_SHARE = 0.15
DO_NOT_CONTACT_SHARE = 0.03

# Roles of users who join after the account's creator (who is always 'owner'); None = not set.
JOINER_ROLES: tuple[tuple[str | None, float], ...] = (
    (None, 0.55),
    ("member", 0.35),
    ("admin", 0.10),
)

NAME_WORDS = (
    ("Blue", "Bright", "North", "Swift", "Clear", "Green", "Silver", "Bold", "Quiet", "Red", "Open", "Prime"),
    ("Harbor", "Forge", "Pine", "Stone", "River", "Peak", "Field", "Wave", "Cedar", "Orbit", "Atlas", "Lark"),
    ("Labs", "Systems", "Analytics", "Works", "Group", "Studio", "Partners", "Health", "Logistics", "Media"),
)


@dataclass(frozen=True)
class EventKind:
    """One event type: its name and the JSON `properties` variants it is written with (if any)."""

    name: str
    properties: tuple[str, ...] = ()


def _props(key: str, *values: str) -> tuple[str, ...]:
    return tuple(json.dumps({key: value}) for value in values)


# Semantic kinds the simulation drives explicitly; their names are the defaults of `key_events` and the
# usual product events. Settings may add key events the catalogue does not know: those are simulated
# as intent-driven actions (like pricing views), so they carry signal too.
LOGIN = "login"
VIEW_DASHBOARD = "view_dashboard"
CREATE_REPORT = "create_report"
COMMENT = "comment"
UPLOAD_FILE = "upload_file"
SHARE_LINK = "share_link"
UPDATE_SETTINGS = "update_settings"
USE_API = "use_api"
CREATE_PROJECT = "create_project"
EXPORT_REPORT = "export_report"
VIEW_PRICING = "view_pricing"
HIT_USAGE_LIMIT = "hit_usage_limit"
CONNECT_INTEGRATION = "connect_integration"
INVITE_TEAMMATE = "invite_teammate"

CATALOGUE: tuple[EventKind, ...] = (
    EventKind(LOGIN),
    EventKind(VIEW_DASHBOARD),
    EventKind(CREATE_REPORT),
    EventKind(COMMENT),
    EventKind(UPLOAD_FILE, _props("file_type", "pdf", "csv", "png", "docx")),
    EventKind(SHARE_LINK),
    EventKind(UPDATE_SETTINGS),
    EventKind(USE_API, _props("endpoint", "/v1/reports", "/v1/projects", "/v1/events")),
    EventKind(CREATE_PROJECT),
    EventKind(EXPORT_REPORT, _props("format", "csv", "pdf", "xlsx")),
    EventKind(VIEW_PRICING, _props("page", "pricing", "plans", "checkout")),
    EventKind(HIT_USAGE_LIMIT, _props("limit", "projects", "seats", "storage", "api_calls")),
    EventKind(
        CONNECT_INTEGRATION, _props("integration", "slack", "salesforce", "hubspot", "github", "zapier")
    ),
    EventKind(INVITE_TEAMMATE),
)


def event_kinds(key_events: list[str]) -> tuple[EventKind, ...]:
    """The catalogue plus every configured key event it does not already hold, in a fixed order."""
    known = {kind.name for kind in CATALOGUE}
    extra = tuple(EventKind(name) for name in dict.fromkeys(key_events) if name not in known)
    return CATALOGUE + extra


def shares(table: tuple[tuple[object, float, float], ...] | tuple[tuple[object, float], ...]) -> np.ndarray:
    """The share column of a vocabulary table, normalised to sum to one."""
    weights = np.array([row[1] for row in table], dtype=float)
    return weights / weights.sum()
