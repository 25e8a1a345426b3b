"""The demo world: deterministic, internally consistent, and shaped like a product-led business."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from pql.clock import start_of_day, today_in
from pql.commands import demo_data
from pql.config import DEFAULT_KEY_EVENTS, Settings, load_settings
from pql.db import create_engine
from pql.demo.simulation import FREE, TRIAL, conversion_steps
from pql.demo.world import DemoWorldSummary, write_demo_world
from pql.schema import SourceTables, source_tables

END = datetime(2026, 3, 2)  # a Monday
DAYS = 150
TABLES = ("accounts", "users", "events", "plan_changes", "crm_accounts")
ORDER = {
    "accounts": ["account_id"],
    "users": ["user_id"],
    "events": ["event_id"],
    "plan_changes": ["account_id", "changed_at", "to_plan"],
    "crm_accounts": ["account_id"],
}


@dataclass
class World:
    summary: DemoWorldSummary
    accounts: pd.DataFrame
    users: pd.DataFrame
    events: pd.DataFrame
    plan_changes: pd.DataFrame
    crm_accounts: pd.DataFrame


def read_tables(engine: sa.Engine, tables: SourceTables) -> dict[str, pd.DataFrame]:
    with engine.connect() as conn:
        return {
            name: pd.read_sql(sa.select(getattr(tables, name)), conn)
            .sort_values(ORDER[name])
            .reset_index(drop=True)
            for name in TABLES
        }


def make_world(
    url: str, settings: Settings, *, accounts: int, days: int, seed: int, end: datetime = END
) -> World:
    engine = create_engine(url)
    tables = source_tables(settings.tables)
    try:
        summary = write_demo_world(engine, tables, settings, accounts=accounts, days=days, seed=seed, end=end)
        return World(summary, **read_tables(engine, tables))
    finally:
        engine.dispose()


def clean_settings(state_dir: Path, **overrides: object) -> Settings:
    """Default settings, whatever PQL_* variables the developer has set."""
    with pytest.MonkeyPatch.context() as env:
        for name in [name for name in os.environ if name.startswith("PQL_")]:
            env.delenv(name)
        return load_settings(None, state_dir=state_dir, **overrides)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """One medium world (800 accounts over 150 days, about 300k events) shared by the shape tests."""
    folder = tmp_path_factory.mktemp("demo_world")
    settings = clean_settings(folder / ".pql")
    return make_world(f"duckdb:///{folder / 'world.duckdb'}", settings, accounts=800, days=DAYS, seed=7)


def tiny_world(url: str, settings: Settings, *, seed: int = 1, accounts: int = 40) -> World:
    return make_world(url, settings, accounts=accounts, days=30, seed=seed)


# ----------------------------------------------------------------------------------------- determinism


def test_same_seed_and_end_give_identical_tables(tmp_path: Path, settings: Settings) -> None:
    first = tiny_world(f"duckdb:///{tmp_path / 'a.duckdb'}", settings)
    second = tiny_world(f"duckdb:///{tmp_path / 'b.duckdb'}", settings)
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))


def test_a_different_seed_gives_a_different_world(tmp_path: Path, settings: Settings) -> None:
    first = tiny_world(f"duckdb:///{tmp_path / 'a.duckdb'}", settings, seed=1)
    second = tiny_world(f"duckdb:///{tmp_path / 'b.duckdb'}", settings, seed=2)
    assert not first.accounts["created_at"].equals(second.accounts["created_at"])
    assert not first.events[["occurred_at", "event_name"]].equals(
        second.events[["occurred_at", "event_name"]]
    )


# ---------------------------------------------------------------------------------- events, users, accounts


def test_summary_counts_match_the_tables(world: World) -> None:
    s = world.summary
    assert (s.accounts, s.users, s.events, s.plan_changes) == (
        len(world.accounts),
        len(world.users),
        len(world.events),
        len(world.plan_changes),
    )
    assert s.conversions == (world.plan_changes["to_plan"] == "paid").sum()
    assert s.trials == (world.plan_changes["to_plan"] == "trial").sum()
    assert (s.start, s.end) == (END - timedelta(days=DAYS), END)


def test_event_ids_are_unique(world: World) -> None:
    assert world.events["event_id"].is_unique


def test_every_event_belongs_to_a_known_user_of_its_own_account(world: World) -> None:
    joined = world.events.merge(
        world.users, on="user_id", how="left", suffixes=("", "_of_user"), indicator=True
    )
    assert (joined["_merge"] == "both").all()
    assert (joined["account_id"] == joined["account_id_of_user"]).all()
    assert world.events["account_id"].isin(world.accounts["account_id"]).all()


def test_every_user_belongs_to_a_known_account_and_joins_after_it_exists(world: World) -> None:
    users = world.users.merge(world.accounts, on="account_id", suffixes=("", "_account"))
    assert len(users) == len(world.users)
    assert (users["created_at"] >= users["created_at_account"]).all()
    founders = users.sort_values("created_at").groupby("account_id").head(1)
    assert (founders["created_at"] == founders["created_at_account"]).all()
    assert (founders["role"] == "owner").all()


def test_no_event_before_its_account_or_its_user_exists(world: World) -> None:
    events = world.events.merge(world.users[["user_id", "created_at"]], on="user_id")
    events = events.merge(
        world.accounts[["account_id", "created_at"]], on="account_id", suffixes=("_user", "_account")
    )
    assert (events["occurred_at"] >= events["created_at_user"]).all()
    assert (events["occurred_at"] >= events["created_at_account"]).all()


def test_everything_happens_inside_the_window(world: World) -> None:
    start = END - timedelta(days=DAYS)
    assert world.events["occurred_at"].max() < END
    assert world.events["occurred_at"].min() >= start
    for frame, column in (
        (world.accounts, "created_at"),
        (world.users, "created_at"),
        (world.plan_changes, "changed_at"),
    ):
        assert frame[column].between(start, END, inclusive="left").all()


def test_accounts_are_created_throughout_the_window(world: World) -> None:
    created_day = (world.accounts["created_at"] - (END - timedelta(days=DAYS))).dt.days
    assert created_day.lt(7).mean() > 0.15  # a first-week backlog
    assert created_day.ge(DAYS - 30).mean() > 0.1  # and sign-ups up to the end


def test_at_least_twelve_event_types_including_every_key_event(world: World) -> None:
    names = set(world.events["event_name"])
    assert len(names) >= 12
    assert set(DEFAULT_KEY_EVENTS) <= names
    assert {"login", "view_dashboard", "comment", "use_api"} <= names


def test_configured_key_events_outside_the_catalogue_are_generated(tmp_path: Path) -> None:
    settings = clean_settings(tmp_path / ".pql", key_events=["view_pricing", "request_demo"])
    world = make_world(f"duckdb:///{tmp_path / 'w.duckdb'}", settings, accounts=60, days=60, seed=3)
    assert {"view_pricing", "request_demo"} <= set(world.events["event_name"])


def test_weekends_are_quieter_than_weekdays(world: World) -> None:
    daily = world.events.groupby(world.events["occurred_at"].dt.floor("D")).size()
    recent = daily[daily.index >= END - timedelta(days=56)]  # the account base is mature by then
    weekend = recent.index.day_of_week >= 5
    assert recent[weekend].mean() < 0.6 * recent[~weekend].mean()


def test_activity_is_heavy_tailed_across_accounts(world: World) -> None:
    per_account = world.events["account_id"].value_counts()
    top_tenth = per_account.head(len(world.accounts) // 10).sum()
    assert top_tenth > 0.4 * per_account.sum()


def test_company_sizes_are_heavy_tailed_and_firmographics_sometimes_missing(world: World) -> None:
    employees = world.accounts["employees"].dropna()
    assert employees.max() > 50 * employees.median()
    for column in ("employees", "industry", "country"):
        assert 0 < world.accounts[column].isna().mean() < 0.2
    assert world.accounts["industry"].nunique() >= 8


def test_teams_grow_over_time(world: World) -> None:
    team_size = world.users["account_id"].value_counts()
    assert team_size.max() >= 5
    assert (team_size > 1).mean() > 0.3
    assert world.users["role"].isna().any() and world.users["role"].isin(["admin", "member"]).any()


def test_properties_are_json_for_some_events_and_null_for_others(world: World) -> None:
    properties = world.events["properties"]
    assert properties.isna().mean() > 0.5
    assert properties.dropna().str.startswith("{").all()


# --------------------------------------------------------------------------------------------- plans


def test_every_account_starts_with_a_plan_change_at_creation_from_no_plan(world: World) -> None:
    first = world.plan_changes.groupby("account_id").head(1).merge(world.accounts, on="account_id")
    assert len(first) == len(world.accounts)
    assert (first["changed_at"] == first["created_at"]).all()
    assert first["from_plan"].isna().all()
    assert set(first["to_plan"]) == {"free", "trial"}
    assert world.plan_changes["from_plan"].isna().sum() == len(world.accounts)


def test_plan_changes_form_a_chain_in_strict_time_order(world: World) -> None:
    changes = world.plan_changes
    previous = changes.groupby("account_id")["to_plan"].shift()
    later = previous.notna()
    assert (changes.loc[later, "from_plan"] == previous[later]).all()
    assert changes.groupby("account_id")["changed_at"].diff().dropna().gt(pd.Timedelta(0)).all()


def test_paid_comes_only_from_free_or_trial_and_nothing_follows_it(world: World) -> None:
    changes = world.plan_changes
    paid = changes[changes["to_plan"] == "paid"]
    assert len(paid) > 0
    assert paid["from_plan"].isin(["free", "trial"]).all()
    assert paid["account_id"].is_unique
    last = changes.groupby("account_id").tail(1)
    assert set(paid.index) <= set(last.index)


def test_paid_changes_carry_mrr_and_others_do_not(world: World) -> None:
    paid = world.plan_changes["to_plan"] == "paid"
    assert (world.plan_changes.loc[paid, "mrr"] > 0).all()
    assert world.plan_changes.loc[~paid, "mrr"].isna().all()


def test_trials_last_fourteen_days_and_one_account_has_at_most_one(world: World) -> None:
    changes = world.plan_changes
    trials = changes[changes["to_plan"] == "trial"]
    assert len(trials) > 0
    assert ((trials["trial_ends_at"] - trials["changed_at"]) == pd.Timedelta(days=14)).all()
    assert changes.loc[changes["to_plan"] != "trial", "trial_ends_at"].isna().all()
    assert trials["account_id"].is_unique


def test_an_unconverted_trial_lapses_to_free_at_its_end(world: World) -> None:
    changes = world.plan_changes
    trial_end = changes.groupby("account_id")["trial_ends_at"].shift()
    lapses = (changes["from_plan"] == "trial") & (changes["to_plan"] == "free")
    assert lapses.any()
    assert (changes.loc[lapses, "changed_at"] == trial_end[lapses]).all()
    ended = (changes["to_plan"] == "trial") & (changes["trial_ends_at"] < END)
    followed = changes["account_id"].shift(-1) == changes["account_id"]
    assert followed[ended].all()  # by its lapse, or by a conversion before it


def test_a_conversion_from_trial_happens_before_the_trial_ends(world: World) -> None:
    changes = world.plan_changes
    trial_end = changes.groupby("account_id")["trial_ends_at"].shift()
    from_trial = (changes["from_plan"] == "trial") & (changes["to_plan"] == "paid")
    assert from_trial.any()
    assert (changes.loc[from_trial, "changed_at"] < trial_end[from_trial]).all()


def test_a_conversion_after_the_trial_ended_comes_from_free_just_after_the_lapse() -> None:
    plan = np.array([TRIAL, TRIAL, TRIAL, FREE])
    trial_end = np.array([100, 500, 300, 0])
    at = np.array([200, 300, 300, 50])
    lapsed, from_plan, at = conversion_steps(plan, trial_end, at)
    assert lapsed.tolist() == [True, False, True, False]
    assert from_plan.tolist() == [FREE, TRIAL, FREE, FREE]
    assert at.tolist() == [200, 300, 301, 50]


def test_some_accounts_start_a_trial_after_signing_up_free(world: World) -> None:
    changes = world.plan_changes
    assert ((changes["from_plan"] == "free") & (changes["to_plan"] == "trial")).any()
    assert ((changes["from_plan"].isna()) & (changes["to_plan"] == "trial")).any()


def snapshot_conversions(
    world: World, as_of: datetime, horizon: timedelta = timedelta(days=30)
) -> pd.DataFrame:
    """Eligible accounts at `as_of` (created before it, not paid) and whether they convert in the horizon."""
    paid_at = world.plan_changes.loc[world.plan_changes["to_plan"] == "paid"].set_index("account_id")[
        "changed_at"
    ]
    accounts = world.accounts.set_index("account_id")
    paid = paid_at.reindex(accounts.index)
    eligible = (accounts["created_at"] < as_of) & ~(paid < as_of)
    converts = (paid >= as_of) & (paid < as_of + horizon)
    return pd.DataFrame({"converts": converts[eligible]})


def test_three_to_eight_percent_of_eligible_accounts_convert_within_thirty_days(world: World) -> None:
    snapshots = [END - timedelta(days=days) for days in range(120, 29, -7)]
    rates = [snapshot_conversions(world, as_of)["converts"].mean() for as_of in snapshots]
    assert 0.03 <= np.mean(rates) <= 0.08


def test_recent_activity_before_a_snapshot_predicts_conversion_after_it(world: World) -> None:
    """The hidden propensity leaves point-in-time signal: events before as_of, conversions after it."""
    occurred_at = world.events["occurred_at"].to_numpy()
    account_ids = world.events["account_id"].to_numpy()
    active, idle = [], []
    for days_before_end in range(120, 29, -7):
        as_of = END - timedelta(days=days_before_end)
        snapshot = snapshot_conversions(world, as_of)
        recent = (occurred_at >= np.datetime64(as_of - timedelta(days=14))) & (
            occurred_at < np.datetime64(as_of)
        )
        is_active = snapshot.index.isin(np.unique(account_ids[recent]))
        active.append(snapshot.loc[is_active, "converts"])
        idle.append(snapshot.loc[~is_active, "converts"])
    assert pd.concat(active).mean() > 2 * pd.concat(idle).mean()


# ----------------------------------------------------------------------------------------------- CRM


def test_crm_has_one_row_per_account_with_owners_opportunities_and_opt_outs(world: World) -> None:
    crm = world.crm_accounts
    assert sorted(crm["account_id"]) == sorted(world.accounts["account_id"])
    assert 0.08 < crm["owner"].isna().mean() < 0.25
    assert 3 <= crm["owner"].nunique() <= 10
    assert 0.005 < crm["has_open_opportunity"].mean() < 0.1
    assert 0.005 < crm["do_not_contact"].mean() < 0.08
    assert crm["last_touch_at"].isna().any() and (crm["last_touch_at"].dropna() < END).all()


def test_crm_stage_is_customer_exactly_for_paid_accounts(world: World) -> None:
    paid = set(world.plan_changes.loc[world.plan_changes["to_plan"] == "paid", "account_id"])
    is_customer = world.crm_accounts["lifecycle_stage"] == "customer"
    assert set(world.crm_accounts.loc[is_customer, "account_id"]) == paid
    assert world.crm_accounts["lifecycle_stage"].nunique() >= 4


# ------------------------------------------------------------------------------------- writing and CLI


def test_a_new_world_replaces_the_previous_demo_rows_and_keeps_other_rows(
    tmp_path: Path, settings: Settings
) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    tiny_world(url, settings, accounts=50)
    engine = create_engine(url)
    tables = source_tables(settings.tables)
    with engine.begin() as conn:
        conn.execute(sa.insert(tables.accounts).values(account_id="acme", created_at=END - timedelta(days=3)))
    engine.dispose()
    second = tiny_world(url, settings, accounts=20, seed=2)
    assert set(second.accounts["account_id"]) - {"acme"} == set(second.crm_accounts["account_id"])
    assert len(second.accounts) == 21
    assert len(second.events) == second.summary.events
    assert second.events["account_id"].nunique() <= 20


def test_the_world_is_written_to_each_supported_database(any_db_url: str, settings: Settings) -> None:
    world = tiny_world(any_db_url, settings)
    assert len(world.events) == world.summary.events > 0
    assert len(world.accounts) == len(world.crm_accounts) == 40
    assert world.events["occurred_at"].max() < END


def test_the_world_is_written_to_postgresql(postgres_url: str, settings: Settings, tmp_path: Path) -> None:
    in_postgres = tiny_world(postgres_url, settings)
    in_duckdb = tiny_world(f"duckdb:///{tmp_path / 'same.duckdb'}", settings)
    for name in TABLES:
        pd.testing.assert_frame_equal(
            getattr(in_postgres, name), getattr(in_duckdb, name), check_dtype=False, check_exact=False
        )


def test_the_default_end_is_the_start_of_today_in_the_configured_zone(tmp_path: Path) -> None:
    settings = clean_settings(tmp_path / ".pql", timezone="Pacific/Auckland")
    before = start_of_day(today_in(settings.zone), settings.zone)
    engine = create_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    summary = write_demo_world(engine, source_tables(settings.tables), settings, accounts=5, days=3, seed=0)
    engine.dispose()
    after = start_of_day(today_in(settings.zone), settings.zone)
    assert summary.end in {before, after}
    assert summary.start == summary.end - timedelta(days=3)


def test_an_empty_world_is_refused(tmp_path: Path, settings: Settings) -> None:
    engine = create_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    with pytest.raises(ValueError, match="at least one account"):
        write_demo_world(engine, source_tables(settings.tables), settings, accounts=0, days=10, seed=0)
    engine.dispose()


def cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    demo_data.register(app)
    return app


def test_demo_data_command_writes_the_world_and_prints_a_summary(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli(), ["demo-data", "--accounts", "30", "--days", "20", "--seed", "3", "--end", "2026-01-15"]
    )
    assert result.exit_code == 0, result.output
    assert "accounts" in result.output and "events" in result.output and "conversions" in result.output
    settings = clean_settings(Path(".pql"))
    engine = create_engine(settings.source_database_url)
    with engine.connect() as conn:
        tables = source_tables(settings.tables)
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.accounts)).scalar() == 30
        last_event = conn.execute(sa.select(sa.func.max(tables.events.c.occurred_at))).scalar()
    engine.dispose()
    assert last_event < datetime(2026, 1, 15)


def test_demo_data_command_rejects_an_unreadable_end_date(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli(), ["demo-data", "--accounts", "5", "--end", "next tuesday"])
    assert result.exit_code == 2
    assert "not an ISO date" in result.output
