import math

import pytest
import torch

from proof.checks.base import Check, EpochBatches, flatten_state, flatten_weights, same_layout, worst_of
from proof.checks.pev import PevCheck
from proof.checks.telemetry import TelemetryCheck


class _Probe(Check):
    name = "probe"
    metric = "x"

    def run(self, ctx):
        raise NotImplementedError


def test_nan_and_inf_never_pass():
    probe = _Probe()
    assert not probe.result(threshold=1.0, observed=math.nan, detail="").passed
    assert not probe.result(threshold=math.inf, observed=math.inf, detail="").passed
    assert probe.result(threshold=0.0, observed=0.0, detail="").passed


def test_a_result_passes_up_to_its_threshold_and_carries_what_the_check_measured():
    probe = _Probe()
    assert probe.result(threshold=0.25, observed=0.25, detail="").passed
    assert not probe.result(threshold=0.25, observed=0.2500001, detail="").passed
    result = probe.result(threshold=0.5, observed=0.1, detail="why", cost_steps=3, forward_samples=7)
    assert result.model_dump() == {
        "name": "probe", "metric": "x", "threshold": 0.5, "observed": 0.1, "passed": True, "decisive": True,
        "detail": "why", "cost_steps": 3, "forward_samples": 7, "seconds": 0.0}
    default = probe.result(threshold=0, observed=0, detail="")
    assert (default.cost_steps, default.forward_samples) == (0, 0)


def test_worst_of_ranks_nan_worst():
    assert worst_of({}) == (0.0, None)
    assert worst_of({1: 0.5, 2: 0.1}) == (0.5, 1)
    value, key = worst_of({1: 0.5, 2: math.nan, 3: 9.0})
    assert math.isnan(value) and key == 2


def test_missing_evidence_names_each_artifact_and_why(context):
    ctx = context()
    ctx.problems = {"steps.enc": "sha256 mismatch"}
    result = _Probe().missing(["steps.enc", "telemetry.enc"], ctx)
    assert not result.passed and math.isnan(result.observed) and result.threshold == 0.0
    assert result.detail == "cannot check: steps.enc: sha256 mismatch; telemetry.enc: not available"


def test_a_state_without_tensors_flattens_to_an_empty_float64_vector():
    for state in ({}, {"step": 3, "note": "no tensors"}):
        flat = flatten_state(state)
        assert flat.dtype == torch.float64 and flat.shape == (0,)
    assert flatten_state({"b": torch.tensor([2.0]), "a": torch.tensor([[1, 3]]), "n": 4}).tolist() == [1.0, 3.0, 2.0]


@pytest.mark.parametrize("check,evidence,artifact", [
    (PevCheck(), "steps", "step_log"),
    (TelemetryCheck(), "telemetry", "telemetry"),
])
def test_a_check_without_its_evidence_names_the_artifact(context, check, evidence, artifact):
    ctx = context()
    setattr(ctx, evidence, None)
    result = check.run(ctx)
    assert not result.passed and result.detail.startswith(f"cannot check: {getattr(ctx.bundle, artifact).name}: ")


def test_the_context_reads_the_order_its_schedule_and_the_bundles_checkpoints(context):
    ctx = context()
    assert ctx.spec is ctx.expected_spec
    steps, every = ctx.checkpoint_steps, ctx.spec.checkpoint_every
    assert steps == sorted(s for s, _ in ctx.bundle.checkpoints) and steps[0] == 0
    assert ctx.scheduled_checkpoints == steps  # an honest worker checkpoints on the order's schedule
    assert steps[-1] == ctx.form.total and all(b - a == every for a, b in zip(steps, steps[1:-1]))
    assert 0 < steps[-1] - steps[-2] <= every
    assert [ctx.segment_end(a) for a in steps[:-1]] == steps[1:]
    assert [ctx.checkpoint_name(s) for s in steps] == [ref.name for _, ref in sorted(ctx.bundle.checkpoints)]


def test_weights_flatten_in_the_order_named_as_float64():
    state = {"a": torch.tensor([[1, 2]], dtype=torch.int64), "b": torch.tensor([3.5], dtype=torch.float32)}
    flat = flatten_weights(state, ("b", "a"))
    assert flat.dtype == torch.float64 and flat.tolist() == [3.5, 1.0, 2.0]
    empty = flatten_weights(state, ())
    assert empty.dtype == torch.float64 and empty.shape == (0,)


def test_same_layout_asks_for_the_same_keys_and_shapes():
    a = {"w": torch.zeros(2, 3), "step": 4}
    assert same_layout(a, {"w": torch.ones(2, 3), "step": 9})
    assert not same_layout(a, {"w": torch.zeros(3, 2), "step": 4})
    assert not same_layout(a, {"w": torch.zeros(2, 3)})
    assert not same_layout(a, {"w": torch.zeros(2, 3), "step": torch.zeros(1)})


def test_a_steps_batch_is_its_epochs_batch_at_its_place_in_the_committed_order(spec, data):
    from training.order import batch_order

    n = len(data[0])
    batches = EpochBatches(spec, n)
    per_epoch = len(batch_order(spec.seed, spec.task, 0, n, spec.batch_size))
    for epoch in (0, 1):
        assert [b.tolist() for b in batches.epoch(epoch)] == [
            b.tolist() for b in batch_order(spec.seed, spec.task, epoch, n, spec.batch_size)]
    assert batches.for_step(0).tolist() == batches.epoch(0)[0].tolist()
    assert batches.for_step(per_epoch - 1).tolist() == batches.epoch(0)[-1].tolist()
    assert batches.for_step(per_epoch + 2).tolist() == batches.epoch(1)[2].tolist()
    assert batches.epoch(0)[0].tolist() != batches.epoch(1)[0].tolist()
