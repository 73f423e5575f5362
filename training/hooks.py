"""Behaviour hooks: the points where a worker's training could deviate from the honest loop.

An honest worker uses :class:`TrainHooks` as is (every method passes its input through). A
dishonest worker in the attack catalogue is the honest trainer plus a subclass that overrides
some of these methods, so attacks and honest training share one loop and differ only where the
attack acts. The trainer calls, in this order per step:

1. ``on_batch(step, indices, X, y) -> (X, y)`` with the committed batch, before the forward pass;
2. ``on_update(step, model, optimizer)`` right after ``optimizer.step()`` (may edit weights in
   place, as ``load_state_dict`` does; a parameter replaced by another tensor is not seen);
3. ``on_record(record) -> record`` before the step record goes to the recorder; records are made
   a few steps at a time, in step order, so later steps may already have run. The recorder fills
   ``update_norm`` and ``state_sha256`` afterwards from the states the loop committed;
4. ``on_checkpoint(step, checkpoint) -> checkpoint`` before a checkpoint goes to the recorder,
   after the records of every step before it.
"""

import numpy as np
import torch


class TrainHooks:
    """No-op hooks of the honest worker; override methods to change behaviour."""

    def on_batch(self, step: int, indices: np.ndarray, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch actually trained on at ``step``."""
        return X, y

    def on_update(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Called after the optimizer step; the honest worker does nothing."""

    def on_record(self, record):
        """The step record actually written (a ``proof.recorder.StepRecord``)."""
        return record

    def on_checkpoint(self, step: int, checkpoint):
        """The checkpoint actually stored (a ``training.checkpoint.Checkpoint``)."""
        return checkpoint
