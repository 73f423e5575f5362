"""The dispatcher's choices and the clean end of an order, on the in-process chain (no servers)."""

import pytest

from bahen.network import connect
from bahen.orders import OrderBook, salt_of_run
from bahen.parties import CLIENT, party_queue
from bahen.records import OrderRecord
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from tasks.dispatch import DispatchConfig, Stages, end_order, use_pools

ESCROW = 10**17


@pytest.mark.parametrize(("mode", "pools"), [("inline", False), ("pools", True), ("auto", False)])
def test_mode_picks_the_stage_runner_and_auto_stays_inline_outside_a_deployment(mode, pools):
    config = DispatchConfig(mode=mode)
    assert use_pools(config) is pools
    assert Stages(config).pools is pools


def test_a_partys_runs_go_to_the_queue_named_by_its_address():
    assert party_queue("0xAbCdEf0123456789aBcDeF0123456789AbCdEf01") == "0xabcdef0123456789abcdef0123456789abcdef01"


def test_dispatch_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("BAHEN_DISPATCH_MODE", "pools")
    monkeypatch.setenv("BAHEN_DISPATCH_STALE_AFTER_S", "45")
    config = DispatchConfig()
    assert (config.mode, config.stale_after_s, config.attempts) == ("pools", 45, 3)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return connect(load_settings(home=tmp_path_factory.mktemp("dispatch-home"), scrypt_n=2**12))


def test_ending_an_order_before_any_commitment_refunds_its_escrow_once(net):
    book = OrderBook(net.settings.orders_dir)
    client = net.party(CLIENT)
    salt = salt_of_run(None)
    oid = net.market.open_order(client.account, salt=bytes.fromhex(salt[2:]), spec_hash=b"\x01" * 32, escrow=ESCROW,
                                deadline=net.chain.now() + 3600, commit_window=1800)
    order_id = "0x" + oid.hex()
    book.save(OrderRecord(order_id=order_id, spec=OrderSpec(), status="open"))
    pending = net.market.pending(client.address)

    status = end_order(order_id, net, book, reason="train did not complete")

    assert status.startswith("cancelled, escrow refunded: train did not complete")
    assert book.load(order_id).status == status
    assert net.market.order(oid).status == "cancelled"
    assert net.market.pending(client.address) == pending + ESCROW

    again = end_order(order_id, net, book, reason="a second end")
    assert again.startswith("ended without settlement")
    assert net.market.pending(client.address) == pending + ESCROW
