import pytest

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


@pytest.mark.parametrize(("order", "named"), [("0xo", True), ("31337/0xmarket/0xo", True), ("31337/0xmarket/0xp", False)])
def test_the_order_is_the_last_part_of_the_specs_order_path(context, honest, spec, order, named):
    ctx = context(expected_spec=spec.model_copy(update={"order": order}))
    ctx.bundle = ctx.bundle.model_copy(update={"order_id": "0xo", "spec": ctx.spec})
    faults = IntegrityCheck().run(ctx).detail
    assert ("the bundle names order 0xo task 0, not the one under verification" not in faults) is named


def test_profile_step_log_and_schedule_faults_are_named(context, honest, spec):
    ctx = context()
    total = len(ctx.steps)
    ctx.steps = ctx.steps[:-1]
    moved = [(s + 1 if 0 < s < honest.bundle.checkpoints[-1][0] else s, ref) for s, ref in honest.bundle.checkpoints]
    ctx.bundle = ctx.bundle.model_copy(update={
        "profile": ctx.bundle.profile.model_copy(update={"name": "cuda-bf16-tolerant"}), "checkpoints": moved})
    assert IntegrityCheck().run(ctx).detail.split("; ")[-3:] == [
        f"the proof ran under profile cuda-bf16-tolerant, the order asks for {spec.profile}",
        f"the step log holds {total - 1} records, not steps 0..{total - 1} in order",
        f"checkpoints at {[s for s, _ in moved][:6]}… instead of every {spec.checkpoint_every} steps",
    ]
