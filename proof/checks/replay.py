"""Segment replay (Proof-of-Learning style): re-run sampled segments and compare with the claim.

A segment runs from one committed checkpoint to the next. The verifier restores the start
checkpoint (its tensors; every setting comes from the order, see `training.trainer.StateForm`,
and the end checkpoint must have the order's form too), re-executes the segment's steps with the honest trainer and compares:

- the state reached with the claimed end checkpoint (`tensor_deviations`), tensor by tensor:
  counters exactly, each weight tensor as ``||w_replay - w_claim|| / ||w_claim - w_start||``
  (distance normalised by that tensor's update in the segment, so a small forged update is hidden
  neither by large weights nor by the other tensors' updates), each optimizer tensor by its own
  size;
- every replayed step's loss with the logged loss (relative error).

The observed value is the worst of these; the threshold is the determinism profile's tolerance
for a segment (`training.profiles.Tolerance`; 0 on ``cpu-fp32-exact``: bitwise), which holds for
segments up to the length the order's spec admits under that profile. Random segments come from the challenge; the
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


# A tensor whose claimed update is below its own float32 precision is compared against that
# precision instead: a deviation smaller than one rounding of the tensor is not evidence.
_PRECISION = torch.finfo(torch.float32).eps


def _relative(reached: torch.Tensor, claim: torch.Tensor, scale: torch.Tensor) -> float:
    reached, claim = reached.detach().double(), claim.detach().double()
    distance = float(torch.linalg.vector_norm(reached - claim))
    if not distance:
        return 0.0
    floor = _PRECISION * float(torch.linalg.vector_norm(claim))
    return distance / max(float(torch.linalg.vector_norm(scale.detach().double())), floor, 1e-30)


def tensor_deviations(start, claim, reached) -> dict[str, float]:
    """How far each tensor of a re-executed state is from the claimed one (``inf`` where they cannot be compared).

    Like is compared with like, tensor by tensor. Counters and the RNG state must be equal
    (``{"counters": inf}`` otherwise). Each weight tensor's distance is normalised by its own
    claimed update ``claim - start``, so a small forged update is hidden neither by large weights
    nor by the other tensors' updates; each optimizer tensor (a moment, a momentum buffer of one
    parameter) by its own size, so neither the weights, the step counters nor the other
    parameters' moments lend it room. Keys are ``weights.<name>`` and ``<kind>.<parameter index>``.
    """
    c_counters, r_counters = _counters(claim), _counters(reached)
    if c_counters.keys() != r_counters.keys() or not all(
            c_counters[k].shape == r_counters[k].shape and torch.equal(c_counters[k], r_counters[k]) for k in c_counters):
        return {"counters": math.inf}
    w_start, w_claim, w_reached = _weights(start.model_state), _weights(claim.model_state), _weights(reached.model_state)
    if not same_layout(w_claim, w_reached) or not same_layout(w_claim, w_start):
        return {"weights": math.inf}
    deviations = {f"weights.{k}": _relative(w_reached[k], w_claim[k], w_claim[k].double() - w_start[k].double()) for k in w_claim}
    m_claim, m_reached = _moments(claim), _moments(reached)
    if m_claim.keys() != m_reached.keys():
        return {**deviations, "optimizer": math.inf}
    for kind, claimed in m_claim.items():
        if not same_layout(claimed, m_reached[kind]):
            return {**deviations, kind: math.inf}
        deviations.update({f"{kind}.{p}": _relative(m_reached[kind][p], v, v) for p, v in claimed.items()})
    return deviations


def state_distance(start, claim, reached) -> float:
    """The largest of :func:`tensor_deviations`: how far a re-executed state is from the claimed one."""
    return max(tensor_deviations(start, claim, reached).values(), default=0.0)


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
        from training.tolerance import replay_tolerance

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
            threshold=replay_tolerance(ctx.spec.profile).segment, observed=observed, detail=detail, cost_steps=replayed
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
