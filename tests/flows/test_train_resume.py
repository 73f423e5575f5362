"""The train stage resumes: from its last journal after a crash, bitwise; from its commitment after a crash there.

A crash is a store that fails right after a chosen object, as a dying host leaves things: what was
stored stays, nothing after it exists. The retry is the same stage called again, as a Prefect retry
or the UI's Retry runs it.
"""

import pytest
from contracts.errors import ChainError
from proof.attacks import run_worker
from proof.bundle import ProofBundle, read_step_log
from proof.errors import CheckpointWriteError

from bahen.artifacts import PROOF_ROLE, get_decrypted, get_signed, open_stored_grant
from bahen.errors import BahenError
from bahen.network import connect
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from bahen.worker_runs import WorkerRunBook
from tasks.encrypt_upload import encrypt_upload
from tasks.shard import shard
from tasks.train import TaskCommittedError, load_split, train, train_spec
from tasks.verify import verify
from tests.unit.proof.conftest import MemoryStore

SMALL = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32)


class HostDied(Exception):
    """The worker's host went away."""


def _dies_after(name: str):
    def on_put(stored: str) -> None:
        if stored == name:
            raise HostDied(f"the host died right after storing {name}")

    return on_put


def _order(net, byte: str):
    upload = encrypt_upload(SMALL, net, salt="0x" + byte * 32)
    plan = shard(SMALL, upload, net)
    return upload, plan, plan.assignments[0]


def _uninterrupted(net, upload, assignment):
    """The checkpoints' plaintext hashes of the same task trained in one go, outside the pipeline."""
    key = open_stored_grant(net.store, assignment.grants["train"], net.party_at(assignment.address, role="worker"), order_id=upload.order_id)
    X, y = load_split(net.store, key, upload, "train", SMALL)
    return run_worker(None, train_spec(SMALL, upload, assignment.task, net), X, y, MemoryStore().put).recorded


def test_a_crashed_train_run_resumes_from_its_last_journal_bitwise_and_verifies(prefect, bahen_home):
    net = connect(load_settings())
    upload, plan, assignment = _order(net, "7a")
    runs = WorkerRunBook(load_settings().worker_runs_dir)
    with pytest.raises(CheckpointWriteError, match="the host died right after storing journal-00000016"):
        train(SMALL, upload, assignment, net, on_put=_dies_after("journal-00000016"))
    assert runs.load(upload.order_id, 0).last_journal.name.endswith("journal-00000016")

    training = train(SMALL, upload, assignment, net)
    bundle, _ = get_signed(net.store, training.bundle, ProofBundle, expected_signer=assignment.address)
    expected = _uninterrupted(net, upload, assignment)
    assert bundle.resumes == [16]
    assert bundle.checkpoint_sha256 == expected.checkpoint_sha256
    model_key = open_stored_grant(net.store, training.model_grants[assignment.address], net.party_at(assignment.address, role="worker"),
                                  order_id=upload.order_id)
    steps = read_step_log(get_decrypted(net.store, model_key, bundle.step_log, order_id=upload.order_id, role=PROOF_ROLE))
    assert [s.state_sha256 for s in steps] == [s.state_sha256 for s in expected.steps]
    verification = verify(SMALL, upload, plan, assignment, training, net)
    assert verification.passed, [c for c in verification.checks if not c["passed"]]
    assert runs.load(upload.order_id, 0) is None

    with pytest.raises(TaskCommittedError, match="its proof is final, there is nothing to train"):
        train(SMALL, upload, assignment, net)


def test_a_run_that_died_after_its_commitment_only_answers_the_challenge(prefect, bahen_home, monkeypatch):
    net = connect(load_settings())
    upload, plan, assignment = _order(net, "7b")

    def chain_gone(*args):
        raise ChainError("the chain node went away")

    with monkeypatch.context() as patched:
        patched.setattr("tasks.train.challenge_seed", chain_gone)
        with pytest.raises(ChainError):
            train(SMALL, upload, assignment, net)
    note = WorkerRunBook(load_settings().worker_runs_dir).load(upload.order_id, 0)
    assert note.bundle is not None and note.commit_block > 0

    training = train(SMALL, upload, assignment, net)
    assert (training.bundle, training.merkle_root, training.commit_block) == (note.bundle, note.merkle_root,
                                                                             note.commit_block)
    assert training.response is not None and training.steps == len(training.losses) > 0
    verification = verify(SMALL, upload, plan, assignment, training, net)
    assert verification.passed, [c for c in verification.checks if not c["passed"]]


def test_a_task_assigned_to_another_worker_is_refused_before_training(prefect, bahen_home):
    net = connect(load_settings())
    upload, plan, assignment = _order(net, "7c")
    other = assignment.model_copy(update={"worker": plan.validators[0].name, "address": plan.validators[0].address})
    with pytest.raises(BahenError, match="is not assigned to .* on chain; train only the tasks the chain assigns to you"):
        train(SMALL, upload, other, net)
