"""BahenMarket through the client: orders, assignment, proofs, reports and verdicts."""

from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
from eth_abi import encode
from eth_utils import keccak

from contracts.client import Bahen, UnknownOrderError
from contracts.errors import ChainError, ChallengeNotReady, ContractRevert
from contracts.models import Addresses
from contracts.client import ZERO_ADDRESS
from tests.unit.contracts.fixtures import (
    ETHER,
    GFLOPS,
    WINDOW,
    WORKER_STAKE,
    b32,
    commit_all,
    expected_member,
    open_assigned,
    order_of,
    renumber,
    report,
)

SALT, OID = order_of("order 1")


def _revert(call, error: str, **fields) -> ContractRevert:
    with pytest.raises(ContractRevert) as err:
        call()
    assert err.value.error == error, str(err.value)
    for name, value in fields.items():
        assert err.value.fields[name] == value, str(err.value)
    return err.value


def test_open_and_draw_are_visible_in_the_order_view(bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=2, validators=2, commit_window=600)
    view = bahen.order(OID)
    assert (view.status, view.client, view.escrow, view.allocated, view.commit_window) == (
        "open",
        parties.client.address,
        ETHER,
        ETHER * 6 // 10,
        600,
    )
    assert [t.worker for t in view.tasks] == [w.address for w in parties.workers[:2]]
    assert [(t.payment, t.verdict, t.commit_block) for t in view.tasks] == [(ETHER // 4, "none", 0)] * 2
    assert all(t.commit_by == chain.now() + 600 for t in view.tasks)  # drawn in the latest block
    assert [(v.validator, v.fee, v.reported) for v in view.validators] == [
        (v.address, ETHER // 20, False) for v in parties.validators
    ]


def test_the_order_id_derives_from_its_client_and_salt(bahen, chain, parties):
    deadline = chain.now() + 99
    oid = bahen.open_order(parties.client, salt=SALT, spec_hash=b32("s"), escrow=ETHER, deadline=deadline, commit_window=9)
    assert oid == OID == keccak(encode(["address", "bytes32"], [parties.client.address, SALT]))
    assert bahen.chain.call(bahen.market.functions.orderIdOf(parties.client.address, SALT), "id") == OID
    (log,) = bahen.market.events.OrderOpened().get_logs(from_block=0)
    assert log["args"]["orderId"] == OID and log["args"]["client"] == parties.client.address
    # another sender's order with the same salt is another order: nobody takes a client's id first
    theirs = bahen.open_order(parties.stranger, salt=SALT, spec_hash=b32("s"), escrow=ETHER, deadline=deadline, commit_window=9)
    assert theirs != OID and bahen.order(OID).client == parties.client.address


def test_open_order_reverts(bahen, chain, parties):
    c, now = parties.client, chain.now()
    open_order = partial(bahen.open_order, c, salt=SALT, spec_hash=b32("s"), commit_window=60)
    _revert(
        lambda: open_order(escrow=ETHER, deadline=now + 99, fee_estimate=2 * ETHER),
        "InsufficientEscrow",
        required=2 * ETHER,
        sent=ETHER,
    )
    _revert(lambda: open_order(escrow=0, deadline=now + 99), "InsufficientEscrow")
    _revert(lambda: open_order(escrow=ETHER, deadline=now - 1), "DeadlineInPast")
    _revert(lambda: open_order(escrow=ETHER, deadline=now + 99, commit_window=0), "InvalidCommitWindow")
    open_order(escrow=ETHER, deadline=now + 99)
    _revert(lambda: open_order(escrow=ETHER, deadline=now + 99), "OrderExists", orderId=OID)


def test_adding_and_drawing_reverts(bahen, chain, parties):
    c = parties.client
    oid = bahen.open_order(c, salt=SALT, spec_hash=b32("s"), escrow=ETHER, deadline=chain.now() + 3_600, commit_window=60)
    _revert(lambda: bahen.add_task(parties.stranger, order_id=oid, payment=1), "NotClient", caller=parties.stranger.address)
    _revert(lambda: bahen.add_validator(parties.stranger, order_id=oid, fee=1), "NotClient")
    _revert(lambda: bahen.add_task(c, order_id=oid, payment=ETHER + 1), "EscrowExceeded", required=ETHER + 1)
    _revert(lambda: bahen.add_task(c, order_id=b32("nope"), payment=1), "UnknownOrder")
    _revert(lambda: bahen.draw(parties.stranger, order_id=oid), "NothingToDraw", orderId=oid)
    assert bahen.add_task(c, order_id=oid, payment=ETHER // 2) == 0
    assert bahen.add_validator(c, order_id=oid, fee=ETHER // 2) == 0
    _revert(lambda: bahen.add_validator(c, order_id=oid, fee=1), "EscrowExceeded", required=ETHER + 1)
    # the seed is the hash of the block after the slot's: the client cannot know it when adding
    _revert(lambda: chain.call(bahen.market.functions.draw(oid), "draw"), "DrawNotReady")
    drawn = bahen.draw(parties.stranger, order_id=oid)
    assert list(drawn.workers) == [0] and len(drawn.validators) == 1 and drawn.reanchored == 0
    _revert(lambda: bahen.draw(parties.stranger, order_id=oid), "NothingToDraw")
    # once a worker committed, no slot is added: members drawn then would shrink the pool of its
    # disputes' resolvers, down to none, and hold the order and its worker's stake for good
    worker = next(w for w in parties.workers if w.address == drawn.workers[0])
    bahen.commit_proof(worker, order_id=oid, task=0, root=b32("root"))
    _revert(lambda: bahen.add_task(c, order_id=oid, payment=1), "OrderStarted", orderId=oid)
    _revert(lambda: bahen.add_validator(c, order_id=oid, fee=1), "OrderStarted", orderId=oid)
    chain.increase_time(3_601)
    _revert(lambda: bahen.add_task(c, order_id=oid, payment=1), "DeadlinePassed")


def test_every_draw_follows_the_public_rule(bahen, chain, parties):
    """Each member is recomputed from public chain data: stake-weighted among eligible members that
    are no party to the order, seeded by the block after its slot was added; the client, though staked
    as a worker with the most stake, is never drawn, nor is a worker whose stake does not cover the pay."""
    bahen.register_worker(parties.client, x25519_public=b32("x25519 c"), declared_gflops=GFLOPS, stake=50 * WORKER_STAKE)
    rich = parties.workers[2]
    bahen.add_stake(rich, amount=2 * WORKER_STAKE)
    drawn = []
    for i in range(6):
        oid = open_assigned(bahen, parties, b32(f"drawn order {i}"), tasks=2, validators=1, payment=WORKER_STAKE // 2)
        view = bahen.order(oid)
        excluded = {parties.client.address}
        for t in view.tasks:
            assert t.worker == expected_member(bahen, oid, "worker", t.task, t.draw_block, excluded, t.payment)
            excluded.add(t.worker)
        slot = view.validators[0]
        assert slot.validator == expected_member(bahen, oid, "validator", 0, slot.draw_block, excluded)
        drawn += [t.worker for t in view.tasks]
    assert len(drawn) == 12 and parties.client.address not in drawn  # the heaviest stake, never drawn
    # 40 stakes' worth of pay needs more than one stake of cover: only the worker that added stake has it
    large = open_assigned(bahen, parties, b32("large order"), tasks=1, validators=0, escrow=5 * ETHER,
                          payment=40 * WORKER_STAKE)
    assert bahen.order(large).tasks[0].worker == rich.address


def test_a_draw_with_no_eligible_member_reverts(bahen, parties):
    bahen.open_order(parties.client, salt=SALT, spec_hash=b32("s"), escrow=ETHER, deadline=bahen.chain.now() + 99,
                     commit_window=60)
    for _ in range(4):  # three workers are staked, and none takes two tasks of one order
        bahen.add_task(parties.client, order_id=OID, payment=1)
    _revert(lambda: bahen.draw(parties.stranger, order_id=OID), "NoEligibleMember", role=0, index=3)
    assert bahen.order(OID).tasks[0].worker == ZERO_ADDRESS  # nothing of the refused draw stands


def test_a_worker_that_does_not_commit_in_time_is_replaced_by_the_next_draw(bahen, chain, parties):
    oid = open_assigned(bahen, parties, SALT, tasks=1, validators=1, commit_window=100)
    stalled = parties.workers[0]
    replace = partial(bahen.replace_stalled, parties.stranger, order_id=oid, task=0)
    commit_by = bahen.order(oid).tasks[0].commit_by
    _revert(replace, "NotReplaceable", task=0, until=commit_by)
    chain.increase_time(101)
    bahen.replace_stalled(parties.stranger, order_id=oid, task=0)  # anyone may, once the window passed
    task = bahen.order(oid).tasks[0]
    assert (task.worker, task.commit_by) == (ZERO_ADDRESS, 0)
    assert bahen.member(stalled.address).locks == 1  # bound until the order closes, and not slashed
    assert bahen.stake_of(stalled.address) == WORKER_STAKE
    _revert(replace, "NoWorker", task=0)
    _revert(lambda: bahen.commit_proof(stalled, order_id=oid, task=0, root=b32("late")), "NotTaskWorker")
    drawn = bahen.draw(parties.stranger, order_id=oid)
    successor = drawn.workers[0]
    assert successor != stalled.address and drawn.validators == []
    assert successor == expected_member(
        bahen, oid, "worker", 0, bahen.order(oid).tasks[0].draw_block, {parties.client.address, stalled.address,
                                                                          parties.validators[0].address}, ETHER // 4)
    renumber(parties.workers, [successor])
    bahen.commit_proof(parties.workers[0], order_id=oid, task=0, root=b32("root"))
    report(bahen, parties.stranger, parties.validators[0], oid, 0)
    chain.increase_time(101)
    _revert(replace, "NotReplaceable")  # a committed worker stays, and so does the verifier that verified it
    bahen.record_verdict(parties.wasp, order_id=oid, task=0, accepted=True, reasons_digest=b32("why"))
    chain.increase_time(WINDOW)
    s = bahen.settle(parties.stranger, order_id=oid)
    assert s.payouts == {successor: ETHER // 4, parties.validators[0].address: ETHER // 20}
    assert stalled.address not in s.payouts and s.slashed == {}
    assert bahen.member(stalled.address).locks == 0 and bahen.stake_of(stalled.address) == WORKER_STAKE


def test_a_replaced_worker_never_drawn_again_leaves_its_pay_to_the_client(bahen, chain, parties):
    oid = open_assigned(bahen, parties, SALT, tasks=1, validators=0, commit_window=100, ttl=300)
    chain.increase_time(101)
    bahen.replace_stalled(parties.stranger, order_id=oid, task=0)
    _revert(lambda: bahen.record_verdict(parties.wasp, order_id=oid, task=0, accepted=False, reasons_digest=b32("w")),
            "NoWorker", task=0)
    chain.increase_time(300)
    s = bahen.settle(parties.stranger, order_id=oid)
    assert (s.payouts, s.slashed, s.refund) == ({}, {}, ETHER)
    assert all(bahen.member(w.address).locks == 0 for w in parties.workers)


def _settled_paying_the_successor(bahen, chain, parties, oid, replaced, successor) -> None:
    """Settle the two-task order both of whose tasks were accepted once its dispute windows passed: the workers
    and the successor paid, the replaced verifier not (its fee back to the client), nobody slashed or bound."""
    chain.increase_time(WINDOW)
    s = bahen.settle(parties.stranger, order_id=oid)
    w0, w1 = parties.workers[:2]
    assert s.payouts == {w0.address: ETHER // 4, w1.address: ETHER // 4, successor.address: ETHER // 20}
    assert s.slashed == {} and s.refund == ETHER - ETHER // 2 - ETHER // 20
    assert all(bahen.member(m.address).locks == 0 for m in (replaced, successor, w0, w1))


def test_a_verifier_that_leaves_a_committed_task_unverified_is_replaced_by_the_next_draw(bahen, chain, parties):
    oid = open_assigned(bahen, parties, SALT, tasks=2, validators=1, commit_window=100)
    stalled, successor = parties.validators[0], parties.validators[1]
    replace = partial(bahen.replace_stalled, parties.stranger, order_id=oid, task=1)
    commit_all(bahen, parties, oid)
    verify_by = bahen.order(oid).tasks[1].verify_by
    assert verify_by == chain.now() + 100  # the commit window again, from the commitment
    report(bahen, parties.stranger, stalled, oid, task=0)  # it verifies task 0, then stalls on task 1
    _revert(replace, "NotReplaceable", task=1, until=verify_by)
    chain.increase_time(101)
    _revert(partial(bahen.replace_stalled, parties.stranger, order_id=oid, task=0), "NotReplaceable")  # verified
    bahen.replace_stalled(parties.stranger, order_id=oid, task=1)  # anyone may, once the window passed
    view = bahen.order(oid)
    first = view.validators[0]
    assert (first.validator, first.fee, first.reported) == (ZERO_ADDRESS, ETHER // 20, False)
    assert view.tasks[0].verifier == stalled.address and view.tasks[1].verifier == ZERO_ADDRESS
    assert bahen.member(stalled.address).locks == 1  # bound until the order closes: task 0's verification may be disputed
    _revert(replace, "NotReplaceable")  # nobody to replace until the next draw
    _revert(lambda: report(bahen, parties.stranger, stalled, oid, task=1), "NotAssignedValidator")  # it reports no more
    verified_by = bahen.order(oid).tasks[0].verify_by
    drawn = bahen.draw(parties.stranger, order_id=oid)
    assert (drawn.validators, drawn.workers) == ([successor.address], {})
    assert bahen.order(oid).tasks[1].verify_by == chain.now() + 100  # the successor's window starts at its draw
    assert bahen.order(oid).tasks[0].verify_by == verified_by  # a verified task's stays as it was
    chain.increase_time(50)
    _revert(replace, "NotReplaceable")
    report(bahen, parties.stranger, successor, oid, task=1)
    assert bahen.order(oid).tasks[1].verifier == successor.address
    chain.increase_time(101)
    _revert(replace, "NotReplaceable")  # verified: the successor stays
    for task in range(2):
        bahen.record_verdict(parties.wasp, order_id=oid, task=task, accepted=True, reasons_digest=b32("why"))
    _settled_paying_the_successor(bahen, chain, parties, oid, stalled, successor)


def test_a_replaced_verifier_is_never_drawn_for_the_order_again(bahen, chain, parties):
    oid = open_assigned(bahen, parties, SALT, tasks=1, validators=1, commit_window=100, ttl=1_000)
    bahen.commit_proof(parties.workers[0], order_id=oid, task=0, root=b32("root"))
    chain.increase_time(101)
    bahen.replace_stalled(parties.stranger, order_id=oid, task=0)
    assert bahen.draw(parties.stranger, order_id=oid).validators == [parties.validators[1].address]
    chain.increase_time(101)  # the successor stalls too
    bahen.replace_stalled(parties.stranger, order_id=oid, task=0)
    # both staked validators were replaced on this order: neither is drawn for it again
    _revert(lambda: bahen.draw(parties.stranger, order_id=oid), "NoEligibleMember", role=1, index=0)
    chain.increase_time(1_000)
    s = bahen.settle(parties.stranger, order_id=oid)  # past the deadline, the unverified task has no verdict
    assert (s.payouts, s.slashed, s.refund) == ({}, {}, ETHER)
    assert all(bahen.member(m.address).locks == 0 for m in parties.validators + parties.workers)


def test_wasp_voids_a_verification_past_its_scoring_window_and_the_verifier_is_replaced_unpaid_unslashed(
        bahen, chain, parties, slack):
    oid = open_assigned(bahen, parties, SALT, tasks=2, validators=1, commit_window=100)
    withholding, successor = parties.validators[0], parties.validators[1]
    void = partial(bahen.void_verification, parties.wasp, order_id=oid)
    commit_all(bahen, parties, oid)
    unverified_by = bahen.order(oid).tasks[1].verify_by
    chain.increase_time(30)
    report(bahen, parties.stranger, withholding, oid, task=0)
    closes = bahen.order(oid).tasks[0].verify_by
    assert closes == chain.now() + 100 and closes > unverified_by  # a verification opens its own scoring window
    _revert(lambda: bahen.void_verification(parties.stranger, order_id=oid, task=0), "NotWasp",
            caller=parties.stranger.address)
    _revert(lambda: void(task=1), "NotReplaceable", task=1, until=unverified_by)  # nothing verified to void
    chain.increase_time(closes - chain.now() - slack)
    _revert(lambda: void(task=0), "NotReplaceable", task=0, until=closes)  # up to the window's last second
    chain.increase_time(slack + 1)
    void(task=0)
    view = bahen.order(oid)
    first = view.validators[0]
    assert (first.validator, first.fee, first.reported) == (ZERO_ADDRESS, ETHER // 20, False)
    assert view.tasks[0].verifier == ZERO_ADDRESS and view.tasks[0].verify_by == chain.now() + 100
    assert bahen.member(withholding.address).locks == 1  # bound until the order closes
    _revert(lambda: void(task=0), "NotReplaceable", task=0)  # unverified now
    _revert(lambda: report(bahen, parties.stranger, withholding, oid, task=1), "NotAssignedValidator")
    assert bahen.draw(parties.stranger, order_id=oid).validators == [successor.address]
    for task in range(2):
        report(bahen, parties.stranger, successor, oid, task=task)
        bahen.record_verdict(parties.wasp, order_id=oid, task=task, accepted=True, reasons_digest=b32("why"))
    chain.increase_time(101)
    _revert(lambda: void(task=0), "NotReplaceable", task=0)  # judged: a verdict stands or falls by disputes alone
    _settled_paying_the_successor(bahen, chain, parties, oid, withholding, successor)


def test_a_voided_verification_of_a_verifier_replaced_before_leaves_its_successor_in_place(bahen, chain, parties):
    oid = open_assigned(bahen, parties, SALT, tasks=2, validators=1, commit_window=100)
    first, successor = parties.validators[0], parties.validators[1]
    commit_all(bahen, parties, oid)
    report(bahen, parties.stranger, first, oid, task=0)  # verifies task 0, then stalls on task 1
    chain.increase_time(101)
    bahen.replace_stalled(parties.stranger, order_id=oid, task=1)
    bahen.draw(parties.stranger, order_id=oid)
    bahen.void_verification(parties.wasp, order_id=oid, task=0)  # task 0's report, of the replaced verifier
    view = bahen.order(oid)
    assert view.validators[0].validator == successor.address  # nobody innocent replaced
    assert view.tasks[0].verifier == ZERO_ADDRESS and view.tasks[0].verify_by == chain.now() + 100
    chain.increase_time(100)
    _revert(lambda: bahen.replace_stalled(parties.stranger, order_id=oid, task=0), "NotReplaceable")  # its window
    report(bahen, parties.stranger, successor, oid, task=0)
    assert bahen.order(oid).tasks[0].verifier == successor.address


def test_the_owner_alone_sets_who_holds_the_wasp_role(bahen, parties):
    second = parties.workers[1]
    _revert(lambda: bahen.set_wasp(parties.stranger, account=second.address, holds=True), "OwnableUnauthorizedAccount",
            account=parties.stranger.address)
    bahen.set_wasp(parties.deployer, account=second.address, holds=True)
    assert bahen.is_wasp(second.address) and bahen.is_wasp(parties.wasp.address)
    bahen.set_wasp(parties.deployer, account=second.address, holds=False)
    assert not bahen.is_wasp(second.address)
    _revert(lambda: bahen.record_verdict(second, order_id=OID, task=0, accepted=True, reasons_digest=b32("why")),
            "NotWasp", caller=second.address)


def test_a_task_with_a_verdict_has_nobody_replaced(bahen, chain, parties):
    oid = open_assigned(bahen, parties, SALT, tasks=2, validators=1, commit_window=100)
    bahen.commit_proof(parties.workers[1], order_id=oid, task=1, root=b32("root"))
    for task in range(2):  # task 0 rejected uncommitted, task 1 rejected with no verification on chain
        bahen.record_verdict(parties.wasp, order_id=oid, task=task, accepted=False, reasons_digest=b32("why"))
    chain.increase_time(101)
    for task in range(2):
        _revert(lambda: bahen.replace_stalled(parties.stranger, order_id=oid, task=task), "NotReplaceable", task=task)


def test_commit_proof(bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=2, validators=0)
    w0, w1 = parties.workers[:2]
    block = bahen.commit_proof(w0, order_id=OID, task=0, root=b32("root"))
    assert block == chain.block_number()
    task = bahen.order(OID).tasks[0]
    assert (task.commit_block, task.root) == (block, "0x" + b32("root").hex())
    _revert(lambda: bahen.commit_proof(w0, order_id=OID, task=0, root=b32("again")), "AlreadyCommitted")
    _revert(lambda: bahen.commit_proof(w0, order_id=OID, task=1, root=b32("r")), "NotTaskWorker", worker=w1.address)
    _revert(lambda: bahen.commit_proof(w0, order_id=OID, task=2, root=b32("r")), "UnknownTask", task=2)
    chain.increase_time(3_601)
    _revert(lambda: bahen.commit_proof(w1, order_id=OID, task=1, root=b32("r")), "DeadlinePassed")


def test_challenge_seed_comes_from_the_block_after_the_commitment(bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=1, validators=0)
    with pytest.raises(ChallengeNotReady, match="no proof commitment"):
        bahen.challenge_seed(OID, 0)
    block = bahen.commit_proof(parties.workers[0], order_id=OID, task=0, root=b32("root"))
    with pytest.raises(ChallengeNotReady, match="not yet available"):
        bahen.challenge_seed(OID, 0)
    chain.mine(3)
    next_hash = bytes(chain.w3.eth.get_block(block + 1)["hash"])
    seed = bahen.challenge_seed(OID, 0)
    assert seed == keccak(encode(["bytes32", "bytes32", "uint256"], [next_hash, OID, 0]))
    assert len(seed) == 32 and bahen.challenge_seed(OID, 0) == seed


def test_reports_are_checked_against_assigned_validators(bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=1, validators=1)
    v0, v1, relay = parties.validators[0], parties.validators[1], parties.stranger
    _revert(lambda: report(bahen, relay, v0, OID, 0), "NotCommitted")
    commit_all(bahen, parties, OID, tasks=1)
    report(bahen, relay, v0, OID, 0, kind=1)
    assert bahen.report_of(OID, 0, 1, v0.address) == b32(f"report 0 1 {v0.address}")
    assert bahen.order(OID).validators[0].reported
    _revert(lambda: report(bahen, relay, v0, OID, 0, kind=1), "ReportAlreadySubmitted", validator=v0.address)
    _revert(lambda: report(bahen, relay, v1, OID, 0), "NotAssignedValidator", signer=v1.address)
    digest = b32("d")
    bad = bahen.submit_report
    _revert(lambda: bad(relay, order_id=OID, task=0, kind=0, digest=digest, signature=b"\x00" * 65), "InvalidSignature")
    sig = bahen.sign_report(v0, order_id=OID, task=0, kind=2, digest=digest)
    fn = bahen.market.functions.submitReport(OID, 0, 2, digest, sig)
    _revert(lambda: chain.transact(relay, fn, "submit_report"), "InvalidReportKind", kind=2)
    with pytest.raises(ChainError, match="report kind 2 is unknown"):
        bad(relay, order_id=OID, task=0, kind=2, digest=digest, signature=sig)


def test_a_pause_has_a_devnet_mine_a_block(chain):
    number = chain.block_number()
    chain.pause(0)  # the new block carries the devnet's clock: the wall clock on anvil, a second on, on eth-tester
    assert chain.block_number() == number + 1


def test_the_first_block_since_a_time_is_found_by_bisection(chain):
    mined = []
    for gap in (5, 1, 30, 2, 1):
        chain.increase_time(gap)
        mined.append((chain.block_number(), chain.now()))
    for number, time in mined:
        assert chain.block_time(number) == time
        assert chain.first_block_since(time) == number and chain.first_block_since(time + 1) == number + 1
    assert chain.first_block_since(mined[0][1] - 1) == mined[0][0]  # the block before is older
    assert chain.first_block_since(0) == 0 and chain.first_block_since(mined[-1][1] + 60) == chain.block_number() + 1


def test_an_attestation_counts_for_its_order_task_kind_chain_and_contract_only(bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=2, validators=1)
    commit_all(bahen, parties, OID, tasks=2)
    v0 = parties.validators[0]
    other = open_assigned(bahen, parties, b32("order 2"), tasks=1, validators=1)
    commit_all(bahen, parties, other, tasks=1)
    digest, relay = b32("one report"), parties.stranger
    signature = bahen.sign_report(v0, order_id=OID, task=0, kind=0, digest=digest)

    def submit(order_id=OID, task=0, kind=0, signature=signature):
        return bahen.submit_report(relay, order_id=order_id, task=task, kind=kind, digest=digest, signature=signature)

    for moved in ({"task": 1}, {"kind": 1}, {"order_id": other}):  # the same signature elsewhere: another signer
        refused = _revert(partial(submit, **moved), "NotAssignedValidator")
        assert refused.fields["signer"] != v0.address

    domain = {"name": "BahenMarket", "version": "1", "chainId": chain.chain_id, "verifyingContract": bahen.addresses.market}
    types = {"Report": [{"name": "orderId", "type": "bytes32"}, {"name": "task", "type": "uint256"},
                        {"name": "kind", "type": "uint8"}, {"name": "digest", "type": "bytes32"}]}
    message = {"orderId": OID, "task": 0, "kind": 0, "digest": digest}
    assert bytes(v0.sign_typed_data(domain, types, message).signature) == signature  # the documented EIP-712 form
    for elsewhere in ({"chainId": chain.chain_id + 1}, {"verifyingContract": parties.stranger.address}, {"version": "2"}):
        foreign = bytes(v0.sign_typed_data(domain | elsewhere, types, message).signature)
        assert _revert(partial(submit, signature=foreign), "NotAssignedValidator").fields["signer"] != v0.address

    submit()
    assert bahen.report_of(OID, 0, 0, v0.address) == digest
    fresh = bahen.sign_report(v0, order_id=OID, task=1, kind=0, digest=digest)  # its own, for another task
    _revert(partial(submit, task=1, signature=fresh), "ReportReplayed", validator=v0.address)


def test_only_the_wasp_records_verdicts(bahen, parties):
    open_assigned(bahen, parties, SALT, tasks=2, validators=0)
    bahen.commit_proof(parties.workers[0], order_id=OID, task=0, root=b32("r"))
    assert bahen.is_wasp(parties.wasp.address) and not bahen.is_wasp(parties.client.address)

    def verdict(sender, task=0, accepted=True):
        return bahen.record_verdict(sender, order_id=OID, task=task, accepted=accepted, reasons_digest=b32("why"))

    for intruder in (parties.client, parties.workers[0], parties.deployer):
        _revert(partial(verdict, intruder), "NotWasp", caller=intruder.address)
    _revert(lambda: verdict(parties.wasp, task=1), "NotCommitted", task=1)
    verdict(parties.wasp, task=1, accepted=False)  # a worker that never committed can be rejected
    verdict(parties.wasp)
    _revert(lambda: verdict(parties.wasp), "VerdictAlreadyRecorded", task=0)
    _revert(
        lambda: bahen.commit_proof(parties.workers[1], order_id=OID, task=1, root=b32("late")), "VerdictAlreadyRecorded"
    )
    view = bahen.order(OID)
    assert [t.verdict for t in view.tasks] == ["accepted", "rejected"]
    assert view.tasks[0].reasons_digest == "0x" + b32("why").hex()


def test_the_account_that_recorded_a_verdict_is_read_from_its_event(bahen, chain, parties):
    open_assigned(bahen, parties, SALT, tasks=2, validators=0)
    bahen.commit_proof(parties.workers[0], order_id=OID, task=0, root=b32("r"))
    assert bahen.verdict_recorder(OID, 0) is None and bahen.verdict_recorder(b32("missing"), 0) is None
    second = parties.workers[1]  # a second holder of the Wasp role, set by the market's owner
    bahen.set_wasp(parties.deployer, account=second.address, holds=True)
    bahen.record_verdict(parties.wasp, order_id=OID, task=0, accepted=True, reasons_digest=b32("why"))
    bahen.record_verdict(second, order_id=OID, task=1, accepted=False, reasons_digest=b32("absent"))
    assert bahen.verdict_recorder(OID, 0) == parties.wasp.address
    assert bahen.verdict_recorder(OID, 1) == second.address


def test_unknown_order_and_bad_ids(bahen):
    with pytest.raises(UnknownOrderError, match="does not exist on market"):
        bahen.order(b32("missing"))
    with pytest.raises(ChainError, match="order_id must be 32 bytes"):
        bahen.order(b"short")


def test_attach_checks_chain_and_code(bahen, chain):
    again = Bahen.attach(chain, bahen.addresses)
    assert again.params() == bahen.params()
    assert Addresses.model_validate_json(bahen.addresses.model_dump_json()) == bahen.addresses
    with pytest.raises(ChainError, match="are on chain 1 but"):
        Bahen.attach(chain, bahen.addresses.model_copy(update={"chain_id": 1}))
    empty = bahen.addresses.model_copy(update={"market": "0x" + "00" * 19 + "01"})
    with pytest.raises(ChainError, match="no BahenMarket code"):
        Bahen.attach(chain, empty)


def test_threads_sharing_a_chain_and_a_sender_do_not_collide(bahen, chain, parties):
    salts = [b32(f"threaded order {i}") for i in range(12)]
    deadline = chain.now() + 999

    def open_one(salt: bytes) -> bytes:
        return bahen.open_order(parties.client, salt=salt, spec_hash=b32("s"), escrow=1_000, deadline=deadline,
                                commit_window=60)

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(open_one, salts))
    assert len(set(ids)) == len(ids)
    assert chain.balance(bahen.addresses.market) == 1_000 * len(ids)
    assert all(bahen.order(i).status == "open" for i in ids)


def test_a_slot_whose_seed_block_aged_out_is_drawn_from_a_fresh_one(bahen, chain, parties):
    oid = bahen.open_order(parties.client, salt=SALT, spec_hash=b32("s"), escrow=ETHER, deadline=chain.now() + 3_600,
                           commit_window=60)
    bahen.add_task(parties.client, order_id=oid, payment=1)
    aged = bahen.order(oid).tasks[0].draw_block
    chain.mine(300)  # the EVM keeps the hashes of the last 256 blocks only

    stale = bahen.draw(parties.stranger, order_id=oid)

    task = bahen.order(oid).tasks[0]
    assert (stale.workers, stale.reanchored, task.worker) == ({}, 1, ZERO_ADDRESS)
    assert task.draw_block == chain.block_number() > aged + 256  # anchored to the block of the stale draw
    fresh = bahen.draw(parties.stranger, order_id=oid)
    assert fresh.workers[0] == expected_member(bahen, oid, "worker", 0, task.draw_block, {parties.client.address}, 1)
