import math

import torch

from proof.checks.artifacts import ArtifactsCheck, nonfinite_tensors


def test_honest_artifacts_pass(context):
    assert ArtifactsCheck().run(context()).passed


def test_missing_artifact_fails_and_is_named(context, store, honest):
    lost = honest.bundle.checkpoints[2][1]

    def fetch(ref):
        if ref == lost:
            raise LookupError("gone")
        return store.fetch(ref)

    result = ArtifactsCheck().run(context(fetch=fetch))
    assert not result.passed and result.observed == 1.0
    assert lost.name in result.detail


def test_nonfinite_checkpoint_fails(context, honest):
    ctx = context()
    step = honest.bundle.checkpoints[1][0]
    name = next(iter(ctx.checkpoints[step].model_state))
    ctx.checkpoints[step].model_state = {**ctx.checkpoints[step].model_state}
    ctx.checkpoints[step].model_state[name] = ctx.checkpoints[step].model_state[name].clone().fill_(math.inf)
    result = ArtifactsCheck().run(ctx)
    assert not result.passed and "non-finite" in result.detail


def test_nonfinite_tensors_names_nested_entries():
    state = {"a": torch.ones(2), "b": {"c": torch.tensor([1.0, math.nan])}, "n": torch.tensor([1])}
    assert nonfinite_tensors(state) == ["b.c"]


def test_a_nonfinite_optimizer_state_alone_fails_and_is_named(context, honest):
    ctx = context()
    step = honest.bundle.checkpoints[2][0]
    slots = ctx.checkpoints[step].optimizer_state["state"][1]
    name = next(iter(slots))
    slots[name] = slots[name].clone().fill_(math.nan)
    result = ArtifactsCheck().run(ctx)
    assert not result.passed and result.observed == 1.0
    assert result.detail == f"{ctx.checkpoint_name(step)}: non-finite values in optimizer.1.{name}"


def test_the_findings_are_known(context, honest):
    ctx = context()
    assert ArtifactsCheck().run(ctx).detail == (
        f"all {2 + len(honest.bundle.checkpoints)} artifacts fetched, matched their commitment and are finite")
    first, second = honest.bundle.checkpoints[1][0], honest.bundle.checkpoints[2][0]
    model = ctx.checkpoints[first].model_state = {k: v.clone().fill_(math.inf) for k, v in ctx.checkpoints[first].model_state.items()}
    assert len(model) > 3  # only the first three are listed
    ctx.problems["step-log.parquet"] = "missing or tampered"
    ctx.checkpoints[second].model_state = {**ctx.checkpoints[second].model_state}
    name = next(iter(model))
    ctx.checkpoints[second].model_state[name] = ctx.checkpoints[second].model_state[name].clone().fill_(math.nan)
    result = ArtifactsCheck().run(ctx)
    assert result.observed == 3.0 and result.detail == "; ".join([
        f"{ctx.checkpoint_name(first)}: non-finite values in model.{', model.'.join(list(model)[:3])}",
        f"{ctx.checkpoint_name(second)}: non-finite values in model.{name}",
        "step-log.parquet: missing or tampered",
    ])
