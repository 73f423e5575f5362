"""The batch order equals the committed function of the order's seed.

Each epoch's digest in the bundle and each step's logged batch digest must equal what
`training.order` derives from the seed, the task and the data size: a worker cannot pick easy
batches, drop shard data from the order, or reorder samples.
"""

from proof.checks.base import Check, CheckContext
from proof.report import CheckResult


class DataOrderCheck(Check):
    """Epoch and batch digests against the committed PRF."""

    name = "data-order"
    metric = "epochs and steps whose batch order differs from the committed one"

    def run(self, ctx: CheckContext) -> CheckResult:
        from training.order import batch_digest, epoch_order_digest

        if ctx.steps is None:
            return self.missing([ctx.bundle.step_log.name], ctx)
        bad_epochs = [
            e
            for e in range(ctx.spec.epochs)
            if e >= len(ctx.bundle.epoch_digests)
            or ctx.bundle.epoch_digests[e] != epoch_order_digest(ctx.batches.epoch(e))
        ]
        total_steps = ctx.spec.epochs * len(ctx.batches.epoch(0))
        bad_steps = [
            r.step
            for r in ctx.steps
            if not 0 <= r.step < total_steps or r.batch_digest != batch_digest(ctx.batches.for_step(r.step))
        ]
        detail = "batch order matches the committed seed"
        if bad_epochs or bad_steps:
            detail = f"epochs {bad_epochs[:5]} and steps {bad_steps[:5]} differ from the committed order"
        return self.result(threshold=0.0, observed=float(len(bad_epochs) + len(bad_steps)), detail=detail)
