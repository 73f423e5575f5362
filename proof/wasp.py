"""Wasp's rules: from signed evidence to a work verdict with reasons, and a model report.

The audit stage gathers the evidence (signatures checked, on-chain digests compared); this module
only weighs it, so a third-party auditor re-running the rules on the same evidence gets the same
verdict. Two outcomes, never mixed:

- the **work verdict** answers "was the ordered training done as specified?" from the Proof of
  Train, the signatures and the commitments alone; it alone pays or slashes;
- the **model report** (holdout accuracy and loss, perplexity, agreement with the training trace,
  the validators' quorum) is evidence for the client. Whether the ordered model can learn is the
  client's choice, so a poor model never costs the worker anything; a holdout loss that contradicts
  the trace is a reason to verify more, never a rejection by itself.
"""

import math

from pydantic import BaseModel, ConfigDict, Field

from proof.report import VerificationReport
from proof.scoring import PerformanceReport, aggregate, scored

LOSS_GAP = 3.0  # holdout loss above LOSS_GAP × claimed training loss + 0.5 is flagged
CHANCE_Z = 3.0  # standard errors of a chance-level holdout score that "above chance" must clear


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


class ModelReport(BaseModel):
    """What the validators measured of the final model: evidence for the client, never a verdict."""

    model_config = ConfigDict(ser_json_inf_nan="strings")

    median_accuracy: float
    median_loss: float
    perplexity: float = Field(description="exp of the median holdout loss (per prediction)")
    chance_accuracy: float
    input_blind_loss: float | None = Field(
        default=None, description="The holdout loss of the best model that ignores its input (the targets' entropy); "
        "exp of it is the perplexity to beat")
    findings: list[Reason] = Field(description="Observations; none of them decides the work verdict")
    verify_more: bool = Field(description="The outcome contradicts the training trace: worth more re-execution")

    def input_blind_note(self) -> str:
        """What a model that ignores its input scores, in words, where the validators reported it."""
        if self.input_blind_loss is None:
            return ""
        return (f" (a model that ignores its input: loss {self.input_blind_loss:.4f}, "
                f"perplexity {_perplexity(self.input_blind_loss):.3f})")


class Decision(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="strings")  # signed even when no validator could score the model

    order_id: str
    task: int
    accepted: bool
    reasons: list[Reason] = Field(description="The work verdict's rules, every one decisive")
    model_report: ModelReport
    nonce: str = Field("", description="Fresh random hex Wasp adds to the verdict it signs: the rules are a function of "
                       "public evidence, and without it anyone could compute the verdict's digest before Wasp")


def _work_rules(ev: Evidence) -> list[Reason]:
    failed = [c.name for c in ev.verification.checks if c.decisive and not c.passed] if ev.verification else []
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
    ]


def score_quorum(validators: int) -> int:
    """How many of an order's ``validators`` must have scored the model: a majority."""
    return validators // 2 + 1


def model_report(ev: Evidence) -> ModelReport:
    """The validators' figures against chance and against the worker's claimed training loss."""
    agg = aggregate(ev.performance)
    quorum = score_quorum(ev.validators_assigned)
    chance = 1.0 / ev.num_classes
    # A model that learned nothing scores chance plus binomial noise on n holdout samples: "above
    # chance" must clear that noise, one-sided at CHANCE_Z standard errors (false finding ~1e-3).
    samples = min((r.samples for r in ev.performance if scored(r)), default=0)
    clears = chance + CHANCE_Z * math.sqrt(chance * (1 - chance) / samples) if samples else math.inf
    loss_bound = LOSS_GAP * ev.claimed_final_loss + 0.5
    contradicts = not math.isnan(agg.median_loss) and agg.median_loss > loss_bound
    findings = [
        Reason(rule="score-quorum", passed=ev.performance_attested >= quorum and agg.valid >= quorum, decisive=False,
               detail=f"{min(ev.performance_attested, agg.valid)} attested scores, quorum {quorum} of {ev.validators_assigned}"),
        Reason(rule="above-chance", passed=not math.isnan(agg.median_accuracy) and agg.median_accuracy > clears,
               decisive=False, detail=f"median holdout accuracy {agg.median_accuracy:.4f} on {samples} samples, chance "
               f"{chance:.4f}, above chance from {clears:.4f}"),
        Reason(rule="loss-consistent", passed=not contradicts, decisive=False,
               detail=f"median holdout loss {agg.median_loss:.4f}, bound {loss_bound:.4f} from the claimed training loss"),
        Reason(rule="validators-agree", passed=not agg.outliers, decisive=False,
               detail=f"outlying validators: {', '.join(agg.outliers)}" if agg.outliers else "no outlying validator"),
    ]
    blind = agg.median_input_blind_loss
    if blind is not None:
        findings.append(Reason(
            rule="uses-its-input", passed=agg.median_loss < blind, decisive=False,
            detail=f"median holdout loss {agg.median_loss:.4f} against {blind:.4f} for the best model that ignores its "
            f"input (perplexity {_perplexity(agg.median_loss):.4g} against {_perplexity(blind):.4g})"))
    return ModelReport(
        median_accuracy=agg.median_accuracy, median_loss=agg.median_loss, perplexity=_perplexity(agg.median_loss),
        chance_accuracy=chance, input_blind_loss=blind, findings=findings, verify_more=contradicts,
    )


def _perplexity(loss: float) -> float:
    return math.exp(loss) if math.isfinite(loss) and loss < 700 else math.inf


def decide(evidence: Evidence) -> Decision:
    """The work verdict (accept when every rule of the Proof of Train passes) and the model report."""
    reasons = _work_rules(evidence)
    return Decision(
        order_id=evidence.order_id, task=evidence.task, accepted=all(r.passed for r in reasons),
        reasons=reasons, model_report=model_report(evidence),
    )
