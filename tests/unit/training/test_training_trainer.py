"""The trainer under cpu-fp32-exact: bitwise determinism, replay, forward-only losses, hooks."""

import hashlib
import numpy as np
import pytest
import torch

from proof.recorder import Recorder
from training.checkpoint import Checkpoint
from training.errors import CheckpointError
from training.hooks import TrainHooks
from training.order import batch_order
from training.trainer import TrainSpec, batch_losses, evaluate, initial_state, replay, steps_per_epoch, train


def _record(spec, X, y, store, **kwargs):
    recorder = Recorder(put=store.put)
    result = train(spec, X, y, recorder=recorder, **kwargs)
    return result, recorder.close()


def _without_seconds(proof):
    return [s.model_dump(exclude={"seconds"}) for s in proof.steps]


def _checkpoint_bytes(store) -> dict[str, bytes]:
    return {name: data for name, data in sorted(store.objects.items()) if name.startswith("checkpoint-")}


def _state_bytes(state: dict) -> bytes:
    return b"".join(k.encode() + v.numpy().tobytes() for k, v in state.items())


CASES = {
    "mlp": dict(optimizer="sgd", lr_schedule="cosine"),
    "cnn": dict(optimizer="adamw", lr=0.01, weight_decay=0.01),
    "resnet20": dict(optimizer="sgd", lr=0.05, weight_decay=5e-4),
    "gpt": dict(optimizer="adamw", lr=3e-3),
}


@pytest.mark.parametrize("model", list(CASES))
def test_two_runs_are_bitwise_equal(model, digits, text, store, mlp_spec):
    X, y, shape = text if model == "gpt" else digits
    X, y = X[:192], y[:192]
    spec = mlp_spec(model=model, input_shape=shape, num_classes=128 if model == "gpt" else 10,
                    epochs=2, checkpoint_every=4, **CASES[model])
    first, proof1 = _record(spec, X, y, store)
    bytes1 = _checkpoint_bytes(store)
    store.objects.clear()
    second, proof2 = _record(spec, X, y, store)
    assert first.steps == second.steps == 2 * steps_per_epoch(spec, len(X))
    assert _state_bytes(first.final_state) == _state_bytes(second.final_state)
    assert _without_seconds(proof1) == _without_seconds(proof2)
    assert proof1.epoch_digests == proof2.epoch_digests and len(proof1.epoch_digests) == 2
    # torch.save output of every checkpoint is byte-identical, so are the refs.
    assert bytes1 == _checkpoint_bytes(store) and len(bytes1) == len(proof1.checkpoints)
    assert proof1.checkpoints == proof2.checkpoints
    assert proof1.checkpoint_sha256 == [hashlib.sha256(data).hexdigest() for data in bytes1.values()]
    assert not _state_bytes(first.final_state) == _state_bytes(initial_state(spec))


def test_checkpoint_schedule_and_contents(digits, store, mlp_spec):
    X, y, _ = digits
    spec = mlp_spec(checkpoint_every=25)
    result, proof = _record(spec, X, y, store)
    assert [step for step, _ in proof.checkpoints] == [0, 25, 50, 75, 100, 112]
    last = Checkpoint.from_bytes(store.objects[proof.checkpoints[-1][1].name])
    assert last.step == 112 and last.spec == spec.model_dump(mode="json")
    assert _state_bytes(last.model_state) == _state_bytes(result.final_state)
    first = Checkpoint.from_bytes(store.objects[proof.checkpoints[0][1].name])
    assert _state_bytes(first.model_state) == _state_bytes(initial_state(spec))
    assert [s.step for s in proof.steps] == list(range(112))
    assert [s.epoch for s in proof.steps] == [0] * 56 + [1] * 56


def test_replay_reproduces_a_segment(digits, store, mlp_spec):
    X, y, _ = digits
    spec = mlp_spec(checkpoint_every=10, optimizer="adamw", lr=1e-3)
    _, proof = _record(spec, X, y, store)
    start = Checkpoint.from_bytes(store.objects[proof.checkpoints[5][1].name])  # step 50, crosses an epoch
    end = Checkpoint.from_bytes(store.objects[proof.checkpoints[6][1].name])
    replayed = replay(spec, X, y, start=start, num_steps=10)
    assert replayed.step == end.step == 60
    assert _state_bytes(replayed.model_state) == _state_bytes(end.model_state)


def test_batch_losses_match_recorded_losses(digits, store, mlp_spec):
    X, y, _ = digits
    spec = mlp_spec()
    _, proof = _record(spec, X, y, store)
    ckpt = Checkpoint.from_bytes(store.objects[proof.checkpoints[2][1].name])  # step 20
    batch = batch_order(spec.seed, spec.task, 0, len(X), spec.batch_size)[20]
    assert batch_losses(spec, ckpt.model_state, X, y, [batch]) == [proof.steps[20].loss]


def test_training_learns(digits, mlp_spec):
    X, y, _ = digits
    spec = mlp_spec(epochs=4)
    before = evaluate(spec, initial_state(spec), X, y)
    after = evaluate(spec, train(spec, X, y).final_state, X, y)
    assert after["accuracy"] > 0.85 > before["accuracy"] and after["loss"] < before["loss"]


class ScaleBatch(TrainHooks):
    def on_batch(self, step, indices, X, y):
        return X * 0.5, y


def test_hooks_change_training(digits, mlp_spec):
    X, y, _ = digits
    spec = mlp_spec(epochs=1)
    honest, altered = train(spec, X, y), train(spec, X, y, hooks=ScaleBatch())
    assert _state_bytes(honest.final_state) != _state_bytes(altered.final_state)


def test_resume_with_another_spec_is_refused(digits, store, mlp_spec):
    X, y, _ = digits
    spec = mlp_spec(epochs=1)
    _, proof = _record(spec, X, y, store)
    ckpt = Checkpoint.from_bytes(store.objects[proof.checkpoints[1][1].name])
    with pytest.raises(CheckpointError, match="another training spec"):
        train(TrainSpec(**{**spec.model_dump(), "lr": 0.1}), X, y, resume_from=ckpt)


def test_training_leaves_no_gradients_between_runs(digits, mlp_spec):
    X, y, _ = digits
    spec = mlp_spec(epochs=1)
    assert torch.isfinite(torch.tensor(train(spec, X, y).final_loss))
    assert np.isfinite(evaluate(spec, initial_state(spec), X, y)["loss"])
