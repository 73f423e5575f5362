from proof.checks.pev import PevCheck, epoch_checkpoint


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
