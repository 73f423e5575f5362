"""settle — the contract pays accepted work, slashes rejected workers and refunds the rest.

Settlement is a single contract call that anyone may make once every task's verdict is final
(its dispute window has passed); the contract refuses a second one, so a retried flow can never
pay twice. Payments are credited for each party to withdraw (pull payments).
"""

import time

from contracts.errors import ChainError
from prefect import task
from prefect.cache_policies import NO_CACHE

from bahen.network import Network
from bahen.parties import CLIENT
from bahen.records import Settled, Upload
from tasks.runtime import network, order_book, timed


def wait_for_finality(net: Network, order_id: bytes) -> None:
    """Wait until every verdict's dispute window has passed; a devnet moves its clock instead."""
    window = net.market.params().dispute_window
    verdicts = [t.verdict_at for t in net.market.order(order_id).tasks if t.verdict != "none"]
    final_at = max(verdicts, default=0) + window
    while (now := net.chain.now()) <= final_at:
        try:
            net.chain.increase_time(final_at - now + 1)  # a devnet skips the window…
        except ChainError:
            time.sleep(min(60, final_at - now + 1))  # …a real chain lets it pass


def settle(upload: Upload, net: Network) -> Settled:
    """Settle the order as its client once its verdicts are final."""
    oid = bytes.fromhex(upload.order_id[2:])
    wait_for_finality(net, oid)
    result = net.market.settle(net.party(CLIENT).account, order_id=oid)
    ledger = net.market.ledger(oid)
    return Settled(
        order_id=upload.order_id, payouts_wei=result.payouts, slashed_wei=result.slashed,
        refund_wei=result.refund, tx_hash=result.tx_hash, credits=ledger.credits, slashes=ledger.slashes,
    )


@task(name="settle", cache_policy=NO_CACHE)
def settle_task(upload: Upload) -> Settled:
    """Prefect task: settle on chain and close the order's record."""
    result, seconds = timed(settle, upload, network())
    book = order_book()
    status = book.load(upload.order_id).status
    book.record_stage(upload.order_id, "settle", seconds, f"settled ({status})", settled=result)
    return result
