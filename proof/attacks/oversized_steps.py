"""Oversized steps: a few steps scattered over the run move the weights 20 times as far as
training would (a jump to another model, cut into pieces), and the step log claims for each the
size its honest step would have had.

Claimed truthfully, each piece would be among the largest claimed updates against its
neighbours, which every challenge re-executes; claimed small, the pieces make their segments
move farther than the sizes their steps claim (``update-sizes``), and a spot-checked piece shows
both a wrong size and a transition no honest step makes.
"""

from proof.attacks.base import Attack, Job, StateKeeper
from proof.recorder import RecordedProof

FACTOR = 20.0


class _Push(StateKeeper):
    def alter(self, step, model, optimizer):
        self.scale_update(model, FACTOR)


class OversizedSteps(Attack):
    name = "oversized-steps"
    summary = f"moves the weights {FACTOR:g}x as far on scattered steps and logs the honest sizes"

    def hooks(self, job: Job):
        self.cheated_steps = frozenset(self.choose(list(range(job.total_steps))))
        return _Push(self.cheated_steps)

    def tamper(self, recorded: RecordedProof, job: Job) -> RecordedProof:
        steps = [r.model_copy(update={"update_norm": r.update_norm / FACTOR}) if r.step in self.cheated_steps else r
                 for r in recorded.steps]
        return recorded.model_copy(update={"steps": steps})
