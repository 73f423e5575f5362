"""A worker's task, deployed on the ``gpu`` pool: train one assigned task of an order and commit its proof."""

from prefect import flow

from bahen.records import Assignment, Training, Upload
from bahen.spec import OrderSpec
from tasks.train import train_task


@flow(
    name="train", flow_run_name="train-{upload.order_id}-task{assignment.task}", validate_parameters=True,
    persist_result=True, result_serializer="json",
)
def train(spec: OrderSpec, upload: Upload, assignment: Assignment) -> Training:
    """Train ``assignment`` of the order as its worker; the result holds references and hashes only."""
    return train_task(spec, upload, assignment)
