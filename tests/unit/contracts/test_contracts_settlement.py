"""Settlement, cancellation and pull payments: who gets what, exactly once."""

import pytest

from contracts.errors import ContractRevert
from tests.unit.contracts.fixtures import (
    ETHER,
    PARAMS,
    WINDOW,
    GFLOPS,
    WORKER_STAKE,
    account,
    b32,
    commit_all,
    open_assigned,
    order_of,
    report,
)

SALT, OID = order_of("order settle")
PAYMENT, FEE = ETHER // 4, ETHER // 20


def _judge(bahen, parties, *verdicts: bool) -> None:
    for task, accepted in enumerate(verdicts):
        bahen.record_verdict(
            parties.wasp, order_id=OID, task=task, accepted=accepted, reasons_digest=b32(f"why {task}")
        )


def _market_balance_matches_credits(bahen, chain, parties) -> None:
    credited = sum(bahen.pending(a.address) for a in parties.all())
    open_escrow = sum(o.escrow for o in _open_orders(bahen))
    assert chain.balance(bahen.addresses.market) == credited + open_escrow


def _open_orders(bahen):
    view = bahen.order(OID)
    return [view] if view.status == "open" else []


def test_settlement_pays_accepted_slashes_rejected_refunds_the_rest(bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=2, validators=2, payment=PAYMENT, fee=FEE)
    commit_all(bahen, parties, OID, tasks=2)
    report(bahen, parties.stranger, parties.validators[0], OID, task=1)  # v0 verified task 1
    _judge(bahen, parties, True, False)
    chain.increase_time(WINDOW)
    w0, w1, v0, v1 = parties.workers[0], parties.workers[1], parties.validators[0], parties.validators[1]

    s = bahen.settle(parties.stranger, order_id=OID)

    slashed = WORKER_STAKE * PARAMS.slash_bps // 10_000
    bounty = slashed * PARAMS.bounty_bps // 10_000
    assert s.payouts == {w0.address: PAYMENT, v0.address: FEE}
    assert s.slashed == {w1.address: slashed}
    assert s.refund == ETHER - PAYMENT - FEE
    # the verifier that proved the fraud earns the bounty, the treasury the rest, the client nothing
    assert [(c.account, c.amount, c.kind) for c in s.credits] == [
        (w0.address, PAYMENT, "task payment"),
        (v0.address, bounty, "bounty"),
        (parties.treasury.address, slashed - bounty, "treasury"),
        (v0.address, FEE, "validator fee"),
        (parties.client.address, s.refund, "refund"),
    ]
    assert bahen.pending(parties.client.address) == s.refund
    assert bahen.pending(parties.treasury.address) == slashed - bounty
    assert (bahen.pending(w0.address), bahen.pending(w1.address)) == (PAYMENT, 0)
    assert (bahen.pending(v0.address), bahen.pending(v1.address)) == (FEE + bounty, 0)
    assert bahen.stake_of(w1.address) == WORKER_STAKE - slashed
    assert not bahen.member(w1.address).eligible  # the slash took it below the stake its compute needs
    assert bahen.stake_of(w0.address) == WORKER_STAKE
    assert all(bahen.member(a.address).locks == 0 for a in (w0, w1, v0, v1))
    assert bahen.order(OID).status == "settled"
    _market_balance_matches_credits(bahen, chain, parties)


def test_a_slash_nobody_proved_goes_to_the_treasury_alone(bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=1, validators=1, payment=PAYMENT, fee=FEE)
    _judge(bahen, parties, False)  # rejected without a commitment: no proof, no verification
    chain.increase_time(WINDOW)
    s = bahen.settle(parties.stranger, order_id=OID)
    slashed = WORKER_STAKE * PARAMS.slash_bps // 10_000
    assert [(c.account, c.kind) for c in s.credits] == [(parties.treasury.address, "treasury"), (parties.client.address, "refund")]
    assert bahen.pending(parties.treasury.address) == slashed
    assert bahen.pending(parties.client.address) == ETHER == s.refund


def test_a_verification_from_another_validator_than_the_verifier_is_refused_and_earns_nothing(bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=1, validators=2, payment=PAYMENT, fee=FEE)
    commit_all(bahen, parties, OID, tasks=1)
    verifier, other = parties.validators[:2]
    with pytest.raises(ContractRevert) as refused:  # its "failed" verification would have shared the bounty
        report(bahen, parties.stranger, other, OID, task=0)
    assert (refused.value.error, refused.value.fields) == ("NotVerifier", {"signer": other.address, "verifier": verifier.address})
    report(bahen, parties.stranger, other, OID, task=0, kind=1)  # its score is welcome
    assert bahen.report_of(OID, 0, 0, other.address) == b"\x00" * 32
    _judge(bahen, parties, False)
    with pytest.raises(ContractRevert) as late:  # after the verdict a verification proved nothing it used
        report(bahen, parties.stranger, verifier, OID, task=0)
    assert (late.value.error, late.value.fields) == ("VerdictAlreadyRecorded", {"task": 0})
    chain.increase_time(WINDOW)
    s = bahen.settle(parties.stranger, order_id=OID)
    assert [c.kind for c in s.credits if c.kind in ("bounty", "treasury")] == ["treasury"]  # nobody proved it


def test_settle_inside_the_dispute_window_reverts(bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=1, validators=0)
    commit_all(bahen, parties, OID, tasks=1)
    _judge(bahen, parties, True)
    final_at = bahen.order(OID).tasks[0].verdict_at + PARAMS.dispute_window
    with pytest.raises(ContractRevert) as err:
        bahen.settle(parties.client, order_id=OID)
    assert (err.value.error, err.value.fields) == ("DisputeWindowOpen", {"task": 0, "finalAt": final_at})
    chain.increase_time(3_601)  # past the order's deadline too: the window still decides
    bahen.settle(parties.client, order_id=OID)
    assert bahen.order(OID).status == "settled"


def test_settle_twice_reverts_and_pays_nothing_more(bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=1, validators=0)
    commit_all(bahen, parties, OID, tasks=1)
    _judge(bahen, parties, True)
    chain.increase_time(WINDOW)
    bahen.settle(parties.client, order_id=OID)
    credits = {a.address: bahen.pending(a.address) for a in parties.all()}
    with pytest.raises(ContractRevert) as err:
        bahen.settle(parties.client, order_id=OID)
    assert str(err.value) == f"settle reverted: AlreadySettled(orderId=0x{OID.hex()})"
    assert credits == {a.address: bahen.pending(a.address) for a in parties.all()}
    with pytest.raises(ContractRevert, match="OrderNotOpen"):
        bahen.commit_proof(parties.workers[0], order_id=OID, task=0, root=b32("r"))


def test_settle_waits_for_verdicts_until_the_deadline(bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=2, validators=1, payment=PAYMENT, fee=FEE)
    commit_all(bahen, parties, OID, tasks=2)
    report(bahen, parties.client, parties.validators[0], OID, task=1, kind=1)
    _judge(bahen, parties, True)
    with pytest.raises(ContractRevert) as err:
        bahen.settle(parties.client, order_id=OID)
    assert (err.value.error, err.value.fields) == ("VerdictsPending", {"missing": 1})
    chain.increase_time(3_601)  # past the deadline and past task 0's dispute window
    s = bahen.settle(parties.client, order_id=OID)
    # the unjudged task is neither paid nor slashed: its payment returns to the client
    assert s.payouts == {parties.workers[0].address: PAYMENT, parties.validators[0].address: FEE}
    assert s.slashed == {} and s.refund == ETHER - PAYMENT - FEE
    assert bahen.stake_of(parties.workers[1].address) == WORKER_STAKE


def test_cancel_before_any_commitment_refunds_everything(bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=2, validators=1)
    with pytest.raises(ContractRevert, match="NotClient"):
        bahen.cancel_order(parties.stranger, order_id=OID)
    bahen.cancel_order(parties.client, order_id=OID)
    assert bahen.order(OID).status == "cancelled"
    assert bahen.pending(parties.client.address) == ETHER
    assert all(bahen.member(a.address).locks == 0 for a in parties.workers[:2] + parties.validators[:1])
    with pytest.raises(ContractRevert, match="OrderNotOpen"):
        bahen.settle(parties.client, order_id=OID)
    with pytest.raises(ContractRevert, match="OrderNotOpen"):
        bahen.cancel_order(parties.client, order_id=OID)
    _market_balance_matches_credits(bahen, chain, parties)


def test_cancel_after_a_commitment_needs_an_expired_unjudged_order(bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=2, validators=0)
    commit_all(bahen, parties, OID, tasks=1)
    with pytest.raises(ContractRevert, match="CannotCancel"):
        bahen.cancel_order(parties.client, order_id=OID)
    chain.increase_time(3_601)
    bahen.cancel_order(parties.client, order_id=OID)
    assert bahen.pending(parties.client.address) == ETHER


@pytest.mark.parametrize("committed", [True, False])
def test_cancel_after_a_verdict_is_refused(bahen, chain, parties, committed):
    # a rejected worker must not escape its slash through a cancellation
    open_assigned(bahen, parties, SALT, tasks=1, validators=0)
    if committed:
        commit_all(bahen, parties, OID, tasks=1)
    _judge(bahen, parties, False)
    chain.increase_time(3_601)
    with pytest.raises(ContractRevert, match="CannotCancel"):
        bahen.cancel_order(parties.client, order_id=OID)


def test_withdraw_pays_the_exact_credit_once(bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=1, validators=0)
    bahen.cancel_order(parties.client, order_id=OID)
    client = parties.client.address
    before = chain.balance(client)
    assert bahen.withdraw(parties.client) == ETHER
    tx = chain.w3.eth.get_block("latest")["transactions"][-1]
    receipt = chain.w3.eth.get_transaction_receipt(tx)
    assert chain.balance(client) == before + ETHER - receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert bahen.pending(client) == 0 and chain.balance(bahen.addresses.market) == 0
    with pytest.raises(ContractRevert) as err:
        bahen.withdraw(parties.client)
    assert (err.value.error, err.value.fields) == ("NothingToWithdraw", {"account": client})


@pytest.mark.slow
def test_the_largest_order_settles_and_conserves_funds(bahen, chain, parties):
    for i in range(64 - len(parties.workers)):  # one worker per task
        worker = account(f"worker {i} of the largest order")
        chain.fund(worker.address, 10 * ETHER)
        bahen.register_worker(worker, x25519_public=b32(f"x25519 l{i}"), declared_gflops=GFLOPS, stake=WORKER_STAKE)
        parties.workers.append(worker)
    open_assigned(bahen, parties, SALT, tasks=64, validators=2, payment=ETHER // 100, fee=ETHER // 100)
    with pytest.raises(ContractRevert) as err:
        bahen.add_task(parties.client, order_id=OID, payment=1)
    assert (err.value.error, err.value.fields) == ("TooManyTasks", {"limit": 64})
    _judge(bahen, parties, *([False] * 64))
    chain.increase_time(WINDOW)
    s = bahen.settle(parties.client, order_id=OID)
    assert set(s.slashed) == {w.address for w in parties.workers}
    assert s.refund == ETHER and sum(c.amount for c in s.credits if c.kind == "treasury") == sum(s.slashed.values())
    assert all(bahen.member(w.address).locks == 0 for w in parties.workers)
    _market_balance_matches_credits(bahen, chain, parties)


def test_a_delivery_is_recorded_once_per_validator_by_the_order_s_validators_for_a_settled_accepted_task(
        bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=2, validators=2, payment=PAYMENT, fee=FEE)
    commit_all(bahen, parties, OID, tasks=2)
    v0, v1 = parties.validators[0], parties.validators[1]

    def refused(sender, task, digest=b32("delivery")) -> tuple[str, dict]:
        with pytest.raises(ContractRevert) as err:
            bahen.record_delivery(sender, order_id=OID, task=task, digest=digest)
        return err.value.error, err.value.fields

    assert refused(v0, 0) == ("OrderNotSettled", {"orderId": OID, "status": 1})  # open: nothing is final
    _judge(bahen, parties, True, False)
    chain.increase_time(WINDOW)
    bahen.settle(parties.stranger, order_id=OID)
    credits = {a.address: bahen.pending(a.address) for a in parties.all()}
    assert refused(v0, 1) == ("NotAccepted", {"task": 1})  # a rejected task's model is never delivered
    assert refused(v0, 2) == ("UnknownTask", {"task": 2})
    for outsider in (parties.client, parties.stranger, parties.workers[0], parties.workers[2]):
        assert refused(outsider, 0) == ("NotAssignedValidator", {"signer": outsider.address})
    assert bahen.delivery_of(OID, 0, v0.address) == bytes(32)
    bahen.record_delivery(v0, order_id=OID, task=0, digest=b32("v0's delivery"))
    assert refused(v0, 0, b32("another")) == ("AlreadyDelivered", {"validator": v0.address, "task": 0})
    bahen.record_delivery(v1, order_id=OID, task=0, digest=b32("v1's delivery"))  # v1's own entry: v0's stands
    assert bahen.delivery_of(OID, 0, v0.address) == b32("v0's delivery")
    assert bahen.delivery_of(OID, 0, v1.address) == b32("v1's delivery")
    assert bahen.delivery_of(OID, 1, v0.address) == bytes(32)
    assert credits == {a.address: bahen.pending(a.address) for a in parties.all()}  # it moves no funds
