"""Small synthetic training sets shaped like `features.training.training_set` output."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from pql.config import Settings, load_settings
from pql.features.catalog import model_columns
from pql.models.training import TrainOutcome

START = datetime(2025, 1, 6)
# The end of data for the default 14 snapshots: 30 days (the horizon) after the last one.
WINDOW_END = START + timedelta(days=7 * 13 + 30)
INDUSTRIES = ["software", "retail", "finance", "health", None]
COUNTRIES = ["US", "GB", "DE", "FR", None]
# A test key: 64 hex digits, as `openssl rand -hex 32` gives.
SIGNING_KEY = "5e" * 32


def snapshot_dates(snapshots: int, every_days: int = 7) -> list[datetime]:
    return [START + timedelta(days=every_days * k) for k in range(snapshots)]


def training_frame(
    settings: Settings,
    *,
    accounts: int = 300,
    snapshots: int = 14,
    base_logit: float = -3.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Every account at every weekly snapshot; conversions driven by pricing views on a trial, team
    invites and company size."""
    rng = np.random.default_rng(seed)
    numeric, categorical = model_columns(settings)
    dates = snapshot_dates(snapshots)
    rows = accounts * snapshots
    frame = pd.DataFrame(
        {
            "account_id": [f"acc-{i:05d}" for _ in dates for i in range(accounts)],
            "as_of": np.repeat(np.array(dates, dtype="datetime64[us]"), accounts),
        }
    )
    appetite = np.tile(rng.gamma(1.5, 1.0, accounts), snapshots)
    for column in numeric:
        if column.startswith("count_") and column.endswith("_7d"):
            frame[column] = rng.poisson(appetite * 0.8).astype(float)
        elif column.startswith("count_"):
            frame[column] = rng.poisson(appetite * 3.0).astype(float)
        else:
            frame[column] = rng.uniform(0, 60, rows)
    for column in numeric:
        if column.endswith("_7d") and column.replace("_7d", "_28d") in frame:
            # A 28-day count includes its 7-day count.
            frame[column.replace("_7d", "_28d")] += frame[column]
    frame.loc[rng.random(rows) < 0.1, "employees"] = np.nan
    frame["plan"] = np.where(rng.random(rows) < 0.2, "trial", "free")
    frame["industry"] = pd.Series(rng.choice(np.array(INDUSTRIES, dtype=object), rows), dtype=object)
    frame["country"] = pd.Series(rng.choice(np.array(COUNTRIES, dtype=object), rows), dtype=object)
    assert set(categorical) <= set(frame.columns)
    # Thresholds and interactions, as in real product data: pricing views count on a trial, invites
    # count once a team forms, and mid-sized companies convert more than tiny or huge ones.
    trial = frame["plan"] == "trial"
    logit = (
        base_logit
        + 2.0 * ((frame["count_view_pricing_28d"] >= 3) & trial)
        + 1.2 * (frame["count_invite_teammate_7d"] >= 2)
        + 1.0 * frame["employees"].between(20, 45)
        + 0.6 * (frame["industry"] == "software")
    )
    frame["label"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame["is_eligible"] = True
    return frame.sort_values(["as_of", "account_id"]).reset_index(drop=True)


def fast_settings(state_dir: Path, **model: object) -> Settings:
    """Default settings with few bootstrap rounds, a low conversion floor and top-K sized for 300 accounts."""
    return load_settings(
        None,
        state_dir=state_dir,
        model={
            "bootstrap_rounds": 20,
            "min_conversions": 20,
            "top_k": 10,
            "candidates": ["gradient_boosting"],
            **model,
        },
    )


class Tripwire:
    """A pickle that creates `marker` when it is loaded: proof that a file was (not) unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@dataclass(frozen=True)
class Trained:
    """A registry holding one trained champion, and the settings that point at it."""

    settings: Settings
    outcome: TrainOutcome

    @property
    def root(self) -> Path:
        return self.settings.model_registry_path
