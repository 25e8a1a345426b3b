"""Turning the dates people type into the naive-UTC instants the database stores.

Nothing in feature, label or scoring logic reads the clock; only the entry points below do, and only
to pick a default `as_of`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def to_utc_naive(moment: date | datetime | str, zone: ZoneInfo) -> datetime:
    """`moment` read in `zone` (a date means its midnight there), as a naive UTC datetime.

    Aware datetimes keep their own offset; naive ones and dates are local to `zone`.
    """
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, time.min)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC).replace(tzinfo=None)


def start_of_day(day: date, zone: ZoneInfo) -> datetime:
    """Midnight of `day` in `zone`, as naive UTC: the default `as_of` of a nightly run for that day."""
    return to_utc_naive(day, zone)


def today_in(zone: ZoneInfo) -> date:
    """Today's date in `zone` (reads the clock: for defaults at the edges only)."""
    return datetime.now(zone).date()


def days(n: float) -> timedelta:
    return timedelta(days=n)
