from proof.checks.initialization import InitializationCheck


def test_seed_derived_initial_weights_pass(context):
    result = InitializationCheck().run(context())
    assert result.passed and result.observed == 0.0 and result.detail == "initial weights equal the seed-derived ones"


def test_other_initial_weights_fail(context):
    ctx = context()
    state = {k: v.clone() for k, v in ctx.checkpoints[0].model_state.items()}
    first = next(iter(state))
    state[first].view(-1)[0] += 0.25
    ctx.checkpoints[0].model_state = state
    result = InitializationCheck().run(ctx)
    assert not result.passed and result.observed == 0.25
    assert result.detail == "initial weights differ from the seed-derived ones"


def test_missing_initial_checkpoint_fails(context):
    ctx = context()
    del ctx.checkpoints[0]
    result = InitializationCheck().run(ctx)
    assert not result.passed and "checkpoint-00000000" in result.detail


def test_the_clients_starting_weights_are_named_as_the_source(context):
    from training.models import weights_digest

    ctx = context()
    ctx.initial = {k: v.clone() for k, v in ctx.checkpoints[0].model_state.items()}
    ctx.expected_spec = ctx.spec.model_copy(update={"initial_weights": weights_digest(ctx.initial)})
    result = InitializationCheck().run(ctx)
    assert result.passed and result.detail == "initial weights equal the client's starting weights"


def test_a_bundle_without_a_step_0_checkpoint_is_named_as_missing_one(context, honest):
    ctx = context(bundle=honest.bundle.model_copy(update={"checkpoints": honest.bundle.checkpoints[1:]}))
    result = InitializationCheck().run(ctx)
    assert not result.passed and result.detail.startswith("cannot check: checkpoint at step 0")
