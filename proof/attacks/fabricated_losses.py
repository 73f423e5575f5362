"""A fabricated loss curve: honest weights, but a block of logged losses made 30% better."""

from training.hooks import TrainHooks

from proof.attacks.base import Attack, Job


class _Flatter(TrainHooks):
    def __init__(self, steps: range):
        self.steps = steps

    def on_record(self, record):
        if record.step in self.steps:
            return record.model_copy(update={"loss": 0.7 * record.loss})
        return record


class FabricatedLosses(Attack):
    name = "fabricated-losses"
    summary = "logs 0.7x the real loss for a block of steps"

    def hooks(self, job: Job):
        return _Flatter(self.block(job.total_steps))
