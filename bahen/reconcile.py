"""The client's record of an order, brought in line with the chain where a run stopped before recording.

The chain is the authority on an order's money and verdicts; the local record is what the client's
runs wrote down. A run that died after a transaction was mined (a settlement, a cancellation) or
after Wasp's verdict leaves a record behind the chain: :func:`reconcile` rewrites its status, and
its settlement from the chain's events, so ``bahen order show`` never disagrees with the chain.
"""

from contracts.client import Bahen, UnknownOrderError

from bahen.errors import user_errors
from bahen.network import connect
from bahen.orders import OrderBook
from bahen.records import OrderRecord, Settled
from bahen.settings import Settings


def reconcile(record: OrderRecord, market: Bahen) -> OrderRecord:
    """``record`` with what the chain says wherever the two differ (the same record when they agree).

    An order the chain does not know (never opened, or opened on another chain, such as an
    in-process devnet that ended with its process) is left as the record has it.
    """
    if record.shard is None:
        return record
    oid = bytes.fromhex(record.order_id[2:])
    try:
        view = market.order(oid)
    except UnknownOrderError:
        return record
    verdicts = sorted({t.verdict for t in view.tasks} - {"none"})
    decided = f" ({'/'.join(verdicts)})" if verdicts else ""
    if view.status == "settled" and record.settled is None:
        settlement = market.settlement_of(oid)
        return record.model_copy(update={
            "settled": Settled.from_chain(settlement, market.ledger(oid), view),
            "status": f"settled{decided} on chain; its run stopped before recording it, no model delivered yet",
        })
    if view.status == "cancelled" and not record.status.startswith("cancelled"):
        return record.model_copy(update={"status": "cancelled on chain, escrow refunded"})
    if view.status == "open" and record.verdict is None and verdicts and "none" not in {t.verdict for t in view.tasks}:
        return record.model_copy(update={"status": f"audited{decided} on chain; its run stopped before settling"})
    return record


def reconciled(records: list[OrderRecord], settings: Settings) -> tuple[list[OrderRecord], str | None]:
    """``records`` reconciled with the configured chain and saved where they changed, and a warning if
    the chain could not be asked. On the in-process default chain, which lives only as long as its
    process, there is nothing to reconcile with."""
    if settings.chain_rpc_url is None:
        return records, None
    try:
        market = connect(settings).market
        now = [reconcile(record, market) for record in records]
    except user_errors() as exc:
        return records, f"the chain cannot be asked ({exc}); the records are shown as last written"
    book = OrderBook(settings.orders_dir)
    for before, after in zip(records, now):
        if after != before:
            book.save(after)
    return now, None
