"""A resolver's vote, deployed on the ``validators`` pool: a validator the chain drew re-verifies a disputed task."""

from prefect import flow

from bahen.records import OrderId, TaskIndex
from tasks.dispute import Vote, resolve_task


@flow(name="resolve", flow_run_name="resolve-{order_id}-task{task}", validate_parameters=True)
def resolve(order_id: OrderId, task: TaskIndex, resolver: str) -> Vote:
    """Re-verify a disputed task from the case its disputer handed over, as the drawn resolver ``resolver``, and vote."""
    return resolve_task(order_id, task, resolver)
