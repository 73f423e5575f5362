"""Run an order flow in this process and show its progress stage by stage."""

import logging
import threading
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from bahen.errors import user_errors
from bahen.orders import OrderBook
from bahen.records import OrderRecord
from bahen.settings import load_settings
from bahen.spec import OrderSpec

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


def run_order(spec: OrderSpec, *, console: Console, verbose: bool = False) -> OrderRecord:
    """Run the ``order`` flow on ``spec`` with a progress bar over its stages."""
    from flows.order import order

    if not verbose:
        for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", "great_expectations"):
            logging.getLogger(name).setLevel(logging.WARNING)
        quiet_user_error_tracebacks()
    book = OrderBook(load_settings().orders_dir)
    started, stop = time.time() - 1, threading.Event()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} stages"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("starting Prefect…", total=len(STAGES))
        watcher = threading.Thread(target=_watch, args=(book, started, progress, bar, stop), daemon=True)
        watcher.start()
        try:
            record = order(spec)
        finally:
            stop.set()
            watcher.join()
        progress.update(bar, completed=len(STAGES), description=f"{record.order_id[:10]}… {record.status}")
    return record
