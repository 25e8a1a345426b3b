"""Reasons in a sales rep's words: the account's own number, then how it compares with its peers.

"7 teammates active in the last 7 days (top 5% of free accounts)", "hit the usage limit 3 times in the
last 7 days", "no activity for 12 days". Peers are the accounts on the same plan in the same run.
Phrases are rendered once per distinct (value, plan, comparison) and then shared, so a million
accounts cost a few thousand string formats.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pql.config import Settings
from pql.features.catalog import KeyEventColumns, attribute_columns

# A comparison is only worth saying when the account stands out from its peers.
NOTABLE_SHARE = 0.25
MIN_PEERS = 20

# Key events: (phrase with a count, phrase for none). {n} is a counted noun, {times} "once"/"3 times".
KEY_EVENT_WORDS: dict[str, tuple[str, str]] = {
    "invite_teammate": ("invited {n:teammate}", "invited no teammate"),
    "connect_integration": ("connected {n:integration}", "connected no integration"),
    "hit_usage_limit": ("hit the usage limit {times}", "never hit the usage limit"),
    "view_pricing": ("looked at pricing {times}", "never looked at pricing"),
    "create_project": ("created {n:project}", "created no project"),
    "export_report": ("exported {n:report}", "exported no report"),
}


@dataclass(frozen=True)
class Template:
    """How to say one feature's value, and what to say when it is missing."""

    present: Callable[[object], str]
    missing: str
    comparison: str = "rank"  # "rank": top/bottom N%; "duration": longer than N% (long gaps only); "none"


def _number(value: float) -> str:
    rounded = round(float(value), 1)
    return f"{rounded:,.0f}" if rounded == int(rounded) else f"{rounded:,.1f}"


def _count(value: object, noun: str, plural: str | None = None) -> str:
    n = round(float(value))
    if n == 0:
        return f"no {plural or noun + 's'}"
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def _times(value: object) -> str:
    n = round(float(value))
    return {1: "once", 2: "twice"}.get(n, f"{n:,} times")


def _window(days: int) -> str:
    return "in the last day" if days == 1 else f"in the last {days} days"


def _days(value: object) -> str:
    days = float(value)
    return "less than a day" if days < 1 else _count(days, "day")


def _key_event(key: KeyEventColumns, days: int) -> Template:
    words = None if key.event.where or key.event.label else KEY_EVENT_WORDS.get(key.event.name)
    if words is None:
        label = key.event.display
        return Template(lambda v: f"{label}: {_times(v) if round(float(v)) else 'never'} {_window(days)}", "")
    counted, none = words

    def say(value: object) -> str:
        if round(float(value)) == 0:
            return f"{none} {_window(days)}"
        noun = re.search(r"\{n:(\w+)\}", counted)
        text = counted.replace("{times}", _times(value))
        if noun:
            text = text.replace(noun.group(0), _count(value, noun.group(1)))
        return f"{text} {_window(days)}"

    return Template(say, "")


def _momentum(value: object) -> str:
    change = (float(value) - 1) * 100
    if abs(change) < 5:
        return "steady activity compared with the weeks before"
    return f"activity {'up' if change > 0 else 'down'} {abs(change):,.0f}% compared with the weeks before"


def _fixed(pattern: str, make: Callable[[int], Template]) -> tuple[re.Pattern[str], Callable[..., Template]]:
    return re.compile(pattern), lambda match: make(int(match.group(1)))


_PATTERNS: list[tuple[re.Pattern[str], Callable[..., Template]]] = [
    _fixed(r"count_events_(\d+)d", lambda d: Template(lambda v: f"{_count(v, 'event')} {_window(d)}", "")),
    _fixed(
        r"count_active_days_(\d+)d",
        lambda d: Template(lambda v: f"active on {_number(v)} of the last {d} days", ""),
    ),
    _fixed(
        r"count_active_users_(\d+)d",
        lambda d: Template(lambda v: f"{_count(v, 'teammate')} active {_window(d)}", ""),
    ),
    _fixed(
        r"count_new_users_(\d+)d",
        lambda d: Template(lambda v: f"{_count(v, 'new teammate')} joined {_window(d)}", ""),
    ),
    _fixed(
        r"share_users_active_(\d+)d",
        lambda d: Template(lambda v: f"{float(v) * 100:.0f}% of users active {_window(d)}", "no users yet"),
    ),
    _fixed(
        r"count_distinct_event_types_(\d+)d",
        lambda d: Template(lambda v: f"used {_count(v, 'different feature')} {_window(d)}", ""),
    ),
    _fixed(
        r"ratio_momentum_(\d+)d_vs_prior_\d+d",
        lambda d: Template(_momentum, "no earlier activity to compare with"),
    ),
]

_NAMED: dict[str, Template] = {
    "count_users": Template(lambda v: f"{_count(v, 'user')} on the account", ""),
    "days_since_last_event": Template(
        lambda v: "active in the last day" if float(v) < 1 else f"no activity for {_days(v)}",
        "no activity recorded yet",
        "duration",
    ),
    "days_since_last_key_event": Template(
        lambda v: "a key action in the last day" if float(v) < 1 else f"no key action for {_days(v)}",
        "no key action yet",
        "duration",
    ),
    "days_tenure": Template(lambda v: f"signed up {_days(v)} ago", "", "none"),
    "days_in_trial": Template(lambda v: f"{_days(v)} into the trial", "not in a trial", "none"),
    "days_left_in_trial": Template(lambda v: f"{_days(v)} left in the trial", "not in a trial", "none"),
    "employees": Template(lambda v: f"{_count(v, 'employee')}", "company size unknown"),
    "plan": Template(
        lambda v: {"trial": "on a trial", "free": "on the free plan", "paid": "on a paid plan"}.get(
            str(v), f"on the {v} plan"
        ),
        "plan unknown",
        "none",
    ),
    "industry": Template(lambda v: f"in the {v} industry", "industry unknown", "none"),
    "country": Template(lambda v: f"based in {v}", "country unknown", "none"),
}


def configured_phrases(settings: Settings) -> dict[str, str]:
    """Feature -> phrase with `{value}`: `features.phrases`, and for each declared attribute without one
    its own name ("Lead Source: {value}")."""
    phrases = {
        attribute.feature: f"{attribute.name.replace('_', ' ')}: {{value}}"
        for attribute in attribute_columns(settings)
    }
    return phrases | dict(settings.features.phrases)


def _configured(feature: str, phrase: str) -> Template:
    def say(value: object) -> str:
        shown = value if isinstance(value, str) else _number(value)
        return phrase.replace("{value}", str(shown))

    return Template(say, f"{feature.replace('_', ' ')} unknown")


def template(
    feature: str, key_events: Sequence[KeyEventColumns] = (), phrases: dict[str, str] | None = None
) -> Template:
    """How to phrase `feature`: a configured phrase, a named phrase, a key event (in the product's own
    words for it), a known pattern, else its name and value."""
    if phrases and feature in phrases:
        return _configured(feature, phrases[feature])
    if feature in _NAMED:
        return _NAMED[feature]
    for key in key_events:
        match = re.fullmatch(rf"count_{re.escape(key.slug)}_(\d+)d", feature)
        if match:
            return _key_event(key, int(match.group(1)))
    for pattern, make in _PATTERNS:
        match = pattern.fullmatch(feature)
        if match:
            return make(match)
    label = feature.replace("_", " ")
    return Template(lambda v: f"{label}: {v if isinstance(v, str) else _number(v)}", f"{label} unknown")


def peer_shares(values: np.ndarray, plans: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For `rows`: the share of same-plan accounts with a value >= theirs (top) and <= theirs (bottom).

    Missing values, and plans with fewer than MIN_PEERS known values, get NaN.
    """
    top = np.full(len(rows), np.nan)
    bottom = np.full(len(rows), np.nan)
    known = ~np.isnan(values)
    for plan in pd.unique(plans[rows]):
        peers = np.sort(values[known & (plans == plan)])
        if len(peers) < MIN_PEERS:
            continue
        mine = (plans[rows] == plan) & known[rows]
        own = values[rows[mine]]
        top[mine] = (len(peers) - np.searchsorted(peers, own, side="left")) / len(peers)
        bottom[mine] = np.searchsorted(peers, own, side="right") / len(peers)
    return top, bottom


def _percent(share: float) -> int:
    return max(1, math.ceil(share * 100 - 1e-9))


def comparison(style: str, plan: str, top: float, bottom: float) -> str:
    """' (top 5% of free accounts)' when the value stands out among its peers, else ''."""
    if style == "none" or math.isnan(top):
        return ""
    peers = f"{plan} accounts"
    if top <= NOTABLE_SHARE:
        said = f"longer than {100 - _percent(top)}%" if style == "duration" else f"top {_percent(top)}%"
        return f" ({said} of {peers})"
    if bottom <= NOTABLE_SHARE and style == "rank":
        return f" (bottom {_percent(bottom)}% of {peers})"
    return ""


def _say(rule: Template, value: object) -> str:
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return rule.missing if missing else rule.present(value)


def rendered(
    feature: str,
    values: np.ndarray,
    plans: np.ndarray,
    top: np.ndarray,
    bottom: np.ndarray,
    key_events: Sequence[KeyEventColumns] = (),
    phrases: dict[str, str] | None = None,
) -> tuple[list[str], np.ndarray]:
    """Phrases for `feature`: the distinct phrases, and for each row the index of its phrase.

    Each distinct (value, plan, comparison) is formatted once.
    """
    rule = template(feature, key_events, phrases)
    shown = values.round(1) if values.dtype.kind == "f" else values
    keys = [pd.factorize(shown, use_na_sentinel=False)[0], pd.factorize(plans, use_na_sentinel=False)[0]]
    keys += [np.nan_to_num(np.ceil(share * 100), nan=-1).astype(np.int64) + 1 for share in (top, bottom)]
    combined = np.zeros(len(values), dtype=np.int64)
    for key in keys:
        combined = combined * (int(key.max(initial=0)) + 1) + key
    _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    phrases = [
        _say(rule, shown[i]) + comparison(rule.comparison, str(plans[i]), top[i], bottom[i]) for i in first
    ]
    return phrases, inverse.reshape(-1)
