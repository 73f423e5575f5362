"""A whole order's money path on anvil, followed from the outside by its indexed events."""

import pytest
from eth_utils import event_abi_to_log_topic
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from contracts.chain import Chain
from tests.unit.contracts.fixtures import ETHER, PARAMS, WINDOW, WORKER_STAKE, b32, open_assigned, order_of, report
from tests.unit.contracts.stateful import make_machine

pytestmark = pytest.mark.integration
SALT, OID = order_of("anvil order")


def test_whole_order_on_anvil(bahen, chain, parties):
    payment, fee = ETHER // 4, ETHER // 20
    open_assigned(bahen, parties, SALT, tasks=2, validators=2, payment=payment, fee=fee)
    blocks = [bahen.commit_proof(parties.workers[t], order_id=OID, task=t, root=b32(f"root {t}")) for t in range(2)]
    chain.mine()
    seeds = {bahen.challenge_seed(OID, t) for t in range(2)}
    assert len(seeds) == 2 and blocks[1] > blocks[0]
    verifier = parties.validators[0]  # the first slot's: the only one whose verification the chain takes
    for task in range(2):
        report(bahen, verifier, verifier, OID, task, kind=0)
        for validator in parties.validators:
            report(bahen, parties.stranger, validator, OID, task, kind=1)
    bahen.record_verdict(parties.wasp, order_id=OID, task=0, accepted=True, reasons_digest=b32("ok"))
    bahen.record_verdict(parties.wasp, order_id=OID, task=1, accepted=False, reasons_digest=b32("replay mismatch"))
    chain.increase_time(WINDOW)

    settlement = bahen.settle(parties.client, order_id=OID)

    slashed = WORKER_STAKE * PARAMS.slash_bps // 10_000
    assert settlement.payouts == {parties.workers[0].address: payment} | {v.address: fee for v in parties.validators}
    assert settlement.slashed == {parties.workers[1].address: slashed}
    assert settlement.refund == ETHER - payment - 2 * fee
    owed = [a for a in parties.all() if bahen.pending(a.address)]
    paid = sum(bahen.withdraw(a) for a in owed)
    assert paid == ETHER + slashed
    assert chain.balance(bahen.addresses.market) == 0

    logs = chain.w3.eth.get_logs(
        {"address": bahen.addresses.market, "topics": [None, "0x" + OID.hex()], "fromBlock": 0}
    )
    names = [_event_name(bahen, log) for log in logs]
    assert names[:1] == ["OrderOpened"] and names[-1] == "OrderSettled"
    assert names.count("ProofCommitted") == 2 and names.count("ReportSubmitted") == 6 and names.count("Slashed") == 1
    # every credit is an event: the payment, two fees, the verifier's bounty, the treasury, the refund
    assert names.count("Credited") == 6
    assert [c.account for c in bahen.ledger(OID).credits if c.kind == "bounty"] == [verifier.address]
    ledger = bahen.ledger(OID)
    assert sum(c.amount for c in ledger.credits) == ETHER + slashed
    assert not any(c.account == parties.client.address and c.kind != "refund" for c in ledger.credits)


def _event_name(bahen, log) -> str:
    names = {event_abi_to_log_topic(e): e["name"] for e in bahen.market.abi if e["type"] == "event"}
    return names[bytes(log["topics"][0])]


def test_invariants_hold_on_anvil(anvil):
    machine = make_machine(lambda: Chain.connect(anvil))
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=4,
            stateful_step_count=25,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
