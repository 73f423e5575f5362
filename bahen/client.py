"""bahen's Python SDK: place orders, follow them, fetch their models and reports from a script or a notebook.

    from bahen import Client

    client = Client(home=".bahen")       # a party home (None: BAHEN_HOME, else ./.bahen)
    order = client.submit({"dataset": "digits", "model": "mlp", "epochs": 2})
    order.wait(progress=True)            # a progress bar over the stages
    order.status                         # e.g. "settled (accepted), model delivered"
    print(order.summary())               # what `bahen order show` prints
    order.report()                       # pandas DataFrame: the proof's checks and the model report
    order.model("model.pt")              # the delivered model's state_dict
    client.orders()                      # this home's orders, newest first

The ``bahen`` command is built on it. Where the home's settings name no Prefect server, an order
runs in this process, on a background thread (``submit`` returns at once, ``wait`` joins it); where
they name one, it runs through the network's ``order`` deployment, each stage on its party's host.
Every call reads the settings of the client's home; none changes the process's environment.

Expected failures raise :class:`bahen.errors.BahenError` subclasses whose message says what to do.
"""

import contextvars
import io
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from bahen.errors import BahenError
from bahen.orders import OrderBook, UnknownOrderError, order_id_for, salt_of_run
from bahen.records import OrderRecord
from bahen.runner import order_progress, quiet_prefect, run_in_process, start_deployment, wait_deployment
from bahen.settings import Settings, host_settings
from bahen.spec import OrderSpec, load_spec, parse_spec

if TYPE_CHECKING:
    import pandas


class StaleRecordWarning(UserWarning):
    """The chain could not be asked, so order records are shown as this home last wrote them."""


class Client:
    """A client's view of the network, from one home (its keys, settings and order records)."""

    def __init__(self, home: str | PathLike | None = None, *, verbose: bool = False):
        """``home`` is the party home to act from (None: ``BAHEN_HOME``, else ``./.bahen``);
        ``verbose`` shows Prefect's logs of the orders this process runs."""
        self._overrides = {} if home is None else {"home": Path(home).resolve()}
        self.verbose = verbose
        self.home = self.settings().home

    @contextmanager
    def acting(self) -> Iterator[Settings]:
        """The home's settings, held as this host's for the block (stages run inside read them)."""
        with host_settings(**self._overrides) as settings:
            yield settings

    def settings(self) -> Settings:
        """The home's settings: config.yaml, then ``BAHEN_*`` variables, then the home given."""
        with self.acting() as settings:
            return settings

    def submit(self, spec: OrderSpec | Mapping | str | PathLike) -> "Order":
        """Place an order and start it; returns at once (``Order.wait`` follows it to the end).

        ``spec`` is an :class:`OrderSpec`, a mapping of its fields, or the path of a YAML spec
        (fields as in ``bahen order schema``). The order's id is fixed before it starts: the
        market derives it from the client's address and a fresh salt.
        """
        spec = _spec(spec)
        salt = salt_of_run(None)
        with self.acting() as settings:
            from bahen.network import keystore_of
            from bahen.parties import CLIENT

            # the client's key, as the order's first stage uses it (created in a fresh home, as a devnet does)
            client = keystore_of(settings).load_or_create(CLIENT)
            order_id = order_id_for(client.address, salt)
            quiet_prefect(self.verbose)
            if settings.prefect_api_url:
                return Order(self, order_id, run=_NetworkRun(settings, start_deployment(spec, salt, settings, client)))
            return Order(self, order_id, run=_LocalRun(spec, salt))

    def order(self, order_id: str, *, reconcile: bool = True) -> "Order":
        """The order ``order_id`` of this home (:class:`UnknownOrderError` if the home holds no record of it);
        with ``reconcile``, its status as the chain last settled it."""
        with self.acting() as settings:
            record = OrderBook(settings.orders_dir).load(order_id)
        return self._orders([record], reconcile)[0]

    def orders(self, *, reconcile: bool = True) -> list["Order"]:
        """This home's orders, newest first; with ``reconcile``, each status as the chain last settled it.

        When the chain cannot be asked the records are returned as written, with a
        :class:`StaleRecordWarning` saying why.
        """
        with self.acting() as settings:
            records = OrderBook(settings.orders_dir).list()
        return self._orders(records, reconcile)

    def _orders(self, records: list[OrderRecord], reconcile: bool) -> list["Order"]:
        if reconcile and records:
            from bahen.reconcile import reconciled

            with self.acting() as settings:
                records, warning = reconciled(records, settings)
            if warning:
                warnings.warn(warning, StaleRecordWarning, stacklevel=3)
        return [Order(self, r.order_id, record=r) for r in records]


class Order:
    """One order of a :class:`Client`: its run (when this client started it) and its record."""

    def __init__(self, client: Client, order_id: str, *, run: "_LocalRun | _NetworkRun | None" = None,
                 record: OrderRecord | None = None):
        self.client, self.order_id, self._run, self._record = client, order_id, run, record

    def __repr__(self) -> str:
        return f"Order({self.order_id}, status={self.status!r})"

    @property
    def record(self) -> OrderRecord | None:
        """The order's record in the client's home: as its run last wrote it (None before the first stage
        ends), or, for an order looked up (``Client.order``, ``Client.orders``), as it was reconciled then."""
        if self._record is not None and self._run is None:
            return self._record
        with self.client.acting() as settings:
            try:
                return OrderBook(settings.orders_dir).load(self.order_id)
            except UnknownOrderError:
                return None

    @property
    def status(self) -> str:
        """The record's status ("running" or "submitted" before the first stage has recorded one)."""
        record = self.record
        if record is not None:
            return record.status
        return "running" if self._run is not None and not self._run.done() else "submitted"

    @property
    def flow_run_id(self) -> str | None:
        """The Prefect flow run of this client's run on a network (the UI shows it under Runs); None for a
        run in this process or an order looked up."""
        return self._run.flow_run_id if isinstance(self._run, _NetworkRun) else None

    @property
    def done(self) -> bool:
        """Whether this client's run of the order has ended (True for an order it did not start)."""
        return self._run is None or self._run.done()

    def wait(self, *, progress: bool = False, console: Console | None = None, timeout: float | None = None) -> "Order":
        """Block until the order's run ends; ``progress`` shows a bar over its stages.

        Raises the error that ended the run (a :class:`BahenError` says what to do), or a
        :class:`BahenError` when ``timeout`` seconds pass first (the run goes on). A run refused
        because another run with its parameters placed the order first is not the order's end: the
        wait follows that run. An order this client did not start has no run here to wait for, and
        returns at once.
        """
        if self._run is None:
            return self
        deadline = None if timeout is None else time.monotonic() + timeout
        with order_progress(console or Console()) if progress else nullcontext() as advance:
            while True:
                while not self._run.wait(0.25 if progress else 1.0, deadline):
                    if advance is not None:
                        advance(self.record)
                if (holder := self._run.holder(self.order_id)) is None:
                    break
                self._run = holder
            if advance is not None:
                advance(self.record, finished=True)
        self._run.result(self.order_id)
        if self.record is None:
            raise BahenError(f"order {self.order_id} completed, but its record is not in {self.client.home}: the "
                             "network's client worker runs from another home; look there")
        return self

    def summary(self) -> str:
        """Stages, verdict, payments and artifact hashes as text (what ``bahen order show`` prints)."""
        from bahen.summary import print_summary

        out = Console(file=io.StringIO(), width=120, record=True, markup=False)
        print_summary(self._require(), out)
        return out.export_text()

    def report(self) -> "pandas.DataFrame":
        """The proof's checks and the model report, one row each.

        Columns: ``section`` ("proof check" or "model report"), ``name``, ``passed``,
        ``decisive`` (whether it can reject the work), ``observed``, ``threshold`` and ``detail``.
        """
        import pandas

        record = self._require()
        rows = []
        if record.verification is not None:
            rows += [{"section": "proof check", "name": c["name"], "passed": c["passed"], "decisive": c["decisive"],
                      "observed": c["observed"], "threshold": c["threshold"], "detail": c["detail"]}
                     for c in record.verification.checks]
        if record.verdict is not None:
            report = record.verdict.model_report
            rows += [{"section": "model report", "name": f.rule, "passed": f.passed, "decisive": f.decisive,
                      "observed": None, "threshold": None, "detail": f.detail} for f in report.findings]
        columns = ["section", "name", "passed", "decisive", "observed", "threshold", "detail"]
        return pandas.DataFrame(rows, columns=columns)

    def model(self, path: str | PathLike, *, overwrite: bool = False) -> Path:
        """Decrypt the delivered final model and write its state_dict to ``path`` (``torch.load`` reads it)."""
        from bahen.delivery import fetch_model

        with self.client.acting():
            return fetch_model(self.order_id, Path(path), overwrite=overwrite)

    def cancel(self, reason: str = "cancelled by its client") -> str:
        """Cancel the order as its client and credit the escrow back; returns the new status.

        Allowed before any proof is committed, or after the deadline while no verdict is recorded.
        """
        from bahen.network import connect
        from bahen.orders import cancel_order

        with self.client.acting() as settings:
            return cancel_order(self.order_id, connect(settings), OrderBook(settings.orders_dir), reason=reason)

    def _require(self) -> OrderRecord:
        record = self.record
        if record is None:
            raise BahenError(f"order {self.order_id} has no record in {self.client.home} yet: wait for its first stage")
        return record


def _spec(spec: OrderSpec | Mapping | str | PathLike) -> OrderSpec:
    if isinstance(spec, OrderSpec):
        return spec
    if isinstance(spec, Mapping):
        return parse_spec(dict(spec), source="the order given")
    return load_spec(Path(spec))


class _LocalRun:
    """The ``order`` flow running in this process, on a thread that holds the client's settings."""

    def __init__(self, spec: OrderSpec, salt: str):
        self._error: BaseException | None = None
        context = contextvars.copy_context()  # the client's host settings, for the stages the flow runs here
        self._thread = threading.Thread(target=context.run, args=(self._target, spec, salt), daemon=True,
                                        name="bahen-order")
        self._thread.start()

    def _target(self, spec: OrderSpec, salt: str) -> None:
        try:
            run_in_process(spec, salt)
        except BaseException as exc:  # handed to the thread that waits
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, seconds: float, deadline: float | None) -> bool:
        self._thread.join(_bounded(seconds, deadline))
        return self.done()

    def result(self, order_id: str) -> None:
        if self._error is not None:
            raise self._error

    def holder(self, order_id: str) -> None:
        """None: a run in this process is the only one of its order."""
        return None


class _NetworkRun:
    """The order's run of the network's ``order`` deployment."""

    def __init__(self, settings: Settings, flow_run_id: str):
        self._settings, self.flow_run_id = settings, flow_run_id
        self._final: tuple[str, str] | None = None

    def done(self) -> bool:
        return self.wait(0, None)

    def wait(self, seconds: float, deadline: float | None) -> bool:
        if self._final is None:
            self._final = wait_deployment(self._settings, self.flow_run_id, _bounded(seconds, deadline))
        return self._final is not None

    def holder(self, order_id: str) -> "_NetworkRun | None":
        """The run that placed the order, when this one ended refused as a copy of it (``OrderBook.claim``)."""
        if self._final is None or self._final[0] == "COMPLETED":
            return None
        holder = OrderBook(self._settings.orders_dir).holder(order_id)
        return None if holder in (None, self.flow_run_id) else _NetworkRun(self._settings, holder)

    def result(self, order_id: str) -> None:
        state, message = self._final
        if state != "COMPLETED":
            raise BahenError(f"order {order_id} ended {state.lower()}: {message}; `bahen order show {order_id}` shows "
                             "what was recorded, the run's logs are in the Prefect UI")


def _bounded(seconds: float, deadline: float | None) -> float:
    """``seconds``, or less if ``deadline`` comes first; raises when it has passed."""
    if deadline is None:
        return seconds
    left = deadline - time.monotonic()
    if left <= 0:
        raise BahenError("the order is still running after the timeout given; wait again, or follow it in the Prefect UI")
    return min(seconds, left)


__all__ = ["Client", "Order", "StaleRecordWarning"]
