"""Revealing challenged states: the response lists exactly the states around each spot-checked
step, and a worker without its spool regenerates the same bytes from its checkpoints."""

import hashlib

import pytest

from proof.challenge import Challenge
from proof.recorder import Recorder
from proof.response import replay_regenerator, respond, revealed_steps
from proof.spool import StateNotSpooledError, StateSpool
from storage.refs import ArtifactRef
from training.datasets import load_dataset, table_to_arrays
from training.trainer import TrainSpec, train


def _challenge(steps):
    return Challenge(seed="00", replay_segments=[], loss_steps=[], pev_fraction=0.1, spot_steps=steps)


def test_revealed_steps_are_both_sides_of_each_challenged_step_but_never_state_0():
    assert revealed_steps(_challenge([0, 4, 5, 9])) == [1, 4, 5, 6, 9, 10]


class _Store:
    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def put(self, name: str, data: bytes) -> ArtifactRef:
        self.objects[name] = data
        return ArtifactRef(name=name, md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest(),
                           size=len(data))

    def get(self, ref: ArtifactRef) -> bytes:
        return self.objects[ref.name]


@pytest.fixture(scope="module")
def recorded():
    X, y, shape = table_to_arrays(load_dataset("digits"))
    X, y = X[:320], y[:320]
    spec = TrainSpec(model="mlp", input_shape=shape, num_classes=10, optimizer="sgd", lr=0.05, batch_size=32,
                     epochs=2, seed=7, checkpoint_every=10)
    store = _Store()
    recorder = Recorder(put=store.put)
    train(spec, X, y, recorder=recorder)
    proof = recorder.close()
    yield spec, X, y, store, proof, recorder.spool
    recorder.spool.close()


def test_regenerated_states_equal_the_spooled_ones(recorded):
    spec, X, y, store, proof, spool = recorded
    regenerate = replay_regenerator(spec, X, y, proof.checkpoints, store.get)
    for step in (1, 9, 10, 11, proof.steps[-1].step + 1):
        data = regenerate(step)
        assert data == spool.get(step)
        assert hashlib.sha256(data).hexdigest() == proof.steps[step - 1].state_sha256


def test_respond_reveals_through_put_and_needs_a_source(recorded):
    spec, X, y, store, proof, spool = recorded
    response = respond(_challenge([3]), spool, store.put, order_id="o", task=0, merkle_root="ab")
    assert [s for s, _ in response.states] == [3, 4]
    assert store.objects[response.state_ref(4).name] == spool.get(4)
    with pytest.raises(StateNotSpooledError, match="state after step 3 is not in this worker's spool"):
        respond(_challenge([3]), StateSpool(), store.put, order_id="o", task=0, merkle_root="ab")


@pytest.mark.parametrize("step", [1, 10, 11, 20])
def test_a_state_at_a_segments_end_is_regenerated_from_the_segment_before(recorded, step):
    spec, X, y, store, proof, spool = recorded
    fetched = []

    def get(ref):
        fetched.append(ref.name)
        return store.get(ref)

    regenerate = replay_regenerator(spec, X, y, proof.checkpoints, get)
    base = (step - 1) // 10 * 10
    assert regenerate(step) == spool.get(step) and regenerate(base + 1) == spool.get(base + 1)
    assert fetched == [dict(proof.checkpoints)[base].name]  # one segment replayed, once


def test_a_worker_without_its_spool_responds_with_regenerated_states(recorded):
    spec, X, y, store, proof, spool = recorded
    regenerate = replay_regenerator(spec, X, y, proof.checkpoints, store.get)
    response = respond(_challenge([3, 12]), StateSpool(), store.put, order_id="o", task=0, merkle_root="ab",
                       regenerate=regenerate)
    assert [s for s, _ in response.states] == [3, 4, 12, 13]
    assert all(store.objects[ref.name] == spool.get(step) for step, ref in response.states)


def test_a_corrupt_checkpoint_met_while_regenerating_is_named(recorded):
    from training.errors import CheckpointError

    spec, X, y, store, proof, spool = recorded
    regenerate = replay_regenerator(spec, X, y, proof.checkpoints, lambda ref: b"garbage")
    with pytest.raises(CheckpointError, match=f"^{proof.checkpoints[1][1].name} "):
        regenerate(12)
