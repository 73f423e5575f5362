"""score (validator-score) — every validator scores the final model on the holdout split.

Each validator decrypts the holdout split and the final checkpoint with its own grants (the client's
for the split, the worker's for the model), evaluates, signs a performance report and records its
digest on chain. A validator that cannot read or load
the model reports the error instead of a score, so one broken artifact cannot stall the order.
"""

import math

from prefect import task
from prefect.cache_policies import NO_CACHE
from privacy.errors import PrivacyError
from proof.scoring import PerformanceReport, aggregate
from storage.errors import StorageError
from training.checkpoint import Checkpoint
from training.errors import CheckpointError, TrainingError
from training.trainer import evaluate, state_form

from bahen.artifacts import PROOF_ROLE, get_decrypted, open_stored_grant, put_signed
from bahen.network import Network
from bahen.records import Scores, Shard, Training, Upload, ValidatorSlot
from bahen.spec import OrderSpec
from tasks.runtime import network, order_book, recorded, timed
from tasks.train import load_split, train_spec
from tasks.verify import model_key

REPORT_PERFORMANCE = 1


def score_one(spec: OrderSpec, upload: Upload, training: Training, slot: ValidatorSlot, net: Network) -> PerformanceReport:
    """One validator's signed-to-be score of one task's final model."""
    validator = net.party(slot.name)
    order_id = upload.order_id
    keys = {role: open_stored_grant(net.store, ref, validator, order_id=order_id) for role, ref in slot.grants.items()}
    X, y = load_split(net.store, keys["holdout"], upload, "holdout")
    base = dict(
        order_id=order_id, task=training.task, validator=validator.address, model_sha256=training.final_model.sha256,
        holdout_sha256=upload.holdout.sha256, samples=len(y),
    )
    tspec = train_spec(spec, upload, training.task, net)
    try:
        bound = state_form(tspec, upload.train_rows).max_bytes
        if training.final_model.size > bound:
            raise CheckpointError(f"{training.final_model.name} is {training.final_model.size:,} bytes, over the "
                                  f"{bound:,} a model of this order takes; it was not fetched")
        model = model_key(net, training, validator)
        plain = get_decrypted(net.store, model, training.final_model, order_id=order_id, role=PROOF_ROLE)
        checkpoint = Checkpoint.from_bytes(plain, name=training.final_model.name)
        metrics = evaluate(tspec, checkpoint.model_state, X, y)
    except (PrivacyError, StorageError, TrainingError) as exc:
        return PerformanceReport(**base, accuracy=math.nan, loss=math.nan, error=f"{type(exc).__name__}: {exc}")
    if not all(math.isfinite(v) for v in metrics.values()):
        return PerformanceReport(**base, accuracy=math.nan, loss=math.nan, error=f"non-finite evaluation {metrics}")
    return PerformanceReport(**base, accuracy=metrics["accuracy"], loss=metrics["loss"])


def score(spec: OrderSpec, upload: Upload, shard: Shard, training: Training, net: Network) -> Scores:
    """Score with every validator, attest each report on chain, aggregate robustly."""
    reports, refs = [], {}
    for slot in shard.validators:
        report = score_one(spec, upload, training, slot, net)
        validator = net.party(slot.name)
        ref, doc = put_signed(net.store, validator, report, name=f"order {upload.order_id[:10]}/task {training.task}/score by {slot.name}")
        net.market.submit_report(
            validator.account, order_id=bytes.fromhex(upload.order_id[2:]), task=training.task, kind=REPORT_PERFORMANCE,
            digest=bytes.fromhex(doc.digest[2:]), signature=bytes.fromhex(doc.signature[2:]),
        )
        reports.append(report)
        refs[slot.name] = ref
    agg = aggregate(reports)
    return Scores(
        order_id=upload.order_id, reports=refs,
        accuracy={s.name: r.accuracy for s, r in zip(shard.validators, reports)},
        loss={s.name: r.loss for s, r in zip(shard.validators, reports)},
        median_accuracy=agg.median_accuracy, outliers=agg.outliers,
    )


@task(name="score", cache_policy=NO_CACHE)
def score_task(spec: OrderSpec, upload: Upload, shard: Shard, training: Training) -> Scores:
    """Prefect task: score as every validator of the order."""
    if (done := recorded(upload.order_id, "scores")) is not None:
        return done
    result, seconds = timed(score, spec, upload, shard, training, network())
    order_book().record_stage(upload.order_id, "score", seconds, "scored", scores=result)
    return result
