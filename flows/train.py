"""A worker's stages, deployed on the ``gpu`` pool: train one assigned task of an order and commit its proof;
grant its model key to a verifier drawn after the proof."""

from prefect import flow

from bahen.records import Assignment, Training, Upload
from bahen.spec import OrderSpec
from tasks.train import grant_model_task, train_task


@flow(
    name="train", flow_run_name="train-{upload.order_id}-task{assignment.task}", validate_parameters=True,
    persist_result=True, result_serializer="json",
)
def train(spec: OrderSpec, upload: Upload, assignment: Assignment) -> Training:
    """Train ``assignment`` of the order as its worker; the result holds references and hashes only."""
    return train_task(spec, upload, assignment)


@flow(
    name="grant-model", flow_run_name="grant-model-{upload.order_id}-task{training.task}", validate_parameters=True,
    persist_result=True, result_serializer="json",
)
def grant_model(upload: Upload, training: Training) -> Training:
    """As ``training``'s worker, wrap its model key to the order's validators on chain that hold none (a
    verifier drawn after a stalled one was replaced), so they can read its proof and model."""
    return grant_model_task(upload, training)
