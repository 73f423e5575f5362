"""Substituted data: each row of every batch is, with probability ``intensity``, replaced by a
row the client never supplied (uniform noise in the data's range with a random label)."""

import torch
from training.hooks import TrainHooks

from proof.attacks.base import Attack, Job


class _Substitute(TrainHooks):
    def __init__(self, share: float, num_classes: int, low: float, high: float, seed: int):
        self.share, self.num_classes, self.low, self.high = share, num_classes, low, high
        self.gen = torch.Generator().manual_seed(seed)

    def on_batch(self, step, indices, X, y):
        swap = torch.rand(len(X), generator=self.gen) < self.share
        if not swap.any():
            return X, y
        X, y = X.clone(), y.clone()
        noise = torch.rand((int(swap.sum()), *X.shape[1:]), generator=self.gen) * (self.high - self.low) + self.low
        X[swap] = noise.to(X.dtype)
        y[swap] = torch.randint(self.num_classes, (int(swap.sum()),), generator=self.gen)
        return X, y


class SubstitutedData(Attack):
    name = "substituted-data"
    summary = "replaces a share of every batch's rows with data outside the committed set"

    def hooks(self, job: Job):
        low, high = float(job.X.min()), float(job.X.max())
        return _Substitute(self.intensity, job.spec.num_classes, low, high, self.rng.randrange(2**31))
