"""A switching free rider: trains honestly at first, then stops computing and copies, for the last
share of the run, the last real update again at every step (what a free rider that copies a stale
or a peer's update does to one worker's trail: updates of a real size and direction, no compute)."""

import copy

import torch

from proof.attacks.base import Attack, Job
from training.checkpoint import Checkpoint
from training.hooks import TrainHooks


class _Copy(TrainHooks):
    def __init__(self, switch: int):
        self.switch = switch
        self.previous: dict[str, torch.Tensor] | None = None
        self.update: dict[str, torch.Tensor] | None = None
        self.frozen_optimizer: dict | None = None

    def on_checkpoint(self, step: int, checkpoint: Checkpoint) -> Checkpoint:
        if step == 0:
            self.previous = {k: v.clone() for k, v in checkpoint.model_state.items()}
        return checkpoint

    def on_update(self, step, model, optimizer):
        with torch.no_grad():
            params = dict(model.named_parameters())
            if step < self.switch or self.update is None:
                self.update = {n: p.detach() - self.previous[n].to(p.device) for n, p in params.items()}
                self.frozen_optimizer = copy.deepcopy(optimizer.state_dict())  # the optimizer updates its tensors in place
            else:  # the step was never computed: the last real update again, the optimizer as it was
                for n, p in params.items():
                    p.copy_(self.previous[n].to(p.device) + self.update[n])
                optimizer.load_state_dict(self.frozen_optimizer)
            self.previous = {n: p.detach().clone() for n, p in params.items()}


class SwitchingFreeRider(Attack):
    name = "switching-free-rider"
    summary = "trains honestly, then repeats the last real update for the last share of the steps"

    def hooks(self, job: Job):
        count = self.count(job.total_steps)
        self.cheated_steps = range(job.total_steps - count, job.total_steps)
        return _Copy(self.cheated_steps.start) if count else super().hooks(job)
