"""Integrity: the bundle is the one committed on chain and has the shape the order implies.

Counted violations: the bundle's root differs from the committed root; the leaves do not list
the bundle's artifacts or do not hash to the root; a challenged artifact has no valid inclusion
proof under the committed root; the spec or profile differs from the order's; the bundle names
another order or task than the spec under verification; the step log does
not hold exactly ``epochs x steps_per_epoch`` records with contiguous steps and correct epochs;
checkpoints are not at step 0, every ``checkpoint_every`` steps and the end; the epoch digest
count differs from the epoch count; a resume is not at a checkpoint.
"""

from proof.checks.base import Check, CheckContext
from proof.report import CheckResult


def _commitment_faults(ctx: CheckContext) -> list[str]:
    from proof.bundle import artifact_proof, artifacts, verify_artifact
    from proof.errors import BundleError
    from proof.merkle import merkle_root

    b = ctx.bundle
    faults = []
    if b.merkle_root != ctx.committed_root:
        faults.append(f"bundle root {b.merkle_root[:12]}… is not the committed root {ctx.committed_root[:12]}…")
    if [ref.sha256 for ref in artifacts(b)] != b.leaves:
        faults.append("the leaves do not list the bundle's artifacts")
    if merkle_root([bytes.fromhex(x) for x in b.leaves]).hex() != b.merkle_root:
        faults.append("the leaves do not hash to the bundle's root")
    challenged = {*ctx.challenge.replay_segments, *ctx.challenge.loss_steps}
    refs = [ref for step, ref in b.checkpoints if step in challenged] + [b.step_log, b.telemetry]
    for ref in refs:
        try:
            index, path = artifact_proof(b, ref.sha256)
            included = verify_artifact(ref.sha256, index, path, ctx.committed_root, size=len(b.leaves))
        except (BundleError, ValueError):
            included = False
        if not included:
            faults.append(f"{ref.name} has no inclusion proof under the committed root")
    return faults


def _shape_faults(ctx: CheckContext) -> list[str]:
    spec, b = ctx.spec, ctx.bundle
    faults = []
    if b.spec != spec:
        faults.append("the bundle's training spec differs from the order's")
    if b.task != spec.task or (spec.order and spec.order.rsplit("/", 1)[-1] != b.order_id):
        faults.append(f"the bundle names order {b.order_id} task {b.task}, not the one under verification")
    if b.profile.name != spec.profile:
        faults.append(f"the proof ran under profile {b.profile.name}, the order asks for {spec.profile}")
    per_epoch = len(ctx.batches.epoch(0))
    total = spec.epochs * per_epoch
    if ctx.steps is not None:
        if [r.step for r in ctx.steps] != list(range(total)):
            faults.append(f"the step log holds {len(ctx.steps)} records, not steps 0..{total - 1} in order")
        if any(r.epoch != r.step // per_epoch for r in ctx.steps):
            faults.append("step records name the wrong epoch")
    expected = ctx.scheduled_checkpoints
    if ctx.checkpoint_steps != expected or len(b.checkpoints) != len(expected):
        faults.append(f"checkpoints at {ctx.checkpoint_steps[:6]}… instead of every {spec.checkpoint_every} steps")
    if len(b.epoch_digests) != spec.epochs:
        faults.append(f"{len(b.epoch_digests)} epoch digests for {spec.epochs} epochs")
    if not set(b.resumes) <= set(ctx.checkpoint_steps):
        faults.append(f"resumes {b.resumes} are not all at checkpoints")
    return faults


class IntegrityCheck(Check):
    """Commitments, counts and shape of the proof."""

    name = "integrity"
    metric = "integrity violations"

    def run(self, ctx: CheckContext) -> CheckResult:
        faults = _commitment_faults(ctx) + _shape_faults(ctx)
        detail = "; ".join(faults) or "bundle matches the committed root and the order's shape"
        return self.result(threshold=0.0, observed=float(len(faults)), detail=detail)
