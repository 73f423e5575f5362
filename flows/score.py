"""A validator's job, deployed on the ``validators`` pool: score a task's final model on the holdout split."""

from prefect import flow

from bahen.records import Scores, Shard, Training, Upload
from bahen.spec import OrderSpec
from tasks.score import score_task


@flow(
    name="score", flow_run_name="score-{upload.order_id}-task{training.task}", validate_parameters=True,
    persist_result=True, result_serializer="json",
)
def score(spec: OrderSpec, upload: Upload, shard: Shard, training: Training) -> Scores:
    """Score the final model of ``training`` with every validator of the order and aggregate."""
    return score_task(spec, upload, shard, training)
