"""Interpolated checkpoints: the worker trains only the start of the task, takes the final model
from elsewhere (here: the honest final, standing for a stolen one) and fills the last share of
checkpoints by linear interpolation towards it, with interpolated losses in the log."""

import copy

from proof.attacks.base import Attack, Job, store_checkpoints
from proof.attacks.capture import CaptureCheckpoints, lerp_state


class InterpolatedCheckpoints(Attack):
    name = "interpolated-checkpoints"
    summary = "replaces the last share of checkpoints by interpolation towards the final model"

    def hooks(self, job: Job):
        self.capture = CaptureCheckpoints()
        return self.capture

    def tamper(self, recorded, job: Job):
        steps = job.checkpoint_steps
        inner = steps[1:-1]
        forged = inner[len(inner) - self.count(len(inner)) :]
        if not forged:
            return recorded
        anchor, end = steps[steps.index(forged[0]) - 1], steps[-1]
        ckpts = self.capture.checkpoints
        fakes = {}
        for s in forged:
            fake = fakes[s] = copy.copy(ckpts[s])
            fake.model_state = lerp_state(ckpts[anchor].model_state, ckpts[end].model_state, (s - anchor) / (end - anchor))
            fake.optimizer_state = ckpts[end].optimizer_state
        first, last = recorded.steps[anchor].loss, recorded.steps[-1].loss
        records = [
            r.model_copy(update={"loss": first + (last - first) * (r.step - anchor) / (end - anchor)})
            if r.step >= anchor else r
            for r in recorded.steps
        ]
        return store_checkpoints(recorded, fakes, job).model_copy(update={"steps": records})
