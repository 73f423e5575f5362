"""Per-step commitments: the state chain and the step spot check.

The step log commits, for every step ``t``, the SHA-256 of the full training state after it
(``StepRecord.state_sha256``, in the ``training.state`` encoding) and the size of its update
(``StepRecord.update_norm``, the distance its trainable weights moved). Three checks read it:

- ``state-chain``: every committed checkpoint at step ``c`` encodes to the state digest logged
  for step ``c`` (so checkpoints and per-step commitments tell one story) and has the form the
  order implies (`training.trainer.StateForm`: every setting, counter and tensor shape), and
  every step has a digest at all;
- ``spot-steps``: for each challenged step ``t`` the worker revealed the states after ``t`` and
  ``t + 1`` steps (``proof.response``); they must hash to the committed digests, and one honest
  step of the trainer from state ``t`` (its tensors; everything else from the order, and both
  states must have the order's form) on the committed batch must reach state ``t + 1`` (the
  same bytes on ``cpu-fp32-exact``; otherwise within the profile's tolerance for one step, tensor by
  tensor as in `proof.checks.replay.tensor_deviations`) with the logged loss, and under a
  tolerant profile the sampled steps' deviations, scaled to the whole run, must stay within the
  tolerance of the run's displacement (:func:`run_deviation`). The state before step 0 is
  rebuilt from the order's seed. A cheat confined to a share ``f`` of the steps escapes ``m`` uniform samples with
  probability ``(1 - f)^m``, whatever block the cheater chose; each sample costs one step. The
  challenged steps include those whose claimed update is largest against their neighbours', and
  each challenged step's claimed size must match its revealed states;
- ``update-sizes``: no segment between two checkpoints moves the weights farther than the sizes
  its steps claim, so a move that is large is either claimed, and re-executed, or caught here.
"""

import hashlib
import math
from typing import TYPE_CHECKING

import torch

from proof.checks.base import Check, CheckContext, flatten_weights
from proof.checks.loss import loss_tolerance
from proof.checks.replay import state_distance
from proof.report import CheckResult

if TYPE_CHECKING:
    from training.trainer import Stepper

# The deviation of a step re-executed to the same bytes.
EXACT = torch.zeros(0, dtype=torch.float64)

# Relative slack on update sizes: the worker computes them in float32, the verifier in float64.
SIZE_RTOL = 1e-4


def initial_state_bytes(ctx: CheckContext) -> bytes:
    """The state before step 0, rebuilt from the order's seed and starting weights (once per verification)."""
    from training.trainer import initial_training_state

    if "initial" not in ctx.derived:
        ctx.derived["initial"] = initial_training_state(ctx.spec, ctx.X, ctx.y, ctx.initial).to_bytes()
    return ctx.derived["initial"]


def committed_digest(ctx: CheckContext, step: int) -> str | None:
    """The committed digest of the state after ``step`` steps (state 0: rebuilt from the seed)."""
    if step == 0:
        return hashlib.sha256(initial_state_bytes(ctx)).hexdigest()
    if ctx.steps is None or step > len(ctx.steps) or ctx.steps[step - 1].step != step - 1:
        return None
    return ctx.steps[step - 1].state_sha256 or None


class StateChainCheck(Check):
    """Checkpoints agree with the per-step state digests of the step log."""

    name = "state-chain"
    metric = "steps without a state digest plus checkpoints that disagree with it"

    def run(self, ctx: CheckContext) -> CheckResult:
        from training.state import checkpoint_state

        if ctx.steps is None:
            return self.missing([ctx.bundle.step_log.name], ctx)
        faults = [f"step {r.step} has no state digest" for r in ctx.steps if len(r.state_sha256) != 64][:3]
        for step, checkpoint in sorted(ctx.checkpoints.items()):
            form_fault = ctx.form.fault(checkpoint)
            if form_fault is not None:
                faults.append(f"{ctx.checkpoint_name(step)} {form_fault}")
            if step == 0 or form_fault is not None:  # a state of no form of this order's has no digest to compare
                continue
            digest = hashlib.sha256(checkpoint_state(checkpoint).to_bytes()).hexdigest()
            if digest != committed_digest(ctx, step):
                faults.append(f"{ctx.checkpoint_name(step)} is not the state committed for step {step}")
        detail = "; ".join(faults[:5]) or f"{len(ctx.checkpoints)} checkpoints match the per-step commitments"
        return self.result(threshold=0.0, observed=float(len(faults)), detail=detail)


class StepSpotCheck(Check):
    """Challenged steps re-executed one at a time from the worker's revealed states."""

    name = "spot-steps"
    metric = "challenged steps whose revealed states or re-executed transition disagree with the commitment"

    def run(self, ctx: CheckContext) -> CheckResult:
        steps = ctx.challenge.spot_steps
        if not steps:
            return self.result(threshold=0.0, observed=0.0, detail="no steps challenged")
        if ctx.steps is None:
            return self.missing([ctx.bundle.step_log.name], ctx)
        from training.trainer import Stepper

        faults: dict[int, str] = {}
        executed = 0
        stepper = Stepper(ctx.spec, ctx.X, ctx.y)
        deviations: dict[int, torch.Tensor] = {}
        for t in steps:
            faults_at, ran, deviations[t] = self.fault_at(ctx, t, stepper)
            executed += ran
            if faults_at:
                faults[t] = faults_at
        uniform = ctx.challenge.uniform_steps
        problems = [f"step {t}: {why}" for t, why in sorted(faults.items())]
        drift = run_deviation(ctx, [deviations.get(t) for t in uniform], stepper.form.trainable)
        if drift is not None and not drift <= _tolerance(ctx):
            problems.append(f"the deviations of {len(uniform)} uniformly sampled steps add up to an estimated "
                            f"{drift:.3g} of the run's displacement over the run (the profile admits {_tolerance(ctx):g})")
        detail = "; ".join(problems[:5])
        return self.result(
            threshold=0.0, observed=float(len(problems)), cost_steps=executed,
            detail=detail or f"{len(steps)} challenged steps re-executed and matched their commitments",
        )

    def fault_at(self, ctx: CheckContext, t: int, stepper: "Stepper") -> tuple[str | None, int, torch.Tensor | None]:
        """The spot check at step ``t`` alone: why it fails (None when it passes), how many steps were
        executed, and the deviation. Wasp's traces label every step of a run with it (``bench.wasp``).

        The deviation is the claimed trainable weights after the step less the re-executed ones
        (:data:`EXACT` where they are the same bytes, None where the step fails).
        """
        try:
            return self._check_step(ctx, t, stepper)
        except Exception as exc:  # a forged state may break restoring or stepping in any way
            return f"state {t} cannot be restored and stepped ({type(exc).__name__}: {exc})", 0, None

    def _check_step(self, ctx: CheckContext, t: int, stepper: "Stepper") -> tuple[str | None, int, torch.Tensor | None]:
        from training.state import decode_state

        before, why = _revealed(ctx, t)
        if before is None:
            return why, 0, None
        after, why = _revealed(ctx, t + 1)
        if after is None:
            return why, 0, None
        start, end = decode_state(before, name=f"state {t}"), decode_state(after, name=f"state {t + 1}")
        for step, state in ((t, start), (t + 1, end)):
            fault = f"holds step {state.step}" if state.step != step else stepper.form.fault(state)
            if fault is not None:
                return f"the revealed state {step} {fault}", 0, None
        names = stepper.form.trainable
        moved, claimed = weight_distance(start.model_state, end.model_state, names), ctx.steps[t].update_norm
        if not abs(moved - claimed) <= SIZE_RTOL * moved:
            return f"the revealed states {t} and {t + 1} lie {moved:.6g} apart; the step log claims {claimed:.6g}", 0, None
        state, loss = stepper.step(start)
        logged = ctx.steps[t].loss
        if abs(logged - loss) > loss_tolerance(ctx) * max(abs(loss), 1e-12) or math.isnan(logged):
            return f"logged loss {logged:.6g}, re-executed {loss:.6g}", 1, None
        if hashlib.sha256(state.to_bytes()).hexdigest() == committed_digest(ctx, t + 1):
            return None, 1, EXACT
        reached = decode_state(state.to_bytes())
        error = state_distance(start, end, reached)
        if not (error <= _tolerance(ctx) and _tolerance(ctx) > 0):  # a tolerance of 0 asks for the same bytes
            return f"one honest step from state {t} does not reach the committed state {t + 1} (error {error:.3g})", 1, None
        return None, 1, flatten_weights(end.model_state, names) - flatten_weights(reached.model_state, names)


def _tolerance(ctx: CheckContext) -> float:
    from training.tolerance import replay_tolerance

    return replay_tolerance(ctx.spec.profile).step


def run_deviation(ctx: CheckContext, deviations: list[torch.Tensor | None], names: tuple[str, ...]) -> float | None:
    """The run's total deviation from honest steps, estimated from a uniform sample of steps, relative to its displacement.

    A step within the profile's tolerance of an honest one may still deviate from it; a worker
    that bends every step a little in one direction moves the model far by the end of the run
    while no step, and no short segment, looks wrong. Each uniformly sampled step's deviation
    (claimed weights less re-executed ones) times ``steps / samples`` estimates the sum of all
    steps' deviations without bias, so that sum is bounded, not only each term: honest
    deviations point every which way and cancel, a drift adds up. Returns the estimate's size as
    a share of the distance between the initial and the final weights; None when there is
    nothing to estimate (no deviation sampled, a sampled step failed on its own, or no final
    checkpoint to measure the run by).
    """
    from training.state import decode_state

    if not deviations or any(d is None for d in deviations) or all(d is EXACT for d in deviations):
        return None
    final = ctx.checkpoints.get(max(ctx.checkpoint_steps, default=0))
    if final is None:
        return None
    initial = decode_state(initial_state_bytes(ctx)).model_state
    displacement = weight_distance(initial, final.model_state, names)
    return total_deviation([d for d in deviations if d is not EXACT], len(deviations), len(ctx.steps), displacement)


def total_deviation(deviations: list[torch.Tensor], samples: int, steps: int, displacement: float) -> float:
    """The size of ``steps / samples`` times the sum of ``deviations``, as a share of ``displacement``.

    ``deviations`` are those of ``samples`` uniformly sampled steps of a run of ``steps`` (the
    steps that re-executed exactly left out), so this estimates the run's total deviation without bias.
    """
    estimate = float(torch.linalg.vector_norm(sum(deviations))) * steps / samples if deviations else 0.0
    return estimate / max(displacement, 1e-30)


class UpdateSizeCheck(Check):
    """No segment moves the weights farther than the update sizes its steps claim.

    The step log commits every step's update size (the distance its weights moved). Between two
    committed checkpoints the weights cannot move farther than the sum of those sizes (the
    triangle inequality), so a jump that a worker hides under small claimed sizes shows here,
    whatever the challenge; one it claims truthfully is among the largest claimed updates, which
    every challenge re-executes (``Challenge.with_largest_steps``); and a claimed size is checked
    against the revealed states at every spot-checked step.
    """

    name = "update-sizes"
    metric = "segments that moved farther than their steps claim, plus claims that are not sizes"

    def run(self, ctx: CheckContext) -> CheckResult:
        if ctx.steps is None:
            return self.missing([ctx.bundle.step_log.name], ctx)
        claims = [r.update_norm for r in ctx.steps]
        faults = [f"step {t} claims an update of {n!r}" for t, n in enumerate(claims) if not (math.isfinite(n) and n >= 0)]
        steps = ctx.checkpoint_steps
        for a, b in zip(steps, steps[1:]):
            if a not in ctx.checkpoints or b not in ctx.checkpoints or ctx.form.fault(ctx.checkpoints[a]) \
                    or ctx.form.fault(ctx.checkpoints[b]):
                continue  # the artifacts and state-chain checks name what is missing or malformed
            moved = weight_distance(ctx.checkpoints[a].model_state, ctx.checkpoints[b].model_state, ctx.form.trainable)
            try:
                claimed = math.fsum(claims[a:b])
            except OverflowError:  # finite sizes summed past any float claim more than any segment moves
                claimed = math.inf
            if not moved <= claimed * (1 + SIZE_RTOL):
                faults.append(f"the weights moved {moved:.6g} from step {a} to {b}; its steps claim {claimed:.6g}")
        detail = "; ".join(faults[:5]) or f"{len(steps) - 1} segments moved no farther than their steps claim"
        return self.result(threshold=0.0, observed=float(len(faults)), detail=detail)


def weight_distance(before: dict, after: dict, names: tuple[str, ...]) -> float:
    """L2 distance between the trainable weights ``names`` of two model states, in float64."""
    return float(torch.linalg.vector_norm(flatten_weights(after, names) - flatten_weights(before, names)))


def _revealed(ctx: CheckContext, step: int) -> tuple[bytes | None, str]:
    """The revealed bytes of state ``step`` if they match the commitment, else why not."""
    digest = committed_digest(ctx, step)
    if digest is None:
        return None, f"the step log commits no state for step {step}"
    if step == 0:
        return initial_state_bytes(ctx), ""
    if step not in ctx.revealed:
        return None, f"state {step} was not revealed ({ctx.state_problems.get(step, 'absent from the response')})"
    data = ctx.revealed[step]
    if hashlib.sha256(data).hexdigest() != digest:
        return None, f"the revealed state {step} does not hash to the digest committed for it"
    return data, ""
