"""Subnormal floats: flushed inside training under cpu-fp32-exact, IEEE everywhere else in the thread."""

import math

import pytest

from training.datasets import load_dataset, table_to_arrays
from training.hooks import TrainHooks
from training.profiles import apply_profile
from training.trainer import TrainSpec, train

TINY = math.ldexp(1.0, -1074)  # the smallest subnormal double

pytestmark = pytest.mark.skipif(not apply_profile("cpu-fp32-exact").flush_denormal,
                                reason="this CPU cannot flush subnormals")


class Probe(TrainHooks):
    def __init__(self):
        self.seen: list[float] = []

    def on_update(self, step, model, optimizer):
        self.seen.append(TINY * float(step + 1))


def test_subnormals_are_flushed_during_training_and_kept_after():
    X, y, shape = table_to_arrays(load_dataset("digits"))
    spec = TrainSpec(model="mlp", input_shape=shape, num_classes=10, optimizer="sgd", lr=0.05,
                     batch_size=64, epochs=1, seed=1, checkpoint_every=100)
    probe = Probe()
    train(spec, X[:256], y[:256], hooks=probe)
    assert probe.seen == [0.0] * 4  # inside the loop the thread flushes
    assert TINY * 2.0 > 0.0  # after it, IEEE subnormals again (JSON, signatures, statistics)
