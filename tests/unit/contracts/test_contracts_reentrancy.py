"""A hostile payee re-enters the paying function; it never gets paid twice."""

import pytest

from contracts.abi import load_artifact
from contracts.errors import ContractRevert
from contracts.client import order_id_of
from tests.unit.contracts.fixtures import ETHER, PARAMS, WORKER_STAKE, b32

SALT = b32("order reentrancy")


@pytest.fixture
def receiver(chain, parties):
    art = load_artifact("ReentrantReceiver")
    address = chain.deploy(parties.stranger, art.abi, art.bytecode, [], "deploy ReentrantReceiver")
    return chain.w3.eth.contract(address=address, abi=art.abi)


def _as_receiver(chain, parties, receiver, contract, fn_name, args, value=0):
    data = contract.encode_abi(fn_name, args=args)
    return chain.transact(parties.stranger, receiver.functions.execute(contract.address, data), fn_name, value=value)


def _attack(chain, parties, receiver, contract, fn_name, swallow):
    data = contract.encode_abi(fn_name, args=[])
    return chain.transact(parties.stranger, receiver.functions.attack(contract.address, data, swallow), fn_name)


@pytest.fixture
def credited_receiver(bahen, chain, parties, receiver):
    """The receiver opened and cancelled an order, so the market owes it 1 ether."""
    market = bahen.market
    _as_receiver(chain, parties, receiver, market, "openOrder", [SALT, b32("s"), ETHER, chain.now() + 99, 60], ETHER)
    _as_receiver(chain, parties, receiver, market, "cancelOrder", [order_id_of(receiver.address, SALT)])
    assert bahen.pending(receiver.address) == ETHER
    return receiver


def test_reentrant_withdraw_reverts_the_whole_payment(bahen, chain, parties, credited_receiver):
    with pytest.raises(ContractRevert) as err:
        _attack(chain, parties, credited_receiver, bahen.market, "withdraw", swallow=False)
    assert err.value.error in {"FailedCall", "ReentrancyGuardReentrantCall"}
    assert bahen.pending(credited_receiver.address) == ETHER
    assert chain.balance(bahen.addresses.market) == ETHER
    assert chain.balance(credited_receiver.address) == 0


def test_swallowed_reentry_is_paid_exactly_once(bahen, chain, parties, credited_receiver):
    _attack(chain, parties, credited_receiver, bahen.market, "withdraw", swallow=True)
    fns = credited_receiver.functions
    assert chain.call(fns.reentries(), "reentries") == 1
    assert chain.call(fns.received(), "received") == ETHER
    assert chain.balance(credited_receiver.address) == ETHER
    assert bahen.pending(credited_receiver.address) == 0
    assert chain.balance(bahen.addresses.market) == 0


def test_reentrant_unbond_withdrawal_is_paid_once(bahen, chain, parties, receiver):
    staking, stake = bahen.staking, PARAMS.min_validator_stake
    _as_receiver(chain, parties, receiver, staking, "registerValidator", [b32("x")], stake)
    _as_receiver(chain, parties, receiver, staking, "requestUnbond", [stake])
    chain.increase_time(PARAMS.unbonding_delay + 1)
    with pytest.raises(ContractRevert):
        _attack(chain, parties, receiver, staking, "withdrawUnbonded", swallow=False)
    _attack(chain, parties, receiver, staking, "withdrawUnbonded", swallow=True)
    assert chain.balance(receiver.address) == stake
    others = len(parties.workers) * WORKER_STAKE + len(parties.validators) * stake
    assert chain.balance(bahen.addresses.staking) == others
    assert bahen.member(receiver.address).unbonding == 0
