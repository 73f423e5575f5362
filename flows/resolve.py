"""A resolver's votes, deployed on the ``validators`` pool: a validator the chain drew re-verifies a disputed task,
when its disputer sends it a run (``resolve``) and on its own schedule (``resolve-pending``)."""

from prefect import flow

from bahen.records import OrderId, TaskIndex
from tasks.dispute import Vote, resolve_pending_task, resolve_task


@flow(name="resolve", flow_run_name="resolve-{order_id}-task{task}", validate_parameters=True)
def resolve(order_id: OrderId, task: TaskIndex, resolver: str) -> Vote:
    """Re-verify a disputed task from the case its disputer handed over, as the drawn resolver ``resolver``, and vote."""
    return resolve_task(order_id, task, resolver)


@flow(name="resolve-pending", flow_run_name="resolve-pending-{resolver}", validate_parameters=True)
def resolve_pending(resolver: str) -> list[Vote]:
    """As the validator ``resolver``, vote on every dispute the chain drew it to resolve that waits for its vote
    (a case its disputer may still record is left for the next run). `bahen validator start` schedules it on
    the validator's own queue."""
    return resolve_pending_task(resolver)
