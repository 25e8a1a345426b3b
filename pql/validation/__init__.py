"""Data-quality gates: GX Expectation Suites run through Checkpoints, a policy per check, results and
Data Docs per run.

The flows call one gate per stage (`validate_events`, `validate_plan_changes`, `validate_accounts`,
`validate_sales`, `validate_crm_tables`, `validate_feature_frame`, `validate_scores`,
`validate_output`), record the results (`summary`, `write_results`, `write_quarantine`) and stop
before the write-back with `raise_for_failures`.
"""

from pql.validation.checks import CHECKS, Check, Policy, check_policies
from pql.validation.gates import (
    validate_accounts,
    validate_crm_tables,
    validate_events,
    validate_feature_frame,
    validate_output,
    validate_plan_changes,
    validate_sales,
    validate_scores,
)
from pql.validation.quarantine import quarantine_frame, write_quarantine
from pql.validation.results import (
    CheckResult,
    ExpectationFailure,
    StageResult,
    ValidationFailed,
    data_docs_index,
    raise_for_failures,
    run_folder,
    summary,
    summary_text,
    write_results,
)

__all__ = [
    "CHECKS",
    "Check",
    "CheckResult",
    "ExpectationFailure",
    "Policy",
    "StageResult",
    "ValidationFailed",
    "check_policies",
    "data_docs_index",
    "quarantine_frame",
    "raise_for_failures",
    "run_folder",
    "summary",
    "summary_text",
    "validate_accounts",
    "validate_crm_tables",
    "validate_events",
    "validate_feature_frame",
    "validate_output",
    "validate_plan_changes",
    "validate_sales",
    "validate_scores",
    "write_quarantine",
    "write_results",
]
