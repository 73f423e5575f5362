"""Attack family D: dishonest workers of a DiLoCo order, who tamper with what they hand to the outer step.

Each attack of :data:`PSEUDO_GRADIENT_ATTACKS` turns the weights an honest worker would submit for a
round into the weights the attacker submits (``training.diloco`` calls ``G - W`` the pseudo-gradient).
:class:`ForgedRound` makes any of them a worker with a consistent proof: it trains the round honestly
and moves its last step to the forged weights, so every committed state, checkpoint and step record
agrees with what it submits. :class:`LabelFlipped` trains honestly on wrong labels instead.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from proof.attacks.base import Attack, Job
from training.hooks import TrainHooks

Weights = dict[str, torch.Tensor]


@dataclass
class RoundView:
    """What a dishonest worker knows when it submits a round."""

    global_weights: Weights
    trained: Weights  # what honest training from the global weights gave it this round
    earlier: list[Weights]  # submissions of workers who committed before it this round (colluders share them)
    previous: Weights | None  # its own submission of the round before
    parameters: list[str]
    generator: torch.Generator


def _moved(view: RoundView, update: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor]) -> Weights:
    """The trained weights with each parameter replaced by ``global - update(name, global, pseudo-gradient)``."""
    out = dict(view.trained)
    for name in view.parameters:
        g = view.global_weights[name]
        out[name] = g - update(name, g, g - view.trained[name])
    return out


def _norm(view: RoundView) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.cat([(view.global_weights[n] - view.trained[n]).reshape(-1)
                                               for n in view.parameters]))


def sign_flipped(view: RoundView) -> Weights:
    """The pseudo-gradient negated: pushes the model back up the loss."""
    return _moved(view, lambda name, g, pg: -pg)


def _noise(view: RoundView, norm: torch.Tensor) -> Weights:
    """A random direction over the parameters, scaled to ``norm``."""
    noise = {n: torch.randn(view.trained[n].shape, generator=view.generator) for n in view.parameters}
    scale = norm / torch.linalg.vector_norm(torch.cat([v.reshape(-1) for v in noise.values()]))
    return {n: v * scale for n, v in noise.items()}


def random_direction(view: RoundView) -> Weights:
    """A random direction of the honest update's norm: no training in it."""
    noise = _noise(view, _norm(view))
    return _moved(view, lambda name, g, pg: noise[name])


def norm_inflated(view: RoundView) -> Weights:
    """The honest direction, ten times as long: one worker outweighs the rest."""
    return _moved(view, lambda name, g, pg: pg * 10)


def nonfinite(view: RoundView) -> Weights:
    """A NaN in the first parameter: one poisoned value would spread through the average."""
    out = dict(view.trained)
    first = view.parameters[0]
    out[first] = view.trained[first].clone().reshape(-1).index_fill(0, torch.tensor([0]), float("nan")).reshape(
        view.trained[first].shape)
    return out


def copied(view: RoundView) -> Weights:
    """Another worker's submission, byte for byte (a colluder's, or one revealed before this worker committed)."""
    return dict(view.earlier[0])


def noisy_copy(view: RoundView) -> Weights:
    """Another worker's submission plus noise of 1% of its update's norm, to look like its own."""
    view = dataclasses.replace(view, trained=view.earlier[0])
    noise = _noise(view, _norm(view) * 0.01)
    return _moved(view, lambda name, g, pg: pg + noise[name])


def free_rider(view: RoundView) -> Weights:
    """The round's global weights handed back: no work."""
    return dict(view.global_weights)


def stale(view: RoundView) -> Weights:
    """Its previous round's submission again (the global weights in the first round)."""
    return dict(view.previous if view.previous is not None else view.global_weights)


PSEUDO_GRADIENT_ATTACKS: dict[str, Callable[[RoundView], Weights]] = {
    "sign-flipped": sign_flipped,
    "random-direction": random_direction,
    "norm-inflated": norm_inflated,
    "nan": nonfinite,
    "copied": copied,
    "noisy-copy": noisy_copy,
    "free-rider": free_rider,
    "stale": stale,
}


class _FlipLabels(TrainHooks):
    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def on_batch(self, step, indices, X, y):
        return X, (y + 1) % self.num_classes


class LabelFlipped(Attack):
    """Trains every step on the committed batch with each label moved to the next class."""

    name = "label-flipped"
    summary = "trains on the committed inputs with every label replaced by the next class"
    uses_intensity = False

    def hooks(self, job: Job) -> TrainHooks:
        return _FlipLabels(job.spec.num_classes)


class _ForgeLastStep(TrainHooks):
    def __init__(self, forge: Callable[[RoundView], Weights], view: RoundView, last: int):
        self.forge, self.view, self.last = forge, view, last

    def on_update(self, step, model, optimizer):
        if step != self.last:
            return
        trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
        forged = self.forge(dataclasses.replace(self.view, trained=trained))
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                tensor.copy_(forged[name])


class ForgedRound(Attack):
    """Trains the round honestly, then its last step lands on what ``forge`` makes of the result."""

    name = "forged-round"
    summary = "a family-D submission whose proof agrees with it: the round's last step moves to the forged weights"
    uses_intensity = False

    def __init__(self, forge: Callable[[RoundView], Weights], view: RoundView, seed: int = 0):
        """``view`` is what the worker knows of the round; its ``trained`` is replaced by the honest result."""
        super().__init__(1.0, seed)
        self.forge, self.view = forge, view

    def hooks(self, job: Job) -> TrainHooks:
        return _ForgeLastStep(self.forge, self.view, job.total_steps - 1)
