"""train — on a worker: decrypt the shard in memory, train, record the Proof of Train, commit its root.

Every free choice derives from the order (seed, data order, hyperparameters, determinism profile).
Checkpoints, the step log and telemetry are sealed as they are made under a model key the worker
draws for the task; it wraps that key to each of the order's validators (as the chain lists them,
to the X25519 keys they registered) and to nobody else, so the client can read the model only once
a validator delivers it after the work verdict is final. The worker signs the proof bundle and
commits its Merkle root on chain before any challenge exists.
Then it waits for the challenge seed (a block after the commitment), reveals the per-step states
the challenge names from its spool, and signs and stores that response for the verifier.
"""

import hashlib
import math
import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
from contracts.errors import ChainError, ChallengeNotReady
from contracts.models import OrderView
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from privacy.grants import accepts_grants
from privacy.identity import Identity, PublicIdentity
from privacy.stream import new_data_key
from proof.attacks import run_worker, worker_challenge
from proof.bundle import ProofBundle, read_step_log, read_telemetry
from proof.recorder import JOURNAL_PREFIX
from proof.response import replay_regenerator, respond
from proof.spool import StateSpool
from proof.telemetry import TelemetrySample, TelemetrySampler
from proof.verifier import VerifyConfig
from storage.refs import ArtifactRef
from storage.store import ArtifactStore
from training.datasets import read_split
from training.errors import CheckpointError, DatasetError
from training.launch import data_parallel
from training.models import load_weights
from training.trainer import TrainSpec, state_form

from bahen.artifacts import PROOF_ROLE, WEIGHTS_ROLE, get_decrypted, get_signed, open_stored_grant, put_encrypted, put_grant, put_signed
from bahen.errors import BahenError
from bahen.network import Network
from bahen.records import Assignment, Training, Upload
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from bahen.worker_runs import WorkerRunBook, WorkerRunNote
from tasks.inputs import InputMismatch, check_inputs
from tasks.observe import TrainingProgress
from tasks.runtime import network
from tasks.shard import architecture

TELEMETRY_INTERVAL_S = 0.5
RECORD_TELEMETRY_POINTS = 240  # per device in the order record, for its plot; the proof keeps every sample
SEED_POLLS = 60


def order_binding(net: Network, order_id: str) -> str:
    """What names one order everywhere: the chain's id, the market contract and the order id."""
    return f"{net.chain.chain_id}/{net.market.addresses.market}/{order_id}"


def order_seed(binding: str, client_seed: int) -> int:
    """The training seed of an order: SHA-256 of its binding and the client's seed (63 bits).

    Two orders on the same data with the same client seed train differently, so a proof made for
    one order can never pass as another's.
    """
    digest = hashlib.sha256(b"bahen.seed.v1\n" + binding.encode() + b"\n" + str(client_seed).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def train_spec(spec: OrderSpec, upload: Upload, task: int, net: Network) -> TrainSpec:
    """The trainer's view of the order: what the worker may not choose, bound to this order."""
    binding = order_binding(net, upload.order_id)
    return TrainSpec(
        model=spec.model, architecture=architecture(spec), initial_weights=upload.initial_weights,
        input_shape=tuple(upload.input_shape), num_classes=upload.num_classes,
        optimizer=spec.optimizer, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay,
        lr_schedule=spec.lr_schedule, batch_size=spec.batch_size, grad_shards=spec.grad_shards, epochs=spec.epochs,
        seed=order_seed(binding, spec.seed), task=task, checkpoint_every=spec.checkpoint_every, profile=spec.profile,
        order=binding,
    )


def verify_config(spec: OrderSpec) -> VerifyConfig:
    """The verifier's sampling for an order: public, so the worker answers the same challenge it is checked on."""
    return VerifyConfig(replay_segments=spec.replay_segments, loss_samples=spec.loss_samples, spot_steps=spec.spot_steps,
                        largest_steps=spec.largest_steps, suspicious_steps=spec.suspicious_steps)


def challenge_seed(net: Network, order_id: bytes, task: int) -> bytes:
    """The seed from the block after the commitment; on a devnet, mine that block rather than wait."""
    for _ in range(SEED_POLLS):
        try:
            return net.market.challenge_seed(order_id, task)
        except ChallengeNotReady:
            try:
                net.chain.mine(1)  # a devnet makes the block now…
            except ChainError:
                time.sleep(2)  # …a real chain in its own time
    return net.market.challenge_seed(order_id, task)


def load_split(store: ArtifactStore, key: bytes, upload: Upload, role: str, spec: OrderSpec):
    """Decrypt a split into (X, y) in memory, plaintext never on disk, once shown to be the split the
    client's signed manifest declares and ``spec`` can train on (:func:`check_split`)."""
    ref = upload.train if role == "train" else upload.holdout
    X, y, _ = read_split(get_decrypted(store, key, ref, order_id=upload.order_id, role=role), name=ref.name)
    check_split(X, y, upload, role, tokens=spec.model == "gpt", batch_size=spec.batch_size)
    return X, y


def check_split(X: np.ndarray, y: np.ndarray, upload: Upload, role: str, *, tokens: bool, batch_size: int) -> None:
    """:class:`DatasetError` unless the split holds the rows and input shape the client's signed manifest
    declares, labels of its classes and the features the client's own expectations admit: from 0 to 1, or
    for a language model (``tokens``) bytes of its vocabulary; a train split at least one batch of
    ``batch_size`` rows, a holdout at least a row. The client signs the split's hash, not its contents: a
    split that breaks them would make a worker train into a crash or into weights that are not numbers
    (features of 1e10 did, and the honest worker was slashed), and a validator score nothing."""
    ref, rows = (upload.train, upload.train_rows) if role == "train" else (upload.holdout, upload.holdout_rows)
    classes = upload.num_classes
    wrong = []
    if len(y) != rows:
        wrong.append(f"{len(y):,} rows where the manifest declares {rows:,}")
    least, needs = (batch_size, "a batch of the order takes") if role == "train" else (1, "a score needs")
    if len(y) < least:
        wrong.append(f"{len(y):,} rows, fewer than the {least:,} {needs}")
    if list(X.shape[1:]) != upload.input_shape:
        wrong.append(f"inputs of shape {list(X.shape[1:])} where the manifest declares {upload.input_shape}")
    if len(y) and not (0 <= y.min() and y.max() < classes):
        wrong.append(f"labels from {y.min()} to {y.max()}, outside the {classes:,} classes it declares "
                     f"(0 to {classes - 1:,})")
    if not np.isfinite(X).all():
        wrong.append("features that are not finite numbers")
    elif tokens and X.size and not (0 <= X.min() and X.max() < classes and (X == np.floor(X)).all()):
        wrong.append(f"inputs that are not tokens of its {classes:,}-token vocabulary")
    elif not tokens and X.size and not (0 <= X.min() and X.max() <= 1):
        wrong.append(f"features from {X.min():g} to {X.max():g}, outside the 0 to 1 its expectations admit")
    if wrong:
        raise DatasetError(f"the {role} split {ref.name} is not the one its client's signed manifest declares: "
                           f"{'; '.join(wrong)}. Nothing was trained or scored on it; the client must upload its "
                           "dataset again")


def check_model_size(ref: ArtifactRef, tspec: TrainSpec, upload: Upload) -> None:
    """Refuse, before fetching it, a stored model larger than a state of the order's model can be."""
    bound = state_form(tspec, upload.train_rows).max_bytes
    if ref.size > bound:
        raise CheckpointError(f"{ref.name} is {ref.size:,} bytes, over the {bound:,} a model of this order takes; "
                              "it was not fetched")


def load_initial(store: ArtifactStore, train_key: bytes, upload: Upload, tspec: TrainSpec) -> dict[str, torch.Tensor] | None:
    """A fine-tuning order's starting weights (sealed under the train split's key), or None; never
    fetched when they are larger than a state of the order's model can be."""
    if upload.weights is None:
        return None
    check_model_size(upload.weights, tspec, upload)
    data = get_decrypted(store, train_key, upload.weights, order_id=upload.order_id, role=WEIGHTS_ROLE)
    return load_weights(data, name=upload.weights.name)


def order_validators(net: Network, order_id: str) -> list[PublicIdentity]:
    """The order's validators as the chain lists them, with the X25519 keys they registered."""
    views = net.market.order(bytes.fromhex(order_id[2:])).validators
    return [
        PublicIdentity(name=f"validator {v.validator[:10]}", address=v.validator,
                       x25519_public=net.market.member(v.validator).x25519_public)
        for v in views
    ]


def proof_writer(store: ArtifactStore, key: bytes, order_id: str, task: int, on_put: Callable[[str], None] | None = None,
                 on_journal: Callable[[ArtifactRef], None] | None = None):
    """The recorder's ``put``: seal under the model key, store, return the reference (then tell ``on_put``).

    ``on_journal`` hears of every stored journal first: where a crashed run resumes.
    """
    def put(name: str, plaintext: bytes):
        ref = put_encrypted(store, key, plaintext, order_id=order_id, role=PROOF_ROLE, name=f"order {order_id[:10]}/task {task}/{name}")
        if on_journal is not None and name.startswith(JOURNAL_PREFIX):
            on_journal(ref)
        if on_put is not None:
            on_put(name)
        return ref

    return put


class TaskCommittedError(BahenError):
    """The task's proof is already committed on chain: training it again could only be refused."""


def _check_assignment(order: OrderView, task: int, worker: str) -> int:
    """The block of the task's proof commitment (0 if none yet); refuse a task this worker may not train."""
    if order.tasks[task].worker.lower() != worker.lower():
        raise BahenError(f"task {task} of order {order.order_id} is not assigned to {worker} on chain; "
                         "train only the tasks the chain assigns to you")
    if order.status != "open":
        raise BahenError(f"order {order.order_id} is {order.status} on chain: there is no task to train")
    return order.tasks[task].commit_block


def train(
    spec: OrderSpec, upload: Upload, assignment: Assignment, net: Network, *,
    attack: str | None = None, intensity: float = 1.0, on_put: Callable[[str], None] | None = None, processes: int = 1,
) -> Training:
    """Train the assigned task as its worker, commit the proof and answer the challenge; ``attack`` runs a dishonest worker.

    An honest worker with ``processes`` devices trains an order whose batches split into that many
    shards or fewer on one process per shard (``training.launch``); its proof is the one a single
    process makes.

    Run again after a crash or a retry, it continues from the worker's run note: from the last
    journal if the proof is not committed yet (bitwise the training an uninterrupted run makes),
    or only answers the challenge if it is. A task committed by no run of this host is refused
    before anything is trained or stored, and so are inputs that are not the order's
    (``tasks.inputs``): a proof of anything else would fail re-execution and cost the worker its
    stake. A dishonest worker (``attack``) always starts over.
    """
    worker = net.party_at(assignment.address, role="worker")
    order_id, task = upload.order_id, assignment.task
    committed = _check_assignment(check_inputs(spec, upload, task, net), task, worker.address)
    runs = WorkerRunBook(net.settings.worker_runs_dir)
    note = runs.load(order_id, task) if attack is None else None
    if committed and (note is None or note.bundle is None):
        raise TaskCommittedError(f"task {task} of order {order_id} was committed on chain at block {committed}, "
                                 "by no unfinished run of this host: its proof is final, there is nothing to train")
    if "train" not in assignment.grants:
        raise InputMismatch(f"the assignment handed over for task {task} of order {order_id} holds no grant of the "
                            f"train split to {worker.address}: nothing was trained. A client wraps none to a worker whose "
                            "X25519 key on chain nothing can be wrapped to (such a worker is replaced as a stalled one "
                            "is); otherwise hand over the order's shard")
    train_key = open_stored_grant(net.store, assignment.grants["train"], worker, order_id=order_id)
    X, y = load_split(net.store, train_key, upload, "train", spec)
    tspec = train_spec(spec, upload, task, net)
    initial = load_initial(net.store, train_key, upload, tspec)
    if note is None:
        model_key = new_data_key()
        note = WorkerRunNote(order_id=order_id, task=task, model_grant=put_grant(
            net.store, model_key, worker.public(), order_id=order_id, role=f"task {task} model"))
        if attack is None:
            runs.save(note)
    else:
        model_key = open_stored_grant(net.store, note.model_grant, worker, order_id=order_id)

    def get(ref: ArtifactRef) -> bytes:
        return get_decrypted(net.store, model_key, ref, order_id=order_id, role=PROOF_ROLE)

    oid = bytes.fromhex(order_id[2:])
    if note.bundle is not None:
        return _answer_committed(spec, note, model_key, X, y, tspec, worker, net, get)
    resume = None if note.last_journal is None else (note.last_journal, get)

    def journaled(ref: ArtifactRef) -> None:  # on the recorder's checkpoint thread
        nonlocal note
        note = note.model_copy(update={"last_journal": ref})
        if attack is None:
            runs.save(note)

    put = proof_writer(net.store, model_key, order_id, task, on_put, journaled)
    start = time.perf_counter()
    parallel = attack is None and 1 < tspec.grad_shards <= processes
    with data_parallel(tspec, X, y) if parallel else nullcontext() as group:
        run = run_worker(
            attack, tspec, X, y, put, intensity, order_id=order_id, seed=int.from_bytes(worker.x25519_public[:4], "big"),
            telemetry=TelemetrySampler(interval_s=TELEMETRY_INTERVAL_S), resume=resume, initial=initial, group=group,
        )
    seconds = note.seconds + time.perf_counter() - start
    bundle_ref, _ = put_signed(net.store, worker, run.bundle, name=f"order {order_id[:10]}/task {task}/proof manifest")
    model_grants = _model_grants(net, model_key, order_id, task, note.model_grant, worker.address)
    block = net.market.commit_proof(worker.account, order_id=oid, task=task, root=bytes.fromhex(run.committed_root))
    if attack is None:
        runs.save(note.model_copy(update={"bundle": bundle_ref, "merkle_root": run.committed_root,
                                          "commit_block": block, "seconds": seconds}))
    try:
        response = run.answer(challenge_seed(net, oid, task), verify_config(spec))
    finally:
        run.spool.close()
    response_ref, _ = put_signed(net.store, worker, response, name=f"order {order_id[:10]}/task {task}/challenge response")
    runs.drop(order_id, task)
    return _training(order_id, task, worker.address, bundle_ref, run.committed_root, block, response_ref,
                     run.bundle.checkpoints[-1][1], run.recorded.steps, seconds, run.recorded.telemetry, model_grants,
                     processes=tspec.grad_shards if parallel else 1)


def _model_grants(net: Network, model_key: bytes, order_id: str, task: int, own: ArtifactRef,
                  worker: str) -> dict[str, ArtifactRef]:
    """The model key wrapped to each of the order's validators that can be granted a key (``accepts_grants``: one
    that publishes a key nothing can be wrapped to cannot cost the worker its proof), and the worker's own
    (to dispute a rejection)."""
    return {**{v.address: put_grant(net.store, model_key, v, order_id=order_id, role=f"task {task} model")
               for v in order_validators(net, order_id) if accepts_grants(v)}, worker: own}


def _answer_committed(spec: OrderSpec, note: WorkerRunNote, model_key: bytes, X, y, tspec: TrainSpec, worker: Identity,
                      net: Network, get: Callable[[ArtifactRef], bytes]) -> Training:
    """Answer the challenge of a proof this host committed before it stopped, replaying the states it names."""
    order_id, task = note.order_id, note.task
    bundle, _ = get_signed(net.store, note.bundle, ProofBundle, expected_signer=worker.address)
    steps = read_step_log(get(bundle.step_log))
    oid = bytes.fromhex(order_id[2:])
    challenge = worker_challenge(challenge_seed(net, oid, task), bundle, steps, verify_config(spec))
    put = proof_writer(net.store, model_key, order_id, task)
    spool = StateSpool()
    try:
        response = respond(challenge, spool, put, order_id=order_id, task=task, merkle_root=note.merkle_root,
                           regenerate=replay_regenerator(tspec, X, y, bundle.checkpoints, get))
    finally:
        spool.close()
    response_ref, _ = put_signed(net.store, worker, response, name=f"order {order_id[:10]}/task {task}/challenge response")
    model_grants = _model_grants(net, model_key, order_id, task, note.model_grant, worker.address)
    WorkerRunBook(net.settings.worker_runs_dir).drop(order_id, task)
    return _training(order_id, task, worker.address, note.bundle, note.merkle_root, note.commit_block, response_ref,
                     bundle.checkpoints[-1][1], steps, note.seconds, read_telemetry(get(bundle.telemetry)), model_grants)


def _training(order_id: str, task: int, worker: str, bundle: ArtifactRef, root: str, block: int, response: ArtifactRef,
              final_model: ArtifactRef, steps: list, seconds: float, telemetry: list[TelemetrySample],
              model_grants: dict[str, ArtifactRef], *, processes: int = 1) -> Training:
    return Training(
        order_id=order_id, task=task, worker=worker, bundle=bundle, merkle_root=root, commit_block=block,
        response=response, final_model=final_model, steps=len(steps), final_loss=steps[-1].loss if steps else float("nan"),
        losses=[s.loss for s in steps], seconds=seconds, processes=processes,
        telemetry=thinned(telemetry, RECORD_TELEMETRY_POINTS),
        model_grants=model_grants,
    )


def thinned(samples: list[TelemetrySample], per_device: int) -> list[TelemetrySample]:
    """At most ``per_device`` evenly spaced samples of each device, in their order."""
    by_device: dict[int, list[TelemetrySample]] = {}
    for sample in samples:
        by_device.setdefault(sample.device, []).append(sample)
    return [s for series in by_device.values() for s in series[::max(1, math.ceil(len(series) / per_device))]]


@task(name="train", cache_policy=NO_CACHE)
def train_task(spec: OrderSpec, upload: Upload, assignment: Assignment) -> Training:
    """Prefect task: run the stage as the assigned worker (honest unless this host is set to cheat)."""
    settings = load_settings()
    net = network()
    training = train(
        spec, upload, assignment, net, attack=settings.worker_attack, intensity=settings.worker_attack_intensity,
        processes=settings.train_processes,
        on_put=TrainingProgress(upload.order_id, assignment.task, train_spec(spec, upload, assignment.task, net),
                                upload.train_rows),
    )
    if training.processes > 1:
        get_run_logger().info("task %d of order %s trained data-parallel on %d processes (torch.distributed)",
                              assignment.task, upload.order_id, training.processes)
    return training


def grant_model(upload: Upload, training: Training, net: Network) -> Training:
    """As the task's worker: the training with its model key granted to the order's validators as the chain
    lists them now: wrapped anew, from the worker's own grant, to each it holds none of (a verifier the chain
    drew after replacing a stalled one), and no longer to a validator the chain replaced. The validators come
    from the chain, never from the caller, so nobody can have the key wrapped to anyone else. Refuses a task
    the chain does not assign to this worker."""
    worker = net.party_at(training.worker, role="worker")
    order_id, task = upload.order_id, training.task
    if training.order_id != order_id:
        raise BahenError(f"the training handed over is of order {training.order_id}, not {order_id}: no key was granted")
    order = net.market.order(bytes.fromhex(order_id[2:]))
    if order.status != "open" or order.tasks[task].worker.lower() != worker.address.lower():
        raise BahenError(f"task {task} of order {order_id} is not an open task of {worker.address} on chain (the order "
                         f"is {order.status}): no key was granted")
    own = training.model_grants.get(worker.address)
    if own is None:
        raise BahenError(f"the training handed over for task {task} of order {order_id} holds no grant of the model key "
                         f"to its worker {worker.address}: hand over the training the worker returned")
    model_key = open_stored_grant(net.store, own, worker, order_id=order_id)
    grants = {v.address: training.model_grants.get(v.address) or put_grant(
        net.store, model_key, v, order_id=order_id, role=f"task {task} model")
        for v in order_validators(net, order_id) if accepts_grants(v)}
    return training.model_copy(update={"model_grants": {**grants, worker.address: own}})


@task(name="grant_model", cache_policy=NO_CACHE)
def grant_model_task(upload: Upload, training: Training) -> Training:
    """Prefect task: grant the model key to the order's validators that lack it, as the task's worker."""
    granted = grant_model(upload, training, network())
    if added := sorted(set(granted.model_grants) - set(training.model_grants)):
        get_run_logger().info("task %d of order %s: the model key wrapped to %s", training.task, upload.order_id,
                              ", ".join(added))
    return granted
