"""Small source worlds shaped like real data, not like the demo: one per shape a real product has.

- `named_events`: event names as trackers emit them (spaces, capitals, punctuation, non-ASCII), no
  firmographics; converters are those who did "Submit Upgrade" and "Add Friend" more.
- `no_trials`: free to paid directly, no trial ever, no firmographics at all.
- `attributes_only`: no event at all; a signup channel on the accounts table and a dated "Seats"
  attribute drive conversion.
- `with_opportunities`: the hybrid motion; sales opportunities (and activities) follow the same signal
  events as self-serve conversions, and the label is a deal won.

Each world is built from a seed, deterministic, and written into a real database with the loader's
tables, so the commands see it as a user's own database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from pql.bulk import bulk_insert
from pql.config import load_settings
from pql.db import create_engine
from pql.schema import create_tables, source_tables

END = datetime(2026, 6, 1)
DAYS = 150
DAY = timedelta(days=1)
OWNERS = ("ana@example.com", "bo@example.com", None)

NAMED_EVENTS = ("Submit Upgrade", "Add Friend", "$pageview", "checkout:started", "Anmeldung abgeschlossen")
SIGNAL_EVENTS = ("Submit Upgrade", "Add Friend")
CHANNELS = ("paid search", "organic", "referral", "partner")
CHANNEL_LIFT = {"paid search": 1.4, "organic": 0.0, "referral": 0.8, "partner": -0.6}


@dataclass
class ShapeWorld:
    """A world's tables (as frames) and the settings a user would write for it."""

    name: str
    tables: dict[str, pd.DataFrame]
    settings: dict[str, object] = field(default_factory=dict)

    def converting_accounts(self) -> int:
        changes = self.tables["plan_changes"]
        return int(changes.loc[changes["to_plan"] == "paid", "account_id"].nunique())


def _accounts(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    start = END - DAYS * DAY
    created = [start + timedelta(days=float(d)) for d in rng.uniform(0, DAYS - 40, n)]
    accounts = pd.DataFrame(
        {
            "account_id": [f"acct-{k:04d}" for k in range(n)],
            "name": [f"Company {k}" for k in range(n)],
            "domain": [f"company{k}.example" for k in range(n)],
            "created_at": created,
            "employees": pd.array([None] * n, dtype="Int64"),
            "industry": [None] * n,
            "country": [None] * n,
        }
    )
    return accounts, rng.normal(0, 1, n)


def _crm(accounts: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": accounts["account_id"],
            "owner": [OWNERS[k % len(OWNERS)] for k in range(len(accounts))],
            "lifecycle_stage": "lead",
            "has_open_opportunity": False,
            "last_touch_at": pd.NaT,
            "do_not_contact": False,
        }
    )


def _conversions(
    rng: np.random.Generator, accounts: pd.DataFrame, drive: np.ndarray, *, trial: bool
) -> pd.DataFrame:
    """Plan changes: some accounts start a trial (when `trial`); converters, driven by `drive`, go paid."""
    rows = []
    for (account_id, created), push in zip(
        accounts[["account_id", "created_at"]].itertuples(index=False), drive, strict=True
    ):
        converts = rng.random() < 1 / (1 + np.exp(-(push - 1.2)))
        if trial and rng.random() < 0.5:
            started = created + timedelta(days=float(rng.uniform(1, 10)))
            rows.append((account_id, started, "free", "trial", started + 14 * DAY, None))
        if converts:
            when = created + timedelta(days=float(rng.uniform(15, 60)))
            if when < END:
                rows.append((account_id, when, "free", "paid", None, 49.0))
    return pd.DataFrame(
        rows, columns=["account_id", "changed_at", "from_plan", "to_plan", "trial_ends_at", "mrr"]
    )


def _activity(
    rng: np.random.Generator,
    accounts: pd.DataFrame,
    propensity: np.ndarray,
    names: tuple[str, ...],
    signal: tuple[str, ...],
    *,
    trial: bool,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Users, events and plan changes, day by day: accounts keen on the product do the signal events
    more, and the more signal events in the last 28 days, the likelier a change to paid that day."""
    users, events, changes = [], [], []
    for k, (account_id, created) in enumerate(accounts[["account_id", "created_at"]].itertuples(index=False)):
        user_id = f"{account_id}-u1"
        users.append((user_id, account_id, created, None))
        if trial and rng.random() < 0.5:
            started = created + timedelta(days=float(rng.uniform(1, 10)))
            changes.append((account_id, started, "free", "trial", started + 14 * DAY, None))
        recent: list[int] = []
        paid = False
        for day in range(int((END - created) / DAY)):
            done = 0
            for _ in range(rng.poisson(0.6 * np.exp(0.3 * propensity[k]))):
                keen = rng.random() < 0.1 * np.exp(propensity[k])
                name = str(rng.choice(signal if keen else names))
                done += name in signal
                moment = created + timedelta(days=day, seconds=float(rng.uniform(0, 86399)))
                events.append((user_id, account_id, name, moment, json.dumps({"source": "web"})))
            recent = [*recent[-27:], done]
            if not paid and rng.random() < 1 / (1 + np.exp(7.0 - 0.5 * sum(recent))):
                paid = True
                when = created + timedelta(days=day + 1, hours=float(rng.uniform(0, 23)))
                if when < END:
                    changes.append((account_id, when, "free", "paid", None, 49.0))
    users_frame = pd.DataFrame(users, columns=["user_id", "account_id", "created_at", "role"])
    events_frame = pd.DataFrame(
        events, columns=["user_id", "account_id", "event_name", "occurred_at", "properties"]
    )
    events_frame.insert(0, "event_id", [f"ev-{k:07d}" for k in range(len(events_frame))])
    plan_frame = pd.DataFrame(
        changes, columns=["account_id", "changed_at", "from_plan", "to_plan", "trial_ends_at", "mrr"]
    )
    return users_frame, events_frame, plan_frame


def _world(name: str, seed: int, accounts: int, names: tuple[str, ...], signal: tuple[str, ...], trial: bool):
    rng = np.random.default_rng(seed)
    frame, propensity = _accounts(rng, accounts)
    users, events, changes = _activity(rng, frame, propensity, names, signal, trial=trial)
    tables = {
        "accounts": frame,
        "users": users,
        "events": events,
        "plan_changes": changes,
        "crm_accounts": _crm(frame),
    }
    return ShapeWorld(name, tables, {"key_events": list(dict.fromkeys([*signal, *names]))})


def named_events(seed: int = 1, accounts: int = 420) -> ShapeWorld:
    names = tuple(name for name in NAMED_EVENTS if name not in SIGNAL_EVENTS)
    return _world("named_events", seed, accounts, names, SIGNAL_EVENTS, trial=True)


def no_trials(seed: int = 2, accounts: int = 420) -> ShapeWorld:
    world = _world("no_trials", seed, accounts, ("login",), ("create_project", "view_dashboard"), trial=False)
    world.settings["key_events"] = ["create_project"]
    return world


def attributes_only(seed: int = 3, accounts: int = 420) -> ShapeWorld:
    rng = np.random.default_rng(seed)
    frame, _ = _accounts(rng, accounts)
    channels = rng.choice(np.array(CHANNELS, dtype=object), len(frame))
    frame["signup_channel"] = channels
    seats = rng.integers(1, 40, len(frame))
    attributes = pd.DataFrame(
        {
            "account_id": frame["account_id"],
            "name": "Seats",
            "value": seats.astype(str),
            "valid_from": frame["created_at"] + timedelta(hours=1),
        }
    )
    drive = (
        np.array([CHANNEL_LIFT[c] for c in channels]) + 0.08 * (seats - 20) + rng.normal(0, 0.3, len(frame))
    )
    tables = {
        "accounts": frame,
        "users": pd.DataFrame(columns=["user_id", "account_id", "created_at", "role"]),
        "events": pd.DataFrame(
            columns=["event_id", "user_id", "account_id", "event_name", "occurred_at", "properties"]
        ),
        "plan_changes": _conversions(rng, frame, drive, trial=False),
        "crm_accounts": _crm(frame),
        "account_attributes": attributes,
    }
    settings = {
        "tables": {
            "accounts": {"attributes": {"signup_channel": "categorical"}},
            "account_attributes": {"attributes": {"Seats": "numeric"}},
        },
        "features": {"phrases": {"signup_channel": "signed up through {value}"}},
    }
    return ShapeWorld("attributes_only", tables, settings)


def _opportunities(
    rng: np.random.Generator, accounts: pd.DataFrame, events: pd.DataFrame, signal: tuple[str, ...]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Opportunities and sales activities: sales opens an opportunity soon after an account's fifth
    signal event (and now and then on no signal at all), calls first, and wins about 60% of them within
    three weeks; one not closed by the end of the data is still open."""
    keen = events[events["event_name"].isin(signal)].sort_values("occurred_at")
    fifth = keen.groupby("account_id")["occurred_at"].nth(4)
    fifth = pd.Series(fifth.to_numpy(), index=keen.loc[fifth.index, "account_id"])
    opportunities, activities = [], []
    for account_id, created in accounts[["account_id", "created_at"]].itertuples(index=False):
        if account_id in fifth.index and rng.random() < 0.8:
            opened = fifth[account_id] + timedelta(days=float(rng.uniform(0.5, 4)))
        elif rng.random() < 0.05:
            opened = created + timedelta(days=float(rng.uniform(5, 60)))
        else:
            continue
        if opened >= END:
            continue
        activities.append(
            (f"act-{len(activities):05d}", account_id, "ana@example.com", opened - DAY, "call", None)
        )
        closes = opened + timedelta(days=float(rng.uniform(3, 21)))
        won = bool(rng.random() < 0.6)
        closed = closes if closes < END else None
        stage = "open" if closed is None else ("closed won" if won else "closed lost")
        opportunities.append(
            (
                f"opp-{len(opportunities):05d}",
                account_id,
                opened,
                stage,
                4800.0,
                closed,
                won if closed else None,
            )
        )
    return (
        pd.DataFrame(
            opportunities,
            columns=["opportunity_id", "account_id", "created_at", "stage", "amount", "closed_at", "is_won"],
        ).astype({"is_won": "boolean"}),
        pd.DataFrame(
            activities,
            columns=["activity_id", "account_id", "owner", "occurred_at", "activity_type", "outcome"],
        ),
    )


def with_opportunities(seed: int = 4, accounts: int = 420) -> ShapeWorld:
    """A hybrid motion: self-serve conversions and sales opportunities, both following the same signal
    events; trained on `closed_won`."""
    signal = ("Request Demo", "Invite Teammate")
    world = _world("with_opportunities", seed, accounts, ("login", "view_dashboard"), signal, trial=False)
    rng = np.random.default_rng(seed + 100)
    opportunities, activities = _opportunities(rng, world.tables["accounts"], world.tables["events"], signal)
    world.tables["opportunities"] = opportunities
    world.tables["crm_activities"] = activities
    world.settings["key_events"] = list(signal)
    world.settings["features"] = {"label": "closed_won"}
    return world


def write_world(world: ShapeWorld, url: str) -> None:
    """Create the contract tables at `url` (with the world's declared attributes) and insert its rows."""
    settings = load_settings(None, **{k: v for k, v in world.settings.items() if k == "tables"})
    engine = create_engine(url)
    try:
        tables = source_tables(settings.tables)
        create_tables(engine, tables)
        with engine.begin() as conn:
            for name, frame in world.tables.items():
                if len(frame):
                    bulk_insert(conn, getattr(tables, name), _typed(frame))
    finally:
        engine.dispose()


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    timestamps = (
        "created_at",
        "occurred_at",
        "changed_at",
        "trial_ends_at",
        "valid_from",
        "last_touch_at",
        "closed_at",
    )
    for column in timestamps:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]")
    return frame


def config_file(world: ShapeWorld, root: Path, url: str) -> Path:
    """The pql.toml a user of this world would write (TOML is written through JSON literals)."""
    lines = [
        f"source_url = {json.dumps(url)}",
        f"state_dir = {json.dumps((root / '.pql').as_posix())}",
        "horizon_days = 14",
    ]
    if "key_events" in world.settings:
        lines.append(f"key_events = {json.dumps(world.settings['key_events'], ensure_ascii=False)}")
    sections: dict[str, dict[str, object]] = {
        "features": {"snapshot_every_days": 7, "lookback_days": 91},
        "model": {"min_conversions": 20, "bootstrap_rounds": 20, "top_k": 20},
        "flows": {"retry_delay_seconds": 0, "lock_timeout_seconds": 0},
    }
    for section, values in world.settings.items():
        if section == "features":
            sections["features"] |= {k: v for k, v in values.items() if not isinstance(v, dict)}
            for key, table in values.items():
                if isinstance(table, dict):
                    sections[f"features.{key}"] = table
        elif section == "tables":
            for table, parts in values.items():
                for key, mapping in parts.items():
                    sections[f"tables.{table}.{key}"] = mapping
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [
            f"{json.dumps(key, ensure_ascii=False)} = {json.dumps(value)}" for key, value in values.items()
        ]
    path = root / "pql.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
