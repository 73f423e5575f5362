"""score (validator-score) — every validator scores the final model on the holdout split.

Each validator, in its own process with its own key, checks that the inputs it was handed are the
order's (``tasks.inputs``), decrypts the holdout split and the final checkpoint with its own grants
(the client's for the split, the worker's for the model), evaluates, signs a performance report,
names it in its own folder of the store by its digest and records that digest on chain. A
validator that cannot read or load the model, or finds the holdout not the split the client's
manifest declares (``tasks.train.check_split``), reports the error instead of a score, so one
broken artifact cannot stall the order, and a client that uploads a broken holdout still pays the
validators that found it broken their fees.
"""

import math

from prefect import task
from prefect.cache_policies import NO_CACHE
from privacy.errors import PrivacyError
from proof.scoring import PerformanceReport, aggregate
from pydantic import BaseModel, Field
from storage.errors import StorageError
from storage.refs import ArtifactRef
from training.checkpoint import Checkpoint
from training.errors import DatasetError, TrainingError
from training.trainer import evaluate, input_blind_loss

from bahen.artifacts import PROOF_ROLE, get_decrypted, open_stored_grant
from bahen.network import Network
from bahen.records import Scores, Shard, Training, Upload, ValidatorSlot
from bahen.spec import OrderSpec
from tasks.inputs import chain_order, check_inputs, proof_key, worker_evidence
from tasks.runtime import network
from tasks.train import check_model_size, load_split, train_spec
from tasks.verify import attested_report, model_key, publish, slot_grant

REPORT_PERFORMANCE = 1


def score_one(spec: OrderSpec, upload: Upload, training: Training, slot: ValidatorSlot, net: Network) -> PerformanceReport:
    """One validator's signed-to-be score of one task's final model: the last checkpoint of the proof its worker
    committed, under the key that proof is sealed with, on the order's own inputs (``tasks.inputs``)."""
    order = check_inputs(spec, upload, training.task, net)
    bundle, _ = worker_evidence(training, order, training.task, net)
    validator = net.party_at(slot.address, role="validator")
    order_id = upload.order_id
    model = proof_key(lambda: model_key(net, training, validator), bundle, order_id, training.task, net)
    tspec = train_spec(spec, upload, training.task, net)
    holdout_key = open_stored_grant(net.store, slot_grant(slot, "holdout", order_id), validator, order_id=order_id)
    base = dict(order_id=order_id, task=training.task, validator=validator.address,
                model_sha256=training.final_model.sha256, holdout_sha256=upload.holdout.sha256)
    try:
        # Decrypted, the split is the client's (its manifest pins the ciphertext, the key authenticates
        # it): a split that is not what the manifest declares is the client's doing, and reported.
        X, y = load_split(net.store, holdout_key, upload, "holdout", spec)
    except DatasetError as exc:
        return PerformanceReport(**base, samples=0, accuracy=math.nan, loss=math.nan, error=f"DatasetError: {exc}")
    base.update(samples=len(y), input_blind_loss=input_blind_loss(tspec, X, y))
    try:
        check_model_size(training.final_model, tspec, upload)
        plain = get_decrypted(net.store, model, training.final_model, order_id=order_id, role=PROOF_ROLE)
        checkpoint = Checkpoint.from_bytes(plain, name=training.final_model.name)
        metrics = evaluate(tspec, checkpoint.model_state, X, y)
    except (PrivacyError, StorageError, TrainingError) as exc:
        return PerformanceReport(**base, accuracy=math.nan, loss=math.nan, error=f"{type(exc).__name__}: {exc}")
    if not all(math.isfinite(v) for v in metrics.values()):
        return PerformanceReport(**base, accuracy=math.nan, loss=math.nan, error=f"non-finite evaluation {metrics}")
    return PerformanceReport(**base, accuracy=metrics["accuracy"], loss=metrics["loss"])


class SignedScore(BaseModel):
    """One validator's score of one task, signed, stored and attested on chain: what it hands the order."""

    validator: str = Field(description="The validator's label in the order's shard")
    report: PerformanceReport
    ref: ArtifactRef


def score_as(spec: OrderSpec, upload: Upload, training: Training, slot: ValidatorSlot, net: Network) -> SignedScore:
    """Score as the validator of ``slot``, sign the report and record its digest on chain (``tasks.verify.publish``).
    Run again, it returns the score the validator attested."""
    validator = net.party_at(slot.address, role="validator")
    chain_order(upload, training.task, net)  # before the chain is asked for a report of this task
    if (done := attested_score(upload, training.task, slot, net)) is not None:
        return done
    report, ref, _ = publish(net, validator, score_one(spec, upload, training, slot, net), kind=REPORT_PERFORMANCE,
                             name=f"order {upload.order_id[:10]}/task {training.task}/score by {validator.address}")
    return SignedScore(validator=slot.name, report=report, ref=ref)


def attested_score(upload: Upload, task: int, slot: ValidatorSlot, net: Network) -> SignedScore | None:
    """The score the validator of ``slot`` attested on chain for the task, read from the store
    (``tasks.verify.attested_report``) under the order's own label for that validator, never from what its run
    returned; None while it attested none."""
    found = attested_report(net, upload.order_id, task, REPORT_PERFORMANCE, slot.address, PerformanceReport)
    return None if found is None else SignedScore(validator=slot.name, report=found[0], ref=found[1])


def gathered(order_id: str, scored: list[SignedScore]) -> Scores:
    """The validators' scores of one task and their robust aggregate."""
    agg = aggregate([s.report for s in scored])
    return Scores(
        order_id=order_id, reports={s.validator: s.ref for s in scored},
        accuracy={s.validator: s.report.accuracy for s in scored}, loss={s.validator: s.report.loss for s in scored},
        median_accuracy=agg.median_accuracy, outliers=agg.outliers,
    )


def score(spec: OrderSpec, upload: Upload, shard: Shard, training: Training, net: Network) -> Scores:
    """Score with every validator of the order in turn (each with its own key), and aggregate."""
    return gathered(upload.order_id, [score_as(spec, upload, training, slot, net) for slot in shard.validators])


@task(name="score", cache_policy=NO_CACHE)
def score_task(spec: OrderSpec, upload: Upload, training: Training, slot: ValidatorSlot) -> SignedScore:
    """Prefect task: score as one validator of the order."""
    return score_as(spec, upload, training, slot, network())


@task(name="attested_score", cache_policy=NO_CACHE)
def attested_score_task(upload: Upload, task: int, slot: ValidatorSlot) -> SignedScore | None:
    """Prefect task: the score a validator of the order attested on chain for the task (:func:`attested_score`)."""
    return attested_score(upload, task, slot, network())
