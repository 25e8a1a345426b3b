"""The follow-up SLA's hand-built world: six treated PQLs and a control one, with known answers.

SLA 24 h, judged at NOW. Routed to ana, playbook `freemium_upgrade`:
  a1  touched 2 h after entering, and again 3 days later (`last_touch_at` holds the later one)  -> met
  a2  touched the day before entering, then 30 h after                                           -> late
  a3  touched only exactly at NOW (not known yet)                                                -> overdue
Routed to bo:
  b1  `trial_to_paid`, touched 5 h after entering, by cy                                         -> met
  b2  `trial_to_paid`, entered 2 h before NOW, not touched                                       -> pending
  b3  `freemium_upgrade`, touched 48 h after entering                                            -> late
  k1  a control PQL, touched at once: never part of the SLA
Without the activities, `last_touch_at` makes a1 late.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .conftest import MONDAY, World, history_row

HOUR = timedelta(hours=1)
ENTERED = MONDAY + 9 * HOUR
NOW = MONDAY + timedelta(days=10)
LATE_ENTRY = NOW - 2 * HOUR


def _pql(account_id: str, owner: str, playbook: str, entered: datetime = ENTERED) -> dict[str, object]:
    return history_row(
        account_id,
        entered,
        is_pql=True,
        first_pql_at=entered,
        routed_to=owner,
        playbook=playbook,
        tier="high",
        run_id=f"run-{entered:%Y%m%d%H}",
    )


def build_sla_world(world: World, *, with_activities: bool) -> None:
    """The history, CRM rows and (optionally) activities above; a3 and b2 are still PQLs now."""
    world.history(
        [
            _pql("a1", "ana", "freemium_upgrade"),
            _pql("a2", "ana", "freemium_upgrade"),
            _pql("a3", "ana", "freemium_upgrade"),
            _pql("b1", "bo", "trial_to_paid"),
            _pql("b2", "bo", "trial_to_paid", LATE_ENTRY),
            _pql("b3", "bo", "freemium_upgrade"),
            history_row("k1", ENTERED, is_control=True, first_pql_at=ENTERED, playbook="freemium_upgrade"),
        ]
    )
    world.scores(
        [
            {**_pql("a3", "ana", "freemium_upgrade", NOW - HOUR), "first_pql_at": ENTERED, "score": 71.0},
            {**_pql("b2", "bo", "trial_to_paid", NOW - HOUR), "first_pql_at": LATE_ENTRY, "score": 64.0},
        ]
    )
    world.crm(
        [
            {"account_id": "a1", "owner": "ana", "last_touch_at": ENTERED + timedelta(days=3)},
            {"account_id": "a2", "owner": "ana", "last_touch_at": ENTERED + 30 * HOUR},
            {"account_id": "a3", "owner": "ana", "last_touch_at": None},
            {"account_id": "b1", "owner": "bo", "last_touch_at": ENTERED + 5 * HOUR},
            {"account_id": "b2", "owner": "bo", "last_touch_at": None},
            {"account_id": "b3", "owner": "bo", "last_touch_at": ENTERED + 48 * HOUR},
            {"account_id": "k1", "owner": "cy", "last_touch_at": ENTERED + HOUR},
        ]
    )
    if with_activities:
        world.activities(
            [
                {"account_id": "a1", "owner": "ana", "occurred_at": ENTERED + 2 * HOUR},
                {"account_id": "a1", "owner": "ana", "occurred_at": ENTERED + timedelta(days=3)},
                {"account_id": "a2", "owner": "ana", "occurred_at": ENTERED - timedelta(days=1)},
                {"account_id": "a2", "owner": "ana", "occurred_at": ENTERED + 30 * HOUR},
                {"account_id": "a3", "owner": "ana", "occurred_at": NOW, "activity_type": "call"},
                {
                    "account_id": "b1",
                    "owner": "cy",
                    "occurred_at": ENTERED + 5 * HOUR,
                    "activity_type": "call",
                },
                {"account_id": "b3", "owner": "bo", "occurred_at": ENTERED + 48 * HOUR},
                {"account_id": "k1", "owner": "cy", "occurred_at": ENTERED + HOUR},
            ]
        )
