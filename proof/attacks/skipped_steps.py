"""Skipped steps: the worker skips a block of steps and logs fabricated losses for them."""

from proof.attacks.base import Attack, Job, StateKeeper


class _Skip(StateKeeper):
    def __init__(self, steps: range):
        super().__init__(steps)
        self.last_loss: float | None = None

    def alter(self, step, model, optimizer):
        self.restore(model, optimizer)

    def on_record(self, record):
        if record.step in self.steps and self.last_loss is not None:
            # The skipped step was never computed: repeat the last real loss.
            return record.model_copy(update={"loss": self.last_loss})
        self.last_loss = record.loss
        return record


class SkippedSteps(Attack):
    name = "skipped-steps"
    summary = "skips a block of steps (weights unchanged) and logs the last real loss for them"

    def hooks(self, job: Job):
        return _Skip(self.block(job.total_steps))
