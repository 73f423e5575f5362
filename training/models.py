"""The model registry: every model a client can order, with a typed config and a known FLOP count.

Client code never runs on workers; an order names a model from this registry and its config, so a
verifier can rebuild exactly what was trained. Initial weights derive from the order's committed
seed alone (``build_model(..., seed=...)``), which makes initialisation checkable.

Every model is a :class:`Classifier`: ``forward(x)`` returns logits for the label, ``loss(x, y)``
the training loss. The character-level GPT predicts the next character at every position of its
window (nanoGPT style), so its loss uses the window shifted by one plus the label as targets.
"""

import hashlib
import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, model_validator
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from training.errors import CheckpointError, UnknownModelError

MODEL_NAMES: tuple[str, ...] = ("mlp", "cnn", "resnet20", "gpt")


class MLPConfig(BaseModel, frozen=True):
    """A multilayer perceptron over the flattened input."""

    hidden: tuple[int, ...] = Field(default=(128, 64), description="Width of each hidden layer")


class CNNConfig(BaseModel, frozen=True):
    """Two 3x3 convolution + max-pool blocks and a linear head."""

    channels: tuple[int, int] = Field(default=(16, 32), description="Channels of the two conv blocks")


class ResNetConfig(BaseModel, frozen=True):
    """CIFAR-style ResNet (He et al. 2016, section 4.2): 3 stages of ``blocks`` basic blocks."""

    blocks: int = Field(default=3, ge=1, description="Basic blocks per stage; 3 gives ResNet-20")
    width: int = Field(default=16, ge=1, description="Channels of the first stage (doubled per stage)")


class GPTConfig(BaseModel, frozen=True):
    """A decoder-only transformer over byte-valued characters."""

    layers: int = Field(default=2, ge=1)
    heads: int = Field(default=4, ge=1)
    embed: int = Field(default=64, ge=8, description="Embedding width, a multiple of heads")

    @model_validator(mode="after")
    def _heads_divide_the_width(self) -> "GPTConfig":
        if self.embed % self.heads:
            raise ValueError(f"the embedding width ({self.embed}) must be a multiple of the heads ({self.heads})")
        return self


class Classifier(nn.Module):
    """A model whose training loss is the cross-entropy of its logits against the label."""

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean training loss of a batch."""
        return F.cross_entropy(self(x), y)

    def targets(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Every class index the loss of a batch scores a prediction against, flattened."""
        return y.reshape(-1)


class MLP(Classifier):
    def __init__(self, in_features: int, num_classes: int, config: MLPConfig):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for hidden in config.hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(Classifier):
    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, config: CNNConfig):
        super().__init__()
        c0, (c1, c2) = input_shape[0], config.channels
        self.features = nn.Sequential(
            nn.Conv2d(c0, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = (input_shape[1] // 4) * (input_shape[2] // 4)
        self.head = nn.Linear(c2 * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(Classifier):
    def __init__(self, in_channels: int, num_classes: int, config: ResNetConfig):
        super().__init__()
        w = config.width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        stages, c_in = [], w
        for stage, c_out in enumerate((w, 2 * w, 4 * w)):
            for block in range(config.blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                stages.append(BasicBlock(c_in, c_out, stride))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(self.stem(x))
        return self.head(F.adaptive_avg_pool2d(out, 1).flatten(1))


class GPTBlock(nn.Module):
    def __init__(self, embed: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(embed), nn.LayerNorm(embed)
        self.qkv, self.proj = nn.Linear(embed, 3 * embed), nn.Linear(embed, embed)
        self.mlp = nn.Sequential(nn.Linear(embed, 4 * embed), nn.GELU(), nn.Linear(4 * embed, embed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, e = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(e, dim=2)
        q, k, v = (z.view(b, t, self.heads, e // self.heads).transpose(1, 2) for z in (q, k, v))
        # Explicit causal attention rather than scaled_dot_product_attention: its fused CPU kernels
        # may pick different algorithms by shape and machine, which would break bitwise replay.
        att = (q @ k.transpose(-2, -1)) / math.sqrt(e // self.heads)
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, e))
        return x + self.mlp(self.ln2(x))


class GPT(Classifier):
    """Character-level GPT: input is a window of byte values, the label is the next byte."""

    def __init__(self, block_size: int, vocab: int, config: GPTConfig):
        super().__init__()
        self.tok = nn.Embedding(vocab, config.embed)
        self.pos = nn.Embedding(block_size, config.embed)
        self.blocks = nn.Sequential(*(GPTBlock(config.embed, config.heads) for _ in range(config.layers)))
        self.ln = nn.LayerNorm(config.embed)
        self.head = nn.Linear(config.embed, vocab)

    def sequence_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for the next character at every position, shape (batch, window, vocab)."""
        tokens = x.long()
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return self.head(self.ln(self.blocks(self.tok(tokens) + self.pos(positions))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequence_logits(x)[:, -1]

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.sequence_logits(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), self.targets(x, y))

    def targets(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The next byte at every position of each window: the window shifted by one, then the label."""
        return torch.cat([x[:, 1:].long(), y[:, None]], dim=1).reshape(-1)


ModelConfig = MLPConfig | CNNConfig | ResNetConfig | GPTConfig
DEFAULT_CONFIGS: dict[str, ModelConfig] = {
    "mlp": MLPConfig(), "cnn": CNNConfig(), "resnet20": ResNetConfig(), "gpt": GPTConfig(),
}


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a model's tensors: for each name in sorted order, its name, dtype, shape and
    little-endian bytes, so a digest names weights whatever file or key order they came in."""
    h = hashlib.sha256(b"bahen.weights.v1")
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        header = f"{name}\n{str(tensor.dtype).removeprefix('torch.')}\n{list(tensor.shape)}\n".encode()
        h.update(len(header).to_bytes(8, "big") + header)
        data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def load_weights(data: bytes, *, name: str = "weights") -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file: tensors only, nothing executed or unpickled.

    :class:`CheckpointError` naming ``name`` for anything that is not a safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except (SafetensorError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{name} is not a safetensors file of tensors ({exc}); save the model's state_dict "
                              "with safetensors.torch.save_file") from None


def init_seed(seed: int) -> int:
    """The torch seed for initial weights: SHA-256 of a domain tag and the committed seed.

    A separate domain keeps initialisation independent of the data order derived from the same seed.
    """
    digest = hashlib.sha256(b"bahen.init.v1" + seed.to_bytes(32, "big", signed=True)).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _construct(name: str, input_shape: tuple[int, ...], num_classes: int, config: ModelConfig | None) -> Classifier:
    if name not in DEFAULT_CONFIGS:
        raise UnknownModelError(name, MODEL_NAMES)
    config = config or DEFAULT_CONFIGS[name]
    if name == "mlp":
        return MLP(math.prod(input_shape), num_classes, config)
    if name == "cnn":
        return CNN(input_shape, num_classes, config)
    if name == "resnet20":
        return ResNet(input_shape[0], num_classes, config)
    return GPT(input_shape[0], num_classes, config)


def build_model(
    name: str, *, input_shape: tuple[int, ...], num_classes: int, seed: int, config: ModelConfig | None = None
) -> Classifier:
    """Build a registry model with initial weights derived from the committed ``seed``.

    ``input_shape`` is (channels, height, width) for images and (window,) for the GPT, whose
    ``num_classes`` is the vocabulary size (128 for ASCII text). The global torch RNG is left as
    it was, so building a model never perturbs anything else.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(seed))
        return _construct(name, tuple(input_shape), num_classes, config)


@lru_cache(maxsize=64)
def flops_per_sample(name: str, *, input_shape: tuple[int, ...], num_classes: int, config: ModelConfig | None = None) -> int:
    """Forward FLOPs for one sample (a multiply-add counts 2), as counted by torch's FLOP counter.

    Training costs about three times this (forward + backward); the fee estimate uses that.
    """
    model = _construct(name, tuple(input_shape), num_classes, config)
    sample = torch.zeros((1, *input_shape))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(sample)
    return int(counter.get_total_flops())
