"""The verification report: every check's evidence, the artifacts it covered and what it cost.

The caller signs the report's canonical JSON and hashes it on chain; nothing here is printed.
"""

from pydantic import BaseModel, ConfigDict, Field

# Observed values may be NaN or infinite (unreadable evidence, diverged replays); signed reports
# write them as the strings "NaN" / "Infinity" (see privacy.signing.canonical_json).
MEASURED = ConfigDict(ser_json_inf_nan="strings")


class CheckResult(BaseModel, frozen=True):
    """One check's verdict with the number that decided it."""

    model_config = MEASURED

    name: str = Field(description="Check name, e.g. 'replay-random'")
    metric: str = Field(description="What `observed` measures, e.g. 'max relative loss error'")
    threshold: float = Field(description="The check passes when observed <= threshold")
    observed: float = Field(description="Measured value (NaN when the evidence could not be read)")
    passed: bool
    decisive: bool = Field(description="False for weak evidence (telemetry) that never rejects alone")
    detail: str = Field(description="Human explanation naming the artifacts or steps at fault")
    cost_steps: int = Field(ge=0, description="Training steps re-executed by this check")
    forward_samples: int = Field(default=0, ge=0, description="Samples evaluated forward-only")
    seconds: float = Field(ge=0.0, description="Wall-clock time the check took")


class VerificationCost(BaseModel, frozen=True):
    """What verification cost, also as a fraction of the worker's training compute."""

    model_config = MEASURED

    replayed_steps: int = Field(ge=0)
    forward_samples: int = Field(ge=0, description="Forward-only samples (loss checks, PEV)")
    seconds: float = Field(ge=0.0)
    fraction_of_training: float = Field(
        ge=0.0,
        description="(3 x replayed_steps x batch + forward_samples) / (3 x steps x batch): a training "
        "step costs a forward and a backward pass, counted as three forward passes",
    )


class VerificationReport(BaseModel, frozen=True):
    """The verifier's signed-by-caller verdict on one task's Proof of Train."""

    model_config = MEASURED

    order_id: str
    task: int
    challenge_seed: str = Field(description="Hex of the challenge seed that chose what was checked")
    merkle_root: str = Field(description="The committed root the bundle was checked against")
    checks: list[CheckResult]
    passed: bool = Field(description="True when every decisive check passed")
    cost: VerificationCost
    artifacts: dict[str, str] = Field(description="Artifact name -> sha256 of its stored bytes")
    localiser: str = Field("", description="SHA-256 of Wasp's learned step model (proof.localiser) that chose steps")
    suspicious_steps: list[int] = Field(default_factory=list, description="The steps that model added to the challenge")
    claimed_final_loss: float | None = Field(
        None, description="The last training loss the worker's step log claims (NaN when it logs no step or cannot "
        "be read; None in a report made before verifiers recorded it): what Wasp weighs the validators' holdout loss "
        "against, read by the verifier from the worker's committed evidence rather than taken from whoever hands "
        "Wasp the case")
    nonce: str = Field("", description="Fresh random hex the verifier adds to the report it signs, so nobody can know "
                       "the report's digest, which names it in the store, before the verifier writes it")

    @property
    def failed_checks(self) -> list[CheckResult]:
        """Every check that did not pass, decisive or not."""
        return [c for c in self.checks if not c.passed]

    @property
    def flagged(self) -> bool:
        """True when any check, including weak evidence, did not pass."""
        return bool(self.failed_checks)
