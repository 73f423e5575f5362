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
