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


def test_the_commitment_faults_are_known(context, honest):
    ctx = context()
    assert ctx.checkpoint_name(ctx.challenge.replay_segments[0]) == dict(honest.bundle.checkpoints)[
        ctx.challenge.replay_segments[0]].name
    assert IntegrityCheck().run(ctx).detail == "bundle matches the committed root and the order's shape"
    challenged = ctx.challenge.replay_segments[0]
    swapped = [(s, ref.model_copy(update={"sha256": "ab" * 32}) if s == challenged else ref)
               for s, ref in honest.bundle.checkpoints]
    ctx.bundle = honest.bundle.model_copy(update={"checkpoints": swapped, "merkle_root": "cd" * 32})
    name = dict(honest.bundle.checkpoints)[challenged].name
    assert IntegrityCheck().run(ctx).detail == "; ".join([
        f"bundle root {'cd' * 6}… is not the committed root {honest.committed_root[:12]}…",
        "the leaves do not list the bundle's artifacts",
        "the leaves do not hash to the bundle's root",
        f"{name} has no inclusion proof under the committed root",
    ])


def test_each_shape_fault_is_named(context, honest, spec):
    ctx = context(expected_spec=spec.model_copy(update={"task": 1}))
    ctx.bundle = ctx.bundle.model_copy(update={"epoch_digests": ctx.bundle.epoch_digests[:1], "resumes": [3]})
    ctx.steps = [r.model_copy(update={"epoch": 0}) for r in ctx.steps]
    assert IntegrityCheck().run(ctx).detail == "; ".join([
        "the bundle's training spec differs from the order's",
        f"the bundle names order {honest.bundle.order_id} task 0, not the one under verification",
        "step records name the wrong epoch",
        f"1 epoch digests for {spec.epochs} epochs",
        "resumes [3] are not all at checkpoints",
    ])
