"""validate_plan_changes, validate_accounts and validate_crm_tables on clean and broken tables."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from earlier_schema import create_earlier_tables
from gate_worlds import AS_OF, World

from pql.db import create_engine
from pql.schema import create_tables, output_tables
from pql.validation import validate_accounts, validate_crm_tables, validate_plan_changes


def test_clean_plan_changes_pass_on_each_database(any_world: World) -> None:
    result = validate_plan_changes(any_world.engine, any_world.tables, any_world.settings, AS_OF)
    assert result.status == "passed"


def test_a_change_to_an_unknown_plan_fails_naming_the_plan(any_world: World) -> None:
    at = AS_OF - timedelta(days=2)
    any_world.insert(
        "plan_changes",
        [{"account_id": "acc_1", "changed_at": at, "from_plan": "free", "to_plan": "enterprise"}],
    )
    check = validate_plan_changes(any_world.engine, any_world.tables, any_world.settings, AS_OF).check(
        "plan_changes.known_plans"
    )
    assert (check.status, check.rows) == ("failed", 1)
    assert check.failures[0].examples == ("plan=enterprise changes=1",)


def test_an_unknown_plan_after_as_of_is_not_this_runs_business(world: World) -> None:
    world.insert("plan_changes", [{"account_id": "acc_1", "changed_at": AS_OF, "to_plan": "enterprise"}])
    result = validate_plan_changes(world.engine, world.tables, world.settings, AS_OF)
    assert result.check("plan_changes.known_plans").status == "passed"


def test_a_plan_added_to_the_settings_is_known(world: World) -> None:
    from pql.config import load_settings

    world.insert(
        "plan_changes",
        [{"account_id": "acc_1", "changed_at": AS_OF - timedelta(days=1), "to_plan": "enterprise"}],
    )
    settings = load_settings(None, plans={"paid": ["paid", "enterprise"]})
    assert validate_plan_changes(world.engine, world.tables, settings, AS_OF).status == "passed"


def test_a_paid_change_before_the_account_exists_warns_with_both_instants(any_world: World) -> None:
    at = AS_OF - timedelta(days=100)  # the accounts were created 90 days before AS_OF
    any_world.insert(
        "plan_changes", [{"account_id": "acc_2", "changed_at": at, "to_plan": "paid", "mrr": 50.0}]
    )
    check = validate_plan_changes(any_world.engine, any_world.tables, any_world.settings, AS_OF).check(
        "plan_changes.paid_after_created"
    )
    assert (check.status, check.rows) == ("warned", 1)
    assert "account_id=acc_2" in check.failures[0].examples[0]
    assert "account_created_at=" in check.failures[0].examples[0]


def test_a_trial_ending_before_it_starts_warns(world: World) -> None:
    at = AS_OF - timedelta(days=5)
    world.insert(
        "plan_changes",
        [
            {
                "account_id": "acc_3",
                "changed_at": at,
                "to_plan": "trial",
                "trial_ends_at": at - timedelta(days=1),
            }
        ],
    )
    check = validate_plan_changes(world.engine, world.tables, world.settings, AS_OF).check(
        "plan_changes.trial_ends_after_start"
    )
    assert (check.status, check.rows) == ("warned", 1)


def test_a_trial_without_an_end_date_is_fine(world: World) -> None:
    world.insert(
        "plan_changes", [{"account_id": "acc_3", "changed_at": AS_OF - timedelta(days=5), "to_plan": "trial"}]
    )
    result = validate_plan_changes(world.engine, world.tables, world.settings, AS_OF)
    assert result.check("plan_changes.trial_ends_after_start").status == "passed"


def test_plan_changes_of_unknown_accounts_warn(world: World) -> None:
    world.insert(
        "plan_changes",
        [{"account_id": "acc_ghost", "changed_at": AS_OF - timedelta(days=1), "to_plan": "free"}],
    )
    check = validate_plan_changes(world.engine, world.tables, world.settings, AS_OF).check(
        "plan_changes.known_accounts"
    )
    assert (check.status, check.rows) == ("warned", 1)


def test_clean_accounts_pass_on_each_database(any_world: World) -> None:
    assert validate_accounts(any_world.engine, any_world.tables, any_world.settings).status == "passed"


def test_duplicate_account_ids_fail_with_the_repeated_id(any_world: World) -> None:
    any_world.insert("accounts", [{"account_id": "acc_1", "name": "again", "created_at": AS_OF}])
    check = validate_accounts(any_world.engine, any_world.tables, any_world.settings).check(
        "accounts.unique_ids"
    )
    assert (check.status, check.rows) == ("failed", 1)
    assert "account_id=acc_1 rows=2" in check.failures[0].examples


def test_a_null_account_id_fails(world: World) -> None:
    world.insert("accounts", [{"account_id": None, "name": "nameless", "created_at": AS_OF}])
    check = validate_accounts(world.engine, world.tables, world.settings).check("accounts.unique_ids")
    assert (check.status, check.rows) == ("failed", 1)
    assert any("name=nameless" in example for example in check.failures[0].examples)


def test_a_missing_created_at_warns(world: World) -> None:
    world.insert("accounts", [{"account_id": "acc_9", "name": "undated", "created_at": None}])
    check = validate_accounts(world.engine, world.tables, world.settings).check(
        "accounts.created_at_not_null"
    )
    assert (check.status, check.rows) == ("warned", 1)
    assert check.failures[0].examples == ("account_id=acc_9 name=undated",)


def test_a_crm_accounts_table_without_a_contract_column_fails(world: World) -> None:
    world.execute(sa.text(f"ALTER TABLE {world.tables.crm_accounts.name} DROP COLUMN do_not_contact"))
    result = validate_accounts(world.engine, world.tables, world.settings)
    check = result.check("accounts.required_columns")
    assert check.status == "failed"
    assert check.failures[0].examples == ("table=crm_accounts column=do_not_contact present=False",)
    assert result.check("accounts.unique_ids").status == "skipped"


def test_crm_tables_that_do_not_exist_yet_pass(any_db_url: str, settings) -> None:
    engine = create_engine(any_db_url)
    result = validate_crm_tables(engine, output_tables(settings.tables), settings)
    engine.dispose()
    assert result.status == "passed"


def test_crm_tables_of_the_earlier_release_pass_before_their_upgrade(any_db_url: str, settings) -> None:
    engine = create_engine(any_db_url)
    create_earlier_tables(engine, output_tables(settings.tables), ["acc_1"])
    result = validate_crm_tables(engine, output_tables(settings.tables), settings)
    engine.dispose()
    assert result.check("crm.table_schema").status == "passed"


def test_a_crm_table_with_a_different_schema_fails_naming_the_column(any_db_url: str, settings) -> None:
    engine = create_engine(any_db_url)
    tables = output_tables(settings.tables)
    create_tables(engine, tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {tables.scores.name} RENAME COLUMN playbook TO play"))
    result = validate_crm_tables(engine, tables, settings)
    engine.dispose()
    check = result.check("crm.table_schema")
    assert (check.status, check.rows) == ("failed", 1)
    assert check.failures[0].examples == ("table=pql_scores column=playbook present=False",)
