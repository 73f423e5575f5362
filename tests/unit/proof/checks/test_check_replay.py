import copy
import math

import pytest
import torch

from proof.checks.replay import ReplayCheck, largest_update_segments, state_distance


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


def test_forged_end_checkpoint_of_a_random_segment_fails(context):
    ctx = context()
    start = ctx.challenge.replay_segments[0]
    _shift(ctx, ctx.segment_end(start), 1e-3)
    result = ReplayCheck("random").run(ctx)
    assert not result.passed and f"from step {start}" in result.detail


def test_largest_update_finds_the_jump(context):
    ctx = context()
    jump = next(s for s in ctx.checkpoint_steps[:-1] if s not in ctx.challenge.replay_segments)
    _shift(ctx, ctx.segment_end(jump), 0.5)
    assert jump in largest_update_segments(ctx, 1, ctx.challenge.replay_segments)
    assert not ReplayCheck("largest-update").run(ctx).passed


def test_unrestorable_start_checkpoint_fails(context):
    ctx = context()
    start = ctx.challenge.replay_segments[0]
    ctx.checkpoints[start].spec = {**ctx.checkpoints[start].spec, "lr": 1.0}
    result = ReplayCheck("random").run(ctx)
    assert not result.passed and "another training spec" in result.detail
    assert torch.isinf(torch.tensor(result.observed))


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
