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
        # Drawn on the host (the generator lives there), then moved to the batch's device.
        swap = torch.rand(len(X), generator=self.gen) < self.share
        if not swap.any():
            return X, y
        X, y = X.clone(), y.clone()
        noise = torch.rand((int(swap.sum()), *X.shape[1:]), generator=self.gen) * (self.high - self.low) + self.low
        labels = torch.randint(self.num_classes, (int(swap.sum()),), generator=self.gen)
        swap = swap.to(X.device)
        X[swap] = noise.to(X.device, X.dtype)
        y[swap] = labels.to(y.device)
        return X, y


class SubstitutedData(Attack):
    name = "substituted-data"
    summary = "replaces a share of every batch's rows with data outside the committed set"

    def hooks(self, job: Job):
        low, high = float(job.X.min()), float(job.X.max())
        return _Substitute(self.intensity, job.spec.num_classes, low, high, self.rng.randrange(2**31))
