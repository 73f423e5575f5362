"""Omitted shard data: the worker never trains on a share of its shard and drops those rows
from every batch (keeping at least one row so a step still runs)."""

import numpy as np
import torch
from training.hooks import TrainHooks

from proof.attacks.base import Attack, Job


class _Omit(TrainHooks):
    def __init__(self, omitted: np.ndarray):
        self.omitted = omitted

    def on_batch(self, step, indices, X, y):
        keep = ~np.isin(indices, self.omitted)
        if keep.all():
            return X, y
        keep[np.argmax(keep) if keep.any() else 0] = True
        mask = torch.as_tensor(keep, device=X.device)
        return X[mask], y[mask]


class OmittedData(Attack):
    name = "omitted-data"
    summary = "drops a share of the shard from every batch it appears in"

    def hooks(self, job: Job):
        omitted = np.array(self.choose(list(range(len(job.X)))), dtype=np.int64)
        return _Omit(omitted)
