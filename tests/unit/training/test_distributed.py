"""Data-parallel training that one device reproduces: two gloo processes against one, bit for bit."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from training.errors import TrainingError
from training.models import weights_digest
from training.trainer import TrainSpec, batch_losses, train

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import order  # noqa: E402  (the worker is a script too)

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("model", ["mlp", "resnet20"])
def test_two_processes_reach_the_bits_one_process_computes_and_the_proof_verifies(tmp_path, model):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    port = _free_port()
    ranks = [subprocess.Popen([sys.executable, str(Path(__file__).parent / "ddp_worker.py"), model, str(rank),
                               str(port), str(tmp_path)], env=env) for rank in (0, 1)]
    assert [r.wait(timeout=300) for r in ranks] == [0, 0]
    zero, one = (json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1))
    spec, X, y = order(model)
    alone = train(spec, X, y)
    # rank 0's state, the one recorded, is the single process's bit for bit; every rank holds the same
    # weights (another rank's batch-norm statistics are its own shard's until a next step syncs them)
    assert zero["weights"] == weights_digest(alone.final_state)
    assert zero["parameters"] == one["parameters"]
    assert zero["passed"], zero["failed"]
    # every step's recorded loss is the one a single process computes for that batch
    assert zero["losses"][-1] == alone.final_loss


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
    from training.trainer import initial_state

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
