"""The demo world, simulated one day at a time with vectorised numpy over the accounts alive that day.

Each day, in order: plan changes are decided from the state left by the days before (conversion,
trial expiry, trial start), teammates join, then the day's events are drawn and folded into the
state. The conversion hazard therefore depends only on behaviour before the day it acts on, which is
what makes point-in-time features predictive:

    logit = base + fit + lasting intent
          + team growth over 28 days, more so for larger companies
          + usage limits hit, mainly with several active users
          + integrations, and pricing views after an integration
          + momentum (last week against last month) - days idle
          + on a trial, more so in its last days
          + daily noise

None of these terms is written out; a model has to recover them from events, users and plan changes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from pql.demo.accounts import Accounts
from pql.demo.catalog import (
    CATALOGUE,
    COMMENT,
    CONNECT_INTEGRATION,
    CREATE_PROJECT,
    CREATE_REPORT,
    EXPORT_REPORT,
    HIT_USAGE_LIMIT,
    ID_PREFIX,
    INVITE_TEAMMATE,
    JOINER_ROLES,
    LOGIN,
    SHARE_LINK,
    UPDATE_SETTINGS,
    UPLOAD_FILE,
    USE_API,
    VIEW_DASHBOARD,
    VIEW_PRICING,
    EventKind,
    shares,
)
from pql.demo.clock import DAY_US, Calendar, times_of_day
from pql.progress import Progress, report

FREE, TRIAL, PAID = 0, 1, 2
TRIAL_DAYS = 14
GROWTH_WINDOW_DAYS = 28
CONVERSION_BASE_LOGIT = -7.95
DECAY_7, DECAY_14, DECAY_28 = np.exp(-1 / 7), np.exp(-1 / 14), np.exp(-1 / 28)

# Relative weight of each catalogued kind in an ordinary account's day, before account-specific terms.
BASE_WEIGHTS = {
    LOGIN: 1.0,
    VIEW_DASHBOARD: 1.4,
    CREATE_REPORT: 0.45,
    UPLOAD_FILE: 0.35,
    UPDATE_SETTINGS: 0.06,
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def conversion_steps(
    plan: np.ndarray, trial_end_us: np.ndarray, at_us: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For accounts converting at `at_us`: which trials lapse first, the plan converted from, and when.

    A trial that has ended by the conversion instant lapses to free at its end, and the conversion
    (from free) follows strictly after it, so an account's plan changes never share an instant.
    """
    lapsed = (plan == TRIAL) & (trial_end_us <= at_us)
    from_plan = np.where(lapsed, FREE, plan)
    at_us = np.where(lapsed, np.maximum(at_us, trial_end_us + 1), at_us)
    return lapsed, from_plan, at_us


class Simulation:
    """The world's evolving state; `event_chunks()` runs it, then the other frames can be read."""

    def __init__(self, accounts: Accounts, cal: Calendar, kinds: tuple[EventKind, ...], seed: int) -> None:
        self.rng = np.random.default_rng([seed, 1])
        self.accounts = accounts
        self.cal = cal
        self.kinds = kinds
        self.kind_index = {kind.name: i for i, kind in enumerate(kinds)}
        n = len(accounts)
        self.plan = np.full(n, FREE, dtype=np.int8)
        self.trial_end_us = np.zeros(n, dtype=np.int64)
        self.had_trial = np.zeros(n, dtype=bool)
        self.n_users = np.ones(n, dtype=np.int64)
        self.users_back = np.ones((GROWTH_WINDOW_DAYS, n), dtype=np.int64)  # ring: users at day start
        self.engagement = np.zeros(n)
        self.moment = np.zeros(n)
        self.burst_days = np.zeros(n, dtype=np.int64)
        self.burst_gain = np.ones(n)
        self.dormant = np.zeros(n, dtype=bool)
        self.integrated = np.zeros(n, dtype=bool)
        self.last_active_day = accounts.created_day.astype(np.int64).copy()
        self.events_7 = np.zeros(n)
        self.events_28 = np.zeros(n)
        self.limits_14 = np.zeros(n)
        self.pricing_14 = np.zeros(n)
        self.pricing_integrated_14 = np.zeros(n)
        self.active_users_7 = np.zeros(n)
        # User slots are reserved per account up to its team cap, so an account's users are contiguous.
        self.slot_start = np.concatenate([[0], np.cumsum(accounts.team_cap)[:-1]]).astype(np.int64)
        slots = int(accounts.team_cap.sum())
        self.slot_account = np.repeat(np.arange(n), accounts.team_cap)
        self.user_created_us = np.full(slots, np.iinfo(np.int64).max, dtype=np.int64)
        self.user_created_us[self.slot_start] = accounts.created_us
        self.user_number = np.full(slots, -1, dtype=np.int64)
        self.user_role = np.full(slots, -1, dtype=np.int8)  # 0 owner, then 1 + index into JOINER_ROLES
        self.user_ids = np.full(slots, None, dtype=object)
        self.users_created = 0
        self.events_written = 0
        self.plan_log: list[tuple[np.ndarray, ...]] = []
        variants = [None] + [p for kind in kinds for p in kind.properties]
        self.property_values = np.array(variants, dtype=object)
        offsets = np.cumsum([0] + [len(kind.properties) for kind in kinds])
        self.property_offset = offsets[:-1] + 1
        self.event_names = np.array([kind.name for kind in kinds], dtype=object)

    # ----------------------------------------------------------------------------------------- running

    def event_chunks(
        self, chunk_rows: int = 500_000, progress: Progress | None = None
    ) -> Iterator[pd.DataFrame]:
        """Simulate every day; yield the events in time order, about `chunk_rows` rows at a time.

        `progress` is told the days simulated so far, of all the world's days."""
        pending: list[tuple[np.ndarray, ...]] = []
        pending_rows = 0
        for day in range(self.cal.days):
            day_events = self._simulate_day(day)
            report(progress, day + 1, self.cal.days)
            pending.append(day_events)
            pending_rows += len(day_events[0])
            if pending_rows >= chunk_rows:
                yield self._events_frame(pending)
                pending, pending_rows = [], 0
        if pending_rows:
            yield self._events_frame(pending)

    def _simulate_day(self, day: int) -> tuple[np.ndarray, ...]:
        alive = int(np.searchsorted(self.accounts.created_day, day, side="right"))
        day_start = self.cal.day_start_us(day)
        is_new = self.accounts.created_day[:alive] == day
        self._open_accounts(np.flatnonzero(is_new))
        n_users = self.n_users[:alive].copy()  # today's active users: those who joined before today
        team_growth = n_users - self.users_back[day % GROWTH_WINDOW_DAYS, :alive]
        self.users_back[day % GROWTH_WINDOW_DAYS, :alive] = n_users
        self._change_plans(alive, day, day_start, is_new, team_growth)
        joins = self._join_teammates(alive, day_start, is_new)
        counts = self._draw_counts(alive, day, day_start, is_new, n_users)
        events = self._place_events(counts, joins, day_start, n_users)
        self._fold_in(alive, day, counts, joins, events[2])
        self._evolve(alive)
        return events

    # ----------------------------------------------------------------------------- accounts and plans

    def _open_accounts(self, new: np.ndarray) -> None:
        if not len(new):
            return
        acc = self.accounts
        self._number_users(self.slot_start[new], role=0)
        self.engagement[new] = self.rng.normal(0.4, 0.3, len(new))  # onboarding enthusiasm, fading
        trial = acc.starts_on_trial[new]
        self.plan[new] = np.where(trial, TRIAL, FREE)
        self.had_trial[new] = trial
        self.trial_end_us[new] = np.where(trial, acc.created_us[new] + TRIAL_DAYS * DAY_US, 0)
        self._log_plan(
            new, acc.created_us[new], -1, self.plan[new], np.where(trial, self.trial_end_us[new], -1)
        )

    def _log_plan(
        self,
        accounts: np.ndarray,
        at_us: np.ndarray,
        from_plan: int | np.ndarray,
        to_plan: int | np.ndarray,
        trial_end_us: int | np.ndarray = -1,
        mrr: float | np.ndarray = np.nan,
    ) -> None:
        n = len(accounts)
        if n:
            columns = (accounts, at_us, from_plan, to_plan, trial_end_us, mrr)
            self.plan_log.append(tuple(np.broadcast_to(np.asarray(c), (n,)).copy() for c in columns))

    def _conversion_logit(self, alive: int, day: int, day_start: int, team_growth: np.ndarray) -> np.ndarray:
        acc = self.accounts
        window = slice(0, alive)
        limits = np.log1p(self.limits_14[window])
        several_active = self.active_users_7[window] >= 1.8
        short_rate = self.events_7[window] * (1 - DECAY_7)
        long_rate = self.events_28[window] * (1 - DECAY_28)
        momentum = np.clip(np.log((short_rate + 0.3) / (long_rate + 0.3)), -2, 2)
        idle_days = day - self.last_active_day[window]
        on_trial = self.plan[window] == TRIAL
        trial_ending = on_trial & (self.trial_end_us[window] - day_start < 4 * DAY_US)
        return (
            CONVERSION_BASE_LOGIT
            + 0.9 * acc.fit[window]
            + 0.55 * acc.intent[window]
            + 1.4 * np.log1p(np.maximum(team_growth, 0)) * (0.2 + acc.is_large[window])
            + 1.2 * limits * several_active
            + 0.15 * limits
            + 0.45 * self.integrated[window]
            + 1.3 * np.log1p(self.pricing_integrated_14[window])
            + 0.15 * np.log1p(self.pricing_14[window])
            + 0.6 * momentum
            - 0.55 * np.log1p(idle_days)
            + 1.4 * on_trial
            + 1.2 * trial_ending
            + self.rng.normal(0.0, 0.5, alive)
        )

    def _change_plans(
        self, alive: int, day: int, day_start: int, is_new: np.ndarray, team_growth: np.ndarray
    ) -> None:
        """The day's conversions, then trial expiries, then trial starts (at most one trial per account)."""
        rng, acc = self.rng, self.accounts
        plan = self.plan[:alive].copy()  # the plans at the start of the day
        logit = self._conversion_logit(alive, day, day_start, team_growth)
        converting = ~is_new & (plan != PAID) & (rng.random(alive) < _sigmoid(logit))
        converts = np.flatnonzero(converting)
        at = day_start + np.maximum(times_of_day(rng, len(converts)), 1)
        lapsed, from_plan, at = conversion_steps(plan[converts], self.trial_end_us[converts], at)
        self._log_plan(converts[lapsed], self.trial_end_us[converts[lapsed]], TRIAL, FREE)
        price = 9.0 + 16.0 * acc.is_large[converts] + rng.gamma(4.0, 1.0, len(converts))
        mrr = np.round(np.maximum(29.0, self.n_users[converts] * price), 2)
        self._log_plan(converts, at, from_plan, PAID, -1, mrr)
        self.plan[converts] = PAID

        ends_today = self.trial_end_us[:alive] < day_start + DAY_US
        expiring = np.flatnonzero((plan == TRIAL) & ends_today & ~converting)
        self._log_plan(expiring, self.trial_end_us[expiring], TRIAL, FREE)
        self.plan[expiring] = FREE

        trial_logit = (
            -6.3
            + 0.6 * acc.intent[:alive]
            + 0.6 * self.moment[:alive]
            + 0.8 * np.log1p(self.pricing_14[:alive])
            + 0.5 * np.log1p(self.limits_14[:alive])
        )
        # Lapsed trials have had theirs: one trial per account.
        can_trial = ~is_new & ~converting & (plan == FREE) & ~self.had_trial[:alive]
        starts = np.flatnonzero(can_trial & (rng.random(alive) < _sigmoid(trial_logit)))
        at = day_start + times_of_day(rng, len(starts))
        self.trial_end_us[starts] = at + TRIAL_DAYS * DAY_US
        self._log_plan(starts, at, FREE, TRIAL, self.trial_end_us[starts])
        self.plan[starts] = TRIAL
        self.had_trial[starts] = True

    # ------------------------------------------------------------------------------------------ users

    def _number_users(self, slots: np.ndarray, role: int | np.ndarray) -> None:
        numbers = self.users_created + np.arange(len(slots))
        self.users_created += len(slots)
        self.user_number[slots] = numbers
        self.user_role[slots] = role
        self.user_ids[slots] = [f"{ID_PREFIX}u{i:08d}" for i in numbers]

    def _join_teammates(self, alive: int, day_start: int, is_new: np.ndarray) -> tuple[np.ndarray, ...]:
        """Teammates joining today (each invited earlier the same day by an existing user)."""
        rng, acc = self.rng, self.accounts
        n_users = self.n_users[:alive]
        room = 1.0 - n_users / acc.team_cap[:alive]
        chance = acc.growth[:alive] * room * np.exp(self.engagement[:alive] + 0.5 * self.moment[:alive])
        chance = np.where(self.dormant[:alive], 0.1 * chance, chance)
        joining = np.flatnonzero(~is_new & (room > 0) & (rng.random(alive) < np.minimum(chance, 0.5)))
        slots = self.slot_start[joining] + n_users[joining]
        joined_at = day_start + np.maximum(times_of_day(rng, len(joining)), 1)
        inviters = self.slot_start[joining] + (n_users[joining] * rng.random(len(joining)) ** 2).astype(
            np.int64
        )
        invited_at = day_start + (rng.random(len(joining)) * (joined_at - day_start)).astype(np.int64)
        self.user_created_us[slots] = joined_at
        roles = rng.choice(len(JOINER_ROLES), size=len(joining), p=shares(JOINER_ROLES)) + 1
        self._number_users(slots, roles)
        self.n_users[joining] += 1
        return joining, inviters, invited_at

    def users_frame(self) -> pd.DataFrame:
        """Every user who joined, in joining order (contract column keys)."""
        slots = np.flatnonzero(self.user_number >= 0)
        slots = slots[np.argsort(self.user_number[slots])]
        roles = np.array(["owner"] + [role for role, _ in JOINER_ROLES], dtype=object)
        return pd.DataFrame(
            {
                "user_id": pd.Series(self.user_ids[slots], dtype=object),
                "account_id": pd.Series(self.accounts.ids[self.slot_account[slots]], dtype=object),
                "created_at": self.user_created_us[slots].astype("datetime64[us]"),
                "role": pd.Series(roles[self.user_role[slots]], dtype=object),
            }
        )

    # ----------------------------------------------------------------------------------------- events

    def _kind_weights(self, alive: int, day_start: int, n_users: np.ndarray, rates: np.ndarray) -> np.ndarray:
        """Per account (rows) and event kind (columns): the share of today's events of that kind."""
        acc, k = self.accounts, self.kind_index
        window = slice(0, alive)
        intent_now = acc.intent[window] + self.moment[window]
        plan = self.plan[window]
        teamwork = np.minimum(n_users - 1, 6) / 6
        weights = np.zeros((alive, len(self.kinds)))
        for name, weight in BASE_WEIGHTS.items():
            weights[:, k[name]] = weight
        weights[:, k[COMMENT]] = 0.12 + 0.7 * teamwork
        weights[:, k[SHARE_LINK]] = 0.08 + 0.35 * teamwork
        weights[:, k[USE_API]] = np.where(self.integrated[window], 0.4 * acc.integration[window], 0.004)
        weights[:, k[CREATE_PROJECT]] = 0.16 * np.exp(0.3 * intent_now)
        weights[:, k[EXPORT_REPORT]] = 0.07 * np.exp(0.35 * intent_now) * (0.5 + acc.is_large[window])
        trial_ending = (plan == TRIAL) & (self.trial_end_us[window] - day_start < 4 * DAY_US)
        weights[:, k[VIEW_PRICING]] = (
            0.02
            * np.exp(0.7 * intent_now)
            * (1 + 0.8 * trial_ending)
            * (1 + np.log1p(self.limits_14[window]))
            * np.where(plan == PAID, 0.15, 1.0)
        )
        heavy_use = (rates / np.maximum(n_users, 1) / 2.0) ** 0.4
        weights[:, k[HIT_USAGE_LIMIT]] = np.where(plan == PAID, 0.0, 0.012 * n_users**0.8 * heavy_use)
        weights[:, k[CONNECT_INTEGRATION]] = (
            0.006 * acc.integration[window] * np.where(self.integrated[window], 0.3, 1)
        )
        has_room = n_users < acc.team_cap[window]
        weights[:, k[INVITE_TEAMMATE]] = 0.012 * acc.growth[window] / 0.04 * has_room + 0.002
        for index in range(len(CATALOGUE), len(self.kinds)):  # configured key events beyond the catalogue
            weights[:, index] = 0.02 * np.exp(0.7 * intent_now)
        return weights / weights.sum(axis=1, keepdims=True)

    def _draw_counts(
        self, alive: int, day: int, day_start: int, is_new: np.ndarray, n_users: np.ndarray
    ) -> np.ndarray:
        """Events per (account, kind) today: heavy-tailed base rates, bursts, weekday, daily shocks."""
        rng, acc = self.rng, self.accounts
        window = slice(0, alive)
        plan_gain = np.select([self.plan[window] == TRIAL, self.plan[window] == PAID], [1.3, 1.2], 1.0)
        rates = (
            acc.base_rate[window]
            * n_users**0.75
            * np.exp(self.engagement[window] + 0.3 * self.moment[window])
            * np.where(self.burst_days[window] > 0, self.burst_gain[window], 1.0)
            * np.where(self.dormant[window], 0.03, 1.0)
            * plan_gain
            * self.cal.activity[day]
        )
        # A new account is active only after it was created, and busier than usual while onboarding.
        left_of_day = (day_start + DAY_US - acc.created_us[window]) / DAY_US
        rates = np.where(is_new, rates * 2.5 * left_of_day, rates)
        shocked = rates * rng.gamma(2.0, 0.5, alive)
        counts = rng.poisson(shocked[:, None] * self._kind_weights(alive, day_start, n_users, rates))
        return counts

    def _place_events(
        self, counts: np.ndarray, joins: tuple[np.ndarray, ...], day_start: int, n_users: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """Each event's account, user, kind, instant and properties, sorted by instant."""
        rng = self.rng
        rows, kinds = np.nonzero(counts)
        repeats = counts[rows, kinds]
        account = np.repeat(rows, repeats)
        kind = np.repeat(kinds, repeats)
        # A few power users do most of an account's work.
        slot = self.slot_start[account] + (n_users[account] * rng.random(len(account)) ** 2).astype(np.int64)
        at = day_start + times_of_day(rng, len(account))
        user_since = self.user_created_us[slot]
        fresh = np.flatnonzero(user_since > day_start)  # creators of accounts opened today
        at[fresh] = user_since[fresh] + (
            rng.random(len(fresh)) * (day_start + DAY_US - user_since[fresh])
        ).astype(np.int64)
        joining, inviters, invited_at = joins
        account = np.concatenate([account, joining])
        kind = np.concatenate([kind, np.full(len(joining), self.kind_index[INVITE_TEAMMATE])])
        slot = np.concatenate([slot, inviters])
        at = np.concatenate([at, invited_at])
        prop = np.zeros(len(kind), dtype=np.int64)
        for index, event_kind in enumerate(self.kinds):
            if event_kind.properties:
                chosen = np.flatnonzero(kind == index)
                variant = rng.integers(0, len(event_kind.properties), len(chosen))
                prop[chosen] = self.property_offset[index] + variant
        order = np.argsort(at, kind="stable")
        return at[order], account[order], slot[order], kind[order], prop[order]

    def _events_frame(self, days: list[tuple[np.ndarray, ...]]) -> pd.DataFrame:
        at, account, slot, kind, prop = (np.concatenate(column) for column in zip(*days, strict=True))
        first = self.events_written
        self.events_written += len(at)
        return pd.DataFrame(
            {
                "event_id": pd.Series(
                    [f"{ID_PREFIX}e{i:010d}" for i in range(first, self.events_written)], dtype=object
                ),
                "user_id": pd.Series(self.user_ids[slot], dtype=object),
                "account_id": pd.Series(self.accounts.ids[account], dtype=object),
                "event_name": pd.Series(self.event_names[kind], dtype=object),
                "occurred_at": at.astype("datetime64[us]"),
                "properties": pd.Series(self.property_values[prop], dtype=object),
            }
        )

    # ------------------------------------------------------------------------------------------ state

    def _fold_in(
        self,
        alive: int,
        day: int,
        counts: np.ndarray,
        joins: tuple[np.ndarray, ...],
        user_slots: np.ndarray,
    ) -> None:
        """Fold today's events into the decayed behaviour the next days' hazards read."""
        k = self.kind_index
        window = slice(0, alive)
        total = counts.sum(axis=1)
        np.add.at(total, joins[0], 1)
        pricing = counts[:, k[VIEW_PRICING]]
        self.events_7[window] = DECAY_7 * self.events_7[window] + total
        self.events_28[window] = DECAY_28 * self.events_28[window] + total
        self.limits_14[window] = DECAY_14 * self.limits_14[window] + counts[:, k[HIT_USAGE_LIMIT]]
        self.pricing_14[window] = DECAY_14 * self.pricing_14[window] + pricing
        self.pricing_integrated_14[window] = (
            DECAY_14 * self.pricing_integrated_14[window] + pricing * (self.integrated[window])
        )
        self.integrated[window] |= counts[:, k[CONNECT_INTEGRATION]] > 0
        active_users = np.bincount(self.slot_account[np.unique(user_slots)], minlength=alive)
        self.active_users_7[window] = DECAY_7 * self.active_users_7[window] + (1 - DECAY_7) * active_users
        self.last_active_day[window] = np.where(total > 0, day, self.last_active_day[window])

    def _evolve(self, alive: int) -> None:
        """Tomorrow's engagement, buying moment, bursts and dormancy (hidden random walks)."""
        rng, acc = self.rng, self.accounts
        window = slice(0, alive)
        self.engagement[window] = 0.96 * self.engagement[window] + rng.normal(0.0, 0.15, alive)
        self.moment[window] = 0.9 * self.moment[window] + rng.normal(0.0, 0.3, alive)
        bursting = self.burst_days[window] > 0
        self.burst_days[window] -= bursting
        starts = ~bursting & (rng.random(alive) < 0.025 * np.exp(0.3 * self.moment[window]))
        self.burst_days[window] = np.where(starts, rng.geometric(0.4, alive), self.burst_days[window])
        self.burst_gain[window] = np.where(
            starts, np.exp(rng.normal(1.0, 0.35, alive)), self.burst_gain[window]
        )
        sleep_logit = -5.3 - 0.6 * acc.intent[window] - 0.25 * (self.n_users[window] - 1)
        sleep_logit = sleep_logit - 1.2 * (self.plan[window] == PAID)
        falls_asleep = ~self.dormant[window] & (rng.random(alive) < _sigmoid(sleep_logit))
        wakes = self.dormant[window] & (rng.random(alive) < 0.02 * np.exp(0.5 * self.moment[window]))
        self.dormant[window] = (self.dormant[window] | falls_asleep) & ~wakes

    # ------------------------------------------------------------------------------------ plan frames

    def plan_changes_frame(self, free: str, trial: str, paid: str) -> pd.DataFrame:
        """Every plan change, per account in time order (contract column keys)."""
        accounts, at, from_plan, to_plan, trial_end, mrr = (
            np.concatenate(column) for column in zip(*self.plan_log, strict=True)
        )
        order = np.lexsort((at, accounts))
        names = np.array([free, trial, paid, None], dtype=object)  # index -1 is "no plan yet"
        trial_ends = pd.Series(trial_end[order].astype("datetime64[us]")).where(trial_end[order] >= 0)
        return pd.DataFrame(
            {
                "account_id": pd.Series(self.accounts.ids[accounts[order]], dtype=object),
                "changed_at": at[order].astype("datetime64[us]"),
                "from_plan": pd.Series(names[from_plan[order]], dtype=object),
                "to_plan": pd.Series(names[to_plan[order]], dtype=object),
                "trial_ends_at": trial_ends,
                "mrr": pd.Series(mrr[order], dtype=float),
            }
        )
