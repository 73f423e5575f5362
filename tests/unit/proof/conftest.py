"""A tiny honest task (MLP on 600 digits, 36 steps) shared by the check, attack and spot-check tests."""

import hashlib

import pytest

from proof.attacks import run_worker
from proof.challenge import derive_challenge
from proof.checks.base import CheckContext
from proof.verifier import VerifyConfig, add_targeted_steps, load_evidence, load_revealed
from storage.refs import ArtifactRef
from training.datasets import load_dataset, table_to_arrays
from training.trainer import TrainSpec

SEED = b"\x07" * 32


class MemoryStore:
    """Content-addressed plaintext store: ``put`` as the recorder expects, ``fetch`` as the verifier."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def put(self, name: str, data: bytes) -> ArtifactRef:
        sha = hashlib.sha256(data).hexdigest()
        self.objects[sha] = data
        return ArtifactRef(name=name, md5=hashlib.md5(data).hexdigest(), sha256=sha, size=len(data))

    def fetch(self, ref: ArtifactRef) -> bytes:
        """The stored bytes, checked against their commitment as every real store does."""
        if ref.sha256 not in self.objects:
            raise LookupError(f"{ref.name} is not in the store")
        data = self.objects[ref.sha256]
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise ValueError(f"{ref.name} does not match its commitment")
        return data


@pytest.fixture(scope="session")
def data():
    X, y, shape = table_to_arrays(load_dataset("digits"))
    return X[:600], y[:600], shape


@pytest.fixture(scope="session")
def spec(data):
    return TrainSpec(
        model="mlp", input_shape=data[2], num_classes=10, optimizer="sgd", lr=0.05,
        batch_size=32, epochs=2, seed=3, checkpoint_every=6,
    )


@pytest.fixture(scope="session")
def store():
    return MemoryStore()


@pytest.fixture(scope="session")
def honest(spec, data, store):
    return run_worker(None, spec, data[0], data[1], store.put)


@pytest.fixture
def context(honest, data, store):
    """A fresh context over the honest proof; tests tamper with it before running one check."""

    def build(bundle=None, fetch=None, config=None, expected_spec=None, response="honest", committed_root=None):
        expected_spec = expected_spec or honest.job.spec
        bundle = bundle or honest.bundle
        config = config or VerifyConfig()
        if response == "honest":
            response = honest.answer(SEED, config)
        ctx = CheckContext(
            bundle=bundle, committed_root=committed_root or honest.committed_root, challenge=derive_challenge(SEED, bundle, config),
            config=config, X=data[0], y=data[1], expected_spec=expected_spec, response=response,
        )
        load_evidence(ctx, fetch or store.fetch)
        add_targeted_steps(ctx)
        load_revealed(ctx, fetch or store.fetch)
        return ctx

    return build
