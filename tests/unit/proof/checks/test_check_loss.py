import pytest

from proof.checks.loss import LossCheck


def test_logged_losses_recompute_exactly(context):
    result = LossCheck().run(context())
    assert result.passed and result.observed == 0.0 and result.forward_samples > 0


def test_altered_logged_loss_at_a_sampled_step_fails(context):
    ctx = context()
    step = ctx.challenge.loss_steps[0]
    ctx.steps[step] = ctx.steps[step].model_copy(update={"loss": ctx.steps[step].loss * 0.5})
    result = LossCheck().run(ctx)
    assert not result.passed
    assert abs(result.observed - 0.5) < 1e-9
    assert result.detail.endswith(f"; worst is step {step} (logged {ctx.steps[step].loss})")


def test_the_recomputation_costs_one_forward_pass_of_each_sampled_batch(context):
    ctx = context()
    result = LossCheck().run(ctx)
    assert result.forward_samples == sum(len(ctx.batches.for_step(c)) for c in ctx.challenge.loss_steps) > 0
    assert result.detail == f"{len(ctx.challenge.loss_steps)} sampled steps recomputed"


def test_every_checkpoint_of_another_model_is_named(context):
    from training.errors import CheckpointError
    from training.trainer import batch_losses

    ctx = context()
    reasons = []
    for c in ctx.challenge.loss_steps:
        ctx.checkpoints[c].model_state = {"alien.weight": ctx.checkpoints[c].model_state[next(iter(ctx.checkpoints[c].model_state))]}
        with pytest.raises(CheckpointError) as caught:
            batch_losses(ctx.spec, ctx.checkpoints[c].model_state, ctx.X, ctx.y, [ctx.batches.for_step(c)])
        reasons.append(f"; {ctx.checkpoint_name(c)}: {caught.value}")
    result = LossCheck().run(ctx)
    assert not result.passed and result.forward_samples == 0 and len(reasons) >= 2
    first = ctx.challenge.loss_steps[0]  # every error is infinite: the first is the worst
    worst = f"; worst is step {first} (logged {ctx.steps[first].loss})"
    assert result.detail == f"{len(reasons)} sampled steps recomputed" + "".join(reasons[:3]) + worst


def test_a_sampled_step_missing_from_the_log_fails_without_raising(context):
    ctx = context()
    missing = ctx.challenge.loss_steps[0]
    ctx.steps = [r for r in ctx.steps if r.step != missing]
    assert not LossCheck().run(ctx).passed


def test_a_missing_step_log_is_named(context):
    ctx = context()
    ctx.steps = None
    ctx.problems[ctx.bundle.step_log.name] = "unreadable (x)"
    assert LossCheck().run(ctx).detail == f"cannot check: {ctx.bundle.step_log.name}: unreadable (x)"
