from proof.checks.initialization import InitializationCheck


def test_seed_derived_initial_weights_pass(context):
    result = InitializationCheck().run(context())
    assert result.passed and result.observed == 0.0


def test_other_initial_weights_fail(context):
    ctx = context()
    state = {k: v.clone() for k, v in ctx.checkpoints[0].model_state.items()}
    first = next(iter(state))
    state[first].view(-1)[0] += 0.25
    ctx.checkpoints[0].model_state = state
    result = InitializationCheck().run(ctx)
    assert not result.passed and result.observed == 0.25


def test_missing_initial_checkpoint_fails(context):
    ctx = context()
    del ctx.checkpoints[0]
    result = InitializationCheck().run(ctx)
    assert not result.passed and "checkpoint-00000000" in result.detail
