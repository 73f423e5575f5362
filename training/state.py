"""Per-step training states: a fast canonical encoding whose SHA-256 the proof commits to every step.

A checkpoint (``training.checkpoint``) is a ``torch.save`` archive, which costs about a
millisecond to write: fine every k steps, too much every step. A *state* holds the same content
(step, epoch, weights, optimizer state, RNG state, spec) in a layout that costs one tensor copy:

    b"bahen.state.v1\\n" ‖ header length (8 bytes, big-endian) ‖ header ‖ payload

The header is canonical JSON (sorted keys, no spaces) with the step, the epoch, the spec, the
layout of every tensor (dtype, shape) and the non-tensor optimizer values; nested containers are
written as ``{"d": [[key, value], ...]}`` (dict, keys keep their type), ``{"l": [...]}`` (list),
``{"t": [...]}`` (tuple) and ``{"x": i}`` (the ``i``-th tensor). The payload is the raw bytes of
the tensors in that order. Equal states give equal bytes in any process, so under an exact
profile comparing two states is comparing two digests.
"""

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from training.checkpoint import Checkpoint
from training.errors import CheckpointError

MAGIC = b"bahen.state.v1\n"
_DTYPES = {str(t).removeprefix("torch."): t for t in (
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
    torch.int8, torch.uint8, torch.bool,
)}


@dataclass
class EncodedState:
    """A state as its header fields and a private uint8 copy of all tensor bytes.

    The header is serialised on first use, so the training thread only walks the state and copies
    its tensors; the JSON is written by whichever thread hashes the state. Every field is immutable
    or private, so the bytes do not depend on when that happens.
    """

    step: int
    epoch: int
    layout: Any
    spec_json: str
    payload: torch.Tensor

    @cached_property
    def header(self) -> bytes:
        """Magic, header length and the canonical JSON header."""
        body = ('{"epoch":%d,"format":"bahen.state.v1","layout":%s,"spec":%s,"step":%d}' % (
            self.epoch, json.dumps(self.layout, separators=(",", ":")), self.spec_json, self.step)).encode()
        return MAGIC + len(body).to_bytes(8, "big") + body

    def to_bytes(self) -> bytes:
        """The canonical state bytes (one copy of the payload)."""
        return b"".join(self.chunks())

    def chunks(self) -> tuple[bytes, memoryview]:
        """The state bytes as two buffers, without joining them (for hashing)."""
        return self.header, memoryview(self.payload.numpy())


def _walk(obj: Any, tensors: list[torch.Tensor]) -> Any:
    if torch.is_tensor(obj):
        tensors.append(obj)
        return {"x": len(tensors) - 1, "dtype": str(obj.dtype).removeprefix("torch."), "shape": list(obj.shape)}
    if isinstance(obj, dict):
        return {"d": [[k, _walk(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"l" if isinstance(obj, list) else "t": [_walk(v, tensors) for v in obj]}
    return obj


def encode_state(
    step: int, epoch: int, model_state: dict, optimizer_state: dict, rng_state: torch.Tensor, spec_json: str
) -> EncodedState:
    """Encode a training state; the tensors are copied once, so training may go on at once.

    ``spec_json`` is the spec as canonical JSON (see :func:`spec_json`), computed once per run.
    """
    return StateEncoder(model_state, spec_json).encode(step, epoch, optimizer_state, rng_state)


class StateEncoder:
    """Encodes the states of one run after every step, walking the model's part once.

    ``model_state`` must hold views that training updates in place (a module's ``state_dict()``
    while its parameters are only changed in place), so its layout and byte views stay valid. A
    step's encoding runs from cold caches right after the step, where each Python-level call costs
    several times what it costs in a loop of its own; this keeps the calls per step few.
    """

    def __init__(self, model_state: dict, spec_json: str):
        self._tensors: list[torch.Tensor] = []
        self._model_layout = _walk(model_state, self._tensors)
        # A non-contiguous tensor's flat "view" is a copy, frozen at this step: such a model is
        # viewed anew at every encoding.
        self._live = all(t.is_contiguous() for t in self._tensors)
        self._model_views = _byte_views(self._tensors)
        self._spec_json = spec_json

    def model_byte_ranges(self, keys: set[str]) -> list[tuple[int, int, torch.dtype]]:
        """Where the model-state entries named ``keys`` lie in every payload: ``(start, stop, dtype)``.

        The model's tensors come first in the payload; adjacent entries of one dtype are merged.
        """
        ranges: list[tuple[int, int, torch.dtype]] = []
        offset = 0
        for key, node in self._model_layout["d"]:
            if not (isinstance(node, dict) and "x" in node):
                continue  # a value that is not a tensor has no bytes in the payload
            tensor = self._tensors[node["x"]]
            size = tensor.numel() * tensor.element_size()
            if key in keys:
                if ranges and ranges[-1][1] == offset and ranges[-1][2] == tensor.dtype:
                    ranges[-1] = (ranges[-1][0], offset + size, tensor.dtype)
                else:
                    ranges.append((offset, offset + size, tensor.dtype))
            offset += size
        return ranges

    def encode(self, step: int, epoch: int, optimizer_state: dict, rng_state: torch.Tensor) -> EncodedState:
        """The state with the model's current weights, ``optimizer_state`` and ``rng_state``."""
        tensors = list(self._tensors)  # the rest are numbered after the model's, as one walk would
        rest = _walk({"optimizer": optimizer_state, "rng": rng_state}, tensors)
        layout = {"d": [["model", self._model_layout], *rest["d"]]}
        model_views = self._model_views if self._live else _byte_views(self._tensors)
        views = model_views + _byte_views(tensors[len(self._tensors):])
        device = next((t.device for t in tensors if t.device.type != "cpu"), None)
        if device is not None:
            # Gather on the accelerator and cross to the host once: a copy per tensor would wait on
            # the device once per tensor.
            payload = torch.cat([v.to(device) for v in views]).cpu()
        else:
            payload = torch.cat(views) if views else torch.zeros(0, dtype=torch.uint8)
        return EncodedState(step=step, epoch=epoch, layout=layout, spec_json=self._spec_json, payload=payload)


def _byte_views(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [t.reshape(-1).view(torch.uint8) for t in tensors]


def spec_json(spec: dict) -> str:
    """Canonical JSON of a spec dump (``TrainSpec.model_dump(mode="json")``)."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def checkpoint_state(checkpoint: Checkpoint) -> EncodedState:
    """The state encoding of a checkpoint (its digest equals the per-step digest of that step)."""
    return encode_state(
        checkpoint.step, checkpoint.epoch, checkpoint.model_state, checkpoint.optimizer_state,
        checkpoint.rng_state, spec_json(checkpoint.spec),
    )


def _rebuild(node: Any, tensors: list[torch.Tensor]) -> Any:
    if isinstance(node, dict) and "x" in node:
        return tensors[node["x"]]
    if isinstance(node, dict) and "d" in node:
        return {k: _rebuild(v, tensors) for k, v in node["d"]}
    if isinstance(node, dict) and ("l" in node or "t" in node):
        items = [_rebuild(v, tensors) for v in node.get("l", node.get("t"))]
        return items if "l" in node else tuple(items)
    return node


def _tensor_specs(node: Any, out: list[dict]) -> None:
    if isinstance(node, dict) and "x" in node:
        out.append(node)
    elif isinstance(node, dict):
        for value in node.values():
            _tensor_specs(value, out)
    elif isinstance(node, list):
        for value in node:
            _tensor_specs(value, out)


def decode_state(data: bytes, *, name: str = "state") -> Checkpoint:
    """Parse state bytes into a :class:`Checkpoint`; :class:`CheckpointError` names ``name`` if they are not one."""
    try:
        if not data.startswith(MAGIC):
            raise ValueError("no bahen.state.v1 mark")
        size = int.from_bytes(data[len(MAGIC):len(MAGIC) + 8], "big")
        start = len(MAGIC) + 8
        header = json.loads(data[start:start + size])
        specs: list[dict] = []
        _tensor_specs(header["layout"], specs)
        specs.sort(key=lambda s: s["x"])
        tensors, offset, payload = [], start + size, np.frombuffer(data, dtype=np.uint8)
        for s in specs:
            dtype = _DTYPES[s["dtype"]]
            count = int(np.prod(s["shape"], dtype=np.int64)) * torch.empty(0, dtype=dtype).element_size()
            raw = torch.from_numpy(payload[offset:offset + count].copy())
            tensors.append(raw.view(dtype).reshape(s["shape"]))
            offset += count
        if offset != len(data):
            raise ValueError(f"{len(data) - offset} bytes beyond the declared tensors")
        layout = _rebuild(header["layout"], tensors)
        return Checkpoint(
            step=header["step"], epoch=header["epoch"], model_state=layout["model"],
            optimizer_state=layout["optimizer"], rng_state=layout["rng"], spec=header["spec"],
        )
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        raise CheckpointError(f"{name} is not a readable bahen state ({exc}); reveal the state the worker recorded") from exc
