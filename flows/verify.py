"""A validator's check, deployed on the ``validators`` pool: verify a task's Proof of Train against its commitment."""

from prefect import flow

from bahen.records import Assignment, Shard, Training, Upload, Verification
from bahen.spec import OrderSpec
from tasks.verify import verify_task


@flow(
    name="verify", flow_run_name="verify-{upload.order_id}-task{assignment.task}", validate_parameters=True,
    persist_result=True, result_serializer="json",
)
def verify(spec: OrderSpec, upload: Upload, shard: Shard, assignment: Assignment, training: Training) -> Verification:
    """Re-execute what the chain's challenge selects as the order's first validator; sign and attest the report."""
    return verify_task(spec, upload, shard, assignment, training)
