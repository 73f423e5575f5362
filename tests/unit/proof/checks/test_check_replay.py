import copy
import math
from types import SimpleNamespace

import pytest
import torch

from proof.checks.base import flatten_state
from proof.checks.replay import ReplayCheck, largest_update_segments, state_distance, tensor_deviations
from proof.verifier import VerifyConfig


def _shift(ctx, step, amount):
    state = {k: v.clone() for k, v in ctx.checkpoints[step].model_state.items()}
    for v in state.values():
        if v.is_floating_point():
            v.add_(amount)
    ctx.checkpoints[step].model_state = state


def test_honest_segments_replay_bitwise(context):
    for kind in ("random", "largest-update"):
        result = ReplayCheck(kind).run(context())
        assert result.passed and result.observed == 0.0 and result.cost_steps > 0


def test_every_replayed_step_is_counted_and_an_honest_detail_names_no_worst_segment(context):
    ctx = context(config=VerifyConfig(replay_segments=2))
    starts = ctx.challenge.replay_segments
    result = ReplayCheck("random").run(ctx)
    steps = sum(ctx.segment_end(a) - a for a in starts)
    assert len(starts) == 2 and result.passed and result.cost_steps == steps
    assert result.detail == f"segments starting at {starts} replayed ({steps} steps)"


def test_a_segment_without_its_checkpoints_is_named_not_replayed(context):
    ctx = context()
    end = ctx.segment_end(ctx.challenge.replay_segments[0])
    del ctx.checkpoints[end]
    result = ReplayCheck("random").run(ctx)
    assert not result.passed and result.detail == f"cannot check: {ctx.checkpoint_name(end)}: not available"


def test_only_the_largest_update_kind_needs_every_artifact(context):
    """Ranking segments by their update reads every checkpoint, so an unreadable one leaves it unable to
    rank; the random segments need only their own checkpoints."""
    ctx = context()
    ctx.problems = {"ckpt-unreadable": "sha256 mismatch"}
    assert ReplayCheck("largest-update").run(ctx).detail == "cannot check: ckpt-unreadable: sha256 mismatch"
    assert ReplayCheck("random").run(ctx).passed


def test_forged_end_checkpoint_of_a_random_segment_fails(context):
    ctx = context()
    start = ctx.challenge.replay_segments[0]
    _shift(ctx, ctx.segment_end(start), 1e-3)
    result = ReplayCheck("random").run(ctx)
    assert not result.passed and result.detail.startswith(
        f"segments starting at {[start]} replayed ({ctx.segment_end(start) - start} steps); worst is the segment "
        f"from step {start} to {ctx.segment_end(start)}")


def test_largest_update_finds_the_jump(context):
    ctx = context()
    jump = next(s for s in ctx.checkpoint_steps[:-1] if s not in ctx.challenge.replay_segments)
    _shift(ctx, ctx.segment_end(jump), 0.5)
    assert jump in largest_update_segments(ctx, 1, ctx.challenge.replay_segments)
    assert not ReplayCheck("largest-update").run(ctx).passed


def test_a_segment_whose_weights_change_layout_ranks_above_any_finite_update(context):
    ctx = context()
    jump = next(s for s in ctx.checkpoint_steps[:-1] if s not in ctx.challenge.replay_segments)
    _shift(ctx, ctx.segment_end(jump), 0.5)  # the largest finite update
    reshaped = next(s for s in ctx.checkpoint_steps[:-1] if s not in (jump, *ctx.challenge.replay_segments))
    end = ctx.segment_end(reshaped)
    ctx.checkpoints[end].model_state = {**ctx.checkpoints[end].model_state, "extra.weight": torch.zeros(2)}
    assert largest_update_segments(ctx, 1, ctx.challenge.replay_segments) == [reshaped]
    assert largest_update_segments(ctx, 2, ctx.challenge.replay_segments) == sorted([jump, reshaped])


def test_a_segment_that_ends_in_non_finite_weights_ranks_above_any_finite_update(context):
    ctx = context()
    jump = next(s for s in ctx.checkpoint_steps[:-1] if s not in ctx.challenge.replay_segments)
    _shift(ctx, ctx.segment_end(jump), 0.5)
    broken = max(s for s in ctx.checkpoint_steps[:-1] if s not in (jump, *ctx.challenge.replay_segments))
    _shift(ctx, ctx.segment_end(broken), math.nan)
    assert largest_update_segments(ctx, 1, ctx.challenge.replay_segments) == [broken]


def test_unrestorable_start_checkpoint_fails(context):
    ctx = context()
    start = ctx.challenge.replay_segments[0]
    ctx.checkpoints[start].spec = {**ctx.checkpoints[start].spec, "lr": 1.0}
    result = ReplayCheck("random").run(ctx)
    assert not result.passed and "another training spec" in result.detail
    assert torch.isinf(torch.tensor(result.observed)) and result.cost_steps == 0
    assert f"; worst is the segment from step {start} to {ctx.segment_end(start)}; " in result.detail


def test_every_unreplayable_segment_is_named_in_its_own_clause(context):
    ctx = context(config=VerifyConfig(replay_segments=2))
    for start in ctx.challenge.replay_segments:
        ctx.checkpoints[start].spec = {**ctx.checkpoints[start].spec, "lr": 1.0}
    result = ReplayCheck("random").run(ctx)
    clauses = result.detail.split("; ")[2:]  # after the segments and the worst one
    assert [c.split(" (")[0] for c in clauses] == [f"the segment from step {a} cannot be replayed"
                                                   for a in ctx.challenge.replay_segments]
    assert all(c.endswith("belongs to another training spec, so this order's training never made it)") for c in clauses)


def test_an_end_checkpoint_of_another_form_fails_even_with_the_replayed_tensors(context):
    """The segment's claimed end holds exactly the tensors replay reaches, but says it is of another epoch."""
    ctx = context()
    start = ctx.challenge.replay_segments[0]
    end = ctx.segment_end(start)
    ctx.checkpoints[end] = copy.copy(ctx.checkpoints[end])
    ctx.checkpoints[end].epoch += 1
    result = ReplayCheck("random").run(ctx)
    assert not result.passed and math.isinf(result.observed)
    assert (f"the segment from step {start} cannot be replayed ({ctx.checkpoint_name(end)} claims epoch "
            f"{ctx.checkpoints[end].epoch}, not {ctx.checkpoints[end].epoch - 1})") in result.detail


def test_a_logged_loss_is_held_to_its_relative_error(context):
    """Replay reaches the committed state bit for bit; only the loss logged for the segment's first step is
    off, by one part in a thousand, and that relative error is what the check observes."""
    ctx = context()
    start = ctx.challenge.replay_segments[0]
    ctx.steps = [r.model_copy(update={"loss": r.loss * 1.001}) if r.step == start else r for r in ctx.steps]
    result = ReplayCheck("random").run(ctx)
    assert not result.passed and result.observed == pytest.approx(1e-3, rel=1e-4)


@pytest.fixture(scope="module")
def adamw_states(spec, data):
    """Two consecutive AdamW states (steps 4 and 5) of the tiny task."""
    from training.state import decode_state
    from training.trainer import initial_training_state, replay_segment_states

    adamw = spec.model_copy(update={"optimizer": "adamw", "lr": 3e-3})
    start = decode_state(initial_training_state(adamw, data[0], data[1]).to_bytes())
    states = [decode_state(s.to_bytes()) for s in replay_segment_states(adamw, data[0], data[1], start=start, stop=5)]
    return states[-2], states[-1]


def test_counters_and_the_rng_state_must_be_equal(adamw_states):
    start, claim = adamw_states
    assert state_distance(start, claim, copy.deepcopy(claim)) == 0.0
    for forge in (lambda s: s.optimizer_state["state"][0]["step"].add_(1),
                  lambda s: s.rng_state.__setitem__(0, s.rng_state[0] ^ 1)):
        reached = copy.deepcopy(claim)
        forge(reached)
        assert state_distance(start, claim, reached) == math.inf


def test_each_moment_is_compared_with_itself(adamw_states):
    # The second moment is many orders of magnitude smaller than the first and than the step
    # counters: normalised by all optimizer tensors, doubling it would be an error of about 1e-5.
    start, claim = adamw_states
    reached = copy.deepcopy(claim)
    for slots in reached.optimizer_state["state"].values():
        slots["exp_avg_sq"].mul_(2)
    assert state_distance(start, claim, reached) == pytest.approx(1.0)


def test_each_weight_tensor_is_compared_with_its_own_update(adamw_states):
    # Half a step's update added to the smallest weight tensor alone: against the whole model's
    # update it is lost in the noise a tolerant profile admits, against that tensor's own update
    # it is half the step.
    start, claim = adamw_states
    name = min((k for k, v in claim.model_state.items() if v.is_floating_point()), key=lambda k: claim.model_state[k].numel())
    update = claim.model_state[name] - start.model_state[name]
    reached = copy.deepcopy(claim)
    reached.model_state[name] += update / 2
    whole = float(torch.linalg.vector_norm(update / 2)) / float(torch.linalg.vector_norm(
        flatten_state(claim.model_state) - flatten_state(start.model_state)))
    assert whole < 2e-2
    deviations = tensor_deviations(start, claim, reached)
    assert deviations[f"weights.{name}"] == pytest.approx(0.5, rel=1e-4)
    assert state_distance(start, claim, reached) == deviations[f"weights.{name}"]
    assert all(v == 0.0 for k, v in deviations.items() if k != f"weights.{name}")


def test_each_parameters_moment_is_compared_with_itself(adamw_states):
    start, claim = adamw_states
    reached = copy.deepcopy(claim)
    reached.optimizer_state["state"][0]["exp_avg"].mul_(1.25)
    deviations = tensor_deviations(start, claim, reached)
    assert deviations["exp_avg.0"] == pytest.approx(0.25)
    assert {k for k, v in deviations.items() if v} == {"exp_avg.0"}


def _state(weights: dict, *, counters: dict | None = None, optimizer: dict | None = None, rng: int = 7):
    """A training state by hand: float64 weights, integer model counters, an optimizer state dict, an RNG state."""
    return SimpleNamespace(
        model_state={k: torch.tensor(v, dtype=torch.float64) for k, v in weights.items()}
        | {k: torch.tensor(v) for k, v in (counters or {}).items()},
        optimizer_state={"state": {}} if optimizer is None else optimizer,
        rng_state=torch.tensor([rng, 1], dtype=torch.uint8),
    )


def _adam(step: float, exp_avg: list, exp_avg_sq: list | None = None) -> dict:
    slots = {"step": torch.tensor(step), "exp_avg": torch.tensor(exp_avg, dtype=torch.float64)}
    if exp_avg_sq is not None:
        slots["exp_avg_sq"] = torch.tensor(exp_avg_sq, dtype=torch.float64)
    return {"state": {0: slots}, "param_groups": [{"params": [0]}]}


def test_tensor_deviations_known_answers():
    bn = {"bn.num_batches_tracked": 3}
    start = _state({"w": [0.0, 0.0]}, counters=bn, optimizer=_adam(1, [0.0, 0.0], [0.0, 0.0]))
    claim = _state({"w": [3.0, 4.0]}, counters=bn, optimizer=_adam(2, [1.0, 0.0], [2.0, 0.0]))
    reached = _state({"w": [3.0, 4.5]}, counters=bn, optimizer=_adam(2, [1.0, 0.5], [2.0, 0.0]))
    # each weight tensor against its own update (0.5 of 5), each moment against itself (0.5 of 1); the step
    # counters and the model's integer counters are compared for equality, never as amounts
    assert tensor_deviations(start, claim, reached) == {"weights.w": 0.1, "exp_avg.0": 0.5, "exp_avg_sq.0": 0.0}
    assert state_distance(start, claim, reached) == 0.5


@pytest.mark.parametrize("forge", [
    lambda s: s.model_state["bn.num_batches_tracked"].add_(1),  # a model counter
    lambda s: s.optimizer_state["state"][0]["step"].add_(1),  # an optimizer step counter
    lambda s: s.rng_state.add_(1),
    lambda s: s.optimizer_state.clear(),  # no optimizer state at all
], ids=["model-counter", "step-counter", "rng", "no-optimizer-state"])
def test_a_counter_that_differs_is_named_as_counters(forge):
    start = _state({"w": [0.0]}, counters={"bn.num_batches_tracked": 3}, optimizer=_adam(1, [0.0]))
    claim = _state({"w": [1.0]}, counters={"bn.num_batches_tracked": 4}, optimizer=_adam(2, [1.0]))
    reached = copy.deepcopy(claim)
    forge(reached)
    assert tensor_deviations(start, claim, reached) == {"counters": math.inf}
    assert tensor_deviations(start, reached, claim) == {"counters": math.inf}


def test_a_state_without_optimizer_state_is_compared_by_its_weights():
    start, claim, reached = _state({"w": [0.0]}), _state({"w": [2.0]}), _state({"w": [2.5]})
    claim.optimizer_state = {}  # an optimizer that keeps no state may leave the key out
    assert tensor_deviations(start, claim, reached) == {"weights.w": 0.25}


def test_weights_of_another_layout_than_the_claim_or_the_start_cannot_be_compared():
    start, claim = _state({"w": [0.0, 0.0]}), _state({"w": [1.0, 1.0]})
    for other in (_state({"w": [1.0]}), _state({"w": [1.0, 1.0], "b": [0.0]}), _state({"v": [1.0, 1.0]})):
        assert tensor_deviations(start, claim, other) == {"weights": math.inf}
        assert tensor_deviations(other, claim, copy.deepcopy(claim)) == {"weights": math.inf}


def test_optimizer_state_of_other_kinds_or_layout_cannot_be_compared():
    start = _state({"w": [0.0]}, optimizer=_adam(1, [0.0], [0.0]))
    claim = _state({"w": [1.0]}, optimizer=_adam(2, [1.0], [1.0]))
    fewer = _state({"w": [1.0]}, optimizer=_adam(2, [1.0]))
    assert tensor_deviations(start, claim, fewer) == {"weights.w": 0.0, "optimizer": math.inf}
    wider = _state({"w": [1.0]}, optimizer=_adam(2, [1.0], [1.0, 0.0]))
    assert tensor_deviations(start, claim, wider) == {"weights.w": 0.0, "exp_avg.0": 0.0, "exp_avg_sq": math.inf}


def test_a_state_with_nothing_to_compare_is_at_distance_zero():
    assert state_distance(_state({}), _state({}), _state({})) == 0.0


def test_an_update_below_the_tensors_precision_is_measured_against_that_precision():
    # a weight tensor the claim leaves where it was: its deviation is measured against one float32 rounding of
    # the tensor, and a tensor claimed as zeros against 1e-30, so neither divides by zero
    start = _state({"w": [1000.0, 0.0], "z": [0.0, 0.0]})
    reached = _state({"w": [1000.0, 1e-5], "z": [0.0, 1e-3]})
    deviations = tensor_deviations(start, copy.deepcopy(start), reached)
    assert deviations["weights.w"] == pytest.approx(1e-5 / (torch.finfo(torch.float32).eps * 1000.0), rel=1e-12)
    assert deviations["weights.z"] == pytest.approx(1e-3 / 1e-30, rel=1e-12)
