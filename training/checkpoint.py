"""A full training checkpoint: everything needed to continue or replay training from a step.

Serialised with ``torch.save`` into memory and loaded with ``weights_only=True``, so reading a
checkpoint never runs code from it. The resolved training spec travels inside, so a checkpoint
alone says what it belongs to. It holds training state only, nothing timed or random, so under
an exact profile a replayed checkpoint serialises to the same bytes as the worker's.
"""

import io
import sys
import zipfile
from dataclasses import dataclass
from typing import Any

import torch

from training.errors import CheckpointError

FORMAT = "bahen.checkpoint.v1"
TENSOR_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
                 torch.int8, torch.uint8, torch.bool)  # every dtype a state of training holds
MAX_DEPTH = 16  # containers within containers: a state dict nests three deep, its spec a few more
MAX_VALUES = 1 << 18  # values met walking a checkpoint: a model of a thousand tensors, its optimizer and spec


@dataclass
class Checkpoint:
    """The state after ``step`` optimizer steps (``epoch`` is the epoch the next step belongs to)."""

    step: int
    epoch: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    rng_state: torch.Tensor
    spec: dict[str, Any]  # TrainSpec.model_dump(mode="json"): the full resolved config

    def to_bytes(self) -> bytes:
        """``torch.save`` bytes; equal states give equal bytes, in any process."""
        buffer = io.BytesIO()
        torch.save(_canonical({"format": FORMAT, **self.__dict__}), buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "checkpoint") -> "Checkpoint":
        """Parse checkpoint bytes; :class:`CheckpointError` names ``name`` if they are not one."""
        _check_stored(data, name)
        try:
            payload = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        except Exception as exc:  # torch raises many unrelated types for a damaged archive
            raise CheckpointError(
                f"{name} is corrupted or not a bahen checkpoint ({type(exc).__name__}); "
                "resume from an earlier checkpoint or restart the task"
            ) from exc
        if not isinstance(payload, dict) or payload.pop("format", None) != FORMAT:
            raise CheckpointError(f"{name} is not a {FORMAT} checkpoint; resume from a checkpoint bahen wrote")
        try:
            checkpoint = cls(**payload)
        except TypeError as exc:
            raise CheckpointError(f"{name} lacks checkpoint fields ({exc}); it was not written by this bahen") from exc
        checkpoint.check_types(name)
        return checkpoint

    def check_types(self, name: str) -> None:
        """Refuse a parsed checkpoint whose fields have other types than training writes (names ``name``), or
        whose values no training writes (:func:`_values_fault`)."""
        slots = self.optimizer_state.get("state") if isinstance(self.optimizer_state, dict) else None
        wrong = [field for field, ok in (
            ("step", type(self.step) is int), ("epoch", type(self.epoch) is int),
            ("model_state", isinstance(self.model_state, dict) and all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in self.model_state.items())),
            ("optimizer_state", isinstance(slots, dict) and all(isinstance(v, dict) for v in slots.values())),
            ("rng_state", isinstance(self.rng_state, torch.Tensor)),
            ("spec", isinstance(self.spec, dict)),
        ) if not ok]
        if wrong:
            raise CheckpointError(f"{name} holds fields of the wrong type ({', '.join(wrong)}); "
                                  "it was not written by this bahen")
        fault = _values_fault(self.__dict__) or _values_fault(self.spec, tensors=False)
        if fault is not None:
            raise CheckpointError(f"{name} holds {fault}, which training never writes; it was not written by this bahen")


def _values_fault(state: Any, *, tensors: bool = True) -> str | None:
    """Why ``state`` holds what no training writes, or None: a tensor where ``tensors`` is False (the spec is
    JSON), or one that is not a dense, contiguous CPU tensor of one of :data:`TENSOR_DTYPES` (a quantized one
    crashes the interpreter in ``torch.cat``; a stride-0 view of a few bytes declares terabytes), containers
    nested deeper than :data:`MAX_DEPTH`, or more than :data:`MAX_VALUES` values to walk (a pickle that stores
    one container under many names loads small and walks as a tree of exponential size). Walked without
    recursion."""
    stack, met = [(state, 0)], 0
    while stack:
        value, depth = stack.pop()
        met += 1
        if met > MAX_VALUES:
            return f"more than {MAX_VALUES:,} values"
        if isinstance(value, torch.Tensor):
            if not tensors:
                return "a tensor in its spec"
            if value.layout is not torch.strided or value.device.type != "cpu" or value.dtype not in TENSOR_DTYPES:
                return f"a {value.layout} {value.dtype} tensor on {value.device.type}"
            if not value.is_contiguous():
                return f"a view of strides {value.stride()} over a tensor of shape {tuple(value.shape)}"
        elif isinstance(value, (dict, list, tuple)):
            if depth == MAX_DEPTH:
                return f"values nested more than {MAX_DEPTH} deep"
            stack.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return None


def _check_stored(data: bytes, name: str) -> None:
    """Refuse an archive whose members are not stored as ``torch.save`` stores them: uncompressed.

    ``torch.load`` inflates a compressed member in full before it checks the member's size, so a
    few hundred kilobytes of zeros deflated would cost gigabytes; stored members cost no more
    memory than the bytes at hand.
    """
    try:
        members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError, OSError, NotImplementedError) as exc:  # an unsupported zip version
        raise CheckpointError(f"{name} is corrupted or not a bahen checkpoint ({type(exc).__name__}); "
                              "resume from an earlier checkpoint or restart the task") from None
    compressed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED or m.file_size != m.compress_size]
    if compressed:
        raise CheckpointError(f"{name} holds compressed members ({', '.join(compressed[:3])}), which torch.save never "
                              "writes and which could inflate without bound; it was not written by bahen")


def _canonical(obj: Any) -> Any:
    """``obj`` with every string interned.

    Pickle writes a back-reference when the same object recurs, so whether two equal strings are
    one object or two changes the bytes. State loaded from a checkpoint holds fresh copies of keys
    like ``"momentum"``; interning makes equal strings one object whatever their history.
    """
    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_canonical(v) for v in obj)
    return obj
