"""Short-audit evasion: every step of a block adds a push in one fixed direction, 1% of that
step's update in size, tensor by tensor (each tensor's push is 1% of its own update, so the
verifier's per-tensor comparison sees 1% everywhere). No single step is far from an honest one (a
tolerant profile's per-step allowance is larger), yet the pushes add up over the run to a directed
move that only many steps together reveal: the spot check's estimate of the run's total deviation
(`proof.checks.steps.run_deviation`). Under ``cpu-fp32-exact`` every pushed step is a transition
one honest step does not reproduce bitwise."""

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
                self.direction = {n: (v / torch.linalg.vector_norm(v)).to(p.device) for (n, v), p in zip(raw.items(), params.values())}
            for n, p in params.items():
                size = torch.linalg.vector_norm(p - self.before[0][n].to(p.device))
                p.add_(self.direction[n] * (SHARE * size))


class SubToleranceDrift(Attack):
    name = "sub-tolerance-drift"
    summary = f"pushes every step of a block in one fixed direction by {SHARE:.0%} of its update"

    def hooks(self, job: Job):
        return _Drift(self.block(job.total_steps), self.rng.randrange(2**31))
