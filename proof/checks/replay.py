"""Segment replay (Proof-of-Learning style): re-run sampled segments and compare with the claim.

A segment runs from one committed checkpoint to the next. The verifier restores the start
checkpoint (its tensors; every setting comes from the order, see `training.trainer.StateForm`,
and the end checkpoint must have the order's form too), re-executes the segment's steps with the honest trainer and compares:

- the state reached with the claimed end checkpoint (`state_distance`): counters exactly, the
  weights as ``||w_replay - w_claim|| / ||w_claim - w_start||`` (distance normalised by the
  segment's update, so a small forged update is not hidden by large weights), each kind of
  optimizer state by its own size;
- every replayed step's loss with the logged loss (relative error).

The observed value is the worst of these; the threshold is the determinism profile's replay
tolerance (0 on ``cpu-fp32-exact``: bitwise). Random segments come from the challenge; the
largest-update segments (Jia et al., "Proof-of-Learning", S&P'21) are those whose checkpoints are
farthest apart, where an interpolating or jumping forger must put its jump.
"""

import math

import numpy as np
import torch

from proof.checks.base import Check, CheckContext, flatten_state, same_layout, worst_of
from proof.report import CheckResult


def replay_segment(spec, X: np.ndarray, y: np.ndarray, start, num_steps: int):
    """Re-execute a segment with the honest loop; return the reached checkpoint and step losses.

    `training.trainer.replay` returns only the checkpoint; the per-step losses come from the same
    loop (`_Run.advance`) so that logged losses inside a segment can be checked too.
    """
    from training.hooks import TrainHooks
    from training.trainer import _setup

    run = _setup(spec, X, y, None)
    run.restore(start)
    losses = run.advance(min(start.step + num_steps, run.total), None, TrainHooks())
    return run.snapshot(), losses


def largest_update_segments(ctx: CheckContext, count: int, exclude: list[int]) -> list[int]:
    """Start steps of the ``count`` segments with the largest weight change, ties to the earlier."""
    steps = ctx.checkpoint_steps
    sizes = []
    for a, b in zip(steps, steps[1:]):
        if a in exclude or a not in ctx.checkpoints or b not in ctx.checkpoints:
            continue
        wa, wb = _weights(ctx.checkpoints[a].model_state), _weights(ctx.checkpoints[b].model_state)
        size = float(torch.linalg.vector_norm(flatten_state(wb) - flatten_state(wa))) if same_layout(wa, wb) else math.inf
        sizes.append((-size if math.isfinite(size) else -math.inf, a))
    return sorted(a for _, a in sorted(sizes)[:count])


def _weights(model_state: dict) -> dict:
    """The floating-point tensors of a model state: what training moves by amounts, not by counts."""
    return {k: v for k, v in model_state.items() if torch.is_tensor(v) and v.is_floating_point()}


def _counters(state) -> dict:
    """The state that re-execution reproduces exactly under every profile.

    The model's integer tensors (batch norm's count of batches), the optimizer's step counters and
    the RNG state: counted, not computed, so any difference is a forged state, not numerical noise.
    """
    counters = {f"model.{k}": v for k, v in state.model_state.items() if torch.is_tensor(v) and not v.is_floating_point()}
    for p, slots in state.optimizer_state.get("state", {}).items():
        if torch.is_tensor(slots.get("step")):
            counters[f"optimizer.{p}.step"] = slots["step"]
    return {**counters, "rng": state.rng_state}


def _moments(state) -> dict[str, dict]:
    """The optimizer's per-parameter state by kind (each moment, the momentum buffer), counters apart."""
    kinds: dict[str, dict] = {}
    for p, slots in state.optimizer_state.get("state", {}).items():
        for kind, value in slots.items():
            if kind != "step" and torch.is_tensor(value):
                kinds.setdefault(kind, {})[p] = value
    return kinds


def _relative(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> float:
    distance = float(torch.linalg.vector_norm(a - b))
    return distance / max(float(torch.linalg.vector_norm(scale)), 1e-12) if distance else 0.0


def state_distance(start, claim, reached) -> float:
    """How far a re-executed state is from the claimed one, kind by kind (inf when they cannot be compared).

    Like is compared with like. Counters and the RNG state must be equal (``inf`` otherwise). The
    weights' distance is normalised by the claimed update ``claim - start``, so a small forged
    update is not hidden by large weights; each kind of optimizer state (a moment, a momentum
    buffer) by its own size, so neither the weights nor the step counters lend it room. The
    largest relative distance counts.
    """
    c_counters, r_counters = _counters(claim), _counters(reached)
    if c_counters.keys() != r_counters.keys() or not all(
            c_counters[k].shape == r_counters[k].shape and torch.equal(c_counters[k], r_counters[k]) for k in c_counters):
        return math.inf
    w_start, w_claim, w_reached = _weights(start.model_state), _weights(claim.model_state), _weights(reached.model_state)
    if not same_layout(w_claim, w_reached) or not same_layout(w_claim, w_start):
        return math.inf
    flat_claim = flatten_state(w_claim)
    errors = [_relative(flatten_state(w_reached), flat_claim, flat_claim - flatten_state(w_start))]
    m_claim, m_reached = _moments(claim), _moments(reached)
    if m_claim.keys() != m_reached.keys():
        return math.inf
    for kind, claimed in m_claim.items():
        if not same_layout(claimed, m_reached[kind]):
            return math.inf
        flat = flatten_state(claimed)
        errors.append(_relative(flatten_state(m_reached[kind]), flat, flat))
    return max(errors)


class ReplayCheck(Check):
    """Replays either the challenge's random segments or the largest-update segments."""

    metric = "max over segments of relative weight/optimizer distance and step-loss error"

    def __init__(self, kind: str):
        self.kind = kind
        self.name = f"replay-{kind}"

    def segments(self, ctx: CheckContext) -> list[int]:
        """The start steps this check replays."""
        if self.kind == "random":
            return list(ctx.challenge.replay_segments)
        return largest_update_segments(ctx, ctx.config.largest_update_segments, ctx.challenge.replay_segments)

    def run(self, ctx: CheckContext) -> CheckResult:
        from training.errors import CheckpointError
        from training.profiles import replay_tolerance

        starts = self.segments(ctx)
        needed = sorted({s for a in starts for s in (a, ctx.segment_end(a))})
        absent = [ctx.checkpoint_name(s) for s in needed if s not in ctx.checkpoints]
        if absent:
            return self.missing(absent, ctx)
        if self.kind == "largest-update" and ctx.problems:
            return self.missing(sorted(ctx.problems), ctx)
        errors: dict[int, float] = {}
        replayed = 0
        unreplayable: list[str] = []
        for a in starts:
            try:
                errors[a], steps = self._segment_error(ctx, a, ctx.segment_end(a))
            except (CheckpointError, RuntimeError, ValueError, KeyError) as exc:
                # A checkpoint the honest loop cannot restore (other spec, wrong tensors) is forged.
                errors[a], steps = math.inf, 0
                unreplayable.append(f"the segment from step {a} cannot be replayed ({exc})")
            replayed += steps
        observed, worst = worst_of(errors)
        detail = f"segments starting at {starts} replayed ({replayed} steps)"
        if worst is not None and observed > 0:
            detail += f"; worst is the segment from step {worst} to {ctx.segment_end(worst)}"
        detail += "".join(f"; {u}" for u in unreplayable)
        return self.result(
            threshold=replay_tolerance(ctx.spec.profile), observed=observed, detail=detail, cost_steps=replayed
        )

    def _segment_error(self, ctx: CheckContext, a: int, b: int) -> tuple[float, int]:
        from training.errors import CheckpointError

        start, claim = ctx.checkpoints[a], ctx.checkpoints[b]
        fault = ctx.form.fault(claim)
        if fault is not None:
            raise CheckpointError(f"{ctx.checkpoint_name(b)} {fault}")
        reached, losses = replay_segment(ctx.spec, ctx.X, ctx.y, start, b - a)
        errors = [state_distance(start, claim, reached)]
        logged = {r.step: r.loss for r in ctx.steps or []}
        for step, loss in zip(range(a, b), losses):
            errors.append(abs(logged.get(step, math.nan) - loss) / max(abs(loss), 1e-12))
        return worst_of(dict(enumerate(errors)))[0], len(losses)
