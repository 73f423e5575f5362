"""A party's money on the in-process chain: balances, pull payments, unbonding, and cancelling an order."""

import pytest
from privacy.identity import Identity, Keystore
from typer.testing import CliRunner

from bahen.accounts import NothingToCollect, UnknownPartyError, acting_party, balance_of, collect, unbond
from bahen.cli import app
from bahen.errors import BahenError
from bahen.network import NoKeyError, connect
from bahen.orders import NotCancellableError, OrderBook, cancel_order, order_id_for, salt_of_run
from bahen.parties import CLIENT, worker_name
from bahen.records import OrderRecord
from bahen.settings import load_settings
from bahen.spec import OrderSpec

ESCROW = 10**17


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return connect(load_settings(home=tmp_path_factory.mktemp("accounts-home"), scrypt_n=2**12))


def _open(net, opener, *, deadline_s: int = 3600) -> str:
    salt = salt_of_run(None)
    net.market.open_order(opener.account, salt=bytes.fromhex(salt[2:]), spec_hash=b"\x01" * 32,
                          escrow=ESCROW, deadline=net.chain.now() + deadline_s, commit_window=deadline_s // 2)
    return order_id_for(opener.address, salt)


def test_the_acting_party_is_the_named_one_or_the_only_one(tmp_path):
    keystore = Keystore(tmp_path / "keys", "pass", scrypt_n=2**10)
    with pytest.raises(UnknownPartyError, match="no identity in .*bahen keys new"):
        acting_party(keystore, None)
    keystore.create("worker-7")
    assert acting_party(keystore, None) == "worker-7"
    keystore.create("client")
    with pytest.raises(UnknownPartyError, match=r"holds 2 identities \(client, worker-7\): name one with --as"):
        acting_party(keystore, None)
    assert acting_party(keystore, "client") == "client"
    with pytest.raises(UnknownPartyError, match="no identity 'wasp'.*it holds client, worker-7"):
        acting_party(keystore, "wasp")


def test_a_staked_worker_shows_its_stake_and_nothing_to_withdraw(net):
    worker = net.party(worker_name(0))
    balance = balance_of(net, worker.name)
    assert (balance.role, balance.address, balance.credited_wei, balance.unbonding_wei, balance.unbond_at, balance.locks) == (
        "worker", worker.address, 0, 0, 0, 0)
    assert balance.stake_wei == net.market.member(worker.address).stake > 0
    assert balance.wallet_wei == net.chain.balance(worker.address) > 0
    with pytest.raises(NothingToCollect, match=f"{worker.name} .* has nothing to withdraw now$"):
        collect(net, worker)


def test_a_cancelled_orders_escrow_is_credited_then_withdrawn_once(net):
    client = net.party(CLIENT)
    book = OrderBook(net.settings.orders_dir)
    order_id = _open(net, client)
    book.save(OrderRecord(order_id=order_id, spec=OrderSpec(), status="open"))
    credited = net.market.pending(client.address)

    status = cancel_order(order_id, net, book, reason="changed my mind")

    assert status == "cancelled, escrow refunded: changed my mind"
    assert book.load(order_id).status == status
    assert net.market.order(bytes.fromhex(order_id[2:])).status == "cancelled"
    assert balance_of(net, CLIENT).credited_wei == credited + ESCROW
    wallet = net.chain.balance(client.address)
    paid = collect(net, client)
    assert (paid.credited_wei, paid.unbonded_wei) == (credited + ESCROW, 0)
    assert net.chain.balance(client.address) > wallet  # the refund, less the gas of withdrawing it
    assert balance_of(net, CLIENT).credited_wei == 0
    with pytest.raises(NothingToCollect):
        collect(net, client)
    with pytest.raises(NotCancellableError, match="already cancelled"):
        cancel_order(order_id, net, book, reason="again")


def test_an_order_with_a_committed_proof_cannot_be_cancelled_before_its_deadline(net):
    client = net.party(CLIENT)
    order_id = _open(net, client)
    oid = bytes.fromhex(order_id[2:])
    net.market.add_task(client.account, order_id=oid, payment=ESCROW // 2)
    worker = net.party_at(net.market.draw(client.account, order_id=oid).workers[0], role="worker")
    net.market.commit_proof(worker.account, order_id=oid, task=0, root=b"\x02" * 32)
    book = OrderBook(net.settings.orders_dir)
    with pytest.raises(NotCancellableError, match="committed a proof.*after its deadline"):
        cancel_order(order_id, net, book, reason="too late")
    assert net.market.order(oid).status == "open"
    with pytest.raises(BahenError, match="held by 1 open order"):
        unbond(net, worker, 1)


def test_only_the_host_holding_the_clients_key_can_cancel(net):
    stranger = Identity.generate("stranger")
    net.chain.fund(stranger.address, 10**18)
    order_id = _open(net, stranger)
    with pytest.raises(NoKeyError, match=f"holds no key of client {stranger.address}"):
        cancel_order(order_id, net, OrderBook(net.settings.orders_dir), reason="not mine")
    assert net.market.order(bytes.fromhex(order_id[2:])).status == "open"


def test_unbonded_stake_is_withdrawn_only_once_the_delay_is_over(net):
    validator = net.party("validator-2")
    stake = balance_of(net, validator.name).stake_wei
    with pytest.raises(BahenError, match="can unbond between 1 wei and its stake"):
        unbond(net, validator, stake + 1)

    due = unbond(net, validator, stake // 4)

    balance = balance_of(net, validator.name)
    assert (balance.stake_wei, balance.unbonding_wei, balance.unbond_at) == (stake - stake // 4, stake // 4, due)
    with pytest.raises(NothingToCollect, match=f"unbonds at chain time {due}"):
        collect(net, validator)
    net.chain.increase_time(due - net.chain.now() + 1)
    paid = collect(net, validator)
    assert (paid.credited_wei, paid.unbonded_wei) == (0, stake // 4)
    assert balance_of(net, validator.name).unbonding_wei == 0


def test_keys_list_prints_one_identity_per_line(tmp_path):
    keystore = Keystore(tmp_path / "keys", "bahen-devnet", scrypt_n=2**10)
    made = [keystore.create(name).public() for name in ("client", "worker-0")]
    result = CliRunner().invoke(app, ["keys", "list"], env={"BAHEN_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"{p.name} {p.address} {p.x25519_public}" for p in made]


def test_unbond_refuses_an_amount_that_is_not_whole_wei(tmp_path):
    result = CliRunner().invoke(app, ["unbond", "0.0000000000000000001"], env={"BAHEN_HOME": str(tmp_path), "COLUMNS": "200"})
    assert result.exit_code == 2
    assert "0.0000000000000000001 ETH is not a positive whole number of wei" in " ".join(result.output.replace("│", " ").split())
    assert not (tmp_path / "keys").exists()  # refused before any keystore or chain was touched

