"""Every committed artifact can be fetched, decrypted, parsed, and holds only finite numbers.

A worker who withholds a checkpoint, serves bytes that do not match the commitment, or stores a
checkpoint with NaN or Inf fails here, with each artifact named.
"""

import torch

from proof.checks.base import Check, CheckContext
from proof.report import CheckResult


def nonfinite_tensors(state: dict) -> list[str]:
    """Names of floating-point tensors in a (nested) state dict that hold NaN or Inf."""
    bad: list[str] = []
    for key, value in state.items():
        if isinstance(value, dict):
            bad += [f"{key}.{name}" for name in nonfinite_tensors(value)]
        elif torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            bad.append(str(key))
    return bad


class ArtifactsCheck(Check):
    """All artifacts readable and finite."""

    name = "artifacts"
    metric = "artifacts missing, tampered, unreadable or non-finite"

    def run(self, ctx: CheckContext) -> CheckResult:
        faults = dict(ctx.problems)
        for step, checkpoint in ctx.checkpoints.items():
            states = {"model": checkpoint.model_state, "optimizer": _tensors(checkpoint.optimizer_state)}
            bad = nonfinite_tensors(states)
            if bad:
                faults[ctx.checkpoint_name(step)] = f"non-finite values in {', '.join(bad[:3])}"
        total = 2 + len(ctx.bundle.checkpoints)
        detail = "; ".join(f"{name}: {why}" for name, why in sorted(faults.items()))
        return self.result(
            threshold=0.0,
            observed=float(len(faults)),
            detail=detail or f"all {total} artifacts fetched, matched their commitment and are finite",
        )


def _tensors(optimizer_state: dict) -> dict:
    """Flatten an optimizer state dict's per-parameter tensors into one name -> tensor dict."""
    flat = {}
    for param, slots in optimizer_state.get("state", {}).items():
        for slot, value in slots.items():
            flat[f"{param}.{slot}"] = value
    return flat
