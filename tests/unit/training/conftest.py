"""Shared fixtures: small real datasets and an in-memory content-addressed store."""

import hashlib

import numpy as np
import pytest

from storage.refs import ArtifactRef
from training.datasets import load_dataset, table_to_arrays
from training.trainer import TrainSpec


class MemoryStore:
    """Stores plaintext under its name; the ref commits to the bytes as a real store would."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def put(self, name: str, data: bytes) -> ArtifactRef:
        self.objects[name] = data
        return ArtifactRef(
            name=name, md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest(), size=len(data)
        )

    def get(self, ref: ArtifactRef) -> bytes:
        return self.objects[ref.name]


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    return table_to_arrays(load_dataset("digits"))


@pytest.fixture(scope="session")
def text() -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    return table_to_arrays(load_dataset("text"))


def _mlp_spec(**overrides) -> TrainSpec:
    fields = dict(
        model="mlp", input_shape=(1, 8, 8), num_classes=10, optimizer="sgd", lr=0.05,
        batch_size=32, epochs=2, seed=7, checkpoint_every=10,
    )
    return TrainSpec(**{**fields, **overrides})


@pytest.fixture
def mlp_spec():
    """Factory of small MLP specs on digits (2 epochs of 56 steps); keyword arguments override fields."""
    return _mlp_spec
