"""Wasp's audit, deployed on the ``wasp`` pool: weigh one task's evidence and record the work verdict."""

from prefect import flow

from bahen.records import Assignment, Shard, Training, Upload, Verdict
from tasks.audit import audit_task


@flow(
    name="wasp", flow_run_name="wasp-{upload.order_id}-task{assignment.task}", validate_parameters=True,
    persist_result=True, result_serializer="json",
)
def wasp(upload: Upload, shard: Shard, assignment: Assignment, training: Training) -> Verdict:
    """Check every signature and commitment of the task, read the reports its validators attested on chain,
    decide by Wasp's rules, sign and record the verdict."""
    return audit_task(upload, shard, assignment, training)
