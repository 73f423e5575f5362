"""The client's book of orders: one JSON record per order under ``HOME/orders``."""

import hashlib
import secrets
from pathlib import Path
from uuid import UUID

from bahen.errors import BahenError
from bahen.jsonfile import save_json
from bahen.records import OrderRecord, StageTiming


class UnknownOrderError(BahenError):
    def __init__(self, order_id: str, directory: Path):
        super().__init__(f"no order {order_id} in {directory}: `bahen order list` shows the known orders")


def new_order_id() -> str:
    """A fresh 32-byte order id, hex with 0x: the key of the order on chain and in the store."""
    return "0x" + secrets.token_hex(32)


def order_id_of_run(flow_run_id: str | None) -> str:
    """The order a flow run places: derived from the run's id, so a retry of the run continues the same
    order (no second escrow); a fresh id outside a flow run."""
    if flow_run_id is None:
        return new_order_id()
    return "0x" + hashlib.sha256(b"bahen.order.v1\n" + UUID(flow_run_id).bytes).hexdigest()


class OrderBook:
    """Reads and writes order records atomically."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _path(self, order_id: str) -> Path:
        if not (order_id.startswith("0x") and len(order_id) == 66 and all(c in "0123456789abcdef" for c in order_id[2:])):
            raise BahenError(f"{order_id!r} is not an order id (0x followed by 64 lowercase hex digits)")
        return self.directory / f"{order_id}.json"

    def save(self, record: OrderRecord) -> None:
        save_json(self._path(record.order_id), record)

    def load(self, order_id: str) -> OrderRecord:
        path = self._path(order_id)
        if not path.is_file():
            raise UnknownOrderError(order_id, self.directory)
        return OrderRecord.model_validate_json(path.read_text())

    def list(self) -> list[OrderRecord]:
        """Every order, newest first."""
        paths = sorted(self.directory.glob("0x*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        return [OrderRecord.model_validate_json(p.read_text()) for p in paths]

    def record_stage(self, order_id: str, stage: str, seconds: float, status: str, **results) -> OrderRecord:
        """Store a stage's result and duration on the order's record."""
        record = self.load(order_id)
        record = record.model_copy(
            update={**results, "status": status, "timings": [*record.timings, StageTiming(stage=stage, seconds=seconds)]}
        )
        self.save(record)
        return record
