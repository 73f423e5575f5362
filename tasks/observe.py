"""What Prefect users see while an order runs: an event per stage and a progress bar during training.

Every recorded stage emits ``bahen.order.<stage>`` with the order as its resource, so users can
attach automations (notify on ``bahen.order.audit`` with status ``rejected``, for instance). The
training progress artifact advances with each checkpoint the recorder stores.
"""

import httpx
from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.events import emit_event
from training.trainer import TrainSpec, steps_per_epoch

from bahen.orders import OrderBook
from bahen.records import OrderRecord

CHECKPOINT_PREFIX = "checkpoint-"


def emit_stage_event(record: OrderRecord, stage: str, seconds: float) -> None:
    """Emit ``bahen.order.<stage>`` for the order's latest state."""
    emit_event(
        event=f"bahen.order.{stage}",
        resource={"prefect.resource.id": f"bahen.order.{record.order_id}", "prefect.resource.name": record.order_id},
        payload={"status": record.status, "seconds": round(seconds, 3), "model": record.spec.model, "dataset": record.spec.data_name},
    )


class StageBook(OrderBook):
    """The order book of a Prefect task: recording a stage also emits its event."""

    def record_stage(self, order_id: str, stage: str, seconds: float, status: str, **results) -> OrderRecord:
        record = super().record_stage(order_id, stage, seconds, status, **results)
        emit_stage_event(record, stage, seconds)
        return record


class TrainingProgress:
    """A recorder ``put`` observer: each stored checkpoint moves the order's progress artifact.

    The bar is for people watching: when the Prefect server does not take an update (it is
    restarting, or unreachable), the update is skipped with a warning and training goes on, since a
    recorder observer that raises stops training.
    """

    def __init__(self, order_id: str, task: int, spec: TrainSpec, train_rows: int):
        self.total = max(1, steps_per_epoch(spec, train_rows) * spec.epochs)
        self.description = f"Training of order {order_id}, task {task}"
        self.key, self.logger = f"train-{order_id[2:14]}-{task}", get_run_logger()
        self.artifact = self._shown(create_progress_artifact, 0.0, key=self.key, description=self.description)

    def __call__(self, name: str) -> None:
        if not name.startswith(CHECKPOINT_PREFIX):
            return
        progress = min(100.0, 100.0 * int(name.removeprefix(CHECKPOINT_PREFIX)) / self.total)
        if self.artifact is None:  # the server did not take the bar when training started
            self.artifact = self._shown(create_progress_artifact, progress, key=self.key, description=self.description)
        else:
            self._shown(update_progress_artifact, self.artifact, progress, description=self.description)

    def _shown(self, call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except httpx.HTTPError as exc:
            self.logger.warning("the training progress bar was not updated (the Prefect server did not take it: %s); "
                                "training goes on", type(exc).__name__)
            return None
