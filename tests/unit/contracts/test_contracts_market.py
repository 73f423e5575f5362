"""BahenMarket through the client: orders, assignment, proofs, reports and verdicts."""

from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
from eth_abi import encode
from eth_utils import keccak

from contracts.client import Bahen, UnknownOrderError
from contracts.errors import ChainError, ChallengeNotReady, ContractRevert
from contracts.models import Addresses
from tests.unit.contracts.fixtures import ETHER, b32, commit_all, open_assigned, report

OID = b32("order 1")


def _revert(call, error: str, **fields) -> ContractRevert:
    with pytest.raises(ContractRevert) as err:
        call()
    assert err.value.error == error, str(err.value)
    for name, value in fields.items():
        assert err.value.fields[name] == value, str(err.value)
    return err.value


def test_open_and_assign_are_visible_in_the_order_view(bahen, parties):
    open_assigned(bahen, parties, OID, tasks=2, validators=2)
    view = bahen.order(OID)
    assert (view.status, view.client, view.escrow, view.allocated) == (
        "open",
        parties.client.address,
        ETHER,
        ETHER * 6 // 10,
    )
    assert [t.worker for t in view.tasks] == [w.address for w in parties.workers[:2]]
    assert [(t.payment, t.verdict, t.commit_block) for t in view.tasks] == [(ETHER // 4, "none", 0)] * 2
    assert [(v.validator, v.fee, v.reported) for v in view.validators] == [
        (v.address, ETHER // 20, False) for v in parties.validators
    ]


def test_events_carry_the_indexed_order_id(bahen, chain, parties):
    tx = bahen.open_order(parties.client, order_id=OID, spec_hash=b32("s"), escrow=ETHER, deadline=chain.now() + 99)
    (log,) = chain.w3.eth.get_transaction_receipt(tx)["logs"]
    assert bytes(log["topics"][1]) == OID


def test_open_order_reverts(bahen, chain, parties):
    open_order = bahen.open_order
    c, now = parties.client, chain.now()
    _revert(
        lambda: open_order(
            c, order_id=OID, spec_hash=b32("s"), escrow=ETHER, deadline=now + 99, fee_estimate=2 * ETHER
        ),
        "InsufficientEscrow",
        required=2 * ETHER,
        sent=ETHER,
    )
    _revert(lambda: open_order(c, order_id=OID, spec_hash=b32("s"), escrow=0, deadline=now + 99), "InsufficientEscrow")
    _revert(lambda: open_order(c, order_id=OID, spec_hash=b32("s"), escrow=ETHER, deadline=now - 1), "DeadlineInPast")
    open_order(c, order_id=OID, spec_hash=b32("s"), escrow=ETHER, deadline=now + 99)
    _revert(lambda: open_order(c, order_id=OID, spec_hash=b32("s"), escrow=ETHER, deadline=now + 99), "OrderExists")


def test_assign_task_reverts(bahen, chain, parties):
    open_assigned(bahen, parties, OID, tasks=1, validators=0)
    c, w = parties.client, parties.workers[1].address

    def assign(task=1, worker=w, payment=ETHER // 4, sender=c, order_id=OID):
        return bahen.assign_task(sender, order_id=order_id, task=task, worker=worker, payment=payment)

    _revert(lambda: assign(sender=parties.stranger), "NotClient", caller=parties.stranger.address)
    _revert(lambda: assign(task=0), "TaskAlreadyAssigned", task=0)
    _revert(lambda: assign(task=2), "TaskOutOfOrder", task=2, expected=1)
    _revert(lambda: assign(worker=parties.stranger.address), "WorkerNotEligible")
    _revert(lambda: assign(worker=parties.validators[0].address), "WorkerNotEligible")
    _revert(lambda: assign(payment=ETHER), "EscrowExceeded", required=ETHER * 5 // 4, available=ETHER)
    _revert(lambda: assign(order_id=b32("nope")), "UnknownOrder")
    chain.increase_time(3_601)
    _revert(assign, "DeadlinePassed")


def test_assign_validator_reverts(bahen, parties):
    open_assigned(bahen, parties, OID, tasks=1, validators=1)
    c = parties.client

    def assign(validator, fee=1):
        return bahen.assign_validator(c, order_id=OID, validator=validator.address, fee=fee)

    _revert(lambda: assign(parties.validators[0]), "ValidatorAlreadyAssigned")
    _revert(lambda: assign(parties.workers[0]), "ValidatorNotEligible")
    _revert(lambda: assign(parties.validators[1], fee=ETHER), "EscrowExceeded")


def test_commit_proof(bahen, chain, parties):
    open_assigned(bahen, parties, OID, tasks=2, validators=0)
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
    open_assigned(bahen, parties, OID, tasks=1, validators=0)
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
    open_assigned(bahen, parties, OID, tasks=1, validators=1)
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


def test_an_attestation_counts_for_its_order_task_kind_chain_and_contract_only(bahen, chain, parties):
    open_assigned(bahen, parties, OID, tasks=2, validators=1)
    commit_all(bahen, parties, OID, tasks=2)
    other = b32("order 2")
    open_assigned(bahen, parties, other, tasks=1, validators=1)
    commit_all(bahen, parties, other, tasks=1)
    v0, digest, relay = parties.validators[0], b32("one report"), parties.stranger
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
    open_assigned(bahen, parties, OID, tasks=2, validators=0)
    bahen.commit_proof(parties.workers[0], order_id=OID, task=0, root=b32("r"))
    assert bahen.is_wasp(parties.wasp.address) and not bahen.is_wasp(parties.client.address)

    def verdict(sender, task=0, accepted=True):
        return bahen.record_verdict(sender, order_id=OID, task=task, accepted=accepted, reasons_digest=b32("why"))

    for intruder in (parties.client, parties.workers[0], parties.deployer):
        _revert(partial(verdict, intruder), "AccessControlUnauthorizedAccount", account=intruder.address)
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
    ids = [b32(f"threaded order {i}") for i in range(12)]
    deadline = chain.now() + 999

    def open_one(order_id: bytes) -> str:
        return bahen.open_order(parties.client, order_id=order_id, spec_hash=b32("s"), escrow=1_000, deadline=deadline)

    with ThreadPoolExecutor(4) as pool:
        assert len(set(pool.map(open_one, ids))) == len(ids)
    assert chain.balance(bahen.addresses.market) == 1_000 * len(ids)
    assert all(bahen.order(i).status == "open" for i in ids)
