"""Settings carried in the state: a block of steps trains with optimizer settings the order did not
ask for (stronger weight decay and momentum), and the committed states hold those settings.

A verifier that took the optimizer's settings from a restored state would re-execute every step
inside the block with the worker's settings and reproduce it; only the block's two edges would
show. The verifier takes every setting from the order instead (``training.trainer.StateForm``), so
every state inside the block is forged on its face.
"""

from proof.attacks.base import Attack, Job
from training.hooks import TrainHooks

EXTRA_DECAY = 0.05
MOMENTUM = 0.99


class _Carry(TrainHooks):
    def __init__(self, steps: range):
        self.steps = steps
        self.kept: list[dict] = []

    def on_update(self, step, model, optimizer):
        if step == self.steps.start:
            self.kept = [dict(group) for group in optimizer.param_groups]
            for group in optimizer.param_groups:
                group["weight_decay"] += EXTRA_DECAY
                if "momentum" in group:
                    group["momentum"] = MOMENTUM
        if step == self.steps.stop - 1:
            for group, kept in zip(optimizer.param_groups, self.kept):
                group.update({k: kept[k] for k in ("weight_decay", "momentum") if k in kept})


class CarriedSettings(Attack):
    name = "carried-settings"
    summary = f"trains a block of steps with {EXTRA_DECAY} more weight decay and momentum {MOMENTUM}, kept in the state"

    def hooks(self, job: Job):
        block = self.block(job.total_steps)
        return _Carry(block) if block else super().hooks(job)
