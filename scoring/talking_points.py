"""Talking points: what a rep can say to a PQL, not only why it is one.

Each reason group has a short talk track ("hit the usage limit {times}: offer the plan that lifts
it, before it stops their work"). `scoring.talking_points` replaces the defaults below group by
group; a user's own key event or attribute, whose group is not known in advance, gets a generic one.
A track quotes the values of the reason it is about:

- `{reason}`: the reason as listed ("hit the usage limit 3 times in the last 7 days");
- `{value}`: the value of the reason's headline feature ("3", "1,250", "software");
- `{times}`: that value as a count ("once", "twice", "3 times");
- `{percentile}`: its standing among the accounts on the same plan, 0-100 ("96");
- `{event}`: the key event's name as the product logs it (its label when it has one);
- `{attribute}`: the attribute's name.

An account's talking point is the track of its first raising reason (the one that raises its score
most) that can be said. A reason is talked about only when its value is known and, for a key event,
when it happened at least once: there is nothing to say about "not in a trial" or "exported a report
0 times". A track naming something its reason does not have (`{event}` outside a key event's group,
`{attribute}` outside an attribute's, `{percentile}` for a category), or an empty track, passes to
the next raising reason; with none left the account has no talking point. Only PQLs get one: only
they reach a rep, and rendering then costs a few thousand small string fills per run rather than one
per account.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pql.config import ConfigError, Settings
from pql.features.catalog import attribute_columns, feature_specs, key_event_columns
from pql.scoring.phrases import _number, _times

# The built-in reason groups' talk tracks: what a rep would say first, in plain words.
DEFAULT_TALKING_POINTS: dict[str, str] = {
    "team_invites": "invited teammates {times}: the team is growing, so offer the Team plan and help bring "
    "the rest in",
    "integrations": "connected an integration {times}: ask which workflow they are automating and offer "
    "help setting it up",
    "usage_limits": "hit the usage limit {times}: offer the plan that lifts it, before it stops their work",
    "pricing_interest": "looked at pricing {times}: they are weighing it up, so offer to walk them through "
    "the plans",
    "projects": "created a project {times}: ask what they are building and who else will work on it",
    "exports": "exported a report {times}: ask who reads their results and offer to bring those people in",
    "engagement": "they use it a lot: ask what they rely on it for and what would make it indispensable",
    "team_activity": "the team is in it together: ask who decides on tools for the team and offer a Team "
    "plan roll-out",
    "breadth": "they use many features: ask which matter most and show what the paid plan adds to them",
    "recency": "{reason}: reach out today, while it is fresh",
    "momentum": "{reason}: ask what they are working on now and offer help with it",
    "tenure": "{reason}: ask how it is going and what they want to get done next",
    "plan": "{reason}: ask what they would need to see to move to a paid plan",
    "trial": "{reason}: help them get a result before the trial ends, and offer more time if they need it",
    "company_size": "{value} employees, the size of company that buys: ask who owns the budget for tools "
    "like this",
    "industry": "in {value}, like many accounts that buy: share how other {value} teams use it",
    "country": "based in {value}, where accounts like this buy: offer a call at a time that suits them",
}
# A key event of the user's own, an attribute, and any other group (a column the catalog does not know).
KEY_EVENT_TALKING_POINT = "they use {event} a lot: ask what they are building with it"
ATTRIBUTE_TALKING_POINT = (
    "{attribute} is {value}, like many accounts that buy: ask what they want to get done first"
)
OTHER_TALKING_POINT = "{reason}: ask what they are trying to get done"


@dataclass(frozen=True)
class TalkTrack:
    """One reason group's track, and the names it can quote for that group."""

    template: str
    event: str | None = None
    attribute: str | None = None


def talk_tracks(settings: Settings) -> dict[str, TalkTrack]:
    """Reason group -> its talk track for these settings: `scoring.talking_points`, else the built-in
    default, else the generic one for a key event or an attribute.

    A configured group that is neither built in nor one of the configured key events' or attributes'
    groups is a ConfigError naming it (a typo would otherwise be silently ignored)."""
    events = {key.group: key.event.display for key in key_event_columns(settings)}
    attributes = {item.feature: item.name.replace("_", " ") for item in attribute_columns(settings)}
    groups = {spec.group for spec in feature_specs(settings)} | set(DEFAULT_TALKING_POINTS)
    configured = settings.scoring.talking_points
    unknown = sorted(set(configured) - groups)
    if unknown:
        raise ConfigError(
            f"scoring.talking_points: {', '.join(repr(group) for group in unknown)} is no reason group of "
            f"these settings. The groups are: {', '.join(sorted(groups))}."
        )
    tracks = {}
    for group in sorted(groups):
        default = DEFAULT_TALKING_POINTS.get(group)
        if default is None:
            default = KEY_EVENT_TALKING_POINT if group in events else ATTRIBUTE_TALKING_POINT
        tracks[group] = TalkTrack(configured.get(group, default), events.get(group), attributes.get(group))
    return tracks


def _known(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _sayable(value: object, track: TalkTrack) -> bool:
    """Whether a reason has something to talk about: a known value, and a key event that happened."""
    if not _known(value):
        return False
    if track.event is None:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and round(float(value)) >= 1


def _quotes(reason: Mapping[str, object], phrase: str, track: TalkTrack) -> dict[str, str]:
    """What a track can quote from one reason (`reasons_json` entry and its line of `reasons_text`)."""
    value, percentile = reason.get("value"), reason.get("percentile")
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    quotes = {"reason": phrase, "value": _number(value) if numeric else str(value)}
    if numeric:
        quotes["times"] = _times(value)
    if _known(percentile):
        quotes["percentile"] = f"{float(percentile):.0f}"
    if track.event is not None:
        quotes["event"] = track.event
    if track.attribute is not None:
        quotes["attribute"] = track.attribute
    return quotes


def render(template: str, quotes: Mapping[str, str]) -> str | None:
    """`template` with its placeholders filled from `quotes`; None when one of them is not there.

    Only named fields are read (the settings reject anything else), and filling is plain
    concatenation: nothing in a template or a value is ever evaluated."""
    parts = []
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        if field is not None:
            if field not in quotes:
                return None
            parts.append(quotes[field])
    return "".join(parts)


def talking_point(
    reasons_json: str | None, reasons_text: str | None, tracks: Mapping[str, TalkTrack]
) -> str | None:
    """The talking point of one account: the track of its first raising reason that can be said."""
    entries = json.loads(reasons_json) if reasons_json else []
    lines = (reasons_text or "").splitlines()
    for reason, line in zip(entries, lines, strict=False):
        if reason.get("direction") != "up":
            continue
        track = tracks.get(str(reason.get("group")), TalkTrack(OTHER_TALKING_POINT))
        if not _sayable(reason.get("value"), track):
            continue
        said = render(track.template, _quotes(reason, line[2:] if line[:2] == "+ " else line, track))
        if said:
            return said
    return None


def pql_talking_points(rows: pd.DataFrame, settings: Settings) -> np.ndarray:
    """Per row of a run (`scoring.rows.pql_rows`), its talking point when it is a PQL, else None."""
    tracks = talk_tracks(settings)
    said = np.full(len(rows), None, dtype=object)
    pqls = np.flatnonzero(rows["is_pql"].to_numpy(dtype=bool))
    reasons = zip(rows["reasons_json"].to_numpy()[pqls], rows["reasons_text"].to_numpy()[pqls], strict=True)
    # PQLs with the same reasons (a common pattern in a big list) are rendered once.
    cache: dict[tuple[object, object], str | None] = {}
    for row, key in zip(pqls, reasons, strict=True):
        if key not in cache:
            cache[key] = talking_point(*(value if isinstance(value, str) else None for value in key), tracks)
        said[row] = cache[key]
    return said
