"""Data-parallel training that one device reproduces: two gloo processes against one, bit for bit."""

import multiprocessing

import pytest
import torch
from pydantic import ValidationError

from bench.pot import MemoryStore
from proof.attacks import run_worker
from proof.verifier import VerifyConfig, verify_proof
from training.datasets import load_dataset, table_to_arrays
from training.errors import TrainingError
from training.launch import data_parallel
from training.models import weights_digest
from training.state import decode_state
from training.trainer import TrainSpec, batch_losses, initial_state, initial_training_state, replay, train

SEED = b"\x03" * 32


def _order(model: str, **fields) -> tuple[TrainSpec, object, object]:
    X, y, shape = table_to_arrays(load_dataset("digits"))
    spec = TrainSpec(model=model, input_shape=shape, num_classes=10, optimizer="sgd", lr=0.05, batch_size=32,
                     epochs=1, seed=5, checkpoint_every=4, grad_shards=2, **fields)
    return spec, X[:320], y[:320]


@pytest.mark.parametrize("model", ["mlp", "resnet20"])
def test_two_processes_reach_the_bits_one_process_computes_and_the_proof_verifies(model):
    spec, X, y = _order(model)
    store = MemoryStore()
    with data_parallel(spec, X, y) as group:
        run = run_worker(None, spec, X, y, store.put, group=group)
    alone = train(spec, X, y)
    # rank 0's state, the one recorded, is the single process's bit for bit (batch norm included)
    assert weights_digest(run.result.final_state) == weights_digest(alone.final_state)
    # every step's recorded loss is the one a single process computes for that batch
    assert run.recorded.steps[-1].loss == alone.final_loss
    verdict = verify_proof(run.bundle, committed_root=run.committed_root, challenge_seed=SEED, X=X, y=y,
                           fetch=store.fetch, expected_spec=spec, response=run.answer(SEED, VerifyConfig()))
    run.spool.close()
    assert verdict.passed, [c.name for c in verdict.failed_checks]


def test_only_rank_zero_needs_the_starting_weights_or_the_checkpoint_to_resume_from():
    spec, X, y = _order("mlp", momentum=0.9)
    start = {k: v + 0.01 for k, v in initial_state(spec).items()}
    spec = spec.model_copy(update={"initial_weights": weights_digest(start)})
    with data_parallel(spec, X, y) as group:
        from_start = train(spec, X, y, initial=start, group=group)
    assert weights_digest(from_start.final_state) == weights_digest(train(spec, X, y, initial=start).final_state)

    spec = spec.model_copy(update={"initial_weights": None})
    at_four = replay(spec, X, y, start=decode_state(initial_training_state(spec, X, y).to_bytes()),
                     num_steps=4)
    with data_parallel(spec, X, y) as group:
        resumed = train(spec, X, y, resume_from=at_four, group=group)
    assert resumed.steps == 10
    assert weights_digest(resumed.final_state) == weights_digest(train(spec, X, y).final_state)


def test_a_failing_rank_zero_stops_the_others_and_leaves_no_group_behind():
    spec, X, y = _order("mlp")
    with pytest.raises(RuntimeError, match="rank 0 failed"):
        with data_parallel(spec, X, y) as group:
            assert group.size() == 2
            raise RuntimeError("rank 0 failed")
    assert not torch.distributed.is_initialized()
    assert not multiprocessing.active_children()


def test_a_rank_that_fails_is_named_and_fails_the_worker():
    spec, X, y = _order("mlp")
    with pytest.raises(TrainingError, match="rank 1 exited with code 1"):
        with data_parallel(spec, X, y + 99) as group:  # rank 1 gets labels no class has
            train(spec, X, y, group=group)
    assert not torch.distributed.is_initialized()


def test_sharding_the_batch_changes_the_step_and_the_order_names_it(digits):
    X, y, shape = digits
    spec = TrainSpec(model="mlp", input_shape=shape, num_classes=10, optimizer="sgd", lr=0.05, batch_size=32,
                     epochs=1, seed=5, checkpoint_every=4)
    one, two = train(spec, X[:320], y[:320]), train(spec.model_copy(update={"grad_shards": 2}), X[:320], y[:320])
    assert weights_digest(one.final_state) != weights_digest(two.final_state)
    assert abs(one.final_loss - two.final_loss) < 1e-3 * abs(one.final_loss)
    with pytest.raises(ValidationError, match="multiple of grad_shards"):
        TrainSpec(**{**spec.model_dump(), "grad_shards": 3})


def test_the_recorded_loss_of_a_sharded_step_is_the_mean_of_its_shards(digits):
    X, y, shape = digits
    spec = TrainSpec(model="mlp", input_shape=shape, num_classes=10, optimizer="sgd", lr=0.05, batch_size=32,
                     epochs=1, seed=5, checkpoint_every=4, grad_shards=4)

    start = initial_state(spec)
    batch = torch.arange(32).numpy()
    model_loss = batch_losses(spec, start, X, y, [batch])[0]
    shard_losses = batch_losses(spec.model_copy(update={"grad_shards": 1, "batch_size": 8}), start, X, y,
                                [batch[i * 8:(i + 1) * 8] for i in range(4)])
    as_float32 = torch.tensor(shard_losses, dtype=torch.float32)
    assert model_loss == (((as_float32[0] + as_float32[1]) + as_float32[2]) + as_float32[3]).div(4).item()


def test_a_group_of_another_size_than_the_order_asks_is_refused(digits):
    import torch.distributed as dist

    X, y, shape = digits
    spec = TrainSpec(model="mlp", input_shape=shape, num_classes=10, optimizer="sgd", lr=0.05, batch_size=32,
                     epochs=1, seed=5, checkpoint_every=4, grad_shards=2)
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        with pytest.raises(TrainingError, match="2 shard\\(s\\), so it trains on 2 process\\(es\\), not 1"):
            train(spec, X[:64], y[:64], group=dist.group.WORLD)
    finally:
        dist.destroy_process_group()
