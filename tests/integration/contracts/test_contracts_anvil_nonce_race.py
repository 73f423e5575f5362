"""Two processes acting for one party, each with its own connection to the node: one reads the
sender's nonce, the other's transaction takes it before the first is sent. The node refuses the
stale one ("nonce too low") without running it; the client prepares it again, so both calls take
effect once, and says so when the other process wins every time."""

import pytest

from contracts import chain as chain_module
from contracts.chain import Chain
from contracts.client import Bahen
from contracts.errors import NonceTakenError
from tests.unit.contracts.fixtures import PARAMS, b32

pytestmark = pytest.mark.integration

WEI = 10**9


def _racing(anvil, bahen, stranger, monkeypatch, times: int) -> tuple[Bahen, list[str]]:
    """This process's market, and the transactions of another process that, the first ``times`` times
    this one reads the stranger's nonce, sends from the same account before this one can."""
    mine, other = (Bahen.attach(Chain.connect(anvil), bahen.addresses) for _ in range(2))
    read, sent = mine.chain._fee_fields, []

    def read_then_lose(sender):
        fields = read(sender)
        if len(sent) < times:
            sent.append(other.request_unbond(stranger, amount=WEI))
        return fields

    monkeypatch.setattr(mine.chain, "_fee_fields", read_then_lose)
    return mine, sent


def test_a_call_whose_nonce_another_process_took_is_sent_again_and_both_take_effect_once(anvil, bahen, parties, monkeypatch):
    stranger, stake = parties.stranger, 2 * PARAMS.min_validator_stake
    bahen.register_validator(stranger, x25519_public=b32("x25519 nonce"), stake=stake)
    mine, sent = _racing(anvil, bahen, stranger, monkeypatch, times=1)
    nonce = mine.chain.w3.eth.get_transaction_count(stranger.address)
    mine.request_unbond(stranger, amount=3 * WEI)
    assert len(sent) == 1
    assert bahen.member(stranger.address).stake == stake - 4 * WEI
    assert mine.chain.w3.eth.get_transaction_count(stranger.address) == nonce + 2  # nothing sent twice


def test_a_process_that_loses_every_nonce_gives_up_saying_why_and_sends_nothing(anvil, bahen, parties, monkeypatch):
    stranger, stake = parties.stranger, 2 * PARAMS.min_validator_stake
    bahen.register_validator(stranger, x25519_public=b32("x25519 nonce"), stake=stake)
    mine, sent = _racing(anvil, bahen, stranger, monkeypatch, times=chain_module.NONCE_TRIES)
    with pytest.raises(NonceTakenError, match=rf"request_unbond: another transaction of {stranger.address} took each "
                                              rf"nonce first .* \({chain_module.NONCE_TRIES} tries\).*run it again"):
        mine.request_unbond(stranger, amount=3 * WEI)
    assert len(sent) == chain_module.NONCE_TRIES
    assert bahen.member(stranger.address).stake == stake - chain_module.NONCE_TRIES * WEI


def test_a_call_replaced_in_the_pool_by_another_with_its_nonce_is_sent_again_and_takes_effect_once(
        anvil, bahen, parties, monkeypatch):
    stranger, stake = parties.stranger, 2 * PARAMS.min_validator_stake
    bahen.register_validator(stranger, x25519_public=b32("x25519 nonce"), stake=stake)
    mine, other = (Bahen.attach(Chain.connect(anvil), bahen.addresses) for _ in range(2))
    wait, replaced = mine.chain._mined, []

    def replaced_while_waiting(tx_hash, sender, nonce, action):
        if not replaced:  # another process sends a transfer with the same nonce at twice the fee
            sent = other.chain.w3.eth.get_transaction(tx_hash)
            transfer = {"to": sender, "value": 0, "gas": 21_000, "nonce": nonce, "chainId": other.chain.chain_id,
                        "maxFeePerGas": 2 * sent["maxFeePerGas"], "maxPriorityFeePerGas": 2 * sent["maxPriorityFeePerGas"]}
            replaced.append(other.chain.w3.eth.send_raw_transaction(stranger.sign_transaction(transfer).raw_transaction))
            other.chain._devnet_rpc("evm_mine", [])
            other.chain._devnet_rpc("evm_setAutomine", [True])
        return wait(tx_hash, sender, nonce, action)

    monkeypatch.setattr(mine.chain, "_mined", replaced_while_waiting)
    nonce = mine.chain.w3.eth.get_transaction_count(stranger.address)
    other.chain._devnet_rpc("evm_setAutomine", [False])  # the call waits in the pool, as on a busy node
    try:
        mine.request_unbond(stranger, amount=3 * WEI)
    finally:
        other.chain._devnet_rpc("evm_setAutomine", [True])
    assert other.chain.w3.eth.get_transaction_receipt(replaced[0])["status"] == 1  # the transfer took the nonce
    assert bahen.member(stranger.address).stake == stake - 3 * WEI  # the call, sent again, took effect once
    assert mine.chain.w3.eth.get_transaction_count(stranger.address) == nonce + 2
