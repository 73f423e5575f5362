"""Half batches: for a block of steps the worker trains on half of each committed batch."""

from training.hooks import TrainHooks

from proof.attacks.base import Attack, Job


class _Half(TrainHooks):
    def __init__(self, steps: range):
        self.steps = steps

    def on_batch(self, step, indices, X, y):
        if step in self.steps:
            half = max(1, len(X) // 2)
            return X[:half], y[:half]
        return X, y


class HalfBatches(Attack):
    name = "half-batches"
    summary = "trains a block of steps on the first half of each batch"

    def hooks(self, job: Job):
        return _Half(self.block(job.total_steps))
