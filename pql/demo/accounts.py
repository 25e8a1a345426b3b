"""Demo accounts: firmographics, the hidden traits that drive their behaviour, and their CRM records."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pql.demo.catalog import (
    COUNTRIES,
    COUNTRY_MISSING_SHARE,
    DO_NOT_CONTACT_SHARE,
    EMPLOYEES_MISSING_SHARE,
    ID_PREFIX,
    INDUSTRIES,
    INDUSTRY_MISSING_SHARE,
    NAME_WORDS,
    SALES_REPS,
    UNOWNED_SHARE,
    shares,
)
from pql.demo.clock import DAY_US, Calendar, times_of_day

BACKLOG_SHARE = 0.2  # accounts signed up in the first week (the world does not start empty)
BACKLOG_DAYS = 7
STARTS_ON_TRIAL_SHARE = 0.35


@dataclass(frozen=True)
class Accounts:
    """One entry per account, arrays in account order. Hidden traits are never written out."""

    ids: np.ndarray  # object: account_id strings
    created_day: np.ndarray  # int: day index of creation
    created_us: np.ndarray  # int64 instant of creation
    employees: np.ndarray  # int: true head count (the written value may be missing)
    employees_known: np.ndarray  # bool
    industry: np.ndarray  # int index into INDUSTRIES, -1 missing
    country: np.ndarray  # int index into COUNTRIES, -1 missing
    size: np.ndarray  # standardised log head count
    is_large: np.ndarray  # float in (0, 1): how much the account behaves like a larger company
    fit: np.ndarray  # hidden firmographic fit
    intent: np.ndarray  # hidden, lasting buying intent
    base_rate: np.ndarray  # expected events per active user-day before modifiers (heavy tailed)
    growth: np.ndarray  # daily chance scale of a teammate joining
    integration: np.ndarray  # propensity to connect integrations
    team_cap: np.ndarray  # most users the account will ever have
    starts_on_trial: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.ids)


def _codes(rng: np.random.Generator, n: int, table: tuple, missing_share: float) -> np.ndarray:
    codes = rng.choice(len(table), size=n, p=shares(table))
    return np.where(rng.random(n) < missing_share, -1, codes)


def _effects(codes: np.ndarray, table: tuple) -> np.ndarray:
    effects = np.array([row[2] for row in table])
    return np.where(codes >= 0, effects[np.maximum(codes, 0)], 0.0)


def _created_days(rng: np.random.Generator, n: int, cal: Calendar) -> np.ndarray:
    """A backlog in the first week, then sign-ups throughout, growing, fewer at weekends."""
    weights = cal.activity * (1.0 + 0.6 * np.arange(cal.days) / cal.days)
    later = rng.choice(cal.days, size=n, p=weights / weights.sum())
    backlog = rng.integers(0, min(BACKLOG_DAYS, cal.days), size=n)
    return np.where(rng.random(n) < BACKLOG_SHARE, backlog, later)


def sample_accounts(rng: np.random.Generator, n: int, cal: Calendar) -> Accounts:
    """`n` accounts created over the calendar, with firmographics and hidden behavioural traits."""
    width = max(6, len(str(n)))
    ids = np.array([f"{ID_PREFIX}a{i:0{width}d}" for i in range(n)], dtype=object)
    created_day = np.sort(_created_days(rng, n, cal))
    created_us = cal.start_us + created_day.astype(np.int64) * DAY_US + times_of_day(rng, n)

    # Company size is heavy tailed: most accounts are small teams, a few are large enterprises.
    employees = np.clip(np.round(np.exp(rng.normal(3.0, 1.6, n))), 1, 200_000).astype(np.int64)
    log_size = np.log10(employees)
    size = (log_size - 1.3) / 0.7
    is_large = 1.0 / (1.0 + np.exp(-2.5 * (log_size - 1.8)))
    industry = _codes(rng, n, INDUSTRIES, INDUSTRY_MISSING_SHARE)
    country = _codes(rng, n, COUNTRIES, COUNTRY_MISSING_SHARE)
    fit = 0.35 * np.clip(size, -2, 3) + _effects(industry, INDUSTRIES) + _effects(country, COUNTRIES)

    intent = rng.normal(0.0, 1.0, n)
    base_rate = np.exp(rng.normal(0.35 + 0.1 * fit, 1.0, n))
    growth = np.exp(rng.normal(-3.3 + 0.35 * intent + 0.25 * np.clip(size, -2, 3), 0.6, n))
    integration = np.exp(rng.normal(0.3 * intent + 0.2 * fit, 0.8, n))
    potential = 1 + np.round(np.exp(rng.normal(0.4 + 0.45 * log_size, 0.7, n)))
    team_cap = np.clip(potential, 1, np.minimum(employees, 150)).astype(np.int64)
    starts_on_trial = rng.random(n) < STARTS_ON_TRIAL_SHARE
    return Accounts(
        ids=ids,
        created_day=created_day,
        created_us=created_us,
        employees=employees,
        employees_known=rng.random(n) >= EMPLOYEES_MISSING_SHARE,
        industry=industry,
        country=country,
        size=size,
        is_large=is_large,
        fit=fit,
        intent=intent,
        base_rate=base_rate,
        growth=growth,
        integration=integration,
        team_cap=team_cap,
        starts_on_trial=starts_on_trial,
    )


def _labels(codes: np.ndarray, table: tuple) -> pd.Series:
    names = np.array([row[0] for row in table] + [None], dtype=object)
    return pd.Series(names[codes], dtype=object)


def _names_and_domains(rng: np.random.Generator, n: int) -> tuple[pd.Series, pd.Series]:
    words = [np.array(group, dtype=object)[rng.integers(0, len(group), n)] for group in NAME_WORDS]
    names = [f"{a} {b} {c}" for a, b, c in zip(*words, strict=True)]
    domains = [
        f"{a}{b}-{i}.example.com".lower() for i, (a, b) in enumerate(zip(words[0], words[1], strict=True))
    ]
    return pd.Series(names, dtype=object), pd.Series(domains, dtype=object)


def accounts_frame(rng: np.random.Generator, accounts: Accounts) -> pd.DataFrame:
    """The `accounts` table rows (contract column keys)."""
    n = len(accounts)
    names, domains = _names_and_domains(rng, n)
    employees = pd.array(accounts.employees, dtype="Int64")
    employees[~accounts.employees_known] = pd.NA
    return pd.DataFrame(
        {
            "account_id": pd.Series(accounts.ids, dtype=object),
            "name": names,
            "domain": domains,
            "created_at": accounts.created_us.astype("datetime64[us]"),
            "employees": employees,
            "industry": _labels(accounts.industry, INDUSTRIES),
            "country": _labels(accounts.country, COUNTRIES),
        }
    )


def crm_accounts_frame(
    rng: np.random.Generator, accounts: Accounts, is_paid: np.ndarray, is_trial: np.ndarray, end_us: int
) -> pd.DataFrame:
    """Sales' view of every account at the end of the world: owner, stage, opportunity, last touch."""
    n = len(accounts)
    # Reps pick up larger accounts first; the rest wait in the unowned queue.
    smallness = 1.2 - accounts.is_large
    owned = rng.random(n) >= np.clip(UNOWNED_SHARE * smallness / smallness.mean(), 0, 0.9)
    owner = np.array(SALES_REPS, dtype=object)[rng.integers(0, len(SALES_REPS), n)]
    owner = np.where(owned, owner, None)
    opportunity_logit = -4.3 + 0.9 * accounts.intent + 0.6 * accounts.fit + 0.8 * owned
    has_open_opportunity = ~is_paid & (rng.random(n) < 1 / (1 + np.exp(-opportunity_logit)))
    has_open_opportunity |= is_paid & (rng.random(n) < 0.03)  # expansion deals
    stage_draw = rng.random(n)
    stage = np.where(
        stage_draw < 0.12, "subscriber", np.where(stage_draw < 0.8, "lead", "marketing_qualified_lead")
    )
    stage = np.where(is_trial & (stage_draw < 0.5), "sales_qualified_lead", stage)
    stage = np.where(has_open_opportunity, "opportunity", stage)
    stage = np.where(is_paid, "customer", stage)
    touched = rng.random(n) < np.where(owned, 0.6, 0.1)
    touch_us = accounts.created_us + (rng.random(n) * (end_us - accounts.created_us)).astype(np.int64)
    last_touch_at = pd.Series(touch_us.astype("datetime64[us]")).where(touched)
    return pd.DataFrame(
        {
            "account_id": pd.Series(accounts.ids, dtype=object),
            "owner": pd.Series(owner, dtype=object),
            "lifecycle_stage": pd.Series(stage, dtype=object),
            "has_open_opportunity": has_open_opportunity,
            "last_touch_at": last_touch_at,
            "do_not_contact": rng.random(n) < DO_NOT_CONTACT_SHARE,
        }
    )
