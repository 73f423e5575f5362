"""Wasp's rules: from signed evidence to an accept/reject verdict with reasons.

The audit stage gathers the evidence (signatures checked, on-chain digests compared); this module
only weighs it, so a third-party auditor re-running the rules on the same evidence gets the same
verdict. Decisive rules reject on failure; weak rules are reported but never reject on their own.
"""

import math

from pydantic import BaseModel, ConfigDict

from proof.report import VerificationReport
from proof.scoring import PerformanceReport, aggregate

CHANCE_MULTIPLE = 2.0  # the model must beat chance accuracy at least twice over
LOSS_GAP = 3.0  # holdout loss above LOSS_GAP × claimed training loss + 0.5 is flagged


class Evidence(BaseModel):
    """What Wasp knows about one task, each item already checked against signatures and the chain."""

    model_config = ConfigDict(ser_json_inf_nan="strings")

    order_id: str
    task: int
    num_classes: int
    validators_assigned: int
    manifest_signed: bool
    root_committed: bool
    verification: VerificationReport | None
    verification_attested: bool
    performance: list[PerformanceReport]
    performance_attested: int
    claimed_final_loss: float


class Reason(BaseModel):
    rule: str
    passed: bool
    decisive: bool
    detail: str


class Decision(BaseModel):
    order_id: str
    task: int
    accepted: bool
    reasons: list[Reason]


def _rules(ev: Evidence) -> list[Reason]:
    agg = aggregate(ev.performance)
    quorum = ev.validators_assigned // 2 + 1
    chance = CHANCE_MULTIPLE / ev.num_classes
    failed = [c.name for c in ev.verification.checks if c.decisive and not c.passed] if ev.verification else []
    loss_bound = LOSS_GAP * ev.claimed_final_loss + 0.5
    return [
        Reason(rule="signed-proof", passed=ev.manifest_signed, decisive=True,
               detail="proof manifest signed by the assigned worker" if ev.manifest_signed else "proof manifest signature invalid or not the worker's"),
        Reason(rule="committed-root", passed=ev.root_committed, decisive=True,
               detail="manifest root equals the root committed on chain" if ev.root_committed else "manifest root differs from the on-chain commitment"),
        Reason(rule="verification-attested", passed=ev.verification_attested, decisive=True,
               detail="verification report signed by an assigned validator and its digest on chain"
               if ev.verification_attested else "no verification report matching an on-chain digest"),
        Reason(rule="verification-passed", passed=ev.verification is not None and ev.verification.passed, decisive=True,
               detail="every decisive check passed" if ev.verification and ev.verification.passed
               else f"failed checks: {', '.join(failed) or 'report missing'}"),
        Reason(rule="score-quorum", passed=ev.performance_attested >= quorum and agg.valid >= quorum, decisive=True,
               detail=f"{min(ev.performance_attested, agg.valid)} attested scores, quorum {quorum} of {ev.validators_assigned}"),
        Reason(rule="beats-chance", passed=not math.isnan(agg.median_accuracy) and agg.median_accuracy >= chance, decisive=True,
               detail=f"median holdout accuracy {agg.median_accuracy:.4f}, floor {chance:.4f}"),
        Reason(rule="loss-consistent", passed=not math.isnan(agg.median_loss) and agg.median_loss <= loss_bound, decisive=False,
               detail=f"median holdout loss {agg.median_loss:.4f}, bound {loss_bound:.4f} from the claimed training loss"),
        Reason(rule="validators-agree", passed=not agg.outliers, decisive=False,
               detail=f"outlying validators: {', '.join(agg.outliers)}" if agg.outliers else "no outlying validator"),
    ]


def decide(evidence: Evidence) -> Decision:
    """Accept when every decisive rule passes."""
    reasons = _rules(evidence)
    return Decision(
        order_id=evidence.order_id, task=evidence.task,
        accepted=all(r.passed for r in reasons if r.decisive), reasons=reasons,
    )
