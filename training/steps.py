"""What the training loop hands a recorder: one record per optimizer step, and the recorder it calls.

The loop knows a recorder only through :class:`StepRecorder`; ``proof.recorder.Recorder`` is the one
that commits what it is handed to the Proof of Train.
"""

from typing import Protocol

from pydantic import BaseModel, Field

from training.checkpoint import Checkpoint
from training.profiles import ProfileInfo
from training.state import EncodedState


class StepRecord(BaseModel):
    """One optimizer step as the worker recorded it."""

    step: int
    epoch: int
    batch_digest: str
    loss: float
    lr: float
    grad_norm: float
    update_norm: float = Field(default=0.0, description="L2 distance between the weights before and after this step")
    seconds: float = Field(ge=0, allow_inf_nan=False, description="Wall time the step took: a duration")
    state_sha256: str = Field(default="", description="SHA-256 of the training state after this step")


class StepRecorder(Protocol):
    """The calls the training loop makes on a recorder, in this order: ``start``, then per epoch
    ``record_epoch``, per step ``record_step`` and ``record_state``, and ``save_checkpoint`` at each
    checkpoint."""

    def start(self, profile: ProfileInfo, state: EncodedState, *, resumed_at: int | None = None) -> None: ...

    def record_epoch(self, epoch: int, digest: str) -> None: ...

    def record_step(self, record: StepRecord) -> None: ...

    def record_state(self, step: int, state: EncodedState) -> None: ...

    def save_checkpoint(self, checkpoint: Checkpoint) -> None: ...
