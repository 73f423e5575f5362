"""Verifiers that attest a verification nobody can judge with, on the embedded chain: one withholds its
report from the store, the next stores the check of another challenge than the chain's. Wasp judges
neither (the worker is not to blame for them) and voids each once the task's scoring window closed; the
client has the chain draw the next verifier, and the honest worker is paid. The voided verifiers are
neither paid nor slashed."""

import time

import pytest

from contracts.client import ZERO_ADDRESS
from proof.report import VerificationCost, VerificationReport
from storage.errors import StoreUnavailableError

from bahen.spec import OrderSpec
from flows.wasp import void_verification as void_flow
from tasks.audit import attested_verification, audit, scoring_closes, void_verification
from tasks.encrypt_upload import encrypt_upload
from tasks.inputs import InputMismatch
from tasks.score import score
from tasks.settle import settle
from tasks.shard import replace_verifier, shard
from tasks.train import grant_model, train
from tasks.verify import REPORT_VERIFICATION, UnusableVerification, attest, publish, verify


def _unreachable():
    raise StoreUnavailableError("the store does not answer")


SPEC = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32, commit_minutes=5)


def test_a_verification_nobody_can_judge_with_is_voided_past_its_scoring_window_and_the_next_verifier_verifies(
        staked_net, prefect, monkeypatch):
    net = staked_net
    upload = encrypt_upload(SPEC, net, salt="0x" + "c9" * 32)
    plan = shard(SPEC, upload, net)
    [assignment] = plan.assignments
    training = train(SPEC, upload, assignment, net)
    oid = bytes.fromhex(upload.order_id[2:])
    withholding, scorer = plan.validators
    locks = net.market.member(withholding.address).locks  # this order's, and any other unsettled order's of the home

    with pytest.raises(InputMismatch, match="has attested no verification of task 0 on chain: nothing to void"):
        void_verification(upload, 0, net)
    # the verifier attests on chain the digest of a report it never stores; the validators score
    attest(net, net.party_at(withholding.address, role="validator"), upload.order_id, 0, REPORT_VERIFICATION,
           "0x" + "ab" * 32)
    attested_at = net.chain.now()
    score(SPEC, upload, plan, training, net)
    closes = scoring_closes(net.market.order(oid), 0)
    assert closes == attested_at + SPEC.commit_minutes * 60
    with pytest.raises(UnusableVerification) as unusable:
        attested_verification(upload, 0, net)
    why = str(unusable.value)
    assert why.startswith(f"the verification report that {withholding.address}, the verifier of order "
                          f"{upload.order_id}, attested for task 0 cannot be read (")
    with pytest.raises(UnusableVerification, match=f"cannot be read .*: nothing was judged; after chain time {closes} "):
        audit(upload, plan, assignment, training, net)
    net.chain.increase_time(closes - net.chain.now())
    with pytest.raises(InputMismatch, match=f"Wasp voids it after chain time {closes} .*not before: nothing was voided"):
        void_verification(upload, 0, net)
    net.chain.increase_time(1)
    with monkeypatch.context() as outage:  # a store nobody can reach says nothing of the verifier: nothing is voided
        outage.setattr(type(net.store), "get_pointer", lambda *args: _unreachable())
        for judge in (attested_verification, void_verification):
            with pytest.raises(StoreUnavailableError, match="the store does not answer"):
                judge(upload, 0, net)
    assert net.market.order(oid).tasks[0].verifier == withholding.address
    voided = void_verification(upload, 0, net)
    assert (voided.order_id, voided.task, voided.verifier, voided.reason) == (upload.order_id, 0, withholding.address, why)
    view = net.market.order(oid)
    assert (view.tasks[0].verifier, view.validators[0].validator) == (ZERO_ADDRESS, ZERO_ADDRESS)
    assert attested_verification(upload, 0, net) is None  # nothing on chain to judge with any more
    with pytest.raises(InputMismatch, match="not the order's verifier"):  # the voided verifier verifies no more
        verify(SPEC, upload, plan, assignment, training, net)

    # the client has the chain draw the next verifier, which stores the check of a challenge of its own choosing
    second_plan = replace_verifier(upload, plan, 0, net, until=time.monotonic() + 60, poll_s=0.01)
    second = second_plan.validators[0]
    assert second.address not in {withholding.address, scorer.address} and second_plan.validators[1] == scorer
    training = grant_model(upload, training, net)
    own_choice = VerificationReport(
        order_id=upload.order_id, task=0, challenge_seed="00" * 32, merkle_root=view.tasks[0].root.removeprefix("0x"),
        checks=[], passed=True, artifacts={},
        cost=VerificationCost(replayed_steps=0, forward_samples=0, seconds=0.0, fraction_of_training=0.0))
    publish(net, net.party_at(second.address, role="validator"), own_choice, kind=REPORT_VERIFICATION,
            name=f"order {upload.order_id[:10]}/task 0/verification report")
    with pytest.raises(UnusableVerification, match=f"{second.address}, .* checked another task: order "
                                                   f"{upload.order_id} task 0, challenge seed {'00' * 32}"):
        audit(upload, second_plan, assignment, training, net)
    net.chain.increase_time(SPEC.commit_minutes * 60 + 1)
    assert void_flow(upload, 0).verifier == second.address  # Wasp's run, as its pool runs it

    third_plan = replace_verifier(upload, second_plan, 0, net, until=time.monotonic() + 60, poll_s=0.01)
    third = third_plan.validators[0]
    assert third.address not in {withholding.address, scorer.address, second.address}
    training = grant_model(upload, training, net)
    verification = verify(SPEC, upload, third_plan, assignment, training, net)
    assert verification.verifier == third.address
    assert attested_verification(upload, 0, net) == verification  # the client's record, made from the chain's
    with pytest.raises(InputMismatch, match="is in the store whole and checked this task: Wasp judges with it"):
        void_verification(upload, 0, net)
    score(SPEC, upload, third_plan, training, net)
    assert audit(upload, third_plan, assignment, training, net).accepted

    settled = settle(upload, net)
    assert settled.payouts_wei == {assignment.address: assignment.payment_wei, third.address: third.fee_wei,
                                   scorer.address: scorer.fee_wei}
    assert settled.slashes == []  # the voided verifiers earn nothing and lose nothing
    assert net.market.member(withholding.address).locks == locks - 1  # bound until the order closed, no longer
