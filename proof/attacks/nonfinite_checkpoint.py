"""NaN or Inf in a checkpoint: a share of stored checkpoints carry a non-finite weight (alternately
NaN and +Inf), while training itself continues from the real state."""

import math

from training.hooks import TrainHooks

from proof.attacks.base import Attack, Job


class _Poison(TrainHooks):
    def __init__(self, steps: list[int]):
        self.steps = steps

    def on_checkpoint(self, step, checkpoint):
        if step in self.steps:
            name = next(k for k, v in checkpoint.model_state.items() if v.is_floating_point() and v.numel())
            value = math.nan if self.steps.index(step) % 2 == 0 else math.inf
            checkpoint.model_state[name].view(-1)[0] = value
        return checkpoint


class NonFiniteCheckpoint(Attack):
    name = "nonfinite-checkpoint"
    summary = "stores a share of checkpoints with a NaN or Inf weight"

    def hooks(self, job: Job):
        return _Poison(self.choose(job.checkpoint_steps))
