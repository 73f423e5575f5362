"""The dishonest-worker catalogue and the one path every worker, honest or not, runs through.

``run_worker(None, ...)`` is the honest worker; ``run_worker("skipped-steps", ..., intensity=0.1)``
is the same code path with that attack's hooks and post-processing. Attacks written elsewhere join
with ``register`` and are run against the verifier unchanged. See ``README.md`` in this folder.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from proof.attacks.base import Attack, Job, Put, UnknownAttackError
from proof.attacks.carried_settings import CarriedSettings
from proof.attacks.fabricated_losses import FabricatedLosses
from proof.attacks.fabricated_telemetry import FabricatedTelemetry
from proof.attacks.half_batches import HalfBatches
from proof.attacks.interpolated_checkpoints import InterpolatedCheckpoints
from proof.attacks.mimicking_skipper import MimickingSkipper
from proof.attacks.nonfinite_checkpoint import NonFiniteCheckpoint
from proof.attacks.omitted_data import OmittedData
from proof.attacks.oversized_steps import OversizedSteps
from proof.attacks.pretrained_model import PretrainedModel
from proof.attacks.proof_after_challenge import ProofAfterChallenge
from proof.attacks.rescaled_updates import RescaledUpdates
from proof.attacks.sandbagging import Sandbagging
from proof.attacks.skipped_steps import SkippedSteps
from proof.attacks.sub_tolerance_drift import SubToleranceDrift
from proof.attacks.substituted_data import SubstitutedData
from proof.attacks.switching_free_rider import SwitchingFreeRider
from proof.attacks.withheld_checkpoint import WithheldCheckpoint
from proof.attacks.wrong_lr import WrongLr
from proof.attacks.wrong_weight_decay import WrongWeightDecay
from proof.bundle import ProofBundle, build_bundle
from proof.challenge import Challenge, derive_challenge, with_targeted_steps
from proof.recorder import Get, RecordedProof, Recorder
from proof.response import Regenerate, Response, replay_regenerator, respond
from proof.spool import StateSpool
from proof.telemetry import TelemetrySampler
from storage.refs import ArtifactRef
from training.steps import StepRecord
from training.trainer import TrainResult, TrainSpec, train

if TYPE_CHECKING:
    from proof.verifier import VerifyConfig

ATTACKS: dict[str, type[Attack]] = {}


def register(cls: type[Attack]) -> type[Attack]:
    """Add an attack class to :data:`ATTACKS` under its ``name`` (usable as a decorator)."""
    ATTACKS[cls.name] = cls
    return cls


for _cls in (
    SkippedSteps, RescaledUpdates, HalfBatches, WrongLr, WrongWeightDecay, InterpolatedCheckpoints,
    PretrainedModel, FabricatedLosses, SubstitutedData, OmittedData, FabricatedTelemetry,
    ProofAfterChallenge, WithheldCheckpoint, NonFiniteCheckpoint, CarriedSettings,
    OversizedSteps, Sandbagging, SwitchingFreeRider, SubToleranceDrift, MimickingSkipper,
):
    register(_cls)


@dataclass
class WorkerRun:
    """A worker's output: the bundle it serves, the root it committed, what it recorded, and the
    spool of per-step states it answers challenges from (close it when no challenge can come)."""

    bundle: ProofBundle
    committed_root: str
    recorded: RecordedProof
    result: TrainResult
    spool: StateSpool
    attack: Attack = field(repr=False)
    job: Job = field(repr=False)
    regenerate: Regenerate | None = field(default=None, repr=False)  # a resumed run's states before the resume

    def answer(self, seed: bytes, config: "VerifyConfig", *, regenerate: Regenerate | None = None) -> Response:
        """Reveal the states the challenge from ``seed`` names, as this worker (honest or not) would."""
        challenge = worker_challenge(seed, self.bundle, self.recorded.steps, config)
        response = respond(
            challenge, self.spool, self.job.put, order_id=self.bundle.order_id, task=self.bundle.task,
            merkle_root=self.committed_root, regenerate=regenerate or self.regenerate,
        )
        return self.attack.respond(response, challenge, self.job)


def worker_challenge(seed: bytes, bundle: ProofBundle, steps: list[StepRecord], config: "VerifyConfig") -> Challenge:
    """The challenge a worker answers: the verifier's, with the steps its step log singles out."""
    return with_targeted_steps(derive_challenge(seed, bundle, config), steps, config)


def make_attack(name: str | None, intensity: float = 1.0, seed: int = 0) -> Attack:
    """The attack called ``name`` at ``intensity``, or the honest worker for ``None``."""
    if name is None:
        return Attack(intensity, seed)
    if name not in ATTACKS:
        raise UnknownAttackError(name, list(ATTACKS))
    return ATTACKS[name](intensity, seed)


def run_worker(
    attack: str | Attack | None,
    spec: TrainSpec,
    X: np.ndarray,
    y: np.ndarray,
    put: Put,
    intensity: float = 1.0,
    *,
    order_id: str = "order",
    seed: int = 0,
    telemetry: TelemetrySampler | None = None,
    resume: tuple[ArtifactRef, Get] | None = None,
    initial: dict[str, torch.Tensor] | None = None,
    group: "torch.distributed.ProcessGroup | None" = None,
) -> WorkerRun:
    """Train ``spec`` as a worker running ``attack`` (None: honest) and return its proof.

    ``put(name, plaintext) -> ArtifactRef`` encrypts and stores, as for the honest recorder; the
    bundle declares the ordered ``spec`` whatever the worker really did. ``seed`` drives the
    attack's own random choices (where to cheat), not training. ``resume`` is the last journal a
    crashed run stored and ``get(ref) -> plaintext``: training continues from its checkpoint, and
    the states before it, lost with the crashed process's spool, are replayed when challenged.
    ``initial`` holds the client's starting weights of a fine-tuning order. ``group`` trains rank 0 of
    a data-parallel worker (``training.distributed``; the other ranks call ``train`` with the same group).
    """
    cheat = attack if isinstance(attack, Attack) else make_attack(attack, intensity, seed)
    job = Job(spec=spec, X=X, y=y, put=put, order_id=order_id)
    telemetry = telemetry or TelemetrySampler()
    if resume is None:
        recorder, start = Recorder(put=put, telemetry=telemetry), None
    else:
        recorder, start = Recorder.resume(resume[0], get=resume[1], put=put, telemetry=telemetry)
    result = train(cheat.trained_spec(spec), X, y, recorder=recorder, hooks=cheat.hooks(job), resume_from=start,
                   initial=initial, group=group)
    recorded = cheat.tamper(recorder.close(), job)
    regenerate = None if resume is None else replay_regenerator(spec, X, y, recorded.checkpoints, resume[1])
    bundle = build_bundle(recorded, order_id=order_id, task=spec.task, spec=spec, put=put)
    served, root = cheat.commit(bundle, recorded, job)
    return WorkerRun(
        bundle=served, committed_root=root, recorded=recorded, result=result, spool=recorder.spool, attack=cheat,
        job=job, regenerate=regenerate,
    )


def reuse_training(attack: str | Attack, honest: WorkerRun, intensity: float = 1.0, *, seed: int = 0) -> WorkerRun:
    """An attack that trains honestly and only rewrites the proof, applied to an honest worker's training.

    Sound only for attacks that override neither ``hooks`` nor ``trained_spec``: their training is
    the honest one, so a benchmark can share it. The honest run's spool answers the challenges.
    """
    cheat = attack if isinstance(attack, Attack) else make_attack(attack, intensity, seed)
    if type(cheat).hooks is not Attack.hooks or type(cheat).trained_spec is not Attack.trained_spec:
        raise ValueError(f"attack {cheat.name!r} changes training; run it with run_worker")
    job = honest.job
    recorded = cheat.tamper(honest.recorded, job)
    bundle = build_bundle(recorded, order_id=job.order_id, task=job.spec.task, spec=job.spec, put=job.put)
    served, root = cheat.commit(bundle, recorded, job)
    return WorkerRun(
        bundle=served, committed_root=root, recorded=recorded, result=honest.result, spool=honest.spool, attack=cheat,
        job=job,
    )


__all__ = ["ATTACKS", "Attack", "Job", "UnknownAttackError", "WorkerRun", "make_attack", "register", "reuse_training",
           "run_worker"]
