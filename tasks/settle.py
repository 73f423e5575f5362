"""settle — the contract pays accepted work, slashes rejected workers and refunds the rest.

Settlement is a single contract call that anyone may make once every task has a verdict; the
contract refuses a second one, so a retried flow can never pay twice. Payments are credited for
each party to withdraw (pull payments).
"""

from prefect import task
from prefect.cache_policies import NO_CACHE

from bahen.network import Network
from bahen.parties import CLIENT
from bahen.records import Settled, Upload
from tasks.runtime import network, order_book, timed


def settle(upload: Upload, net: Network) -> Settled:
    """Settle the order as its client."""
    result = net.market.settle(net.party(CLIENT).account, order_id=bytes.fromhex(upload.order_id[2:]))
    return Settled(
        order_id=upload.order_id, payouts_wei=result.payouts, slashed_wei=result.slashed,
        refund_wei=result.refund, tx_hash=result.tx_hash,
    )


@task(name="settle", cache_policy=NO_CACHE)
def settle_task(upload: Upload) -> Settled:
    """Prefect task: settle on chain and close the order's record."""
    result, seconds = timed(settle, upload, network())
    book = order_book()
    status = book.load(upload.order_id).status
    book.record_stage(upload.order_id, "settle", seconds, f"settled ({status})", settled=result)
    return result
