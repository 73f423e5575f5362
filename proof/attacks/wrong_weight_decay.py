"""Misreported weight decay: a block of steps adds decoupled weight decay the order did not ask
for (5e-4 on top of the declared value)."""

import torch
from training.hooks import TrainHooks

from proof.attacks.base import Attack, Job

EXTRA_DECAY = 5e-4


class _Decay(TrainHooks):
    def __init__(self, steps: range):
        self.steps = steps

    def on_update(self, step, model, optimizer):
        if step in self.steps:
            lr = optimizer.param_groups[0]["lr"]
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1.0 - lr * EXTRA_DECAY)


class WrongWeightDecay(Attack):
    name = "wrong-weight-decay"
    summary = f"adds {EXTRA_DECAY} weight decay to a block of steps"

    def hooks(self, job: Job):
        return _Decay(self.block(job.total_steps))
