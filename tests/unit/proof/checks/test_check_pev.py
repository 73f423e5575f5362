import math

import numpy as np
import pytest
import torch

from proof.checks.pev import PevCheck, epoch_checkpoint
from proof.verifier import VerifyConfig
from training.errors import CheckpointError
from training.trainer import batch_losses


def test_honest_epoch_losses_pass(context):
    result = PevCheck().run(context())
    assert result.passed and result.observed < 0 and result.forward_samples > 0


def test_logged_curve_far_below_the_weights_fails(context):
    ctx = context()
    ctx.steps = [r.model_copy(update={"loss": r.loss * 0.2}) for r in ctx.steps]
    assert not PevCheck().run(ctx).passed


def test_epoch_checkpoint_is_the_last_inside_the_epoch(context):
    ctx = context()  # 18 steps per epoch, checkpoints every 6 steps
    assert epoch_checkpoint(ctx, 0, 18) == 18
    assert epoch_checkpoint(ctx, 1, 18) == 36
    ctx.bundle = ctx.bundle.model_copy(update={"checkpoints": [c for c in ctx.bundle.checkpoints if not 18 < c[0] <= 36]})
    assert epoch_checkpoint(ctx, 1, 18) is None  # epoch 0's checkpoints are not epoch 1's


def _picks(ctx, epoch: int) -> int:
    """How many samples PEV evaluates in ``epoch``."""
    return len(ctx.challenge.pev_sample(epoch, len(np.concatenate(ctx.batches.epoch(epoch)))))


def _margin_by_the_statistic(ctx, epoch: int, c: int, per_epoch: int) -> tuple[float, int, list[int]]:
    """The module's statistic computed from its description: ``excess - eps`` over chunks of the
    challenge's sample, weighted by chunk length; returns it, the samples used and the chunk lengths."""
    used = np.concatenate(ctx.batches.epoch(epoch))
    picks = used[ctx.challenge.pev_sample(epoch, len(used))]
    size = max(1, min(ctx.spec.batch_size, -(-len(picks) // 8)))
    chunks = [picks[i:i + size] for i in range(0, len(picks), size)]
    losses = batch_losses(ctx.spec, ctx.checkpoints[c].model_state, ctx.X, ctx.y, chunks)
    n = [len(ch) for ch in chunks]
    sample = sum(loss * k for loss, k in zip(losses, n)) / sum(n)
    # one chunk has no spread to estimate from: its own loss stands in, the widest allowance
    spread = math.sqrt(sum(k * (loss - sample) ** 2 for loss, k in zip(losses, n)) / sum(n)) if len(n) > 1 else sample
    se = spread / math.sqrt(len(n))
    logged = {r.step: r.loss for r in ctx.steps}
    mean = sum(logged[s] for s in range(epoch * per_epoch, c)) / (c - epoch * per_epoch)
    eps = ctx.config.pev_z * se + ctx.config.pev_margin * abs(mean)
    return sample - mean - eps, len(picks), n


@pytest.mark.parametrize("picks,uneven", [(29, True), (173, True), (6, False), (2, False), (1, False)])
def test_each_epochs_margin_is_the_documented_statistic(context, picks, uneven):
    """Over many chunks with a shorter last one, and over samples so small each chunk is one sample."""
    epoch_size = len(np.concatenate(context().batches.epoch(0)))
    ctx = context(config=VerifyConfig(pev_fraction=picks / epoch_size))
    assert _picks(ctx, 0) == picks
    per_epoch = len(ctx.batches.epoch(0))
    logged = {r.step: r.loss for r in ctx.steps}
    for epoch in range(ctx.spec.epochs):
        c = epoch_checkpoint(ctx, epoch, per_epoch)
        expected, samples, lengths = _margin_by_the_statistic(ctx, epoch, c, per_epoch)
        assert len(set(lengths)) == 2 and len(lengths) >= 8 if uneven else set(lengths) == {1}  # the premise
        margin, used = PevCheck()._epoch_margin(ctx, epoch, c, per_epoch, logged)
        assert (margin, used) == (pytest.approx(expected, rel=1e-12, abs=1e-12), samples)


def test_forward_samples_count_every_epochs_sample_and_nothing_for_a_foreign_checkpoint(context):
    ctx = context()
    assert PevCheck().run(ctx).forward_samples == _picks(ctx, 0) + _picks(ctx, 1)
    ctx.checkpoints[18].model_state = {"weight": torch.zeros(3)}  # not the ordered model's state
    result = PevCheck().run(ctx)
    assert not result.passed and math.isinf(result.observed) and result.forward_samples == _picks(ctx, 1)
    assert f"; {ctx.checkpoint_name(18)}: " in result.detail
    ctx.checkpoints[36].model_state = {"weight": torch.zeros(3)}  # both epochs' checkpoints: both named, in order
    result = PevCheck().run(ctx)
    assert result.forward_samples == 0
    logged = {r.step: r.loss for r in ctx.steps}
    refusals = []
    for epoch, c in ((0, 18), (1, 36)):
        with pytest.raises(CheckpointError) as refused:
            PevCheck()._epoch_margin(ctx, epoch, c, 18, logged)
        refusals.append(f"; {ctx.checkpoint_name(c)}: {refused.value}")
    assert result.detail.endswith("".join(refusals))


def test_an_epoch_without_a_checkpoint_is_skipped_and_the_next_still_sampled(context):
    ctx = context()  # 18 steps per epoch: drop the checkpoints of epoch 0
    ctx.bundle = ctx.bundle.model_copy(update={"checkpoints": [c for c in ctx.bundle.checkpoints if not 0 < c[0] <= 18]})
    result = PevCheck().run(ctx)
    assert result.passed and result.detail.startswith("1 epochs sampled") and " e1=" in result.detail
    assert result.forward_samples == _picks(ctx, 1)


def test_the_worst_epoch_is_a_nan_margin_and_no_epoch_gives_zero(context):
    ctx = context()  # epoch 1's logged losses are not numbers: its margin is NaN, worse than any
    ctx.steps = [r.model_copy(update={"loss": math.nan}) if r.step >= 18 else r for r in ctx.steps]
    result = PevCheck().run(ctx)
    assert not result.passed and math.isnan(result.observed) and " e1=+nan" in result.detail
    ctx.bundle = ctx.bundle.model_copy(update={"checkpoints": [c for c in ctx.bundle.checkpoints if c[0] == 0]})
    assert PevCheck().run(ctx).observed == 0.0
