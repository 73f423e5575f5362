"""A pretrained model with a fabricated log: the worker brings a model trained elsewhere (here: on
the same data with another seed, so another initialisation and batch order), fakes a checkpoint
trail from the committed initial weights to it, and writes a log with the committed batch order."""

import copy

from training.order import batch_digest, batch_order, epoch_order_digest
from training.trainer import initial_state

from proof.attacks.base import Attack, Job, store_checkpoints
from proof.attacks.capture import CaptureCheckpoints, lerp_state


class PretrainedModel(Attack):
    name = "pretrained-model"
    summary = "submits a model trained elsewhere with a fabricated checkpoint trail and log"
    uses_intensity = False

    def trained_spec(self, spec):
        return spec.model_copy(update={"seed": spec.seed + 1})

    def hooks(self, job: Job):
        self.capture = CaptureCheckpoints()
        return self.capture

    def tamper(self, recorded, job: Job):
        s = job.spec
        start, end = initial_state(s), job.total_steps
        stolen = self.capture.checkpoints[end]
        fakes = {}
        for step, ckpt in self.capture.checkpoints.items():
            fake = fakes[step] = copy.copy(ckpt)
            fake.model_state = lerp_state(start, stolen.model_state, step / end)
            fake.spec = s.model_dump(mode="json")
        orders = [batch_order(s.seed, s.task, e, len(job.X), s.batch_size) for e in range(s.epochs)]
        per_epoch = len(orders[0])
        records = [
            r.model_copy(update={"batch_digest": batch_digest(orders[r.step // per_epoch][r.step % per_epoch])})
            for r in recorded.steps
        ]
        return store_checkpoints(recorded, fakes, job).model_copy(
            update={
                "steps": records,
                "epoch_digests": [epoch_order_digest(o) for o in orders],
            }
        )
