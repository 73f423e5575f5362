"""A transaction that passed its simulation but failed once mined: two processes race one account's
stake into the same block, and the loser gets a ContractRevert naming its transaction, not a receipt
taken for success."""

import threading

import pytest

from contracts.chain import Chain
from contracts.client import Bahen
from contracts.errors import ContractRevert
from tests.unit.contracts.fixtures import PARAMS, b32

pytestmark = pytest.mark.integration


def _pending(chain: Chain) -> int:
    return int(chain.w3.provider.make_request("txpool_status", [])["result"]["pending"], 16)


def _until(condition) -> None:
    while not condition():
        threading.Event().wait(0.05)


def test_the_loser_of_a_race_mined_in_one_block_is_refused_by_its_receipt(anvil, bahen, parties):
    stranger, stake = parties.stranger, PARAMS.min_validator_stake
    bahen.register_validator(stranger, x25519_public=b32("x25519 race"), stake=stake)
    # Two processes, each with its own connection, unbond the whole stake: both simulate against the
    # same mined state and pass; the block holds both, and only the first can still find the stake.
    hosts = [Bahen.attach(Chain.connect(anvil), bahen.addresses) for _ in range(2)]
    outcomes: list = [None, None]

    def unbond(i: int) -> None:
        try:
            outcomes[i] = hosts[i].request_unbond(stranger, amount=stake)
        except ContractRevert as exc:
            outcomes[i] = exc

    miner = hosts[0].chain
    miner._devnet_rpc("evm_setAutomine", [False])
    try:
        threads = [threading.Thread(target=unbond, args=(i,)) for i in range(2)]
        for n, thread in enumerate(threads, start=1):
            thread.start()
            _until(lambda n=n: _pending(miner) == n)  # the second reads its nonce after the first is queued
        miner.mine()
        for thread in threads:
            thread.join()
    finally:
        miner._devnet_rpc("evm_setAutomine", [True])
    won, lost = outcomes
    assert isinstance(won, str) and isinstance(lost, ContractRevert), outcomes
    assert lost.action == "request_unbond" and lost.error == "RevertedWhenMined"
    assert "changed the state first" in str(lost)
    receipt = miner.receipt(bytes.fromhex(lost.fields["tx_hash"][2:]))
    assert receipt["status"] == 0 and receipt["blockNumber"] == miner.receipt(bytes.fromhex(won[2:]))["blockNumber"]
    assert bahen.member(stranger.address).stake == 0
