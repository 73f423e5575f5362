"""Hidden poisoning: the adaptive attack on the update-size bound, one lying step at the end of the run.

The worker trains honestly, then adds to its last step a jump towards a targeted poisoning
(relabelling ``SOURCE`` digits as ``TARGET``, on its own training data) and claims in the step log
the size its honest last step had. It makes the jump as long as ``update-sizes`` admits: the
last segment may move no farther than the sum of its claimed step sizes, so the jump ``t u``
(``u`` a unit direction) may be as long as the largest ``t`` with ``|D + t u| <= P``; and no
longer than keeps the final model's loss on the last epoch within the margin PEV allows over the
logged losses. Only a challenge that re-executes the last step (or replays the last segment) sees it.

Not in the catalogue (:data:`proof.attacks.ATTACKS`), which holds attacks the verifier must
catch: this one measures what the verifier lets through (``bench/pot_hiding.py``).
"""

import copy
import hashlib
import math

import numpy as np
import torch

from proof.attacks.base import Attack, Job, store_checkpoints
from proof.attacks.capture import CaptureCheckpoints
from proof.checks.base import flatten_weights
from proof.recorder import RecordedProof
from proof.verifier import VerifyConfig
from training.models import build_model
from training.order import batch_order
from training.state import checkpoint_state
from training.trainer import batch_losses, state_form

SOURCE, TARGET = 7, 1


def admitted(moved: torch.Tensor, claimed: float, u: torch.Tensor) -> float:
    """The largest ``t`` with ``|moved + t u| <= claimed`` for a unit vector ``u`` (0 when none)."""
    du = float(moved @ u)
    disc = du * du - float(moved @ moved) + claimed * claimed
    return max(0.0, -du + math.sqrt(disc)) if disc >= 0 else 0.0


def unflatten(state: dict, names: tuple[str, ...], flat: torch.Tensor) -> dict:
    """``state`` with the weights ``names`` replaced by the pieces of ``flat``, in their dtypes."""
    out, offset = dict(state), 0
    for k in names:
        n = state[k].numel()
        out[k] = flat[offset:offset + n].reshape(state[k].shape).to(state[k].dtype)
        offset += n
    return out


def poison_direction(spec, state: dict, names: tuple[str, ...], X: np.ndarray, y: np.ndarray,
                     source: int = SOURCE, target: int = TARGET) -> torch.Tensor:
    """Unit vector over the weights ``names`` along which the loss of calling ``source`` ``target`` falls fastest."""
    model = build_model(spec.model, input_shape=spec.input_shape, num_classes=spec.num_classes, seed=spec.seed)
    model.load_state_dict(state)
    model.eval()
    picked = np.flatnonzero(y == source)[:2048]
    loss = model.loss(torch.as_tensor(X[picked]), torch.full((len(picked),), target, dtype=torch.int64))
    params = dict(model.named_parameters())
    direction = -torch.cat([g.double().reshape(-1) for g in torch.autograd.grad(loss, [params[k] for k in names])])
    return direction / torch.linalg.vector_norm(direction)


class HiddenPoisoning(Attack):
    name = "hidden-poisoning"
    summary = f"jumps towards calling {SOURCE}s {TARGET}s in the last step, as far as the update-size bound admits"
    uses_intensity = False

    def hooks(self, job: Job):
        self.capture = CaptureCheckpoints()
        return self.capture

    def tamper(self, recorded: RecordedProof, job: Job) -> RecordedProof:
        steps = job.checkpoint_steps
        a, end = steps[-2], steps[-1]
        names = state_form(job.spec, len(job.X)).trainable
        start, final = self.capture.checkpoints[a].model_state, self.capture.checkpoints[end].model_state
        moved = flatten_weights(final, names) - flatten_weights(start, names)
        claimed = math.fsum(r.update_norm for r in recorded.steps[a:end])
        u = poison_direction(job.spec, final, names, job.X, job.y)
        self.jump = self._within_pev(job, recorded, final, names, u, admitted(moved, claimed, u))
        self.cheated_steps = range(end - 1, end)
        fake = copy.copy(self.capture.checkpoints[end])
        fake.model_state = unflatten(final, names, flatten_weights(final, names) + self.jump * u)
        self.forged_state = fake.model_state
        records = list(recorded.steps)
        records[end - 1] = records[end - 1].model_copy(
            update={"state_sha256": hashlib.sha256(checkpoint_state(fake).to_bytes()).hexdigest()})
        return store_checkpoints(recorded, {end: fake}, job).model_copy(update={"steps": records})

    def _within_pev(self, job: Job, recorded: RecordedProof, final: dict, names: tuple[str, ...], u: torch.Tensor,
                    longest: float) -> float:
        """The longest jump up to ``longest`` after which the final model's loss on the whole last
        epoch stays within the PEV margin over the logged mean (searched by bisection)."""
        spec, per_epoch = job.spec, job.total_steps // job.spec.epochs
        epoch = spec.epochs - 1
        batches = batch_order(spec.seed, spec.task, epoch, len(job.X), spec.batch_size)
        logged = float(np.mean([r.loss for r in recorded.steps[epoch * per_epoch:job.total_steps]]))
        allowed = logged * (1 + VerifyConfig().pev_margin)
        base = flatten_weights(final, names)

        def passes(t: float) -> bool:
            return float(np.mean(batch_losses(spec, unflatten(final, names, base + t * u), job.X, job.y, batches))) <= allowed

        if passes(longest):
            return longest
        low, high = 0.0, longest
        for _ in range(12):
            mid = (low + high) / 2
            low, high = (mid, high) if passes(mid) else (low, mid)
        return low
