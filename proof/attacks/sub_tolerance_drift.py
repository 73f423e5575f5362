"""Short-audit evasion: every step of a block adds a push in one fixed direction, 1% of that
step's update in size. No single step is far from an honest one (a tolerant profile's per-step
allowance is larger), yet the pushes add up over the run to a directed move that only many steps
together reveal. Under ``cpu-fp32-exact`` every pushed step is a transition one honest step does
not reproduce bitwise."""

import torch

from proof.attacks.base import Attack, Job, StateKeeper

SHARE = 0.01


class _Drift(StateKeeper):
    def __init__(self, steps: range, seed: int):
        super().__init__(steps)
        self.seed = seed
        self.direction: dict[str, torch.Tensor] | None = None

    def alter(self, step, model, optimizer):
        with torch.no_grad():
            params = dict(model.named_parameters())
            if self.direction is None:
                generator = torch.Generator().manual_seed(self.seed)
                raw = {n: torch.randn(p.shape, generator=generator) for n, p in params.items()}
                norm = torch.linalg.vector_norm(torch.cat([v.reshape(-1) for v in raw.values()]))
                self.direction = {n: (v / norm).to(p.device) for (n, v), p in zip(raw.items(), params.values())}
            size = torch.linalg.vector_norm(torch.cat([(p - self.before[0][n].to(p.device)).reshape(-1)
                                                       for n, p in params.items()]))
            for n, p in params.items():
                p.add_(self.direction[n] * (SHARE * size))


class SubToleranceDrift(Attack):
    name = "sub-tolerance-drift"
    summary = f"pushes every step of a block in one fixed direction by {SHARE:.0%} of its update"

    def hooks(self, job: Job):
        return _Drift(self.block(job.total_steps), self.rng.randrange(2**31))
