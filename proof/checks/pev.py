"""Probabilistic epoch validation (PEV): the claimed epoch losses, re-measured on a sample.

For each epoch the verifier takes the last committed checkpoint inside it and evaluates, forward
only, the training loss on a challenge-chosen ``pev_fraction`` of that epoch's samples. The model
at that checkpoint has just trained on those samples, so its loss there should not exceed the
mean of the losses the worker logged over the epoch's steps up to it. A worker whose logged curve
is lower than what its weights achieve (fabricated losses, weights not trained on the committed
data) fails.

The statistic is ``excess = sample_loss - logged_mean`` and the check passes while
``excess <= eps`` with ``eps = z * se + margin * logged_mean``:

- ``se`` is the standard error of the sample mean, estimated from the spread of per-chunk means
  (at least eight chunks of at most one batch), so ``z = 4`` bounds the sampling false-positive
  rate per epoch by the one-sided normal tail, about 3e-5;
- ``margin`` (default 10%) absorbs that the checkpoint's loss is measured on the epoch's whole
  sample while the log averages losses seen before each update, which on a flat late-training
  curve can sit slightly below the end-of-epoch loss.
"""

import math

import numpy as np

from proof.checks.base import Check, CheckContext
from proof.report import CheckResult


def epoch_checkpoint(ctx: CheckContext, epoch: int, per_epoch: int) -> int | None:
    """The last committed checkpoint strictly inside or at the end of ``epoch``, if any."""
    lo, hi = epoch * per_epoch, (epoch + 1) * per_epoch
    inside = [s for s in ctx.checkpoint_steps if lo < s <= hi]
    return inside[-1] if inside else None


class PevCheck(Check):
    """Per-epoch sampled loss against the logged epoch mean."""

    name = "pev"
    metric = "max over epochs of (sample loss - logged mean) minus the allowed eps"

    def run(self, ctx: CheckContext) -> CheckResult:
        from training.errors import CheckpointError

        if ctx.steps is None:
            return self.missing([ctx.bundle.step_log.name], ctx)
        per_epoch = len(ctx.batches.epoch(0))
        chosen = {e: epoch_checkpoint(ctx, e, per_epoch) for e in range(ctx.spec.epochs)}
        absent = [ctx.checkpoint_name(c) for c in chosen.values() if c is not None and c not in ctx.checkpoints]
        if absent:
            return self.missing(absent, ctx)
        logged = {r.step: r.loss for r in ctx.steps}
        margins: dict[int, float] = {}
        samples = 0
        foreign: list[str] = []
        for epoch, c in chosen.items():
            if c is None:
                continue
            try:
                margins[epoch], used = self._epoch_margin(ctx, epoch, c, per_epoch, logged)
            except CheckpointError as exc:  # a checkpoint of another model is forged
                margins[epoch], used = math.inf, 0
                foreign.append(f"{ctx.checkpoint_name(c)}: {exc}")
            samples += used
        worst = max(margins.values(), key=lambda m: math.inf if math.isnan(m) else m, default=0.0)
        detail = f"{len(margins)} epochs sampled at {ctx.challenge.pev_fraction:.1%}; margins " + ", ".join(
            f"e{e}={m:+.4f}" for e, m in margins.items()
        ) + "".join(f"; {f}" for f in foreign[:3])
        return self.result(threshold=0.0, observed=worst, detail=detail, forward_samples=samples)

    def _epoch_margin(self, ctx, epoch: int, c: int, per_epoch: int, logged: dict) -> tuple[float, int]:
        from training.trainer import batch_losses

        batches = ctx.batches.epoch(epoch)
        used = np.concatenate(batches)
        picks = used[ctx.challenge.pev_sample(epoch, len(used))]
        # At least eight chunks (of at most one batch) so the spread of chunk means estimates se.
        size = max(1, min(ctx.spec.batch_size, math.ceil(len(picks) / 8)))
        chunks = [picks[i : i + size] for i in range(0, len(picks), size)]
        losses = np.array(batch_losses(ctx.spec, ctx.checkpoints[c].model_state, ctx.X, ctx.y, chunks))
        weights = np.array([len(ch) for ch in chunks], dtype=float)
        sample_loss = float(np.average(losses, weights=weights))
        spread = float(np.sqrt(np.average((losses - sample_loss) ** 2, weights=weights))) if len(chunks) > 1 else sample_loss
        se = spread / math.sqrt(len(chunks))
        claimed = [logged.get(s, math.nan) for s in range(epoch * per_epoch, c)]
        logged_mean = float(np.mean(claimed))
        if math.isinf(logged_mean):  # a loss logged as infinite, or past any float, would make the allowance infinite
            return math.inf, len(picks)
        eps = ctx.config.pev_z * se + ctx.config.pev_margin * abs(logged_mean)
        return sample_loss - logged_mean - eps, len(picks)
