"""Wasp's runs, deployed on the ``wasp`` pool: weigh one task's evidence and record the work verdict, or void a
verification nobody can judge with."""

from prefect import flow

from bahen.records import Assignment, Shard, TaskIndex, Training, Upload, Verdict, VoidedVerification
from tasks.audit import audit_task, void_verification_task


@flow(
    name="wasp", flow_run_name="wasp-{upload.order_id}-task{assignment.task}", validate_parameters=True,
    persist_result=True, result_serializer="json",
)
def wasp(upload: Upload, shard: Shard, assignment: Assignment, training: Training) -> Verdict:
    """Check every signature and commitment of the task, read the reports its validators attested on chain,
    decide by Wasp's rules, sign and record the verdict."""
    return audit_task(upload, shard, assignment, training)


@flow(
    name="void-verification", flow_run_name="void-verification-{upload.order_id}-task{task}", validate_parameters=True,
    persist_result=True, result_serializer="json",
)
def void_verification(upload: Upload, task: TaskIndex) -> VoidedVerification:
    """Void on chain the task's verification that nobody can judge with (its report not in the store whole, or
    another task's), once its scoring window closed: the verifier is replaced and the next one drawn verifies."""
    return void_verification_task(upload, task)
