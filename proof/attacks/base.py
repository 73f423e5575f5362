"""The dishonest-worker interface: an attack is the honest trainer plus behaviour hooks and/or a
post-processing of the recorded proof.

`proof.attacks.run_worker` runs every worker, honest or not, through one path:

1. ``attack.trained_spec(spec)`` — the spec the worker really trains (default: the ordered one);
2. ``train(..., recorder, hooks=attack.hooks(job))`` — the honest loop with the attack's hooks;
3. ``attack.tamper(recorded, job)`` — rewrite the recorded proof (logs, checkpoints, telemetry);
4. ``build_bundle(...)`` with the *ordered* spec, then ``attack.commit(bundle, recorded, job)``
   returns the bundle served to the verifier and the root committed on chain;
5. once the challenge seed exists, ``proof.response.respond`` reveals the challenged states from
   the worker's spool and ``attack.respond(response, challenge, job)`` returns what the worker
   really answers (an adaptive cheater may withhold or replace revealed states).

Intensity is the share of the work the attack cheats on. Step attacks cheat on one contiguous
block of steps at a random place (the placement that touches the fewest replay segments, so the
adaptive choice); checkpoint attacks on a share of checkpoints. Counts are rounded
stochastically, so at 1% of 300 steps a run cheats on 3 steps, and at 1% of 20 checkpoints one
run in five cheats at all: detection is measured against the work actually faked.
"""

import copy
import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from proof.bundle import ProofBundle
from proof.challenge import Challenge
from proof.errors import ProofError
from proof.recorder import RecordedProof
from proof.response import Response
from storage.refs import ArtifactRef
from training.checkpoint import Checkpoint
from training.hooks import TrainHooks
from training.trainer import TrainSpec, steps_per_epoch

Put = Callable[[str, bytes], ArtifactRef]


class UnknownAttackError(ProofError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"no attack named {name!r}; choose one of {', '.join(sorted(known))}")


@dataclass
class Job:
    """What a worker was ordered to do, and where it stores artifacts."""

    spec: TrainSpec
    X: np.ndarray
    y: np.ndarray
    put: Put
    order_id: str

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole task."""
        return self.spec.epochs * steps_per_epoch(self.spec, len(self.X))

    @property
    def checkpoint_steps(self) -> list[int]:
        """Steps the honest recorder checkpoints at."""
        return sorted({*range(0, self.total_steps, self.spec.checkpoint_every), self.total_steps})


class Attack:
    """Base of every dishonest worker; by itself it is the honest worker."""

    name: ClassVar[str] = "honest"
    summary: ClassVar[str] = "the honest worker"
    uses_intensity: ClassVar[bool] = True
    weak_evidence: ClassVar[bool] = False  # True when only non-decisive checks can see it

    def __init__(self, intensity: float = 1.0, seed: int = 0):
        if not 0.0 <= intensity <= 1.0:
            raise ValueError(f"attack intensity {intensity} must lie in [0, 1]")
        self.intensity = intensity if self.uses_intensity else 1.0
        self.rng = random.Random(f"{self.name}/{seed}")
        # how many steps, checkpoints or samples the run cheated on; None until the attack drew them
        self.cheated: int | None = None

    def trained_spec(self, spec: TrainSpec) -> TrainSpec:
        """The spec the worker actually trains."""
        return spec

    def hooks(self, job: Job) -> TrainHooks:
        """Behaviour during training."""
        return TrainHooks()

    def tamper(self, recorded: RecordedProof, job: Job) -> RecordedProof:
        """Rewrite the recorded proof before it is bundled."""
        return recorded

    def commit(self, bundle: ProofBundle, recorded: RecordedProof, job: Job) -> tuple[ProofBundle, str]:
        """The bundle served to verifiers and the root committed on chain."""
        return bundle, bundle.merkle_root

    def respond(self, response: "Response", challenge: "Challenge", job: Job) -> "Response":
        """The answer to the challenge actually given; the honest worker reveals what it committed."""
        return response

    def count(self, n: int) -> int:
        """``intensity * n`` rounded stochastically; :attr:`cheated` adds up the counts drawn."""
        exact = self.intensity * n
        drawn = min(n, math.floor(exact) + (self.rng.random() < exact - math.floor(exact)))
        self.cheated = (self.cheated or 0) + drawn
        return drawn

    def block(self, total: int) -> range:
        """A contiguous block of ``count(total)`` steps at a random position."""
        size = self.count(total)
        start = self.rng.randrange(total - size + 1)
        self.cheated_steps = range(start, start + size)  # what the benchmark's sampling math counts
        return self.cheated_steps

    def choose(self, items: list) -> list:
        """``count(len(items))`` items at random positions, in their original order."""
        picks = sorted(self.rng.sample(range(len(items)), self.count(len(items))))
        return [items[i] for i in picks]


class StateKeeper(TrainHooks):
    """Hooks that remember the weights and optimizer state before each step of a block.

    ``before`` holds the state the current step started from, so an attack can undo, rescale or
    skip the step in ``on_update``.
    """

    def __init__(self, steps: range):
        self.steps = steps
        self.before: tuple[dict, dict] | None = None

    def on_checkpoint(self, step: int, checkpoint: Checkpoint) -> Checkpoint:
        if step == 0:
            self.before = (copy.deepcopy(checkpoint.model_state), copy.deepcopy(checkpoint.optimizer_state))
        return checkpoint

    def on_update(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if step in self.steps:
            self.alter(step, model, optimizer)
        if step + 1 in self.steps:
            self.before = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))

    def alter(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Change the step just taken; ``self.before`` is the state it started from."""

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Undo the step just taken (the worker skipped it)."""
        model.load_state_dict(self.before[0])
        optimizer.load_state_dict(self.before[1])

    def scale_update(self, model: torch.nn.Module, factor: float) -> None:
        """Make the step's weight change ``factor`` times what the optimizer did."""
        with torch.no_grad():
            for name, p in model.named_parameters():
                start = self.before[0][name].to(p.device)  # the step-0 state is a host checkpoint
                p.copy_(start + factor * (p - start))


def store_checkpoints(recorded: RecordedProof, forged: dict[int, Checkpoint], job: Job) -> RecordedProof:
    """``recorded`` with the checkpoints of ``forged`` (by step) stored under their honest names in
    their place, their references and plaintext digests both replaced, as a careful forger would."""
    from proof.recorder import checkpoint_name

    refs, digests = dict(recorded.checkpoints), dict(zip(dict(recorded.checkpoints), recorded.checkpoint_sha256))
    for step, checkpoint in forged.items():
        data = checkpoint.to_bytes()
        refs[step], digests[step] = job.put(checkpoint_name(step), data), hashlib.sha256(data).hexdigest()
    steps = sorted(refs)
    return recorded.model_copy(update={"checkpoints": [(s, refs[s]) for s in steps],
                                       "checkpoint_sha256": [digests[s] for s in steps]})


def unstored_ref(name: str, salt: str) -> ArtifactRef:
    """A well-formed reference to bytes that were never stored (a withheld artifact)."""
    data = f"withheld {name} {salt}".encode()
    return ArtifactRef(name=name, md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest(), size=len(data))
