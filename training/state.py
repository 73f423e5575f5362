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
from typing import Any, NamedTuple

import numpy as np
import torch
from pydantic_core import from_json

from training.checkpoint import TENSOR_DTYPES, Checkpoint
from training.errors import CheckpointError

MAGIC = b"bahen.state.v1\n"
_DTYPES = {str(t).removeprefix("torch."): t for t in TENSOR_DTYPES}


@dataclass
class EncodedState:
    """A state as its header fields and a private uint8 copy of all tensor bytes.

    The header is serialised on first use, so the training thread only walks the state and copies
    its tensors; the JSON is written by whichever thread hashes the state. Every field is immutable
    or private, so the bytes do not depend on when that happens. ``weight_ranges`` says where the
    trainable weights lie in the payload, as ``(start, stop, dtype)`` (see :func:`update_norms`).
    """

    step: int
    epoch: int
    layout: Any  # the walked tree, or a _RunLayout whose big parts are serialised once per run
    spec_json: str
    payload: torch.Tensor
    weight_ranges: tuple[tuple[int, int, torch.dtype], ...] = ()

    @cached_property
    def header(self) -> bytes:
        """Magic, header length and the canonical JSON header."""
        layout = self.layout.to_json() if isinstance(self.layout, _RunLayout) else _dumps(self.layout)
        body = ('{"epoch":%d,"format":"bahen.state.v1","layout":%s,"spec":%s,"step":%d}' % (
            self.epoch, layout, self.spec_json, self.step)).encode()
        return MAGIC + len(body).to_bytes(8, "big") + body

    def to_bytes(self) -> bytes:
        """The canonical state bytes (one copy of the payload)."""
        return b"".join((self.header, memoryview(self.payload.numpy())))


_SCALARS = frozenset({int, float, bool, str, type(None)})  # types a walk leaves as they are


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
    tensors: list[torch.Tensor] = []
    layout = _walk({"model": model_state, "optimizer": optimizer_state, "rng": rng_state}, tensors)
    return EncodedState(step=step, epoch=epoch, layout=layout, spec_json=spec_json,
                        payload=_gather(_byte_views(tensors), _device(tensors)))


def update_norms(before: EncodedState, states: list[EncodedState]) -> list[float]:
    """L2 distance between the trainable weights of each of ``states`` and of the state before it.

    ``before`` is the state before the first; all are states of one run. Each distance is
    ``vector_norm(cat(after - before for each weight range))``, bitwise, with the subtractions and
    norms of every state made by one call each: a thread making them holds the GIL for a few calls,
    not for several per state, and so keeps out of the way of a training loop that needs it between
    its kernels.
    """
    if any(s.weight_ranges != before.weight_ranges for s in states):
        raise ValueError("update norms need states of one run (their weights lie in different places)")
    count = len(before.weight_ranges)
    if not count or not states:
        return [0.0] * len(states)
    weights = [[_typed(s.payload[a:b], dtype) for a, b, dtype in before.weight_ranges] for s in (before, *states)]
    diffs = torch._foreach_sub([w for ws in weights[1:] for w in ws], [w for ws in weights[:-1] for w in ws])
    per_state = diffs if count == 1 else [torch.cat(diffs[i:i + count]) for i in range(0, len(diffs), count)]
    return torch.stack(torch._foreach_norm(per_state)).tolist()


def _typed(raw: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # Viewing bytes as a wider type needs an aligned start; a copy is aligned.
    return (raw if raw.storage_offset() % dtype.itemsize == 0 else raw.clone()).view(dtype)


class StateEncoder:
    """Encodes the states of one run after every step, walking what does not change once.

    A step's encoding runs from cold caches right after the step, where each Python-level call
    costs several times what it costs in a loop of its own, and every state stays alive in the
    spool, so every container made per step adds to what the garbage collector walks. This keeps
    the calls and containers per step few: the model's part is walked once (``model_state`` must
    hold views that training updates in place, a module's ``state_dict()`` while its parameters are
    only changed in place), and the optimizer's per-parameter state is walked again only when its
    tensors are other objects than at the last walk. torch's optimizers update that state in place
    and replace it only when it is created or loaded. The bytes equal :func:`encode_state`'s of
    ``optimizer.state_dict()``, which the encoder reads instead wherever that method has hooks.
    The model-state entries named in ``trainable`` are the weights each state's ``weight_ranges``
    locates.
    """

    def __init__(self, model_state: dict, spec_json: str, trainable: frozenset[str] = frozenset()):
        tensors: list[torch.Tensor] = []
        self._model_state = model_state
        self._model = _Part(_walk(model_state, tensors), tensors)
        self._spec_json = spec_json
        self._weight_ranges = self._model_byte_ranges(trainable)
        # The optimizer's part: the model's tensors then the per-parameter state's, walked when the
        # key (the ids of what the state holds) changes; what the ids name is kept alive, so no id
        # is reused while the key stands.
        self._optimizer_key: tuple[int, ...] | None = None
        self._optimizer_objects: list = []
        self._state = self._model  # until the first walk, which the unset key forces
        self._packed_params: list[dict] = []
        self._rng_node: dict = {}
        self._rng_shape: torch.Size | None = None

    def _model_byte_ranges(self, keys: frozenset[str]) -> tuple[tuple[int, int, torch.dtype], ...]:
        """Where the model-state entries named ``keys`` lie in every payload: ``(start, stop, dtype)``.

        The model's tensors come first in the payload; adjacent entries of one dtype are merged.
        """
        ranges: list[tuple[int, int, torch.dtype]] = []
        offset = 0
        for key, node in self._model.layout["d"]:
            if not (isinstance(node, dict) and "x" in node):
                continue  # a value that is not a tensor has no bytes in the payload
            tensor = self._model.tensors[node["x"]]
            size = tensor.numel() * tensor.element_size()
            if key in keys:
                if ranges and ranges[-1][1] == offset and ranges[-1][2] == tensor.dtype:
                    ranges[-1] = (ranges[-1][0], offset + size, tensor.dtype)
                else:
                    ranges.append((offset, offset + size, tensor.dtype))
            offset += size
        return tuple(ranges)

    def encode(self, step: int, epoch: int, optimizer: torch.optim.Optimizer, rng_state: torch.Tensor) -> EncodedState:
        """The state with the model's current weights, the optimizer's current state and ``rng_state``."""
        if _has_state_dict_hooks(optimizer):
            state = encode_state(step, epoch, self._model_state, optimizer.state_dict(), rng_state, self._spec_json)
            state.weight_ranges = self._weight_ranges
            return state
        key = _optimizer_key(optimizer)
        if key != self._optimizer_key:
            self._walk_optimizer(optimizer, key)
        tensors = list(self._state.tensors)  # the rest are numbered after these, as one walk would
        groups = [{"d": [*([k, v if type(v) in _SCALARS else _walk(v, tensors)]
                           for k, v in group.items() if k != "params"), ["params", packed]]}
                  for group, packed in zip(optimizer.param_groups, self._packed_params)]
        plain = len(tensors) == len(self._state.tensors) and rng_state.dtype == torch.uint8 and rng_state.dim() == 1
        if plain and rng_state.shape == self._rng_shape:
            # the usual step: a CPU generator's state after the optimizer's, its node walked once
            rng, views = self._rng_node, [*self._state.views(), rng_state]
        else:
            rng = _walk(rng_state, tensors)
            views = self._state.views() + _byte_views(tensors[len(self._state.tensors):])
            if plain:
                self._rng_node, self._rng_shape = rng, rng_state.shape
        return EncodedState(step=step, epoch=epoch, layout=_RunLayout(self._model, self._state, groups, rng),
                            spec_json=self._spec_json, payload=_gather(views, self._state.device),
                            weight_ranges=self._weight_ranges)

    def _walk_optimizer(self, optimizer: torch.optim.Optimizer, key: tuple[int, ...]) -> None:
        packed = optimizer.state_dict()
        tensors = list(self._model.tensors)
        self._state = _Part(_walk(packed["state"], tensors), tensors)
        self._packed_params = [{"l": group["params"]} for group in packed["param_groups"]]
        # A value that is not a tensor (a number, a list) may change without changing its id.
        tensors_only = all(torch.is_tensor(v) for s in optimizer.state.values() for v in s.values())
        self._optimizer_key = key if tensors_only else None
        self._optimizer_objects = _optimizer_objects(optimizer)
        self._rng_shape = None  # the RNG state's node is numbered after this walk's tensors


class _Part:
    """Tensors walked once, with their layout and byte views (made anew per use where not contiguous)."""

    def __init__(self, layout: Any, tensors: list[torch.Tensor]):
        self.layout, self.tensors = layout, tensors
        # A non-contiguous tensor's flat "view" is a copy, frozen when it is made.
        self._views = _byte_views(tensors) if all(t.is_contiguous() for t in tensors) else None
        self.device = _device(tensors)

    def views(self) -> list[torch.Tensor]:
        return self._views if self._views is not None else _byte_views(self.tensors)

    @cached_property
    def json(self) -> str:
        """The layout's canonical JSON, written once (by whichever thread first needs it)."""
        return _dumps(self.layout)


class _RunLayout(NamedTuple):
    """A live state's layout: the run's walked parts and this step's optimizer groups and RNG state.

    Its JSON is :func:`encode_state`'s layout of the same state, written without serialising the
    model's and the optimizer state's layouts again for every step.
    """

    model: _Part
    state: _Part
    groups: list
    rng: dict

    def to_json(self) -> str:
        return '{"d":[["model",%s],["optimizer",{"d":[["state",%s],["param_groups",{"l":%s}]]}],["rng",%s]]}' % (
            self.model.json, self.state.json, _dumps(self.groups), _dumps(self.rng))


_dumps = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: json.dumps would build one per call


def _optimizer_objects(optimizer: torch.optim.Optimizer) -> list:
    """Every parameter of the groups, then each parameter with state, its state's keys and values."""
    return [*(p for group in optimizer.param_groups for p in group["params"]),
            *(x for p, s in optimizer.state.items() for x in (p, *s, *s.values()))]


def _optimizer_key(optimizer: torch.optim.Optimizer) -> tuple[int, ...]:
    return tuple(map(id, _optimizer_objects(optimizer)))


def _has_state_dict_hooks(optimizer: torch.optim.Optimizer) -> bool:
    return bool(getattr(optimizer, "_optimizer_state_dict_pre_hooks", None)
                or getattr(optimizer, "_optimizer_state_dict_post_hooks", None))


def _device(tensors: list[torch.Tensor]) -> torch.device | None:
    return next((t.device for t in tensors if t.device.type != "cpu"), None)


def _gather(views: list[torch.Tensor], device: torch.device | None) -> torch.Tensor:
    """One private host copy of ``views`` joined; accelerator tensors are gathered on ``device`` first.

    Gathering on the accelerator and crossing to the host once: a copy per tensor would wait on
    the device once per tensor.
    """
    if device is not None:
        return torch.cat([v.to(device) for v in views]).cpu()
    return torch.cat(views) if views else torch.zeros(0, dtype=torch.uint8)


def _byte_views(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    if all(t.dtype == torch.uint8 and t.dim() == 1 for t in tensors):
        return list(tensors)  # bytes already, as the RNG state is: no autograd state to switch
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
        # pydantic-core's parser: nesting stops at 200 levels whatever Python's recursion limit is
        header = from_json(data[start:start + size], allow_inf_nan=False)
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
        checkpoint = Checkpoint(
            step=header["step"], epoch=header["epoch"], model_state=layout["model"],
            optimizer_state=layout["optimizer"], rng_state=layout["rng"], spec=header["spec"],
        )
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError, OverflowError) as exc:
        raise CheckpointError(f"{name} is not a readable bahen state ({exc}); reveal the state the worker recorded") from exc
    checkpoint.check_types(name)
    return checkpoint
