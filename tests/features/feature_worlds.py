"""Small hand-made source worlds for the feature tests, loaded into a real database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa

from pql.bulk import bulk_insert
from pql.config import Settings
from pql.db import create_engine
from pql.features.builder import build_features
from pql.schema import SourceTables, create_tables, source_tables

AS_OF = datetime(2024, 3, 1)
DAY = timedelta(days=1)
MICROSECOND = timedelta(microseconds=1)

_COLUMNS = {
    "accounts": ["account_id", "name", "domain", "created_at", "employees", "industry", "country"],
    "users": ["user_id", "account_id", "created_at", "role"],
    "events": ["event_id", "user_id", "account_id", "event_name", "occurred_at", "properties"],
    "plan_changes": ["account_id", "changed_at", "from_plan", "to_plan", "trial_ends_at", "mrr"],
    "opportunities": ["opportunity_id", "account_id", "created_at", "stage", "amount", "closed_at", "is_won"],
    "crm_activities": ["activity_id", "account_id", "owner", "occurred_at", "activity_type", "outcome"],
}
_TIMESTAMPS = {"created_at", "occurred_at", "changed_at", "trial_ends_at", "closed_at"}


class World:
    """Rows of the source tables, added one call per row."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict]] = {table: [] for table in _COLUMNS}

    def account(
        self,
        account_id: str,
        created_at: datetime = AS_OF - 90 * DAY,
        *,
        employees: int | None = None,
        industry: str | None = None,
        country: str | None = None,
    ) -> World:
        self.rows["accounts"].append(
            {
                "account_id": account_id,
                "name": account_id.upper(),
                "domain": f"{account_id}.example",
                "created_at": created_at,
                "employees": employees,
                "industry": industry,
                "country": country,
            }
        )
        return self

    def user(self, user_id: str, account_id: str | None, created_at: datetime = AS_OF - 60 * DAY) -> World:
        self.rows["users"].append(
            {"user_id": user_id, "account_id": account_id, "created_at": created_at, "role": None}
        )
        return self

    def event(
        self,
        account_id: str | None,
        occurred_at: datetime,
        name: str = "login",
        user_id: str | None = None,
        properties: str | None = None,
    ) -> World:
        self.rows["events"].append(
            {
                "event_id": f"e{len(self.rows['events']):06d}",
                "user_id": user_id,
                "account_id": account_id,
                "event_name": name,
                "occurred_at": occurred_at,
                "properties": properties,
            }
        )
        return self

    def plan_change(
        self,
        account_id: str,
        changed_at: datetime,
        to_plan: str,
        *,
        from_plan: str | None = None,
        trial_ends_at: datetime | None = None,
    ) -> World:
        self.rows["plan_changes"].append(
            {
                "account_id": account_id,
                "changed_at": changed_at,
                "from_plan": from_plan,
                "to_plan": to_plan,
                "trial_ends_at": trial_ends_at,
                "mrr": 50.0 if to_plan == "paid" else None,
            }
        )
        return self

    def opportunity(
        self,
        account_id: str,
        created_at: datetime,
        closed_at: datetime | None = None,
        *,
        is_won: bool | None = None,
    ) -> World:
        """An opportunity: open while `closed_at` is None, else won or lost by `is_won`."""
        stage = "open" if closed_at is None else ("closed won" if is_won else "closed lost")
        self.rows["opportunities"].append(
            {
                "opportunity_id": f"o{len(self.rows['opportunities']):04d}",
                "account_id": account_id,
                "created_at": created_at,
                "stage": stage,
                "amount": 1200.0,
                "closed_at": closed_at,
                "is_won": is_won,
            }
        )
        return self

    def activity(self, account_id: str, occurred_at: datetime, activity_type: str = "call") -> World:
        self.rows["crm_activities"].append(
            {
                "activity_id": f"act{len(self.rows['crm_activities']):04d}",
                "account_id": account_id,
                "owner": "ana@example.com",
                "occurred_at": occurred_at,
                "activity_type": activity_type,
                "outcome": None,
            }
        )
        return self

    def frame(self, table: str) -> pd.DataFrame:
        """The rows of `table` with the dtypes the database columns expect."""
        frame = pd.DataFrame(self.rows[table], columns=_COLUMNS[table])
        for column in frame.columns:
            if column in _TIMESTAMPS:
                frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]")
            elif column == "employees":
                frame[column] = pd.array(frame[column].tolist(), dtype="Int64")
            elif column in ("mrr", "amount"):
                frame[column] = frame[column].astype("float64")
            elif column == "is_won":
                frame[column] = pd.array(frame[column].tolist(), dtype="boolean")
            else:
                frame[column] = frame[column].astype(object)
        return frame


def load_world(url: str, world: World, settings: Settings) -> tuple[sa.Engine, SourceTables]:
    """Create the source tables at `url` and insert `world`; return the engine and tables."""
    engine = create_engine(url)
    tables = source_tables(settings.tables)
    create_tables(engine, tables)
    with engine.begin() as conn:
        for name in _COLUMNS:
            bulk_insert(conn, getattr(tables, name), world.frame(name))
    return engine, tables


def features_of(
    url: str, world: World, settings: Settings, as_of: Sequence[datetime] = (AS_OF,)
) -> pd.DataFrame:
    """Load `world` at `url` and build its features."""
    engine, tables = load_world(url, world, settings)
    try:
        return build_features(engine, tables, settings, list(as_of))
    finally:
        engine.dispose()


def row(features: pd.DataFrame, account_id: str, as_of: datetime = AS_OF) -> pd.Series:
    """The one feature row of `account_id` at `as_of`."""
    match = features[(features["account_id"] == account_id) & (features["as_of"] == pd.Timestamp(as_of))]
    assert len(match) == 1, f"expected one row for {account_id} at {as_of}, got {len(match)}"
    return match.iloc[0]


MIXED_AS_OF = (AS_OF - 9 * DAY, AS_OF, AS_OF + timedelta(days=3, hours=12, minutes=34, microseconds=789012))
_OTHER_EVENTS = ("login", "view_dashboard", "create_report")


def mixed_world(settings: Settings, seed: int = 7) -> World:
    """Random activity plus every awkward case: boundary instants, trials ending at as_of, conversions,
    accounts created at as_of or later, users and events without an account, unknown account ids."""
    import numpy as np

    rng = np.random.default_rng(seed)
    world = World()
    world.account("a1", AS_OF - 100 * DAY, employees=50, industry="software", country="FR")
    world.account("a2", AS_OF - 20 * DAY, employees=8, industry="retail")
    world.account("a3", AS_OF - 60 * DAY, employees=300, country="US")
    world.account("a4", AS_OF - 40 * DAY)
    world.account("a5", AS_OF, employees=3, industry="software", country="DE")
    world.account("a6", AS_OF + 2 * DAY, country="FR")
    users = {"a1": 4, "a2": 2, "a3": 3, "a5": 1, "a6": 2}
    user_ids: dict[str, list[str]] = {}
    for account_id, count in users.items():
        user_ids[account_id] = [f"{account_id}-u{i}" for i in range(count)]
        for user_id in user_ids[account_id]:
            offset = timedelta(
                seconds=int(rng.integers(0, 50 * 86400)), microseconds=int(rng.integers(0, 10**6))
            )
            world.user(user_id, account_id, AS_OF - offset)
    world.user("a1-boundary", "a1", AS_OF - 14 * DAY)
    world.user("a1-late", "a1", AS_OF)
    world.user("orphan", None, AS_OF - 5 * DAY)
    names = [*settings.key_event_names, *_OTHER_EVENTS]
    for _ in range(600):
        account_id = rng.choice(["a1", "a2", "a3", "a5", "a6", "a1", "a1", "ghost", None])
        moment = AS_OF - 45 * DAY + timedelta(microseconds=int(rng.integers(0, 58 * 86400 * 10**6)))
        candidates = [*user_ids.get(account_id, ["stranger"]), None]
        world.event(
            account_id, moment, str(rng.choice(names)), candidates[int(rng.integers(0, len(candidates)))]
        )
    for as_of in MIXED_AS_OF:
        for offset in (0 * DAY, 1 * DAY, 7 * DAY, 7 * DAY + MICROSECOND, 28 * DAY, 28 * DAY + MICROSECOND):
            world.event("a1", as_of - offset, "view_pricing", "a1-u0")
    world.plan_change("a1", AS_OF - 100 * DAY, "free")
    world.plan_change("a1", MIXED_AS_OF[-1], "paid", from_plan="free")  # converts exactly at a snapshot
    world.plan_change("a2", AS_OF - 20 * DAY, "trial", trial_ends_at=AS_OF)
    world.plan_change("a2", AS_OF, "free", from_plan="trial")
    world.plan_change("a3", AS_OF - 60 * DAY, "trial", trial_ends_at=AS_OF - 46 * DAY)
    world.plan_change("a3", AS_OF - 46 * DAY, "free", from_plan="trial")
    world.plan_change("a3", AS_OF - 10 * DAY, "paid", from_plan="free")
    world.plan_change("a5", AS_OF, "trial", trial_ends_at=AS_OF + 14 * DAY)
    world.plan_change("a6", AS_OF + 2 * DAY, "free")
    # Opportunities on the boundaries: one closed exactly at the first snapshot (still open then), one
    # created exactly at as_of (open only from the next snapshot), won ones before and between snapshots.
    world.opportunity("a2", AS_OF - 30 * DAY, MIXED_AS_OF[0], is_won=False)
    world.opportunity("a4", AS_OF - 60 * DAY, AS_OF - 20 * DAY, is_won=True)
    world.opportunity("a4", AS_OF)
    world.opportunity("a5", AS_OF + timedelta(hours=1), AS_OF + 2 * DAY, is_won=True)
    return world
