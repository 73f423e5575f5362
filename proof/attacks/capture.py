"""Hooks that keep every checkpoint the honest loop produced, for attacks that forge them later."""

import torch
from training.checkpoint import Checkpoint
from training.hooks import TrainHooks


class CaptureCheckpoints(TrainHooks):
    """Remembers each checkpoint (a private copy the loop no longer touches) by step."""

    def __init__(self):
        self.checkpoints: dict[int, Checkpoint] = {}

    def on_checkpoint(self, step: int, checkpoint: Checkpoint) -> Checkpoint:
        self.checkpoints[step] = checkpoint
        return checkpoint


def lerp_state(a: dict, b: dict, t: float) -> dict:
    """``(1 - t) a + t b`` for floating tensors; other entries (counters) are taken from ``b``."""
    return {
        k: torch.lerp(a[k], b[k], t) if torch.is_tensor(b[k]) and b[k].is_floating_point() else b[k].clone()
        for k in b
    }
