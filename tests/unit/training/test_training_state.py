"""The per-step state encoding: canonical bytes, exact round trip, one honest step reproduces the next state."""

import hashlib

import pytest
import torch

from proof.recorder import Recorder
from training.errors import CheckpointError
from training.hooks import TrainHooks
from training.state import MAGIC, StateEncoder, checkpoint_state, decode_state, encode_state
from training.trainer import Stepper, _setup, initial_training_state, train


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_round_trip_keeps_every_byte(digits, mlp_spec, optimizer):
    X, y, _ = digits
    run = _setup(mlp_spec(optimizer=optimizer), X[:320], y[:320], None)
    run.advance(3, None, TrainHooks())
    data = run.encode().to_bytes()
    decoded = decode_state(data)
    assert data.startswith(MAGIC) and decoded.step == 3
    assert checkpoint_state(decoded).to_bytes() == data  # decode then encode: the same bytes
    assert checkpoint_state(run.snapshot()).to_bytes() == data  # a checkpoint encodes as the live state


def test_recorded_digests_match_one_honest_step(digits, mlp_spec, store):
    X, y, _ = digits
    spec = mlp_spec(epochs=1)
    recorder = Recorder(put=store.put)
    train(spec, X[:320], y[:320], recorder=recorder)
    steps = recorder.close().steps
    spool = recorder.spool
    try:
        assert all(len(s.state_sha256) == 64 for s in steps)
        assert len({s.state_sha256 for s in steps}) == len(steps)  # every state differs
        starts = [decode_state(initial_training_state(spec, X[:320], y[:320]).to_bytes()), decode_state(spool.get(4))]
        stepper = Stepper(spec, X[:320], y[:320])
        for start, t in zip(starts, (0, 4)):
            state, loss = stepper.step(start)
            assert _sha(state.to_bytes()) == steps[t].state_sha256 and loss == steps[t].loss
    finally:
        spool.close()


@pytest.mark.parametrize("damage", [b"", b"not a state", "truncate", "extra"])
def test_damaged_state_is_named(digits, mlp_spec, damage):
    X, y, _ = digits
    data = initial_training_state(mlp_spec(), X[:64], y[:64]).to_bytes()
    bad = {"truncate": data[:-5], "extra": data + b"\0"}.get(damage, damage)
    with pytest.raises(CheckpointError, match="state-00000007 is not a readable bahen state"):
        decode_state(bad, name="state-00000007")


def test_the_encoder_follows_in_place_updates_of_contiguous_and_strided_weights():
    weights = {"w": torch.zeros(3, 4), "t": torch.zeros(4, 3).t()}  # the second is a strided view
    encoder = StateEncoder(weights, "{}")
    for step in (1, 2):
        weights["w"].add_(1.0)
        weights["t"].add_(2.0)
        state = encoder.encode(step, 0, {"state": {}, "param_groups": []}, torch.zeros(2, dtype=torch.uint8))
        fresh = encode_state(step, 0, {k: v.clone() for k, v in weights.items()},
                             {"state": {}, "param_groups": []}, torch.zeros(2, dtype=torch.uint8), "{}")
        assert state.to_bytes() == fresh.to_bytes()
