"""Sandbagging: a block of steps is never computed; each is replaced by random noise the size of a
real update, so the update statistics (sizes, their spread over time) look like training."""

import torch

from proof.attacks.base import Attack, Job, StateKeeper


class _Noise(StateKeeper):
    def __init__(self, steps: range, seed: int):
        super().__init__(steps)
        self.generator = torch.Generator().manual_seed(seed)

    def alter(self, step, model, optimizer):
        with torch.no_grad():
            params = list(model.named_parameters())
            size = torch.linalg.vector_norm(torch.cat([(p - self.before[0][n].to(p.device)).reshape(-1) for n, p in params]))
            self.restore(model, optimizer)
            noise = [torch.randn(p.shape, generator=self.generator) for _, p in params]
            scale = size / torch.linalg.vector_norm(torch.cat([z.reshape(-1) for z in noise]))
            for (_, p), z in zip(params, noise):
                p.add_(z.to(p.device) * scale)


class Sandbagging(Attack):
    name = "sandbagging"
    summary = "replaces a block of steps by random noise the size of a real update"

    def hooks(self, job: Job):
        return _Noise(self.block(job.total_steps), self.rng.randrange(2**31))
