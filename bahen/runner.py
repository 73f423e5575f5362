"""Running an order's flow, in this process or through the network's ``order`` deployment, and showing its progress.

The SDK (`bahen.client`) composes these; the ``bahen`` command is built on the SDK.
"""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from privacy.identity import Identity

from bahen.errors import BahenError, user_errors
from bahen.parties import party_queue
from bahen.records import OrderRecord
from bahen.settings import Settings
from bahen.spec import OrderSpec
from bahen.submission import sign_submission

STAGES = ("encrypt_upload", "shard", "train", "verify", "score", "audit", "settle", "deliver")


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


class _QuietConsole(logging.Filter):
    """What the terminal leaves out unless asked to be verbose.

    The errors flow and task runs log: the run raises them to its caller, which says what went
    wrong once (the ``bahen`` command prints the message, a script gets the exception); they still
    reach the Prefect server through its own handler. And GX's notes below warnings: GX sets its
    loggers' levels when it is first imported, inside a run, after this process set them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            return False
        return record.levelno >= logging.WARNING or not record.name.startswith("great_expectations")


def quiet_prefect(verbose: bool) -> None:
    """Keep Prefect's and GX's logs of this process to warnings, unless ``verbose``; either way, drop the
    traceback of an error a user acts on, and unless ``verbose`` the runs' errors from the terminal."""
    import flows.order  # noqa: F401  (importing a flow configures Prefect's loggers: quiet them after that)

    quiet_user_error_tracebacks()
    if verbose:
        return
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", "great_expectations"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(isinstance(f, _QuietConsole) for f in handler.filters):
            handler.addFilter(_QuietConsole())


@contextmanager
def order_progress(console: Console) -> Iterator[Callable[..., None]]:
    """Show an order's stages as it runs; the block calls ``advance(record)`` with its latest record.

    A progress bar in a terminal or a notebook; elsewhere (a pipe, a CI log) one plain line per
    stage that ends, so nothing is redrawn.
    """
    if not (console.is_terminal or console.is_jupyter):
        yield _stage_lines(console)
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total} stages"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("starting Prefect…", total=len(STAGES))

        def advance(record: OrderRecord | None, finished: bool = False) -> None:
            if finished:
                progress.update(bar, completed=len(STAGES), description="done")
            elif record is not None:
                done = len(record.timings)
                upcoming = STAGES[done] if done < len(STAGES) else "report"
                progress.update(bar, completed=done, description=f"{record.order_id[:10]}… {upcoming}")

        yield advance


def _stage_lines(console: Console) -> Callable[..., None]:
    shown = 0

    def advance(record: OrderRecord | None, finished: bool = False) -> None:
        nonlocal shown
        timings = [] if record is None else record.timings
        for count, timing in enumerate(timings[shown:], start=shown + 1):
            console.print(f"order {record.order_id}: {timing.stage} done in {timing.seconds:.1f} s "
                          f"({min(count, len(STAGES))}/{len(STAGES)} stages)", highlight=False, soft_wrap=True)
        shown = max(shown, len(timings))

    return advance


def run_in_process(spec: OrderSpec, salt: str) -> OrderRecord:
    """Run the ``order`` flow on ``spec`` in this thread, under the order salt ``salt``."""
    from flows.order import order

    return order(spec, salt=salt)


def start_deployment(spec: OrderSpec, salt: str, settings: Settings, client: Identity) -> str:
    """Start a run of the ``order`` deployment of ``settings.prefect_api_url`` on ``spec``; returns its id.

    The run goes to the work queue of the control pool named by ``client``, this home's client, where
    its Prefect worker (`bahen client start`) runs it from the client's home, and no other client's
    worker takes it; every other stage runs on its party's host. It carries the client's signature of
    the spec and salt, without which the client's host opens nothing (``bahen.submission``).
    """
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    parameters = {"spec": spec.model_dump(mode="json"), "salt": salt, "signature": sign_submission(client, spec, salt)}
    with prefect_api(settings):
        try:
            flow_run = run_deployment("order/order", parameters=parameters, timeout=0,
                                      work_queue_name=party_queue(client.address))
        except ObjectNotFound:
            raise BahenError(f"the Prefect server at {settings.prefect_api_url} has no `order` deployment: "
                             "apply prefect.yaml there (`bahen up` does)") from None
        except httpx.HTTPError as exc:
            raise BahenError(f"the Prefect server at {settings.prefect_api_url} does not answer ({exc}): "
                             "start it (`bahen up`) or fix prefect_api_url in config.yaml") from None
    return str(flow_run.id)


def wait_deployment(settings: Settings, flow_run_id: str, seconds: float, poll_s: float = 1.0) -> tuple[str, str] | None:
    """The final state of a flow run and its message, or None if it is still running after ``seconds``."""
    from prefect import get_client

    deadline = time.monotonic() + seconds
    with prefect_api(settings), get_client(sync_client=True) as client:
        while True:
            try:
                state = client.read_flow_run(flow_run_id).state
            except httpx.HTTPError as exc:
                raise BahenError(f"the Prefect server at {settings.prefect_api_url} does not answer ({exc}); the order "
                                 "goes on without it: wait again once it is back") from None
            if state is not None and state.is_final():
                return state.type.value, state.message or ""
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))


@contextmanager
def prefect_api(settings: Settings) -> Iterator[None]:
    """Prefect's client, inside the block, talks to the server ``settings.prefect_api_url`` names."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: settings.prefect_api_url}):
        yield
