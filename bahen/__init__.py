"""bahen: verifiable outsourced training.

``from bahen import Client`` is the Python SDK (:mod:`bahen.client`): place orders, follow them,
fetch their models and reports. It is imported on first use, so the stages that import
``bahen``'s modules do not pay for it.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bahen.client import Client, Order

__all__ = ["Client", "Order"]


def __getattr__(name: str):
    if name in __all__:
        from bahen import client

        return getattr(client, name)
    raise AttributeError(f"module 'bahen' has no attribute {name!r}")
