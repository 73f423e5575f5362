"""The form of a training state: everything but its tensors' values is what the order implies.

Honest states of every optimizer pass at every step; each forged setting, counter, shape or dtype
is refused and named, and a state that is refused can never be restored to steer a re-execution.
"""

import copy

import pytest
import torch

from training.errors import CheckpointError
from training.state import decode_state
from training.trainer import Stepper, evaluate, initial_training_state, replay_segment_states, state_form

SETTINGS = {
    "sgd with momentum": {"optimizer": "sgd"},
    "sgd without momentum": {"optimizer": "sgd", "momentum": 0.0, "weight_decay": 1e-3},
    "adamw": {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 1e-2},
    "cosine schedule": {"optimizer": "adamw", "lr": 3e-3, "lr_schedule": "cosine"},
}


def _states(spec, X, y, stop):
    start = decode_state(initial_training_state(spec, X, y).to_bytes())
    return [start, *(decode_state(s.to_bytes()) for s in replay_segment_states(spec, X, y, start=start, stop=stop))]


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS)
def test_every_honest_state_has_the_orders_form(digits, mlp_spec, settings):
    X, y, _ = digits
    spec = mlp_spec(epochs=1, **settings)
    form = state_form(spec, 320)
    states = _states(spec, X[:320], y[:320], form.total)
    assert len(states) == form.total + 1
    assert [form.fault(s) for s in states] == [None] * len(states)


@pytest.fixture(scope="module")
def adamw_state(digits):
    """An AdamW state after three steps of a cosine schedule, and the form it must have."""
    from training.trainer import TrainSpec

    X, y, shape = digits
    spec = TrainSpec(model="mlp", input_shape=shape, num_classes=10, optimizer="adamw", lr=3e-3, weight_decay=1e-2,
                     lr_schedule="cosine", batch_size=32, epochs=1, seed=5, checkpoint_every=4)
    return spec, X[:320], y[:320], _states(spec, X[:320], y[:320], 3)[3]


def _group(state, **changes):
    state.optimizer_state["param_groups"][0].update(changes)


def _slot(state, name, value):
    state.optimizer_state["state"][0][name] = value


FORGERIES = {
    "weight decay": (lambda s: _group(s, weight_decay=0.5), "sets the optimizer's 'weight_decay' to 0.5"),
    "betas": (lambda s: _group(s, betas=(0.5, 0.999)), "sets the optimizer's 'betas' to (0.5, 0.999)"),
    "betas as a list": (lambda s: _group(s, betas=[0.9, 0.999]), "sets the optimizer's 'betas' to [0.9, 0.999]"),
    "learning rate": (lambda s: _group(s, lr=0.1), "sets the optimizer's 'lr' to 0.1"),
    "an integer flag": (lambda s: _group(s, amsgrad=0), "sets the optimizer's 'amsgrad' to 0"),
    "an extra setting": (lambda s: _group(s, nesterov=True), "optimizer group 0 with other settings"),
    "step counter": (lambda s: _slot(s, "step", torch.tensor(2.0)), "counts 2 optimizer steps for parameter 0, not 3"),
    "counter dtype": (lambda s: _slot(s, "step", torch.tensor(3, dtype=torch.int64)), "'step' as torch.int64"),
    "moment shape": (lambda s: _slot(s, "exp_avg", torch.zeros(3)), "'exp_avg' as torch.float32 (3,)"),
    "moment dtype": (lambda s: _slot(s, "exp_avg", s.optimizer_state["state"][0]["exp_avg"].double()),
                     "'exp_avg' as torch.float64"),
    "an extra slot": (lambda s: _slot(s, "max_exp_avg_sq", torch.zeros(1)), "optimizer state of parameter 0"),
    "a missing parameter": (lambda s: s.optimizer_state["state"].pop(1), "keeps optimizer state for [0, 2, 3, 4, 5]"),
    "weights dtype": (lambda s: s.model_state.update({k: v.double() for k, v in s.model_state.items()}),
                      "torch.float64"),
    "epoch": (lambda s: setattr(s, "epoch", 1), "claims epoch 1, not 0"),
    "step": (lambda s: setattr(s, "step", 10_000), "claims step 10000, outside the run's 0 to 10"),
    "spec": (lambda s: setattr(s, "spec", {**s.spec, "weight_decay": 0.5}), "belongs to another training spec"),
    "rng state": (lambda s: setattr(s, "rng_state", s.rng_state.float()), "RNG state that is not the generator's"),
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES)
def test_a_forged_field_is_refused_and_named(adamw_state, forge):
    spec, X, y, honest = adamw_state
    state = copy.deepcopy(honest)
    change, message = forge
    change(state)
    fault = state_form(spec, len(X)).fault(state)
    assert fault is not None and message in fault
    with pytest.raises(CheckpointError, match="so this order's training never made it"):
        Stepper(spec, X, y).step(state)


def test_a_restored_state_takes_its_settings_from_the_order(adamw_state):
    spec, X, y, honest = adamw_state
    stepper = Stepper(spec, X, y)
    stepper.step(honest)
    groups = stepper._run.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [1e-2] and groups[0]["betas"] == (0.9, 0.999)


def test_a_model_of_another_form_is_refused_before_evaluation(adamw_state):
    spec, X, y, honest = adamw_state
    assert set(evaluate(spec, honest.model_state, X, y)) == {"loss", "accuracy"}
    first = next(iter(honest.model_state))
    forged = {**honest.model_state, first: torch.zeros(3)}
    with pytest.raises(CheckpointError, match=f"the model to evaluate holds model state '{first}' as torch.float32 \\(3,\\)"):
        evaluate(spec, forged, X, y)
