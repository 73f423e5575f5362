"""Fewer steps with rescaled updates: every other step of a block is skipped and the step
before it is doubled, so the weights move about as far with half the compute."""

from proof.attacks.base import Attack, Job, StateKeeper


class _Rescale(StateKeeper):
    def alter(self, step, model, optimizer):
        if (step - self.steps.start) % 2 == 0:
            self.scale_update(model, 2.0)
        else:
            self.restore(model, optimizer)


class RescaledUpdates(Attack):
    name = "rescaled-updates"
    summary = "runs half the steps of a block, doubling each real update"

    def hooks(self, job: Job):
        return _Rescale(self.block(job.total_steps))
