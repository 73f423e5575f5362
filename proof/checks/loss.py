"""Loss recomputation: the logged loss of sampled steps, recomputed forward-only.

Step ``c`` is logged with the loss of its committed batch under the weights of checkpoint ``c``
(the state after ``c`` updates); the challenge samples checkpoints ``c``, the verifier recomputes the loss with
`training.trainer.batch_losses` and compares it with the log. The cost is one forward pass of one
batch per sample.
"""

import math

from proof.checks.base import Check, CheckContext, worst_of
from proof.report import CheckResult


def loss_tolerance(ctx: CheckContext) -> float:
    """Accepted relative loss error: the profile's tolerance for one step, floored by the config."""
    from training.tolerance import replay_tolerance

    return max(replay_tolerance(ctx.spec.profile).step, ctx.config.loss_rtol)


class LossCheck(Check):
    """Sampled logged losses against forward-only recomputation."""

    name = "loss"
    metric = "max relative error of logged against recomputed loss"


    def run(self, ctx: CheckContext) -> CheckResult:
        from training.errors import CheckpointError
        from training.trainer import batch_losses

        if ctx.steps is None:
            return self.missing([ctx.bundle.step_log.name], ctx)
        logged = {r.step: r.loss for r in ctx.steps}
        absent = [ctx.checkpoint_name(c) for c in ctx.challenge.loss_steps if c not in ctx.checkpoints]
        if absent:
            return self.missing(absent, ctx)
        errors: dict[int, float] = {}
        samples = 0
        foreign: list[str] = []
        for c in ctx.challenge.loss_steps:
            batch = ctx.batches.for_step(c)
            try:
                recomputed = batch_losses(ctx.spec, ctx.checkpoints[c].model_state, ctx.X, ctx.y, [batch])[0]
            except CheckpointError as exc:  # a checkpoint of another model is forged
                errors[c] = math.inf
                foreign.append(f"{ctx.checkpoint_name(c)}: {exc}")
                continue
            samples += len(batch)
            claimed = logged.get(c, math.nan)
            errors[c] = abs(claimed - recomputed) / max(abs(recomputed), 1e-12)
        observed, worst = worst_of(errors)
        detail = f"{len(errors)} sampled steps recomputed" + "".join(f"; {f}" for f in foreign[:3])
        if worst is not None and observed != 0:
            detail += f"; worst is step {worst} (logged {logged.get(worst)})"
        return self.result(threshold=loss_tolerance(ctx), observed=observed, detail=detail, forward_samples=samples)
