"""The per-step state encoding: canonical bytes, exact round trip, one honest step reproduces the next state."""

import hashlib

import pytest
import torch

from proof.recorder import Recorder
from training.errors import CheckpointError
from training.hooks import TrainHooks
from training.state import MAGIC, StateEncoder, checkpoint_state, decode_state, encode_state, update_norms
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
    optimizer = torch.optim.SGD(list(weights.values()), lr=0.1)
    encoder = StateEncoder(weights, "{}")
    for step in (1, 2):
        weights["w"].add_(1.0)
        weights["t"].add_(2.0)
        state = encoder.encode(step, 0, optimizer, torch.zeros(2, dtype=torch.uint8))
        fresh = encode_state(step, 0, {k: v.clone() for k, v in weights.items()},
                             optimizer.state_dict(), torch.zeros(2, dtype=torch.uint8), "{}")
        assert state.to_bytes() == fresh.to_bytes()


def test_update_norms_are_the_distance_of_the_trainable_weights_bitwise():
    # Trainable float32 and float64 weights around a frozen float32 one and a 3-byte buffer that
    # leaves the next weight's bytes unaligned in the payload: four ranges, two dtypes.
    torch.manual_seed(0)
    model = {"a": torch.randn(5, 3), "b": torch.randn(4, dtype=torch.float64), "frozen": torch.randn(6),
             "flags": torch.zeros(3, dtype=torch.uint8), "c": torch.randn(7), "d": torch.randn(2, 2)}
    trainable = frozenset({"a", "b", "c", "d"})
    optimizer = torch.optim.SGD([model[k] for k in sorted(trainable)], lr=0.1)
    encoder = StateEncoder(model, "{}", trainable)
    states, weights = [], []
    for step in range(4):
        for value in model.values():
            value.add_(torch.randn(value.shape, dtype=value.dtype) if value.is_floating_point() else 1)
        states.append(encoder.encode(step, 0, optimizer, torch.zeros(2, dtype=torch.uint8)))
        weights.append([model[k].reshape(-1).clone() for k in ("a", "b", "c", "d")])
    assert len(states[0].weight_ranges) == 3  # a and b differ in dtype; c starts after the frozen weight
    # each weight's update in its own dtype, then one norm over all of them
    expected = [torch.linalg.vector_norm(torch.cat([a - b for a, b in zip(after, before)])).item()
                for before, after in zip(weights, weights[1:])]
    assert update_norms(states[0], states[1:]) == expected
    assert update_norms(states[0], []) == []


def test_update_norms_refuse_states_of_different_runs():
    weights = {"w": torch.zeros(4)}
    optimizer = torch.optim.SGD([weights["w"]], lr=0.1)
    state = StateEncoder(weights, "{}", frozenset({"w"})).encode(0, 0, optimizer, torch.zeros(2, dtype=torch.uint8))
    other = StateEncoder(weights, "{}").encode(1, 0, optimizer, torch.zeros(2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="one run"):
        update_norms(state, [other])


def _fresh_bytes(run) -> bytes:
    """The state as one full walk of a private snapshot encodes it."""
    return checkpoint_state(run.snapshot()).to_bytes()


@pytest.mark.parametrize("fields", [
    dict(optimizer="sgd"),
    dict(optimizer="sgd", weight_decay=1e-3, lr_schedule="cosine"),
    dict(optimizer="adamw", weight_decay=1e-2, lr_schedule="cosine"),
])
def test_every_live_encoding_equals_a_full_walk(digits, mlp_spec, fields):
    X, y, _ = digits
    spec = mlp_spec(**fields)
    run = _setup(spec, X[:320], y[:320], None)
    start = run.snapshot()
    seen = []
    for stop in range(1, 6):
        run.advance(stop, None, TrainHooks())
        seen.append(run.encode().to_bytes())
        assert seen[-1] == _fresh_bytes(run)
    assert len(set(seen)) == len(seen)  # the encoding moved with the optimizer's in-place updates
    run.restore(start)  # load_state_dict puts other tensors in the optimizer's state
    run.advance(1, None, TrainHooks())
    assert run.encode().to_bytes() == seen[0]


def test_the_encoder_rereads_optimizer_state_that_is_not_tensors(digits, mlp_spec):
    X, y, _ = digits
    run = _setup(mlp_spec(), X[:320], y[:320], None)
    run.advance(1, None, TrainHooks())
    history = run.optimizer.state[next(run.model.parameters())]
    history["trace"] = [1]
    assert run.encode().to_bytes() == _fresh_bytes(run)
    history["trace"].append(2)  # the same list object, changed in place
    assert run.encode().to_bytes() == _fresh_bytes(run)
    del history["trace"]
    assert run.encode().to_bytes() == _fresh_bytes(run)


def test_tensors_in_param_groups_are_encoded_after_the_optimizer_state(digits, mlp_spec):
    X, y, _ = digits
    run = _setup(mlp_spec(), X[:320], y[:320], None)
    run.advance(2, None, TrainHooks())
    before = run.encode()
    run.optimizer.param_groups[0]["lr"] = torch.tensor(0.05)
    after = run.encode()
    assert after.to_bytes() == _fresh_bytes(run)
    assert after.payload.numel() == before.payload.numel() + 4  # one float32 more


def test_state_dict_hooks_are_honoured(digits, mlp_spec):
    X, y, _ = digits
    run = _setup(mlp_spec(), X[:320], y[:320], None)
    run.advance(2, None, TrainHooks())

    def tag(optimizer, state_dict):
        state_dict["param_groups"][0]["tag"] = "hooked"

    run.optimizer.register_state_dict_post_hook(tag)
    state = run.encode()
    assert b'"tag","hooked"' in state.to_bytes() and state.to_bytes() == _fresh_bytes(run)
