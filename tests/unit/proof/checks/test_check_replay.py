import torch

from proof.checks.replay import ReplayCheck, largest_update_segments


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
    assert not result.passed and "cannot be restored" in result.detail
    assert torch.isinf(torch.tensor(result.observed))
