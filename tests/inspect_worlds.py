"""Small source worlds for `pql inspect`: the feature tests' `World`, written to a real database, and the
settings file that points the CLI at it."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

# The feature tests keep the world builder; their folder is not a package.
sys.path.append(str(Path(__file__).parent / "features"))

from feature_worlds import World, load_world

from pql.config import Settings, load_settings

DAY = timedelta(days=1)
END = datetime(2024, 6, 1)
START = END - 150 * DAY
# An event name as products log them: spaces, capitals, quotes, a backslash, non-ASCII.
SIGNAL = 'Viewed "Pricing" – Prix \\ Café ✓'
ORDINARY = ("Page View", "project:created", "Datei hochgeladen (ü)")


@dataclass(frozen=True)
class Shape:
    """What a world holds."""

    converters: int = 20
    others: int = 40
    trials: bool = False
    firmographics: bool = False
    churned_and_back: bool = True
    paid_from_the_start: bool = True
    extra_plan: str | None = None
    accounts_before_data_days: int = 0


def conversion_days(shape: Shape) -> list[datetime]:
    """When each converter changes into a paid plan: spread over the last 75 days of the data."""
    first = END - 76 * DAY
    return [
        first + (k * 74 // max(shape.converters - 1, 1)) * DAY + 13 * timedelta(hours=1)
        for k in range(shape.converters)
    ]


def inspect_world(shape: Shape = Shape()) -> World:
    """Accounts active every other day; converters view pricing (`SIGNAL`) 16 and 9 days before they
    pay, a few others once; optionally trials, firmographics, an unmapped plan, a cut history."""
    world = World()
    created = START - shape.accounts_before_data_days * DAY
    ids = [f"c{k:02d}" for k in range(shape.converters)] + [f"o{k:02d}" for k in range(shape.others)]
    extras = [
        *(["churned"] if shape.churned_and_back else []),
        *(["early"] if shape.paid_from_the_start else []),
    ]
    for k, account_id in enumerate([*ids, *extras]):
        firmographics = (
            {"employees": 5 + 7 * k, "industry": ("software", "retail")[k % 2], "country": "FR"}
            if shape.firmographics
            else {}
        )
        world.account(account_id, created + k * timedelta(hours=1), **firmographics)
        world.user(f"{account_id}-u", account_id, created + k * timedelta(hours=1))
        for day in range(0, 150, 2):
            world.event(
                account_id,
                START + (day + k % 2) * DAY + 10 * timedelta(hours=1),
                ORDINARY[0],
                f"{account_id}-u",
            )
        for day in range(k % 10, 150, 10):
            world.event(account_id, START + day * DAY + 15 * timedelta(hours=1), ORDINARY[1 + k % 2])
    for account_id, paid_at in zip(ids, conversion_days(shape), strict=False):
        world.event(account_id, paid_at - 16 * DAY, SIGNAL)
        world.event(account_id, paid_at - 9 * DAY, SIGNAL)
        if shape.trials:
            world.plan_change(account_id, paid_at - 20 * DAY, "trial", trial_ends_at=paid_at + 5 * DAY)
        world.plan_change(account_id, paid_at, "paid")
    for k in range(0, shape.others, 8):
        world.event(f"o{k:02d}", END - (20 + k) * DAY, SIGNAL)
    if shape.churned_and_back:
        world.plan_change("churned", START + 10 * DAY, "paid")
        world.plan_change("churned", START + 60 * DAY, "free")
        world.plan_change("churned", START + 110 * DAY, "paid")
    if shape.paid_from_the_start:
        world.plan_change("early", START + 3 * DAY, "paid")
    if shape.extra_plan:
        world.plan_change("o01", START + 30 * DAY, shape.extra_plan)
    return world


def converting_accounts(shape: Shape) -> int:
    """Distinct accounts that convert while eligible at a training snapshot (the early payer never is)."""
    return shape.converters + (1 if shape.churned_and_back else 0)


def _toml(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)  # strings, numbers and lists read alike in TOML


def write_config(
    path: Path,
    url: str,
    *,
    key_events: list[str] | None = None,
    min_conversions: int = 10,
    horizon_days: int = 14,
    snapshot_every_days: int = 7,
    lookback_days: int = 70,
) -> Path:
    """A settings file for this world: its database, a short horizon and a low conversion floor."""
    lines = [
        f"source_url = {_toml(url)}",
        f"state_dir = {_toml((path.parent / '.pql').as_posix())}",
        f"horizon_days = {horizon_days}",
        f"key_events = {_toml(key_events or [SIGNAL, 'view_pricing'])}",
        "[features]",
        f"snapshot_every_days = {snapshot_every_days}",
        f"lookback_days = {lookback_days}",
        "[model]",
        f"min_conversions = {min_conversions}",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def loaded(url: str, world: World, config: Path) -> Settings:
    """Write `world` to the database at `url`; return the settings of `config`."""
    settings = load_settings(config)
    engine, _ = load_world(url, world, settings)
    engine.dispose()
    return settings
