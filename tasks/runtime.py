"""What every stage's Prefect task resolves before calling its core: the network and the order book
of this host, from its settings (``BAHEN_*`` variables and the config file)."""

import time
from collections.abc import Callable
from typing import TypeVar

from bahen.network import Network, connect
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
