"""The demo world's calendar: whole days ending at `end`, weekday seasonality and times of day.

Instants are int64 microseconds since the Unix epoch (naive UTC) while simulating, so that every
step stays vectorised; they become `datetime64[us]` only when a frame is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
EPOCH = datetime(1970, 1, 1)

# Relative activity by local weekday, Monday first: teams work less at weekends.
WEEKDAY_ACTIVITY = np.array([1.0, 1.05, 1.05, 1.0, 0.9, 0.32, 0.27])


@dataclass(frozen=True)
class Calendar:
    """`days` consecutive 24-hour days; day `d` covers [start + d days, start + d + 1 days)."""

    start_us: int
    days: int
    weekday: np.ndarray  # local weekday (0 = Monday) at the middle of each day

    @property
    def end_us(self) -> int:
        return self.start_us + self.days * DAY_US

    @property
    def activity(self) -> np.ndarray:
        return WEEKDAY_ACTIVITY[self.weekday]

    def day_start_us(self, day: int) -> int:
        return self.start_us + day * DAY_US


def to_us(moment: datetime) -> int:
    """A naive UTC datetime as microseconds since the epoch."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_us(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(micros))


def calendar(end: datetime, days: int, zone: ZoneInfo) -> Calendar:
    """The `days` whole days before `end` (naive UTC), with each day's weekday read in `zone`."""
    start = end - timedelta(days=days)
    weekday = np.array(
        [
            (start + timedelta(days=day, hours=12)).replace(tzinfo=UTC).astimezone(zone).weekday()
            for day in range(days)
        ],
        dtype=np.int8,
    )
    return Calendar(to_us(start), days, weekday)


def times_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Offsets into a day (microseconds): mostly working hours around early afternoon, some any time."""
    working = rng.normal(13.5 * HOUR_US, 3.2 * HOUR_US, n)
    anytime = rng.uniform(0, DAY_US, n)
    offsets = np.where(rng.random(n) < 0.82, working, anytime)
    return np.mod(offsets, DAY_US).astype(np.int64)
