"""A validator's release, deployed on the ``validators`` pool: wrap a paid task's model key to the client."""

from prefect import flow

from bahen.records import Delivery, Shard, Training, Upload
from tasks.deliver import deliver_task


@flow(
    name="deliver", flow_run_name="deliver-{upload.order_id}-task{training.task}", validate_parameters=True,
    persist_result=True, result_serializer="json",
)
def deliver(upload: Upload, shard: Shard, training: Training) -> Delivery:
    """Release the model key of a settled, accepted task to the client, as the order's delivering validator."""
    return deliver_task(upload, shard, training)
