"""The trainer: one readable loop whose every free choice derives from the order's committed seed.

Initial weights come from ``build_model(seed=...)``, the batches of each epoch from
``training.order.batch_order``, the learning rate from the step alone. ``train`` runs a task with
an optional recorder (the Proof of Train) and behaviour hooks; ``replay`` re-executes a segment
from a checkpoint for a verifier; ``batch_losses`` and ``evaluate`` are forward-only.
"""

import copy
import math
import reprlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field, model_validator

from training.allocator import tune_allocator
from training.checkpoint import Checkpoint
from training.distributed import (
    distributed_loss_and_gradients, emulated_loss_and_gradients, from_rank_zero, sharded_loss, wrap,
)
from training.errors import CheckpointError, ProfileUnavailableError, TrainingError
from training.hooks import TrainHooks
from training.models import Classifier, GPTConfig, build_model, init_seed, weights_digest
from training.order import batch_digests, batch_order, epoch_order_digest
from training.profiles import ProfileInfo, apply_profile, emulate_profile, profile_numerics
from training.state import EncodedState, StateEncoder, spec_json
from training.steps import StepRecord, StepRecorder

RECORD_BATCH = 16  # steps whose records are made together
GRADIENT_BUDGET = 64 << 20  # bytes of gradients kept for the records not made yet


class TrainSpec(BaseModel, frozen=True):
    """Everything the order fixes about training; the full spec travels in every checkpoint."""

    model: str
    architecture: GPTConfig | None = Field(default=None, description="The size of a gpt model; None: the registry's")
    initial_weights: str | None = Field(
        default=None, description="weights_digest of the client's starting weights (a fine-tuning order); None: the "
        "weights the seed derives")
    input_shape: tuple[int, ...]
    num_classes: int = Field(ge=2)
    optimizer: Literal["sgd", "adamw"]
    lr: float = Field(gt=0)
    momentum: float = Field(default=0.9, ge=0, description="SGD momentum (AdamW ignores it)")
    weight_decay: float = Field(default=0.0, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    batch_size: int = Field(ge=1)
    epochs: int = Field(ge=1)
    seed: int
    task: int = Field(default=0, ge=0)
    checkpoint_every: int = Field(ge=1, description="Steps between full checkpoints")
    profile: str = "cpu-fp32-exact"
    order: str = Field(
        default="", description="The order this training belongs to (chain id/market/order id in a deployed order); "
        "part of every committed state and checkpoint, as the spec is")
    grad_shards: int = Field(
        default=1, ge=1, le=64, description="Data-parallel shards of every batch: a step's gradient is the mean of "
        "the shards' gradients in shard order, so a worker on that many devices and a verifier on one compute the "
        "same bits (training.distributed)")

    @model_validator(mode="after")
    def _shards_divide_the_batch(self) -> "TrainSpec":
        if self.batch_size % self.grad_shards:
            raise ValueError(f"the batch size ({self.batch_size}) must be a multiple of grad_shards ({self.grad_shards})")
        return self


@dataclass
class TrainResult:
    """The outcome of a training run."""

    final_state: dict[str, torch.Tensor]
    steps: int
    final_loss: float


def steps_per_epoch(spec: TrainSpec, num_samples: int) -> int:
    """Optimizer steps in one epoch (the last partial batch is dropped)."""
    return num_samples // spec.batch_size


def lr_at(spec: TrainSpec, step: int, total_steps: int) -> float:
    """Learning rate of a step: constant, or cosine decay from ``lr`` to 0 over the run."""
    if spec.lr_schedule == "constant":
        return spec.lr
    return spec.lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


def _model(spec: TrainSpec) -> Classifier:
    return build_model(spec.model, input_shape=spec.input_shape, num_classes=spec.num_classes, seed=spec.seed,
                       config=spec.architecture)


def initial_state(spec: TrainSpec, initial: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The initial weights: derived from the committed seed, or the client's ``initial`` weights that the spec pins.

    :class:`CheckpointError` when ``initial`` is not what the spec asks for (see :func:`starting_weights`).
    """
    model = _model(spec)
    return starting_weights(spec, model, initial) or model.state_dict()


def starting_weights(spec: TrainSpec, model: torch.nn.Module, initial: dict[str, torch.Tensor] | None) -> dict | None:
    """The client's weights a fine-tuning order starts from (``initial``, checked against the spec's
    digest and the model's tensors), or None for an order that starts from the seed's."""
    if spec.initial_weights is None:
        if initial is not None:
            raise CheckpointError("starting weights were given to an order that starts from the weights its seed derives")
        return None
    if initial is None:
        raise CheckpointError(f"the order starts from the client's weights (digest {spec.initial_weights[:16]}…), "
                              "which were not given")
    fault = _model_fault(model, initial, "starting weights")
    if fault:
        raise CheckpointError(f"the starting weights {fault}")
    if weights_digest(initial) != spec.initial_weights:
        raise CheckpointError(f"the starting weights are not the ones the order pins (digest {spec.initial_weights[:16]}…)")
    return initial


def starting_weights_fault(model: str, *, input_shape: tuple[int, ...], num_classes: int,
                           architecture: GPTConfig | None, weights: dict[str, torch.Tensor]) -> str | None:
    """Why ``weights`` cannot start a training of this model (a phrase), or None when they can."""
    return _model_fault(build_model(model, input_shape=input_shape, num_classes=num_classes, seed=0, config=architecture),
                        weights, "tensors")


def _optimizer(spec: TrainSpec, model: torch.nn.Module) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)


def _slots(spec: TrainSpec) -> tuple[str, ...]:
    """The per-parameter state the order's optimizer keeps once it has stepped (torch's names)."""
    if spec.optimizer == "adamw":
        return ("step", "exp_avg", "exp_avg_sq")
    return ("momentum_buffer",) if spec.momentum else ()


class StateForm:
    """Everything a state of one order's training holds besides the values of its tensors.

    The order fixes it all: the spec, the epoch of each step, the model's tensors by name, shape
    and dtype, every optimizer setting (the learning rate as the schedule sets it), which
    per-parameter state the optimizer keeps and its step counters, which equal the step exactly.
    Only tensor values are the worker's to report, so a restored state takes nothing else from it.
    """

    def __init__(self, spec: TrainSpec, model: torch.nn.Module, optimizer: torch.optim.Optimizer, per_epoch: int):
        self.spec, self.per_epoch, self.total = spec, per_epoch, per_epoch * spec.epochs
        self._spec_json = spec.model_dump(mode="json")
        self._model = {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}
        self.trainable = tuple(name for name, p in model.named_parameters() if p.requires_grad)
        self._params = [(p.shape, p.dtype) for group in optimizer.param_groups for p in group["params"]]
        self._groups = copy.deepcopy(optimizer.state_dict()["param_groups"])
        self._slots = _slots(spec)
        self._rng = torch.get_rng_state().shape

    @property
    def max_bytes(self) -> int:
        """The most bytes a stored state or checkpoint of this training can take, with ample room.

        Its tensors (weights, one tensor per optimizer slot and parameter, the RNG state) twice
        over, plus 1 MiB for headers, the spec and encryption: anything larger is not a state of
        this order, and a verifier refuses it before fetching a byte.
        """
        model = sum(shape.numel() * dtype.itemsize for shape, dtype in self._model.values())
        slots = len(self._slots) * sum(shape.numel() * dtype.itemsize for shape, dtype in self._params)
        return 2 * (model + slots + self._rng.numel()) + (1 << 20)

    def param_groups(self, step: int) -> list[dict]:
        """The optimizer's settings in the state after ``step`` steps (the last step's learning rate)."""
        lr = self.spec.lr if step == 0 else lr_at(self.spec, step - 1, self.total)
        return [{**copy.deepcopy(group), "lr": lr} for group in self._groups]

    def fault(self, ckpt: Checkpoint) -> str | None:
        """Why ``ckpt`` cannot be a state of this order's training (a phrase), or None when it can."""
        if ckpt.spec != self._spec_json:
            return "belongs to another training spec"
        if type(ckpt.step) is not int or not 0 <= ckpt.step <= self.total:
            return f"claims step {reprlib.repr(ckpt.step)}, outside the run's 0 to {self.total}"
        if type(ckpt.epoch) is not int or ckpt.epoch != ckpt.step // self.per_epoch:
            return f"claims epoch {reprlib.repr(ckpt.epoch)}, not {ckpt.step // self.per_epoch}"
        fault = _tensors_fault("model state", ckpt.model_state, self._model)
        if fault is None and not (torch.is_tensor(ckpt.rng_state) and ckpt.rng_state.dtype == torch.uint8
                                  and ckpt.rng_state.shape == self._rng):
            fault = "holds an RNG state that is not the generator's"
        return fault or self._optimizer_fault(ckpt.optimizer_state, ckpt.step)

    def _optimizer_fault(self, state: object, step: int) -> str | None:
        if not isinstance(state, dict) or state.keys() != {"state", "param_groups"}:
            return "holds no optimizer state in torch's form"
        groups = state["param_groups"]
        expected = self.param_groups(step)
        if not isinstance(groups, list) or len(groups) != len(expected):
            return f"holds {reprlib.repr(groups)} as optimizer groups, where the order implies {len(expected)}"
        for i, (group, want) in enumerate(zip(groups, expected)):
            if not isinstance(group, dict) or group.keys() != want.keys():
                return f"holds optimizer group {i} with other settings than the order's {sorted(want)}"
            for key in want:
                if not _identical(group[key], want[key]):
                    return f"sets the optimizer's {key!r} to {reprlib.repr(group[key])} where the order implies {want[key]!r}"
        slots = self._slots if step else ()
        kept = state["state"]
        expected_params = set(range(len(self._params))) if slots else set()
        if not isinstance(kept, dict) or set(kept) != expected_params:
            implied = f"parameters 0 to {len(self._params) - 1}" if expected_params else "none after step 0"
            return f"keeps optimizer state for {reprlib.repr(kept if not isinstance(kept, dict) else [*kept])}, " \
                   f"where the order implies {implied}"
        for index, values in kept.items():
            shape, dtype = self._params[index]
            fault = _tensors_fault(f"optimizer state of parameter {index}", values,
                                   {k: ((), torch.float32) if k == "step" else (shape, dtype) for k in slots})
            if fault is not None:
                return fault
            if "step" in values and values["step"].item() != step:
                return f"counts {values['step'].item():g} optimizer steps for parameter {index}, not {step}"
        return None


def _tensors_fault(what: str, tensors: object, expected: dict[str, tuple[torch.Size, torch.dtype]]) -> str | None:
    """Why ``tensors`` do not hold exactly the ``expected`` names, shapes and dtypes, or None."""
    if not isinstance(tensors, dict) or tensors.keys() != expected.keys():
        found = reprlib.repr(sorted(map(str, tensors)) if isinstance(tensors, dict) else tensors)
        return f"holds {what} {found}, where the order implies {reprlib.repr(sorted(expected))}"
    for name, (shape, dtype) in expected.items():
        value = tensors[name]
        if not torch.is_tensor(value) or value.shape != shape or value.dtype != dtype:
            found = f"{value.dtype} {tuple(value.shape)}" if torch.is_tensor(value) else type(value).__name__
            return f"holds {what} {name!r} as {found}, where the order implies {dtype} {tuple(shape)}"
    return None


def _model_fault(model: torch.nn.Module, tensors: object, what: str) -> str | None:
    """Why ``tensors`` are not a state of ``model`` (names, shapes, dtypes), or None."""
    return _tensors_fault(what, tensors, {k: (v.shape, v.dtype) for k, v in model.state_dict().items()})


def _identical(a: object, b: object) -> bool:
    """Equal values of the same types all the way down (``1 == True == 1.0`` is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_identical(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(_identical, a, b))
    return a == b


class _Run:
    """Model, optimizer and data of one run on one device, and the loop that advances them."""

    def __init__(self, spec: TrainSpec, X: np.ndarray, y: np.ndarray, profile: ProfileInfo, device: str,
                 group: "torch.distributed.ProcessGroup | None" = None):
        self.spec, self.profile, self.device, self.group = spec, profile, torch.device(device), group
        self.X = torch.as_tensor(np.asarray(X, dtype=np.float32)).to(self.device)
        self.y = torch.as_tensor(np.asarray(y, dtype=np.int64)).to(self.device)
        self.per_epoch = steps_per_epoch(spec, len(self.X))
        self.total = self.per_epoch * spec.epochs
        self.model = _model(spec).to(self.device)
        # Views of the weights and buffers, which training and restoring change in place: reading
        # the state through them costs a dictionary lookup, not a state_dict() walk per step.
        self._model_state = self.model.state_dict()
        # Any randomness inside training (dropout, augmentation) draws from the committed seed, and the
        # RNG state stored in checkpoints is then the same in every process.
        torch.manual_seed(init_seed(spec.seed) ^ spec.task)
        self.optimizer = _optimizer(spec, self.model)
        self._ddp = None if group is None else wrap(self.model, group)
        self.form = StateForm(spec, self.model, self.optimizer, self.per_epoch)
        self.step = 0
        self._epoch, self._batches = -1, []
        self._encoder = StateEncoder(self._model_state, spec_json(spec.model_dump(mode="json")), frozenset(self.form.trainable))

    def start(self, initial: dict[str, torch.Tensor] | None) -> None:
        """Begin at step 0 from the order's starting weights (:func:`starting_weights`)."""
        weights = starting_weights(self.spec, self.model, initial)
        if weights is not None:
            self.model.load_state_dict(weights)

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from ``ckpt``: its tensors, and everything else as the order implies.

        Raises :class:`CheckpointError` naming the first field of ``ckpt`` that the order does
        not imply (see :meth:`StateForm.fault`), so a state's settings can never steer a replay.
        """
        fault = self.form.fault(ckpt)
        if fault is not None:
            raise CheckpointError(f"the state at step {ckpt.step} {fault}, so this order's training never made it")
        self.model.load_state_dict(ckpt.model_state)
        # load_state_dict keeps the given tensors as optimizer state: copy, or training would
        # mutate the checkpoint (a verifier replaying several segments reads it again)
        self.optimizer.load_state_dict(
            {"state": copy.deepcopy(ckpt.optimizer_state["state"]), "param_groups": self.form.param_groups(ckpt.step)}
        )
        torch.set_rng_state(ckpt.rng_state)
        self.step = ckpt.step

    def join(self, group: "torch.distributed.ProcessGroup") -> None:
        """Rank 0 sends its state, every other rank continues from it: only rank 0 resumes or holds the
        starting weights."""
        if torch.distributed.get_rank(group) == 0:
            from_rank_zero(self.snapshot(), group)
        else:
            self.restore(from_rank_zero(None, group))

    def snapshot(self) -> Checkpoint:
        """A checkpoint of the current state whose tensors are private CPU copies."""
        model_state = {k: v.to("cpu", copy=True) for k, v in self._model_state.items()}
        optimizer_state = copy.deepcopy(self.optimizer.state_dict())
        if self.device.type != "cpu":
            optimizer_state = _to_cpu(optimizer_state)
        return Checkpoint(
            step=self.step, epoch=self.step // self.per_epoch, model_state=model_state,
            optimizer_state=optimizer_state, rng_state=torch.get_rng_state(),
            spec=self.spec.model_dump(mode="json"),
        )

    def encode(self) -> EncodedState:
        """The current state in the per-step encoding (one copy of every tensor)."""
        return self._encoder.encode(self.step, self.step // self.per_epoch, self.optimizer, torch.get_rng_state())

    def batches(self, epoch: int, recorder: StepRecorder | None) -> list[tuple[np.ndarray, torch.Tensor, str]]:
        """The epoch's batches, each as its indices, the same on the device and its digest, made once per epoch."""
        if epoch != self._epoch:
            self._epoch = epoch
            order = batch_order(self.spec.seed, self.spec.task, epoch, len(self.X), self.spec.batch_size)
            self._batches = list(zip(order, torch.as_tensor(np.stack(order), device=self.device), batch_digests(order)))
            if recorder is not None:
                recorder.record_epoch(epoch, epoch_order_digest(order))
        return self._batches

    def advance(self, stop: int, recorder: StepRecorder | None, hooks: TrainHooks) -> list[float]:
        """Run optimizer steps until ``stop`` under the profile's numerics; return their losses."""
        with profile_numerics(self.profile):
            return self._train_until(stop, recorder, hooks)

    def _train_until(self, stop: int, recorder: StepRecorder | None, hooks: TrainHooks) -> list[float]:
        """The training loop of :meth:`advance`.

        With a recorder, each step keeps its loss, its gradients and a copy of its state, and the
        step records are made up to :data:`RECORD_BATCH` steps at a time: Python code run right
        after a training step runs from cold caches (a 1 µs hash took 45 µs there, a gradient norm
        90 µs), so a record made on its own costs many times what it costs among others. Keeping
        the gradients costs no copy: ``zero_grad(set_to_none=True)`` lets the next backward write
        new ones, and the records are made before :data:`GRADIENT_BUDGET` bytes of them wait.
        Without a recorder (a verifier's replay) no gradient norms are computed.
        """
        losses: list[float] = []
        params = [p for p in self.model.parameters() if p.requires_grad]
        gradient_bytes = sum(p.numel() * p.element_size() for p in params)
        batch = max(1, min(RECORD_BATCH, GRADIENT_BUDGET // max(1, gradient_bytes)))
        pending: list[_PendingStep] = []
        self.model.train()
        while self.step < stop:
            started = time.perf_counter()
            epoch = self.step // self.per_epoch
            indices, idx, digest = self.batches(epoch, recorder)[self.step % self.per_epoch]
            xb, yb = hooks.on_batch(self.step, indices, self.X[idx], self.y[idx])
            lr = lr_at(self.spec, self.step, self.total)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._loss_and_gradients(xb, yb)
            self.optimizer.step()
            hooks.on_update(self.step, self.model, self.optimizer)
            self.step += 1
            if recorder is None:
                losses.append(loss.item())
                continue
            grads = [p.grad for p in params if p.grad is not None]
            pending.append(_PendingStep(self.step - 1, epoch, digest, lr, loss.detach(), grads, self.encode(),
                                        time.perf_counter() - started))
            checkpoint = self.step % self.spec.checkpoint_every == 0 or self.step == self.total
            if len(pending) == batch or checkpoint or self.step == stop:
                losses += self._record(pending, recorder, hooks)
                pending = []
            if checkpoint:
                recorder.save_checkpoint(hooks.on_checkpoint(self.step, self.snapshot()))
        return losses

    def _loss_and_gradients(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """The step's loss, with its gradients left on the model (``training.distributed`` for several shards)."""
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.profile.autocast_bf16)
        if self._ddp is not None:
            return distributed_loss_and_gradients(self._ddp, self.group, xb, yb, autocast)
        if self.spec.grad_shards > 1:
            return emulated_loss_and_gradients(self.model, self.spec.grad_shards, xb, yb, autocast)
        with autocast:
            loss = self.model.loss(xb, yb)
        loss.backward()
        return loss

    def _record(self, pending: list["_PendingStep"], recorder: StepRecorder, hooks: TrainHooks) -> list[float]:
        """Make the records of ``pending`` steps in order and hand them and their states over; return their losses."""
        # One host transfer for every number of the batch.
        losses = torch.stack([p.loss for p in pending]).float()
        numbers = torch.stack([losses, _gradient_norms(pending)], dim=1).tolist()
        for p, (loss, grad_norm) in zip(pending, numbers):
            # Every field is a number or string this loop made: nothing to validate.
            record = StepRecord.model_construct(step=p.step, epoch=p.epoch, batch_digest=p.batch_digest,
                                                loss=loss, lr=p.lr, grad_norm=grad_norm, seconds=p.seconds)
            recorder.record_step(hooks.on_record(record))
            recorder.record_state(p.step + 1, p.state)
        return [loss for loss, _ in numbers]


@dataclass
class _PendingStep:
    """A step whose record is not made yet: its loss, gradients and state."""

    step: int
    epoch: int
    batch_digest: str
    lr: float
    loss: torch.Tensor
    grads: list[torch.Tensor]
    state: EncodedState
    seconds: float


def _gradient_norms(pending: list[_PendingStep]) -> torch.Tensor:
    """Each step's gradient norm, as ``torch.nn.utils.get_total_norm`` computes it, for all steps at once.

    The same two kernels, bitwise: the norm of every gradient tensor of every step in one call,
    then per step the norm of its tensors' norms.
    """
    grads = [g for p in pending for g in p.grads]
    if not grads:
        return torch.zeros(len(pending), device=pending[0].loss.device)
    norms = torch.stack(torch._foreach_norm(grads)).split([len(p.grads) for p in pending])
    return torch.stack([torch.linalg.vector_norm(n) for n in norms])


def _to_cpu(state):
    if isinstance(state, torch.Tensor):
        return state.cpu()
    if isinstance(state, dict):
        return {k: _to_cpu(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_to_cpu(v) for v in state]
    return state


def _setup(spec: TrainSpec, X: np.ndarray, y: np.ndarray, device: str | None,
           group: "torch.distributed.ProcessGroup | None" = None) -> _Run:
    profile = apply_profile(spec.profile)
    tune_allocator()
    device = device or profile.device
    if torch.device(device).type != profile.device:
        raise ProfileUnavailableError(spec.profile, f"it trains on {profile.device}, not on {device!r}")
    if group is not None and torch.distributed.get_world_size(group) != spec.grad_shards:
        raise TrainingError(f"the order splits each batch into {spec.grad_shards} shard(s), so it trains on "
                            f"{spec.grad_shards} process(es), not {torch.distributed.get_world_size(group)}")
    return _Run(spec, X, y, profile, device, group)


def train(
    spec: TrainSpec,
    X: np.ndarray,
    y: np.ndarray,
    *,
    recorder: StepRecorder | None = None,
    hooks: TrainHooks | None = None,
    resume_from: Checkpoint | None = None,
    device: str | None = None,
    initial: dict[str, torch.Tensor] | None = None,
    group: "torch.distributed.ProcessGroup | None" = None,
) -> TrainResult:
    """Train ``spec`` on ``X``/``y`` under its determinism profile (``device`` defaults to the profile's).

    With a recorder, every step is recorded and a checkpoint is stored at step 0 (unless resuming),
    every ``checkpoint_every`` steps and at the end; the caller closes the recorder afterwards.
    ``resume_from`` continues from a checkpoint (see ``proof.recorder.Recorder.resume``); else
    training starts from ``initial``, the client's weights where the spec pins them. ``group`` trains
    on ``spec.grad_shards`` processes, this one computing its rank's shard of every batch
    (``training.distributed``); every rank continues from rank 0's state (the others need neither
    ``resume_from`` nor ``initial``) and ends in the same state, and rank 0 alone records.
    """
    hooks = hooks or TrainHooks()
    run = _setup(spec, X, y, device, group)
    if group is None or torch.distributed.get_rank(group) == 0:
        if resume_from is not None:
            run.restore(resume_from)
        else:
            run.start(initial)
    if group is not None:
        run.join(group)
    if recorder is not None:
        recorder.start(run.profile, run.encode(), resumed_at=None if resume_from is None else resume_from.step)
        if resume_from is None:
            recorder.save_checkpoint(hooks.on_checkpoint(0, run.snapshot()))
    losses = run.advance(run.total, recorder, hooks)
    final_loss = losses[-1] if losses else float("nan")
    return TrainResult(final_state=run.snapshot().model_state, steps=run.step, final_loss=final_loss)


def replay(spec: TrainSpec, X: np.ndarray, y: np.ndarray, *, start: Checkpoint, num_steps: int) -> Checkpoint:
    """Re-execute ``num_steps`` honest steps from ``start`` and return the checkpoint they reach."""
    run = _setup(spec, X, y, None)
    run.restore(start)
    run.advance(min(start.step + num_steps, run.total), None, TrainHooks())
    return run.snapshot()


class Stepper:
    """Runs single training steps from given states with this loop, for a verifier's spot checks.

    One model, optimizer and data order serve every start state (each is restored in full), so
    many spot checks pay for one setup and one batch-order computation per epoch.
    """

    def __init__(self, spec: TrainSpec, X: np.ndarray, y: np.ndarray, *, device: str | None = None):
        """``device`` runs the profile's numerics on another device than the profile names
        (`training.profiles.emulate_profile`), to measure how far other hardware moves an honest
        step (``bench.pot_noise``); a verifier leaves it unset."""
        self._run = _setup(spec, X, y, None) if device is None else _Run(spec, X, y, emulate_profile(spec.profile, device), device)
        self._data = X, y

    @property
    def form(self) -> StateForm:
        """What every state of this training holds besides its tensors' values."""
        return self._run.form

    @property
    def profile(self) -> ProfileInfo:
        """The profile the steps run under, and the environment."""
        return self._run.profile

    def initial(self) -> EncodedState:
        """The state before step 0 on this stepper's device (:func:`initial_training_state` on the profile's)."""
        run = _Run(self._run.spec, *self._data, self._run.profile, self._run.device.type)
        run.start(None)
        return run.encode()

    def step(self, start: Checkpoint) -> tuple[EncodedState, float]:
        """The state after the training step that follows ``start``, and that step's loss."""
        self._run.restore(start)
        losses = self._run.advance(start.step + 1, None, TrainHooks())
        return self._run.encode(), losses[0] if losses else float("nan")


def replay_segment_states(
    spec: TrainSpec, X: np.ndarray, y: np.ndarray, *, start: Checkpoint, stop: int
) -> Iterator[EncodedState]:
    """Re-execute honest steps from ``start`` up to ``stop``, yielding the state after each step."""
    run = _setup(spec, X, y, None)
    run.restore(start)
    while run.step < min(stop, run.total):
        run.advance(run.step + 1, None, TrainHooks())
        yield run.encode()


def state_form(spec: TrainSpec, num_samples: int) -> StateForm:
    """The form of every state of ``spec``'s training on ``num_samples`` samples (no data needed)."""
    model = _model(spec)
    return StateForm(spec, model, _optimizer(spec, model), steps_per_epoch(spec, num_samples))


def initial_training_state(spec: TrainSpec, X: np.ndarray, y: np.ndarray,
                           initial: dict[str, torch.Tensor] | None = None) -> EncodedState:
    """The state before step 0 (the seed's weights or the client's ``initial`` ones that the spec
    pins, fresh optimizer, seeded RNG), as anyone can rebuild it."""
    run = _setup(spec, X, y, None)
    run.start(initial)
    return run.encode()


def _load_model(run: "_Run", model_state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``model_state`` into the run's model, or raise :class:`CheckpointError` where its tensors are not this order's."""
    fault = _model_fault(run.model, model_state, "model state")
    if fault:
        raise CheckpointError(f"{what} {fault}; it is not a model of this order")
    run.model.load_state_dict(model_state)


def batch_losses(
    spec: TrainSpec, model_state: dict[str, torch.Tensor], X: np.ndarray, y: np.ndarray, batches: list[np.ndarray]
) -> list[float]:
    """Training loss of ``model_state`` on each batch, forward only.

    The forward runs in training mode (batch norm uses batch statistics) on a throwaway model, so
    for the weights before step s and step s's batch it equals the loss recorded at step s.
    :class:`CheckpointError` if ``model_state`` does not hold the ordered model's tensors.
    """
    run = _setup(spec, X, y, None)
    _load_model(run, model_state, "the model whose losses to compute")
    run.model.train()
    losses = []
    with torch.no_grad(), torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.profile.autocast_bf16), \
            profile_numerics(run.profile):
        for indices in batches:
            idx = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=run.device)
            losses.append(sharded_loss(run.model, spec.grad_shards, run.X[idx], run.y[idx]).float().item())
    return losses


def input_blind_loss(spec: TrainSpec, X: np.ndarray, y: np.ndarray) -> float:
    """The loss on ``X``/``y`` of the best model that ignores its input: the entropy, in nats, of the
    frequencies of the targets the ordered model's loss scores (the labels; every next byte of a
    gpt's windows). A model that learnt anything from its input scores below it."""
    targets = _model(spec).targets(torch.as_tensor(np.asarray(X, dtype=np.float32)), torch.as_tensor(y, dtype=torch.int64))
    counts = torch.bincount(targets).double()
    shares = counts[counts > 0] / counts.sum()
    return float(-(shares * shares.log()).sum())


def evaluate(spec: TrainSpec, model_state: dict[str, torch.Tensor], X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Mean loss and label accuracy of ``model_state`` on a dataset, in evaluation mode.

    :class:`CheckpointError` if ``model_state`` does not hold the ordered model's tensors.
    """
    run = _setup(spec, X, y, None)
    _load_model(run, model_state, "the model to evaluate")
    run.model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad(), profile_numerics(run.profile):
        for start in range(0, len(run.X), 1024):
            xb, yb = run.X[start:start + 1024], run.y[start:start + 1024]
            loss_sum += run.model.loss(xb, yb).item() * len(xb)
            correct += int((run.model(xb).argmax(dim=1) == yb).sum())
    return {"loss": loss_sum / len(run.X), "accuracy": correct / len(run.X)}
