"""Mimicking skipper: the adaptive attack on Wasp's learned step model (``proof.localiser``).

It skips a block of steps, as ``skipped-steps`` does, but logs each skipped step as its neighbours
look: gradient and update sizes and time copied from one of the real steps just before the block at
random, and a loss that follows their trend, so no skipped step stands out in the step log, the only
thing the learned model reads. The model has nothing to add to its challenge, and the skipper is
left to the uniform spot check, which fails a skipped step when it samples one (its revealed states
lie 0 apart where the log claims an update), and to the replayed segments.
"""

from proof.attacks.base import Attack, Job, StateKeeper
from proof.recorder import RecordedProof

RECENT = 16  # real steps before the block that a logged one is modelled on


class _Skip(StateKeeper):
    def alter(self, step, model, optimizer):
        self.restore(model, optimizer)


class MimickingSkipper(Attack):
    name = "mimicking-skipper"
    summary = "skips a block of steps and logs each like its neighbours: sizes of a real step before it, the loss trend"

    def hooks(self, job: Job):
        return _Skip(self.block(job.total_steps))

    def tamper(self, recorded: RecordedProof, job: Job) -> RecordedProof:
        block = self.cheated_steps
        recent = recorded.steps[max(0, block.start - RECENT):block.start]
        if len(recent) < 2:
            return recorded
        trend = (recent[-1].loss - recent[0].loss) / (recent[-1].step - recent[0].step)
        steps = list(recorded.steps)
        for t in block:
            like = self.rng.choice(recent)
            steps[t] = steps[t].model_copy(update={
                "loss": recent[-1].loss + trend * (t - recent[-1].step), "grad_norm": like.grad_norm,
                "update_norm": like.update_norm, "seconds": like.seconds})
        return recorded.model_copy(update={"steps": steps})
