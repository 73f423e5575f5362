"""The client's book of orders: one JSON record per order under ``HOME/orders``."""

import hashlib
import os
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from uuid import UUID

from pydantic import Field

from contracts.client import order_id_of

from bahen.errors import BahenError
from bahen.jsonfile import save_json
from bahen.network import Network
from bahen.records import OrderRecord, StageTiming


class NotCancellableError(BahenError):
    """The contract would refuse to cancel the order now."""


class OrderAlreadyRunning(BahenError):
    """A second flow run of an order that another run of this client's host already placed."""


class UnknownOrderError(BahenError):
    def __init__(self, order_id: str, directory: Path):
        super().__init__(f"no order {order_id} in {directory}: `bahen order list` shows the known orders")


Salt = Annotated[str, Field(
    pattern=r"^(0x[0-9a-f]{64})?$",
    description="An order's salt, 0x and 64 lowercase hex digits: with the client's address it gives the order's id. "
    "Left empty, it derives from the flow run's id, so a retry of the run continues the same order")]


def salt_of_run(flow_run_id: str | None) -> str:
    """The salt of the order a flow run places, 32 bytes hex with 0x: derived from the run's id, so a
    retry of the run continues the same order (no second escrow); fresh outside a flow run."""
    if flow_run_id is None:
        return "0x" + secrets.token_hex(32)
    return "0x" + hashlib.sha256(b"bahen.order.v1\n" + UUID(flow_run_id).bytes).hexdigest()


def order_id_for(client: str, salt: str) -> str:
    """The id the market gives the order ``client`` opens with ``salt`` (keccak256(abi.encode(client,
    salt))): known before the order is opened, the key of the order on chain and in the store, and
    nobody but ``client`` can open an order under it."""
    return "0x" + order_id_of(client, bytes.fromhex(salt.removeprefix("0x"))).hex()


class OrderBook:
    """Reads and writes order records atomically."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    @staticmethod
    def check_id(order_id: str) -> str:
        """``order_id`` if it is an order id, else a :class:`BahenError` saying what one looks like."""
        if not (order_id.startswith("0x") and len(order_id) == 66 and all(c in "0123456789abcdef" for c in order_id[2:])):
            raise BahenError(f"{order_id!r} is not an order id (0x followed by 64 lowercase hex digits)")
        return order_id

    def _path(self, order_id: str) -> Path:
        return self.directory / f"{self.check_id(order_id)}.json"

    def save(self, record: OrderRecord) -> None:
        save_json(self._path(record.order_id), record)

    def load(self, order_id: str) -> OrderRecord:
        path = self._path(order_id)
        if not path.is_file():
            raise UnknownOrderError(order_id, self.directory)
        return OrderRecord.model_validate_json(path.read_text())

    def update(self, order_id: str, **fields) -> OrderRecord:
        """Set ``fields`` on the order's record, and return it."""
        record = self.load(order_id).model_copy(update=fields)
        self.save(record)
        return record

    def list(self) -> list[OrderRecord]:
        """Every order, newest first."""
        paths = sorted(self.directory.glob("0x*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        return [OrderRecord.model_validate_json(p.read_text()) for p in paths]

    def claim(self, order_id: str, flow_run_id: str) -> None:
        """Make ``flow_run_id`` the one flow run that places ``order_id`` on this host, or refuse it with
        :class:`OrderAlreadyRunning` if another has: a retry of that run goes on, a copy of its
        parameters in a new run does not run the order a second time beside it."""
        path = self._run_path(order_id)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(flow_run_id)
        try:
            os.link(tmp, path)  # atomic, and refused when a run already holds the order
        except FileExistsError:
            holder = path.read_text()
            if holder != flow_run_id:
                raise OrderAlreadyRunning(
                    f"order {order_id} is already placed by flow run {holder} of this client: nothing was opened or "
                    "paid by this one. Retry that run (the UI's Retry) to continue the order") from None
        finally:
            tmp.unlink()

    def holder(self, order_id: str) -> str | None:
        """The flow run that placed ``order_id`` on this host (:meth:`claim`), None if none has."""
        path = self._run_path(order_id)
        return path.read_text() if path.is_file() else None

    def _run_path(self, order_id: str) -> Path:
        return self.directory / f"{self.check_id(order_id)}.run"

    def record_stage(self, order_id: str, stage: str, seconds: float, status: str, **results) -> OrderRecord:
        """Store a stage's result and duration on the order's record."""
        record = self.load(order_id)
        record = record.model_copy(
            update={**results, "status": status, "timings": [*record.timings, StageTiming(stage=stage, seconds=seconds)]}
        )
        self.save(record)
        return record


def cancel_order(order_id: str, net: Network, book: OrderBook, *, reason: str) -> str:
    """Cancel ``order_id`` as its client, whose key this host must hold; the escrow is credited back.

    The contract allows it before any proof is committed, or after the deadline while no verdict is
    recorded; otherwise :class:`NotCancellableError` says why, and nothing is sent. The order's
    record, when this host keeps one, takes the new status; the status is returned.
    """
    oid = bytes.fromhex(book.check_id(order_id)[2:])
    view = net.market.order(oid)
    client = net.party_at(view.client, role="client")
    if view.status != "open":
        raise NotCancellableError(f"order {order_id} is already {view.status} on chain")
    if view.verdicts:
        raise NotCancellableError(f"order {order_id} has a verdict on chain: settle it instead (settlement pays and slashes)")
    if view.commits and net.chain.now() <= view.deadline:
        when = datetime.fromtimestamp(view.deadline, UTC).isoformat(timespec="seconds")
        raise NotCancellableError(f"a worker committed a proof for order {order_id}: it can be cancelled after its "
                                  f"deadline, {when} (chain time), if no verdict is recorded by then")
    net.market.cancel_order(client.account, order_id=oid)
    status = f"cancelled, escrow refunded: {reason}"
    try:
        book.update(order_id, status=status)
    except UnknownOrderError:
        pass  # the client placed it from another home: the chain holds all there is
    return status
