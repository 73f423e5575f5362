"""A withheld checkpoint: the proof commits to checkpoints whose bytes the worker never stores
(it cannot produce them when challenged)."""

from proof.attacks.base import Attack, Job, unstored_ref


class WithheldCheckpoint(Attack):
    name = "withheld-checkpoint"
    summary = "commits to a share of checkpoints without storing them"

    def tamper(self, recorded, job: Job):
        withheld = set(self.choose([step for step, _ in recorded.checkpoints]))
        refs = [
            (step, unstored_ref(ref.name, job.order_id) if step in withheld else ref)
            for step, ref in recorded.checkpoints
        ]
        return recorded.model_copy(update={"checkpoints": refs})
