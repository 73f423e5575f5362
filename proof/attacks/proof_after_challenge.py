"""A proof built after the challenge: the worker commits a root, learns which segments will be
checked, then serves a rebuilt proof (here: a block of logged losses rewritten) whose root is not
the committed one."""

from proof.bundle import build_bundle

from proof.attacks.base import Attack, Job


class ProofAfterChallenge(Attack):
    name = "proof-after-challenge"
    summary = "serves a proof rebuilt after the challenge instead of the committed one"

    def commit(self, bundle, recorded, job: Job):
        block = self.block(len(recorded.steps))
        steps = [r.model_copy(update={"loss": r.loss * 0.99}) if r.step in block else r for r in recorded.steps]
        rebuilt = recorded.model_copy(update={"steps": steps})
        served = build_bundle(rebuilt, order_id=bundle.order_id, task=bundle.task, spec=bundle.spec, put=job.put)
        return served, bundle.merkle_root
