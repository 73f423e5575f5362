"""DiLoCo rounds: many workers train one order, each on its shard, and a deterministic outer step joins them.

The order's training data is split once into ``workers`` shards (:func:`shard_plan`, committed by
:func:`shard_plan_digest`). Round ``r`` starts from the global state ``G_r``: the model's weights
and the outer optimizer's momentum. Each worker ``w`` trains ``inner_steps`` steps from ``G_r``'s
weights on its round's slice of its shard (:func:`round_indices`) as an ordinary training task:
:func:`round_spec` pins ``G_r``'s weights as the task's initial weights, so its Proof of Train is
the one any order has, and a verifier rebuilds its state 0 from ``G_r``. The inner optimizer starts
fresh every round, which keeps each worker-round self-contained.

The worker's pseudo-gradient is ``G_r - W_{r,w}`` (parameters only). :func:`aggregate` applies
the robust rules (:class:`AggregationRules`) and the outer step, which anyone can recompute bit
for bit from the committed states:

1. exclude the workers the caller names (a round whose proof failed) and reject non-finite updates,
   zero updates and stale ones (weights equal to a state committed before), copies (a pseudo-gradient
   within ``copy_distance`` of an earlier-committed worker's) and, once three or more remain,
   norm-inflated updates (over ``max_norm_ratio`` times the median norm);
2. clip each remaining pseudo-gradient to the median norm and average them in worker order;
3. apply Nesterov momentum: ``m = mu*m + g``, ``u = g + mu*m`` (or ``u = m`` without Nesterov),
   ``p = p - lr*u`` (torch's SGD; the first round's ``m`` is ``g``), each a separate float32
   operation; buffers (batch-norm statistics) take the mean of the accepted workers' values.

No rule judges an update's direction: near convergence honest pseudo-gradients are mostly noise, and
their cosine with the others' median fell to 0.02 in ``bench.diloco``, where a random direction sits.
A reversed or random update is the proof's to catch: it is not a training from the round's weights.

Norms and dot products are summed exactly (``math.fsum`` of float64 products of float32 values), so
no reduction order or thread count changes a decision or a bit of the next state.
"""

import hashlib
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.distributed import ordered_mean
from training.errors import TrainingError
from training.models import build_model, weights_digest
from training.order import epoch_permutation, index_lists_digest
from training.trainer import TrainSpec

class QuorumError(TrainingError):
    """Too few workers' updates survived a round for its outer step."""


class OuterSpec(BaseModel, frozen=True):
    """How an order's training is split across workers and joined again (DiLoCo, Douillard et al. 2023)."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(ge=1, le=64, description="Workers training the order, each on its own shard")
    rounds: int = Field(ge=1, description="Outer steps")
    inner_steps: int = Field(ge=1, description="Steps each worker trains per round (DiLoCo's H)")
    outer_lr: float = Field(default=0.7, gt=0, description="Learning rate of the outer step")
    outer_momentum: float = Field(default=0.9, ge=0, lt=1, description="Momentum of the outer step")
    nesterov: bool = Field(default=True, description="Nesterov momentum in the outer step")
    min_quorum: int = Field(default=1, ge=1, description="Fewest accepted updates a round's outer step takes")

    @model_validator(mode="after")
    def _quorum_within_workers(self) -> "OuterSpec":
        if self.min_quorum > self.workers:
            raise ValueError(f"min_quorum ({self.min_quorum}) cannot exceed the workers ({self.workers})")
        return self


class AggregationRules(BaseModel, frozen=True):
    """Thresholds of the robust rules; ``bench.diloco`` reports how close honest updates came to each."""

    model_config = ConfigDict(extra="forbid")

    copy_distance: float = Field(default=0.05, ge=0, description="Relative distance under which two updates are copies")
    max_norm_ratio: float = Field(default=4.0, gt=1, description="Norm over this many times the median: rejected")


def _shard_seed(seed: int) -> int:
    digest = hashlib.sha256(b"bahen.shards.v1" + seed.to_bytes(8, "big", signed=True)).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def shard_plan(seed: int, num_samples: int, workers: int) -> list[np.ndarray]:
    """The order's partition of ``range(num_samples)`` into ``workers`` shards of near-equal size.

    The samples are permuted by the data-order PRF under a seed of their own (SHA-256 of
    ``"bahen.shards.v1"`` and the order's seed) and dealt round-robin: shard ``w`` holds the
    permutation's positions ``w, w + workers, ...``.
    """
    if workers < 1 or num_samples < workers:
        raise TrainingError(f"cannot split {num_samples} samples across {workers} workers: order fewer workers")
    perm = epoch_permutation(_shard_seed(seed), 0, 0, num_samples)
    return [perm[w::workers] for w in range(workers)]


def shard_plan_digest(plan: list[np.ndarray]) -> str:
    """SHA-256 hex committing to a shard plan: ``"bahen.shard-plan.v1"``, then per shard its length and indices."""
    return index_lists_digest(b"bahen.shard-plan.v1", plan)


def round_indices(seed: int, shard: np.ndarray, worker: int, round_: int, samples: int) -> np.ndarray:
    """The ``samples`` indices worker ``worker`` trains on in round ``round_``.

    The worker reads its shard as a stream of epochs, each a permutation by the data-order PRF
    (the shard seed, task ``worker``, the epoch); round ``r`` takes the stream's positions
    ``r*samples`` to ``(r+1)*samples``.
    """
    if not 0 < samples or len(shard) == 0:
        raise TrainingError(f"a round of {samples} samples cannot come from a shard of {len(shard)}")
    start, parts = round_ * samples, []
    epoch, offset = divmod(start, len(shard))
    while samples > 0:
        perm = epoch_permutation(_shard_seed(seed), worker, epoch, len(shard))
        take = perm[offset:offset + samples]
        parts.append(shard[take])
        samples -= len(take)
        epoch, offset = epoch + 1, 0
    return np.concatenate(parts)


def round_spec(spec: TrainSpec, outer: OuterSpec, worker: int, round_: int, global_weights: str) -> TrainSpec:
    """The training task of one worker-round: one epoch of ``inner_steps`` batches from the global weights.

    The task id ``round_ * workers + worker`` gives each worker-round its own data order and RNG
    stream; ``global_weights`` (the round's :func:`weights_digest`) is pinned as the initial weights.
    """
    if not 0 <= worker < outer.workers or not 0 <= round_ < outer.rounds:
        raise TrainingError(f"worker {worker} of round {round_} is outside the order's {outer.workers} workers "
                            f"and {outer.rounds} rounds")
    return spec.model_copy(update=dict(
        epochs=1, task=round_ * outer.workers + worker, initial_weights=global_weights,
        checkpoint_every=min(spec.checkpoint_every, outer.inner_steps),
    ))


@dataclass
class GlobalState:
    """The state round ``round`` starts from: the weights and the outer optimizer's momentum."""

    round: int
    weights: dict[str, torch.Tensor]
    momentum: dict[str, torch.Tensor] = field(default_factory=dict)

    def digest(self) -> str:
        """SHA-256 hex of the round, the weights (:func:`weights_digest`) and the momentum (the same encoding)."""
        h = hashlib.sha256(b"bahen.global.v1" + self.round.to_bytes(8, "big"))
        h.update(bytes.fromhex(weights_digest(self.weights)))
        h.update(bytes.fromhex(weights_digest(self.momentum)))
        return h.hexdigest()


@dataclass(frozen=True)
class Rejection:
    """A worker's update left out of a round's aggregate, and why."""

    worker: int
    rule: str  # proof, non-finite, free-rider, stale, copy, norm-inflated
    detail: str


@dataclass
class RoundOutcome:
    """What a round's aggregation decided and the state the next round starts from."""

    accepted: list[int]
    rejections: list[Rejection]
    clipped: dict[int, float]  # worker -> the factor its pseudo-gradient was scaled by (< 1)
    next_state: GlobalState
    # what each rule measured, per worker it measured: "copy_distance" (to the nearest earlier update)
    # and "norm_ratio" (to the median norm)
    measures: dict[str, dict[int, float]] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return self.next_state.digest()


def _flat(tensors: Mapping[str, torch.Tensor], names: list[str]) -> np.ndarray:
    return np.concatenate([tensors[n].detach().to("cpu", torch.float32).reshape(-1).numpy() for n in names])


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Exactly rounded dot product of float32 vectors (float64 products of float32 values are exact)."""
    return math.fsum((a.astype(np.float64) * b.astype(np.float64)).tolist())


def _norm(a: np.ndarray) -> float:
    return math.sqrt(_dot(a, a))


def aggregate(
    state: GlobalState,
    updates: Mapping[int, dict[str, torch.Tensor]],
    *,
    outer: OuterSpec,
    parameters: list[str],
    rules: AggregationRules = AggregationRules(),
    excluded: Mapping[int, str] | None = None,
    seen: set[str] | None = None,
) -> RoundOutcome:
    """The next global state from the workers' final weights of this round (the module docstring's rules).

    ``updates`` maps each worker that delivered to its weights, iterated in commit order (the earlier
    of two copies is kept); ``parameters`` names the tensors the outer step moves (the rest are
    buffers); ``excluded`` maps workers whose round failed verification to the reason; ``seen`` holds
    :func:`weights_digest` of every state committed before this round (earlier global states and
    submissions). Raises :class:`QuorumError` when fewer than ``outer.min_quorum`` updates remain.
    """
    excluded, seen = dict(excluded or {}), set(seen or ())
    rejections = [Rejection(w, "proof", reason) for w, reason in excluded.items() if w in updates]
    base = _flat(state.weights, parameters)
    grads: dict[int, np.ndarray] = {}
    for worker, weights in updates.items():
        if worker in excluded:
            continue
        flat = _flat(weights, parameters)
        digest = weights_digest(weights)
        if not all(bool(torch.isfinite(weights[n]).all()) for n in weights if weights[n].is_floating_point()):
            rejections.append(Rejection(worker, "non-finite", "its weights hold NaN or infinite values"))
        elif np.array_equal(flat, base):
            rejections.append(Rejection(worker, "free-rider", "its weights are the round's global weights"))
        elif digest in seen:
            rejections.append(Rejection(worker, "stale", "its weights equal a state committed in an earlier round"))
        else:
            grads[worker] = base - flat
    norms = {w: _norm(g) for w, g in grads.items()}
    measures: dict[str, dict[int, float]] = {"copy_distance": {}, "norm_ratio": {}}
    order = list(grads)
    for i, worker in enumerate(order):
        earlier = [o for o in order[:i] if o in grads]
        if not earlier:
            continue
        distances = {o: _norm(grads[worker] - grads[o]) / min(norms[worker], norms[o]) for o in earlier}
        other = min(distances, key=distances.get)
        measures["copy_distance"][worker] = distances[other]
        if distances[other] < rules.copy_distance:
            rejections.append(Rejection(worker, "copy", f"its update is within {distances[other]:.3g} of worker {other}'s"))
            del grads[worker]
    if len(grads) >= 3:
        median = statistics.median([norms[w] for w in grads])
        measures["norm_ratio"].update({w: norms[w] / median for w in grads})
        for worker in [w for w in grads if norms[w] > rules.max_norm_ratio * median]:
            rejections.append(Rejection(worker, "norm-inflated",
                                        f"its norm is {norms[worker] / median:.3g} times the median"))
            del grads[worker]
    if len(grads) < outer.min_quorum:
        raise QuorumError(f"round {state.round}: {len(grads)} of {len(updates)} updates survived the rules "
                          f"({', '.join(f'worker {r.worker}: {r.rule}' for r in rejections) or 'none rejected'}), "
                          f"fewer than the order's min_quorum of {outer.min_quorum}")
    median = statistics.median([norms[w] for w in grads])
    clipped = {w: median / norms[w] for w in grads if norms[w] > median}
    mean = ordered_mean([grads[w] * np.float32(clipped.get(w, 1.0)) for w in sorted(grads)])
    accepted = sorted(grads)
    return RoundOutcome(accepted, rejections, clipped,
                        _outer_step(state, mean, [updates[w] for w in accepted], outer, parameters), measures)


def _outer_step(state: GlobalState, mean: np.ndarray, accepted: list[dict[str, torch.Tensor]], outer: OuterSpec,
                parameters: list[str]) -> GlobalState:
    lr, mu = np.float32(outer.outer_lr), np.float32(outer.outer_momentum)
    weights, momentum, offset = {}, {}, 0
    for name in parameters:
        p = state.weights[name].detach().to("cpu", torch.float32).numpy()
        g = mean[offset:offset + p.size].reshape(p.shape)
        offset += p.size
        m = g.copy() if name not in state.momentum else state.momentum[name].numpy() * mu + g
        u = g + m * mu if outer.nesterov else m
        weights[name] = torch.from_numpy(p - u * lr).to(state.weights[name].dtype)
        momentum[name] = torch.from_numpy(m)
    for name, value in state.weights.items():
        if name in weights:
            continue
        values = [w[name].detach().cpu() for w in accepted]
        if value.is_floating_point():
            weights[name] = ordered_mean(values)
        else:
            weights[name] = torch.stack(values).amax(dim=0)
    return GlobalState(state.round + 1, {n: weights[n] for n in state.weights}, momentum)


def parameter_names(spec: TrainSpec) -> list[str]:
    """The names of the ordered model's trainable parameters in ``state_dict`` order: what the outer step moves."""
    model = build_model(spec.model, input_shape=spec.input_shape, num_classes=spec.num_classes, seed=spec.seed,
                        config=spec.architecture)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return [n for n in model.state_dict() if n in trainable]
