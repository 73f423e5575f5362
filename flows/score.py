"""A validator's job, deployed on the ``validators`` pool: score a task's final model on the holdout split."""

from prefect import flow

from bahen.records import Training, Upload, ValidatorSlot
from bahen.spec import OrderSpec
from tasks.score import SignedScore, score_task


@flow(
    name="score", flow_run_name="score-{upload.order_id}-task{training.task}-{slot.name}", validate_parameters=True,
    persist_result=True, result_serializer="json",
)
def score(spec: OrderSpec, upload: Upload, training: Training, slot: ValidatorSlot) -> SignedScore:
    """Score the final model of ``training`` as the validator of ``slot``, sign and attest the report."""
    return score_task(spec, upload, training, slot)
