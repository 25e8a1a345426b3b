"""Data-quality gates: Great Expectations suites per stage, a policy per check, results per run.

The flows call one gate per stage (`validate_events`, `validate_plan_changes`, `validate_accounts`,
`validate_crm_tables`, `validate_feature_frame`, `validate_scores`, `validate_output`), record the results
(`summary`, `write_results`, `write_quarantine`) and stop before the write-back with
`raise_for_failures`.
"""

from pql.validation.checks import CHECKS, Check, Policy, check_policies
from pql.validation.gates import (
    validate_accounts,
    validate_crm_tables,
    validate_events,
    validate_feature_frame,
    validate_output,
    validate_plan_changes,
    validate_scores,
)
from pql.validation.quarantine import quarantine_frame, write_quarantine
from pql.validation.results import (
    CheckResult,
    ExpectationFailure,
    StageResult,
    ValidationFailed,
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
    "validate_scores",
    "write_quarantine",
    "write_results",
]
