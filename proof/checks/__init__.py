"""Verifier checks, one module each behind `proof.checks.base.Check`.

`default_checks()` is the list `proof.verifier.verify_proof` runs, in order: cheap structural
checks first, then forward-only recomputation and one-step spot checks, then replay, then weak telemetry evidence.
"""

from proof.checks.artifacts import ArtifactsCheck
from proof.checks.base import Check, CheckContext
from proof.checks.data_order import DataOrderCheck
from proof.checks.initialization import InitializationCheck
from proof.checks.integrity import IntegrityCheck
from proof.checks.loss import LossCheck
from proof.checks.pev import PevCheck
from proof.checks.replay import ReplayCheck
from proof.checks.steps import StateChainCheck, StepSpotCheck, UpdateSizeCheck
from proof.checks.telemetry import TelemetryCheck


def default_checks() -> list[Check]:
    """One instance of every check, in the order the verifier runs them."""
    return [
        IntegrityCheck(),
        ArtifactsCheck(),
        InitializationCheck(),
        DataOrderCheck(),
        StateChainCheck(),
        UpdateSizeCheck(),
        LossCheck(),
        StepSpotCheck(),
        PevCheck(),
        ReplayCheck("random"),
        ReplayCheck("largest-update"),
        TelemetryCheck(),
    ]


__all__ = ["Check", "CheckContext", "default_checks"]
