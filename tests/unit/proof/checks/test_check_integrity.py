from proof.checks.integrity import IntegrityCheck


def test_honest_bundle_passes(context):
    result = IntegrityCheck().run(context())
    assert result.passed and result.observed == 0.0 and result.decisive


def test_other_committed_root_fails(context):
    ctx = context()
    ctx.committed_root = "00" * 32
    result = IntegrityCheck().run(ctx)
    assert not result.passed
    assert "committed root" in result.detail


def test_misreported_spec_fails(context, spec):
    result = IntegrityCheck().run(context(expected_spec=spec.model_copy(update={"lr": spec.lr * 0.9})))
    assert not result.passed and "spec" in result.detail


def test_missing_step_record_fails(context):
    ctx = context()
    ctx.steps = ctx.steps[:-1]
    result = IntegrityCheck().run(ctx)
    assert not result.passed and "step log" in result.detail


def test_dropped_checkpoint_fails(context, honest):
    bundle = honest.bundle.model_copy(update={"checkpoints": honest.bundle.checkpoints[:-1]})
    result = IntegrityCheck().run(context(bundle=bundle))
    assert not result.passed and "checkpoints at" in result.detail
