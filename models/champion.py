"""The promotion rule: a challenger replaces the champion only when it is better on the same holdout."""

from __future__ import annotations

from dataclasses import dataclass

# A challenger's Brier score may exceed the champion's by at most this share before it counts as worse
# calibrated (Brier differences this small are bootstrap noise on typical holdouts).
BRIER_TOLERANCE = 0.02


@dataclass(frozen=True)
class HoldoutScore:
    """A model's PR-AUC and Brier score on the holdout both models are judged on."""

    pr_auc: float
    brier: float


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def promotion_decision(
    challenger: HoldoutScore,
    champion: HoldoutScore | None,
    *,
    margin: float,
    champion_name: str = "the champion",
) -> Decision:
    """Promote when PR-AUC beats the champion's by `margin` or more and Brier is not worse."""
    if champion is None:
        return Decision(True, "no champion yet")
    gain = challenger.pr_auc - champion.pr_auc
    versus = f"PR-AUC {challenger.pr_auc:.4f} vs {champion.pr_auc:.4f} for {champion_name} ({gain:+.4f})"
    if gain < margin:
        return Decision(False, f"{versus}: not better by the promotion margin {margin:g}; kept as challenger")
    brier_limit = champion.brier * (1 + BRIER_TOLERANCE)
    if challenger.brier > brier_limit:
        return Decision(
            False,
            f"{versus}, but calibration is worse: Brier {challenger.brier:.5f} vs {champion.brier:.5f} "
            f"(allowed up to {brier_limit:.5f}); kept as challenger",
        )
    return Decision(
        True, f"{versus} >= margin {margin:g}; Brier {challenger.brier:.5f} vs {champion.brier:.5f}"
    )
