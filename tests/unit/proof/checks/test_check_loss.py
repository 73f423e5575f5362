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
    assert f"step {step}" in result.detail


def test_the_recomputation_costs_one_forward_pass_of_each_sampled_batch(context):
    ctx = context()
    result = LossCheck().run(ctx)
    assert result.forward_samples == sum(len(ctx.batches.for_step(c)) for c in ctx.challenge.loss_steps) > 0
    assert result.detail == f"{len(ctx.challenge.loss_steps)} sampled steps recomputed"


def test_every_checkpoint_of_another_model_is_named(context):
    ctx = context()
    for c in ctx.challenge.loss_steps:
        ctx.checkpoints[c].model_state = {"alien.weight": ctx.checkpoints[c].model_state[next(iter(ctx.checkpoints[c].model_state))]}
    result = LossCheck().run(ctx)
    assert not result.passed and result.forward_samples == 0
    assert result.detail.count(": ") == min(3, len(ctx.challenge.loss_steps)) and len(ctx.challenge.loss_steps) >= 2
    assert result.detail.startswith(f"{len(ctx.challenge.loss_steps)} sampled steps recomputed; ")
