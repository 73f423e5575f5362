"""Model registry: seed-derived initialisation, shapes, FLOP counts."""

import math

import numpy as np
import pytest
import torch

from training.errors import UnknownModelError
from training.models import MODEL_NAMES, GPTConfig, build_model, flops_per_sample
from training.trainer import TrainSpec, input_blind_loss

SHAPES = {"mlp": ((1, 8, 8), 10), "cnn": ((1, 28, 28), 10), "resnet20": ((3, 32, 32), 10), "gpt": ((32,), 128)}


def _equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_weights_derive_from_seed(name):
    shape, classes = SHAPES[name]
    one = build_model(name, input_shape=shape, num_classes=classes, seed=5).state_dict()
    again = build_model(name, input_shape=shape, num_classes=classes, seed=5).state_dict()
    other = build_model(name, input_shape=shape, num_classes=classes, seed=6).state_dict()
    assert _equal_states(one, again)
    assert not _equal_states(one, other)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_and_loss_shapes(name):
    shape, classes = SHAPES[name]
    model = build_model(name, input_shape=shape, num_classes=classes, seed=0)
    x = torch.randint(0, 128, (4, *shape)).float() if name == "gpt" else torch.rand(4, *shape)
    y = torch.randint(0, classes, (4,))
    assert model(x).shape == (4, classes)
    assert model.loss(x, y).ndim == 0


def test_building_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model("cnn", input_shape=(1, 28, 28), num_classes=10, seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_flops_known_answers():
    # MLP 64-128-64-10: 2 FLOPs per multiply-add of each linear layer.
    assert flops_per_sample("mlp", input_shape=(1, 8, 8), num_classes=10) == 2 * (64 * 128 + 128 * 64 + 64 * 10)
    # CNN on 28x28: conv 1->16 at 28x28, conv 16->32 at 14x14 (3x3 kernels), linear 32*7*7 -> 10.
    cnn = 2 * (28 * 28 * 16 * 9 + 14 * 14 * 32 * 16 * 9 + 32 * 7 * 7 * 10)
    assert flops_per_sample("cnn", input_shape=(1, 28, 28), num_classes=10) == cnn
    # ResNet-20 on CIFAR-sized input is about 41 MMACs (He et al. 2016 report ~41M).
    resnet = flops_per_sample("resnet20", input_shape=(3, 32, 32), num_classes=10)
    assert 80e6 < resnet < 84e6


def test_unknown_model():
    with pytest.raises(UnknownModelError, match="registry has mlp, cnn, resnet20, gpt"):
        build_model("vit", input_shape=(1, 8, 8), num_classes=10, seed=0)



def test_the_input_blind_loss_is_the_entropy_of_the_targets_the_loss_scores():
    base = dict(optimizer="sgd", lr=0.1, batch_size=2, epochs=1, seed=0, checkpoint_every=1)
    three_to_one = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mlp = TrainSpec(model="mlp", input_shape=(2,), num_classes=2, **base)
    assert input_blind_loss(mlp, np.zeros((4, 2), np.float32), np.array([0, 0, 0, 1])) == pytest.approx(three_to_one)
    # a gpt scores every next byte: windows "ab", "ab" labelled "a", "b" score b, a, b, b
    gpt = TrainSpec(model="gpt", architecture=GPTConfig(layers=1, heads=1, embed=8), input_shape=(2,), num_classes=128,
                    **base)
    windows = np.array([[97, 98], [97, 98]], np.float32)
    assert input_blind_loss(gpt, windows, np.array([97, 98])) == pytest.approx(three_to_one)


def test_weights_digest_follows_its_documented_encoding_for_scalars_too():
    import hashlib
    import struct

    from training.models import weights_digest

    def entry(name: str, dtype: str, shape: str, data: bytes) -> bytes:
        header = f"{name}\n{dtype}\n{shape}\n".encode()
        return len(header).to_bytes(8, "big") + header + len(data).to_bytes(8, "big") + data

    state = {"w": torch.tensor([1.5, -2.0]), "bn.num_batches_tracked": torch.tensor(7)}
    expected = hashlib.sha256(b"bahen.weights.v1" + entry("bn.num_batches_tracked", "int64", "[]", struct.pack("<q", 7))
                              + entry("w", "float32", "[2]", struct.pack("<2f", 1.5, -2.0))).hexdigest()
    assert weights_digest(state) == expected


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_registry_model_has_a_weights_digest_that_names_its_seed(name):
    from training.models import weights_digest

    shape, classes = SHAPES[name]
    digests = {weights_digest(build_model(name, input_shape=shape, num_classes=classes, seed=s).state_dict())
               for s in (5, 5, 6)}
    assert len(digests) == 2
