"""settle — the contract pays accepted work, slashes rejected workers and refunds the rest.

Settlement is a single contract call that anyone may make once every task's verdict is final
(its dispute window has passed and any dispute of it closed, upheld or followed by a window of its
own); the contract refuses a second one, so a retried flow can never pay twice. Payments are
credited for each party to withdraw (pull payments).
"""

import time

from contracts.client import Bahen
from contracts.errors import ChainError, ChallengeNotReady, ContractRevert, NoResolvers
from eth_account.signers.local import LocalAccount
from prefect import task
from prefect.cache_policies import NO_CACHE

from bahen.network import Network
from bahen.parties import CLIENT
from bahen.records import Settled, Upload
from tasks.runtime import network, order_book, recorded, timed


def _move_along(call) -> None:
    """Draw or expire a dispute, as anyone may: when another party did it first (``NotDisputing``) or the
    seed block is not mined yet, the next look sees where it stands."""
    try:
        call()
    except ChallengeNotReady:
        pass
    except ContractRevert as exc:
        if exc.error != "NotDisputing":
            raise


def wait_for_finality(market: Bahen, client: LocalAccount, order_id: bytes) -> None:
    """Wait until every verdict is final: its dispute window passed (from the verdict, or from the close of
    a dispute that left it standing), and any dispute of it closed.

    Anyone may move a dispute along, so the settling ``client`` does: it draws the resolvers of a
    dispute still drawing, and expires one past its ``resolve_by``: its resolvers reached no majority
    in time, or a draw still finds none a resolution period after the first that found none. A devnet
    moves its clock instead of waiting.
    """
    window = market.params().dispute_window
    while True:
        now, final_at, disputed = market.chain.now(), 0, False
        for t in market.order(order_id).tasks:
            if t.verdict == "none":
                continue
            dispute = market.dispute(order_id, t.task)
            if dispute.status == "drawing":  # a draw first: the dispute is heard if anyone can hear it
                disputed = True
                try:
                    _move_along(lambda: market.draw_resolvers(client, order_id=order_id, task=t.task))
                except NoResolvers as nobody:  # its deadline set by the first draw that found none
                    if market.chain.now() > nobody.resolve_by:
                        _move_along(lambda: market.expire_dispute(client, order_id=order_id, task=t.task))
                    else:
                        final_at = max(final_at, nobody.resolve_by)
            elif dispute.status == "voting" and now > dispute.resolve_by:
                disputed = True  # expired, it opens the window again: the next look waits it out
                _move_along(lambda: market.expire_dispute(client, order_id=order_id, task=t.task))
            elif dispute.status == "voting":
                disputed, final_at = True, max(final_at, dispute.resolve_by)
            elif dispute.status == "none":
                final_at = max(final_at, t.verdict_at + window)
            elif dispute.status in ("dismissed", "expired"):  # the verdict stood: another member may dispute it
                final_at = max(final_at, dispute.closed_at + window)
        if not disputed and now > final_at:
            return
        wait = max(final_at - market.chain.now(), 0) + 1  # the clock as it is after this look's transactions
        try:
            market.chain.increase_time(wait)  # a devnet skips the wait…
        except ChainError:
            time.sleep(min(60, wait))  # …a real chain lets it pass


def settle(upload: Upload, net: Network) -> Settled:
    """Settle the order as its client once its verdicts are final; an order settled before (by a run that
    died before recording it) is read back from the chain, not settled twice."""
    oid = bytes.fromhex(upload.order_id[2:])
    result = net.market.settlement_of(oid)
    if result is None:
        client = net.party(CLIENT).account
        wait_for_finality(net.market, client, oid)
        result = net.market.settle(client, order_id=oid)
    return Settled.from_chain(result, net.market.ledger(oid), net.market.order(oid))


@task(name="settle", cache_policy=NO_CACHE)
def settle_task(upload: Upload) -> Settled:
    """Prefect task: settle on chain and close the order's record."""
    if (done := recorded(upload.order_id, "settled")) is not None:
        return done
    result, seconds = timed(settle, upload, network())
    book = order_book()
    status = book.load(upload.order_id).status
    book.record_stage(upload.order_id, "settle", seconds, f"settled ({status})", settled=result)
    return result
