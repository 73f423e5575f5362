"""The interface every verifier check implements, and the evidence they share.

A check reads a `CheckContext` (the bundle, the challenge, the data and the artifacts the
verifier fetched once) and returns one `CheckResult`. Checks never raise for a dishonest or
broken proof: a missing or unreadable artifact is evidence, reported as a failed check naming it.
"""

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from proof.report import CheckResult

if TYPE_CHECKING:
    from proof.bundle import ProofBundle
    from proof.challenge import Challenge
    from proof.response import Response
    from proof.telemetry import TelemetrySample
    from proof.verifier import VerifyConfig
    from training.steps import StepRecord
    import torch

    from training.trainer import Checkpoint, StateForm, TrainSpec


@dataclass
class CheckContext:
    """Everything the checks of one verification read; built once by the verifier."""

    bundle: "ProofBundle"
    committed_root: str
    challenge: "Challenge"
    config: "VerifyConfig"
    X: np.ndarray
    y: np.ndarray
    expected_spec: "TrainSpec"
    initial: "dict[str, torch.Tensor] | None" = None  # the client's starting weights, where the order pins them
    steps: "list[StepRecord] | None" = None
    telemetry: "list[TelemetrySample] | None" = None
    checkpoints: "dict[int, Checkpoint]" = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    response: "Response | None" = None
    revealed: dict[int, bytes] = field(default_factory=dict)  # state step -> plaintext bytes
    state_problems: dict[int, str] = field(default_factory=dict)  # state step -> why it is unavailable
    derived: dict[str, object] = field(default_factory=dict)  # values checks compute once and share

    @property
    def spec(self) -> "TrainSpec":
        """The spec the worker was ordered to train: the order's, never the bundle's own."""
        return self.expected_spec

    @property
    def checkpoint_steps(self) -> list[int]:
        """Committed checkpoint steps in increasing order."""
        return sorted(step for step, _ in self.bundle.checkpoints)

    @property
    def scheduled_checkpoints(self) -> list[int]:
        """The checkpoint steps the order schedules: 0, every ``checkpoint_every`` steps, and the last."""
        total = self.form.total
        return sorted({*range(0, total, self.spec.checkpoint_every), total})

    @cached_property
    def batches(self) -> "EpochBatches":
        """The committed batch order over the verifier's copy of the data."""
        return EpochBatches(self.spec, len(self.X))

    @cached_property
    def form(self) -> "StateForm":
        """What every state of the ordered training holds besides its tensors' values."""
        from training.trainer import state_form

        return state_form(self.spec, len(self.X))

    def checkpoint_name(self, step: int) -> str:
        """The artifact name of the committed checkpoint at ``step``."""
        return next(ref.name for s, ref in self.bundle.checkpoints if s == step)

    def segment_end(self, start: int) -> int:
        """The checkpoint step that closes the segment starting at ``start``."""
        steps = self.checkpoint_steps
        return steps[steps.index(start) + 1]


class Check(ABC):
    """One verifier check. Subclasses set ``name``/``metric`` and implement `run`."""

    name: ClassVar[str]
    metric: ClassVar[str]
    decisive: ClassVar[bool] = True

    @abstractmethod
    def run(self, ctx: CheckContext) -> CheckResult:
        """Examine the evidence in ``ctx`` and return the verdict."""

    def result(
        self,
        *,
        threshold: float,
        observed: float,
        detail: str,
        cost_steps: int = 0,
        forward_samples: int = 0,
    ) -> CheckResult:
        """Build this check's result; NaN or infinite observations never pass."""
        passed = math.isfinite(observed) and observed <= threshold
        return CheckResult(
            name=self.name,
            metric=self.metric,
            threshold=threshold,
            observed=observed,
            passed=passed,
            decisive=self.decisive,
            detail=detail,
            cost_steps=cost_steps,
            forward_samples=forward_samples,
            seconds=0.0,
        )

    def missing(self, names: list[str], ctx: CheckContext) -> CheckResult:
        """A failed result for evidence that could not be read, naming each artifact and why."""
        reasons = "; ".join(f"{name}: {ctx.problems.get(name, 'not available')}" for name in names)
        return self.result(threshold=0.0, observed=math.nan, detail=f"cannot check: {reasons}")


def flatten_state(state: dict) -> "torch.Tensor":
    """All tensors of a state dict, in key order, as one float64 vector (for distances)."""
    import torch

    parts = [v.detach().reshape(-1).double() for _, v in sorted(state.items()) if torch.is_tensor(v)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def flatten_weights(state: dict, names: tuple[str, ...]) -> "torch.Tensor":
    """The weights ``names`` of a model state, in that order, as one float64 vector."""
    import torch

    return torch.cat([state[k].double().reshape(-1) for k in names]) if names else torch.zeros(0, dtype=torch.float64)


def same_layout(a: dict, b: dict) -> bool:
    """True when two state dicts hold the same keys with the same shapes."""
    return a.keys() == b.keys() and all(getattr(a[k], "shape", None) == getattr(b[k], "shape", None) for k in a)


def worst_of(values: dict[int, float]) -> tuple[float, int | None]:
    """The largest value and its key; NaN counts as worst of all, an empty dict gives (0, None)."""
    if not values:
        return 0.0, None
    key = max(values, key=lambda k: math.inf if math.isnan(values[k]) else values[k])
    return values[key], key


class EpochBatches:
    """The committed batch order of every epoch, computed once per verification."""

    def __init__(self, spec: "TrainSpec", num_samples: int):
        self._spec = spec
        self._num_samples = num_samples
        self._cache: dict[int, list[np.ndarray]] = {}

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """All batches of ``epoch`` as the committed PRF defines them."""
        from training.order import batch_order

        if epoch not in self._cache:
            s = self._spec
            self._cache[epoch] = batch_order(s.seed, s.task, epoch, self._num_samples, s.batch_size)
        return self._cache[epoch]

    def for_step(self, step: int) -> np.ndarray:
        """The batch of the step logged as ``step``: the update from state ``step`` to ``step + 1``."""
        per_epoch = len(self.epoch(0))
        return self.epoch(step // per_epoch)[step % per_epoch]
