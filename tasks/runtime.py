"""What every stage's Prefect task resolves before calling its core: the network and the order book
of this host, from its settings (``BAHEN_*`` variables and the config file)."""

import time
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import get_run_logger

from bahen.network import Network, connect
from bahen.orders import UnknownOrderError
from bahen.settings import load_settings
from tasks.observe import StageBook

T = TypeVar("T")


def network() -> Network:
    return connect(load_settings())


def order_book() -> StageBook:
    """This host's order book; recording a stage emits its ``bahen.order.<stage>`` event."""
    return StageBook(load_settings().orders_dir)


def timed(core: Callable[..., T], *args, **kwargs) -> tuple[T, float]:
    """Run a stage core and measure its wall time."""
    start = time.perf_counter()
    result = core(*args, **kwargs)
    return result, time.perf_counter() - start


def recorded(order_id: str, stage_result: str) -> Any:
    """The stage's result if the order's record already holds it, else None.

    A retried run of an order (a Prefect retry, the UI's Retry) passes through the stages that
    finished and continues with the first that did not: no second upload, escrow or training.
    """
    try:
        result = getattr(order_book().load(order_id), stage_result)
    except UnknownOrderError:
        return None
    if result is not None:
        get_run_logger().info("order %s already holds its %s: continuing after it", order_id, stage_result)
    return result
