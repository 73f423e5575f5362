"""Run an order, in this process or through the network's ``order`` deployment, with its progress stage by stage."""

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from bahen.errors import BahenError, user_errors
from bahen.network import keystore_of
from bahen.orders import OrderBook, UnknownOrderError, order_id_for, salt_of_run
from bahen.parties import CLIENT
from bahen.records import OrderRecord
from bahen.settings import Settings, load_settings
from bahen.spec import OrderSpec

T = TypeVar("T")

STAGES = ("encrypt_upload", "shard", "train", "verify", "score", "audit", "settle", "deliver")


def _watch(book: OrderBook, started: float, progress: Progress, bar, stop: threading.Event) -> None:
    """Follow the newest order record written after ``started`` and advance the bar per stage."""
    while not stop.wait(0.25):
        records = [p for p in book.directory.glob("0x*.json") if p.stat().st_mtime >= started]
        if not records:
            continue
        record = OrderRecord.model_validate_json(max(records, key=lambda p: p.stat().st_mtime).read_text())
        done = len(record.timings)
        upcoming = STAGES[done] if done < len(STAGES) else "report"
        progress.update(bar, completed=done, description=f"{record.order_id[:10]}… {upcoming}")


class _NoTracebackForUserErrors(logging.Filter):
    """Drop the traceback Prefect logs with a failed run whose error is one a user acts on.

    Its message says what went wrong and what to do, and the command prints it once at the end;
    seventy lines of frames above it only hide it. Other errors keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], user_errors()):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_user_error_tracebacks() -> None:
    """Log failed runs of this process without the traceback of an error a user acts on."""
    for name in ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTracebackForUserErrors) for f in logger.filters):
            logger.addFilter(_NoTracebackForUserErrors())


def _progress(console: Console) -> Progress:
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} stages"), TimeElapsedColumn())
    return Progress(*columns, console=console, transient=False)


def _quiet(verbose: bool) -> None:
    if not verbose:
        for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", "great_expectations"):
            logging.getLogger(name).setLevel(logging.WARNING)
        quiet_user_error_tracebacks()


def _watching(book: OrderBook, console: Console, run: Callable[[], T]) -> T:
    """``run()`` under a progress bar that follows the order record it writes into ``book``."""
    started, stop = time.time() - 1, threading.Event()
    with _progress(console) as progress:
        bar = progress.add_task("starting Prefect…", total=len(STAGES))
        watcher = threading.Thread(target=_watch, args=(book, started, progress, bar, stop), daemon=True)
        watcher.start()
        try:
            result = run()
        finally:
            stop.set()
            watcher.join()
        progress.update(bar, completed=len(STAGES), description="done")
    return result


def run_order(spec: OrderSpec, *, console: Console, verbose: bool = False) -> OrderRecord:
    """Run the ``order`` flow on ``spec`` in this process, with a progress bar over its stages."""
    from flows.order import order

    _quiet(verbose)
    return _watching(OrderBook(load_settings().orders_dir), console, lambda: order(spec))


def submit_order(spec: OrderSpec, settings: Settings, *, console: Console, poll_s: float = 2.0) -> OrderRecord:
    """Run ``spec`` through the ``order`` deployment of ``settings.prefect_api_url`` and wait for its end.

    The run goes to the control pool, where this client's Prefect worker runs it from this home; every
    other stage runs on its party's host. The record is this home's, as the run left it.
    """
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    book = OrderBook(settings.orders_dir)
    placer = keystore_of(settings).public(CLIENT).address  # the run's worker places the order from this home
    with temporary_settings({PREFECT_API_URL: settings.prefect_api_url}):
        def run() -> tuple[str, str, str]:
            try:
                flow_run = run_deployment("order/order", parameters={"spec": spec.model_dump(mode="json")}, timeout=0)
            except ObjectNotFound:
                raise BahenError(f"the Prefect server at {settings.prefect_api_url} has no `order` deployment: "
                                 "apply prefect.yaml there (`bahen up` does)") from None
            except httpx.HTTPError as exc:
                raise BahenError(f"the Prefect server at {settings.prefect_api_url} does not answer ({exc}): "
                                 "start it (`bahen up`) or fix prefect_api_url in config.yaml") from None
            with get_client(sync_client=True) as client:
                while not (state := client.read_flow_run(flow_run.id).state) or not state.is_final():
                    time.sleep(poll_s)
            return order_id_for(placer, salt_of_run(str(flow_run.id))), state.type.value, state.message or ""

        order_id, final, message = _watching(book, console, run)
    if final != "COMPLETED":
        raise BahenError(f"order {order_id} ended {final.lower()}: {message}; `bahen order show {order_id}` shows "
                         f"what was recorded, the run's logs are in the Prefect UI")
    try:
        return book.load(order_id)
    except UnknownOrderError:
        raise BahenError(f"order {order_id} completed, but its record is not in {book.directory}: the network's client "
                         "worker runs from another home; look there") from None
