"""Validators that stall on the embedded chain. A verifier: the client has the chain replace it once the
committed task's window passed unverified, the worker wraps its model key to the successor the chain
drew, and the successor verifies; the honest worker is paid, the stalled verifier is not. A scorer that
is silent, or attests a score no figure can be made of: Wasp judges with the scores there are once the
task's scoring window closed."""

import time

import pytest

from bahen.errors import BahenError
from bahen.parties import worker_name
from bahen.spec import OrderSpec
from tasks.audit import audit, scoring_closes, wait_for_scoring
from tasks.encrypt_upload import encrypt_upload
from tasks.inputs import InputMismatch
from tasks.score import score, score_as
from tasks.settle import settle
from tasks.shard import NotReplaceable, replace_verifier, shard
from tasks.train import grant_model, train
from tasks.verify import verifier_of, verify

SPEC = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32, commit_minutes=5)


def _trained(net, salt: str):
    """An order of SPEC, drawn and trained by its worker, with its commitment on chain."""
    upload = encrypt_upload(SPEC, net, salt="0x" + salt * 32)
    plan = shard(SPEC, upload, net)
    [assignment] = plan.assignments
    return upload, plan, assignment, train(SPEC, upload, assignment, net)


def test_a_stalled_verifier_is_replaced_and_the_successor_verifies_with_the_key_the_worker_grants_it(staked_net):
    net = staked_net
    upload, plan, assignment, training = _trained(net, "e1")
    stalled = plan.validators[0]
    oid = bytes.fromhex(upload.order_id[2:])
    locks = net.market.member(stalled.address).locks  # this order's, and any other unsettled order's of the home

    # within the window the verifier keeps its place, whatever the client's patience
    with pytest.raises(NotReplaceable, match=f"{stalled.address} may do its part of task 0 until "
                                             f"{net.market.order(oid).tasks[0].verify_by}"):
        replace_verifier(upload, plan, 0, net, until=time.monotonic(), poll_s=0)
    net.chain.increase_time(SPEC.commit_minutes * 60 + 1)
    replaced = replace_verifier(upload, plan, 0, net, until=time.monotonic() + 60, poll_s=0.01)
    successor = replaced.validators[0]
    assert successor.address not in {s.address for s in plan.validators}
    assert replaced.validators[1:] == plan.validators[1:] and set(successor.grants) == {"train", "holdout"}
    # who verified a task is the chain's record of it, whoever holds the first slot since
    view = net.market.order(oid)
    assert verifier_of(view, 0) == successor.address
    signed = view.model_copy(update={"tasks": [view.tasks[0].model_copy(update={"verifier": stalled.address})]})
    assert verifier_of(signed, 0) == stalled.address
    # run again (a client that died after the replacement), it replaces nobody else
    assert replace_verifier(upload, plan, 0, net, until=0, poll_s=0).validators[0].address == successor.address
    # the stalled verifier may verify no more; the successor cannot read the proof before the worker grants it the key
    with pytest.raises(InputMismatch, match="not the order's verifier"):
        verify(SPEC, upload, plan, assignment, training, net)
    with pytest.raises(InputMismatch, match=f"the worker wrapped none to .* \\({successor.address}\\)"):
        verify(SPEC, upload, replaced, assignment, training, net)

    with pytest.raises(BahenError, match="is of order"):
        grant_model(upload, training.model_copy(update={"order_id": "0x" + "00" * 32}), net)
    other = next(net.party(worker_name(i)) for i in range(2) if net.party(worker_name(i)).address != assignment.address)
    with pytest.raises(BahenError, match=f"not an open task of {other.address}"):  # only the task's own worker grants
        grant_model(upload, training.model_copy(update={"worker": other.address}), net)
    granted = grant_model(upload, training, net)
    assert set(granted.model_grants) == set(training.model_grants) - {stalled.address} | {successor.address}
    assert granted.model_grants[plan.validators[1].address] == training.model_grants[plan.validators[1].address]
    assert grant_model(upload, granted, net) == granted  # every validator on chain holds a grant: nothing more

    verification = verify(SPEC, upload, replaced, assignment, granted, net)
    assert verification.verifier == successor.address
    assert net.market.order(oid).tasks[0].verifier == successor.address
    net.chain.increase_time(SPEC.commit_minutes * 60 + 1)
    with pytest.raises(NotReplaceable, match="verified task 0 on chain"):  # a verified task keeps its verifier
        replace_verifier(upload, replaced, 0, net, until=time.monotonic() + 60, poll_s=0.01)
    score(SPEC, upload, replaced, granted, net)
    assert audit(upload, replaced, assignment, granted, net).accepted

    settled = settle(upload, net)
    assert settled.payouts_wei == {assignment.address: assignment.payment_wei,
                                   **{s.address: s.fee_wei for s in replaced.validators}}
    assert stalled.address not in settled.payouts_wei and settled.slashes == []
    assert net.market.member(stalled.address).locks == locks - 1  # bound until the order closed, no longer
    with pytest.raises(BahenError, match=r"not an open task of .* \(the order is settled\)"):  # nothing to grant for any more
        grant_model(upload, granted, net)


def test_a_silent_scorer_keeps_no_honest_worker_from_its_pay_once_the_scoring_window_closed(staked_net):
    net = staked_net
    upload, plan, assignment, training = _trained(net, "b8")
    oid = bytes.fromhex(upload.order_id[2:])
    assert scoring_closes(net.market.order(oid), 0) is None  # no verification on chain: no window yet
    verify(SPEC, upload, plan, assignment, training, net)
    verified_at = net.chain.now()  # the attestation is the verification's last transaction
    verifier, silent = plan.validators
    score_as(SPEC, upload, training, verifier, net)  # the other validator never scores
    closes = scoring_closes(net.market.order(oid), 0)
    assert closes == verified_at + SPEC.commit_minutes * 60

    # up to the window's last second Wasp waits for a majority of the scores
    net.chain.increase_time(closes - net.chain.now())
    assert net.chain.now() == closes
    with pytest.raises(InputMismatch, match=f"1 of the 2 validators .* Wasp judges once 2 have, or with those that "
                                            f"have after chain time {closes}"):
        audit(upload, plan, assignment, training, net)
    assert wait_for_scoring(upload, 0, net, until=time.monotonic(), poll_s=0) is None
    net.chain.increase_time(1)
    assert wait_for_scoring(upload, 0, net, until=time.monotonic(), poll_s=0) == closes
    verdict = audit(upload, plan, assignment, training, net)
    [quorum] = [f for f in verdict.model_report.findings if f.rule == "score-quorum"]
    assert verdict.accepted and (quorum.passed, quorum.detail) == (False, "1 attested scores, quorum 2 of 2")
    assert verdict.model_report.median_accuracy > verdict.model_report.chance_accuracy  # the one score there is

    settled = settle(upload, net)
    assert settled.payouts_wei == {assignment.address: assignment.payment_wei, verifier.address: verifier.fee_wei}
    assert silent.address not in settled.payouts_wei and settled.slashes == []


def test_a_scorer_that_attests_a_score_no_figure_can_be_made_of_keeps_no_honest_worker_from_its_pay(staked_net):
    """A validator signs and attests, with its own key, a score of a negative number of samples (Wasp's figures
    against chance divide by it): the report is no score, and Wasp judges with the scores there are."""
    from tasks.score import REPORT_PERFORMANCE, score_one
    from tasks.verify import publish

    net = staked_net
    upload, plan, assignment, training = _trained(net, "b9")
    oid = bytes.fromhex(upload.order_id[2:])
    verify(SPEC, upload, plan, assignment, training, net)
    verifier, junk = plan.validators
    score_as(SPEC, upload, training, verifier, net)
    none = score_one(SPEC, upload, training, junk, net).model_copy(update={"samples": -1})
    publish(net, net.party_at(junk.address, role="validator"), none, kind=REPORT_PERFORMANCE, name="no score")
    assert any(net.market.report_of(oid, 0, REPORT_PERFORMANCE, junk.address))  # attested on chain
    net.chain.increase_time(scoring_closes(net.market.order(oid), 0) - net.chain.now() + 1)
    verdict = audit(upload, plan, assignment, training, net)
    [quorum] = [f for f in verdict.model_report.findings if f.rule == "score-quorum"]
    assert verdict.accepted and quorum.detail == "1 attested scores, quorum 2 of 2"
    assert settle(upload, net).payouts_wei[assignment.address] == assignment.payment_wei
