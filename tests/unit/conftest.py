"""Fixtures shared by the unit tests of several packages."""

import pytest

from training.datasets import load_dataset, table_to_arrays
from training.diloco import GlobalState, OuterSpec, aggregate, parameter_names, round_indices, round_spec, shard_plan
from training.models import weights_digest
from training.trainer import TrainSpec, initial_state, train


@pytest.fixture(scope="session")
def diloco_rounds() -> dict:
    """Two DiLoCo rounds of four honest workers on digits (MLP, 8 inner steps, quorum 3): for each
    round the global state it started from, the workers' weights and the outcome of its aggregate."""
    X, y, shape = table_to_arrays(load_dataset("digits"))
    spec = TrainSpec(model="mlp", input_shape=shape, num_classes=10, optimizer="sgd", lr=0.05, batch_size=16,
                     epochs=1, seed=11, checkpoint_every=8)
    outer = OuterSpec(workers=4, rounds=2, inner_steps=8, min_quorum=3)
    plan = shard_plan(spec.seed, len(X), outer.workers)
    parameters = parameter_names(spec)
    state, history = GlobalState(0, initial_state(spec)), []
    for r in range(outer.rounds):
        updates, data = {}, {}
        for w in range(outer.workers):
            idx = round_indices(spec.seed, plan[w], w, r, outer.inner_steps * spec.batch_size)
            data[w] = X[idx], y[idx]
            task = round_spec(spec, outer, w, r, weights_digest(state.weights))
            updates[w] = train(task, *data[w], initial=state.weights).final_state
        outcome = aggregate(state, updates, outer=outer, parameters=parameters)
        history.append(dict(state=state, updates=updates, outcome=outcome, data=data))
        state = outcome.next_state
    return dict(spec=spec, outer=outer, parameters=parameters, history=history, X=X, y=y)
