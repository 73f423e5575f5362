"""The local record follows the chain where a run stopped before recording: settled, cancelled, audited."""

from rich.console import Console

from bahen.network import connect
from bahen.parties import CLIENT
from bahen.reconcile import reconcile, reconciled
from bahen.records import OrderRecord
from bahen.settings import Settings, load_settings
from bahen.spec import OrderSpec
from bahen.summary import print_chain_order
from tasks.audit import audit
from tasks.encrypt_upload import encrypt_upload
from tasks.score import score
from tasks.settle import settle
from tasks.shard import shard
from tasks.train import train
from tasks.verify import verify

SMALL = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32)


def _opened(net, byte: str) -> OrderRecord:
    """An order opened on chain whose record stops at ``open``, as a run that died there leaves it."""
    upload = encrypt_upload(SMALL, net, salt="0x" + byte * 32)
    return OrderRecord(order_id=upload.order_id, spec=SMALL, status="open", upload=upload, shard=shard(SMALL, upload, net))


def test_an_order_settled_after_its_run_died_is_recorded_from_the_chain_and_not_settled_twice(prefect, bahen_home):
    net = connect(load_settings())
    record = _opened(net, "8a")
    upload, plan = record.upload, record.shard
    [assignment] = plan.assignments
    training = train(SMALL, upload, assignment, net)
    verify(SMALL, upload, plan, assignment, training, net)
    score(SMALL, upload, plan, training, net)
    audit(upload, plan, assignment, training, net)
    assert reconcile(record, net.market).status == "audited (accepted) on chain; its run stopped before settling"

    settled = settle(upload, net)
    assert settle(upload, net) == settled  # a retried settle reads the settlement back
    now = reconcile(record, net.market)
    assert now.settled == settled and now.status.startswith("settled (accepted) on chain")
    assert reconcile(now, net.market) == now


def test_an_order_cancelled_after_its_run_died_shows_cancelled(prefect, bahen_home):
    net = connect(load_settings())
    record = _opened(net, "8b")
    net.market.cancel_order(net.party(CLIENT).account, order_id=bytes.fromhex(record.order_id[2:]))
    assert reconcile(record, net.market).status == "cancelled on chain, escrow refunded"


def test_a_record_the_chain_agrees_with_or_does_not_know_is_left_as_it_is(prefect, bahen_home):
    net = connect(load_settings())
    record = _opened(net, "8c")
    assert reconcile(record, net.market) == record
    unknown = record.model_copy(update={"order_id": "0x" + "8d" * 32})
    assert reconcile(unknown, net.market) == unknown


def test_an_unreachable_chain_leaves_the_records_and_says_so(tmp_path):
    record = OrderRecord(order_id="0x" + "8e" * 32, spec=SMALL, status="open")
    settings = Settings(home=tmp_path, chain_rpc_url="http://127.0.0.1:9")
    records, warning = reconciled([record], settings)
    assert records == [record] and "the records are shown as last written" in warning
    assert reconciled([record], Settings(home=tmp_path)) == ([record], None)


def test_a_host_without_the_record_is_shown_what_the_chain_holds(prefect, bahen_home):
    net = connect(load_settings())
    record = _opened(net, "8f")
    oid = bytes.fromhex(record.order_id[2:])
    net.market.cancel_order(net.party(CLIENT).account, order_id=oid)
    console = Console(record=True, width=240)

    print_chain_order(net.market.order(oid), net.market.ledger(oid), console)

    shown = console.export_text()
    assert f"order {record.order_id}  status cancelled (on chain)" in shown
    assert f"client {net.party(CLIENT).address}" in shown
    assert record.shard.assignments[0].address in shown  # the worker the chain drew
    assert all(slot.address in shown for slot in record.shard.validators)
    assert f"{net.party(CLIENT).address} │ refund" in shown
