"""Misreported learning rate: a block of steps runs at 0.9x the ordered learning rate.

Scaling the weight change of an SGD or AdamW step by 0.9 is exactly a step at 0.9x the rate
(weight decay aside), since both apply ``lr`` as the last factor of the update.
"""

from proof.attacks.base import Attack, Job, StateKeeper


class _Slow(StateKeeper):
    def alter(self, step, model, optimizer):
        self.scale_update(model, 0.9)


class WrongLr(Attack):
    name = "wrong-lr"
    summary = "trains a block of steps at 0.9x the declared learning rate"

    def hooks(self, job: Job):
        return _Slow(self.block(job.total_steps))
