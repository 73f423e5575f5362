"""Wasp judges the reports the validators attested on chain, read from each one's own place in the store.

Its run is handed only the task's identity (upload, shard, assignment, training). It reads the
verification report of the order's verifier (its first validator on chain) and every performance
report by the digest each validator attested. The chain refuses another validator's verification
report; handed over in a record, such a report, a report nobody attested, or one whose validator
did not publish it whole cannot change the verdict, and Wasp judges only once a majority of the
validators have published a score. A report's name in the store holds its digest, and each report
a fresh nonce, so nobody can take the name first; running a validator's stage again returns the
report it attested.
"""

import pytest
from contracts.errors import ContractRevert
from privacy.identity import Identity
from privacy.signing import digest

from bahen.artifacts import open_stored_grant, put_signed, signed
from bahen.audit import reconstruct, report_pointer
from bahen.network import connect
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from tasks.audit import audit, gather
from tasks.encrypt_upload import encrypt_upload
from tasks.inputs import InputMismatch
from tasks.score import REPORT_PERFORMANCE, score, score_as, score_one
from tasks.settle import settle
from tasks.shard import shard
from tasks.train import train
from tasks.verify import REPORT_VERIFICATION, attest, model_key, publish, reexecute, verification_of, verify

SMALL = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32)


def _trained(net, salt: str):
    upload = encrypt_upload(SMALL, net, salt="0x" + salt * 32)
    plan = shard(SMALL, upload, net)
    [assignment] = plan.assignments
    return upload, plan, assignment, train(SMALL, upload, assignment, net)


def _reexecuted(net, upload, slot, training):
    """The verification report of the task as the validator of ``slot`` re-executes it."""
    validator = net.party_at(slot.address, role="validator")
    return validator, reexecute(
        SMALL, upload, training, net,
        train_key=open_stored_grant(net.store, slot.grants["train"], validator, order_id=upload.order_id),
        open_model_key=lambda: model_key(net, training, validator))


def _unpublished(net, validator, report, kind: int, junk) -> None:
    """``validator`` attests ``report`` on chain but names ``junk`` for it in the store and never stores it."""
    _, _, doc = signed(validator, report.model_copy(update={"nonce": "00"}), name="a report never stored")
    net.store.put_pointer(validator.address, report_pointer(report.order_id, report.task, kind, doc.digest), junk)
    attest(net, validator, report.order_id, report.task, kind, doc.digest)


def test_wasp_judges_the_verifiers_attested_report_once_every_validator_published_its_score(prefect):
    net = connect(load_settings())
    upload, plan, assignment, training = _trained(net, "c5")
    oid, first, second = bytes.fromhex(upload.order_id[2:]), plan.validators[0], plan.validators[1]
    judge = lambda: audit(upload, plan, assignment, training, net)  # noqa: E731

    # the second validator re-executes, signs "failed" and publishes it: it is not the order's verifier, so the chain
    # refuses its attestation (which would have shared the bounty of the slash it sought)
    other, honest = _reexecuted(net, upload, second, training)
    assert honest.passed
    with pytest.raises(ContractRevert, match=f"NotVerifier\\(signer={other.address}, verifier={first.address}\\)"):
        publish(net, other, honest.model_copy(update={"passed": False}), kind=REPORT_VERIFICATION, name="a lie")
    assert net.market.report_of(oid, 0, REPORT_VERIFICATION, other.address) == bytes(32)
    lied = honest.model_copy(update={"passed": False, "nonce": "01"})
    data, ref, doc = signed(other, lied, name="a lie")
    net.store.put(data, name="a lie")
    lie = verification_of(other.address, lied, ref, doc)
    with pytest.raises(InputMismatch, match=f"{first.address}, the verifier of order .* has attested no verification "
                       "report of task 0 on chain: nothing was judged. Wait for the verify stage"):
        judge()

    verification = verify(SMALL, upload, plan, assignment, training, net)
    assert verify(SMALL, upload, plan, assignment, training, net) == verification  # run again: the attested one
    assert net.market.report_of(oid, 0, REPORT_VERIFICATION, first.address) == bytes.fromhex(verification.digest[2:])
    with pytest.raises(InputMismatch, match="0 of the 2 validators .* Wasp judges once 2 have, or with those that have after chain time "
                       r"\d+ \(the order's commit window after the verification\): nothing was judged"):
        judge()  # a run started before the validators scored cannot sign a poorer model report

    # anyone who computes the first validator's score (it is deterministic) takes the name it would have without a nonce
    predicted = score_one(SMALL, upload, training, first, net)
    junk, _ = put_signed(net.store, Identity.generate("squatter"), plan, name="not a report")
    net.store.put_pointer(first.address, report_pointer(upload.order_id, 0, REPORT_PERFORMANCE,
                                                        "0x" + digest(predicted).hex()), junk)
    scored = score_as(SMALL, upload, training, first, net)
    assert scored.report.accuracy == predicted.accuracy and scored.report.nonce
    assert score_as(SMALL, upload, training, first, net) == scored  # run again: the attested one
    with pytest.raises(InputMismatch, match="1 of the 2 validators"):
        judge()
    # a stranger's score run for the second validator under a 5,000-character label: the report's name in the
    # store is the validator's address, not the label, so it publishes and reads back
    score_as(SMALL, upload, training, second.model_copy(update={"name": "x" * 5000}), net)

    verdict = judge()
    assert verdict.accepted, verdict.reasons
    [case] = reconstruct(upload.order_id, net.store, net.market)
    assert case.verification == verification
    assert case.scores.reports[first.name] == scored.ref and set(case.scores.reports) == {first.name, second.name}
    assert next(f for f in verdict.model_report.findings if f.rule == "score-quorum").passed
    # re-audited on a record holding the other validator's report, it counts as unattested: not the verifier's
    assert not gather(upload, plan, assignment, training, lie, case.scores, net).verification_attested
    settled = settle(upload, net)
    assert settled.payouts_wei[assignment.address] == assignment.payment_wei and settled.slashes == []


def test_a_score_attested_but_not_published_counts_as_none(prefect):
    net = connect(load_settings())
    upload, plan, assignment, training = _trained(net, "c6")
    first, second = plan.validators
    verify(SMALL, upload, plan, assignment, training, net)
    score_as(SMALL, upload, training, first, net)
    junk, _ = put_signed(net.store, Identity.generate("squatter"), plan, name="not a report")
    _unpublished(net, net.party_at(second.address, role="validator"), score_one(SMALL, upload, training, second, net),
                 REPORT_PERFORMANCE, junk)
    with pytest.raises(InputMismatch, match="1 of the 2 validators of order .* have published a score of task 0"):
        audit(upload, plan, assignment, training, net)
    assert net.market.order(bytes.fromhex(upload.order_id[2:])).tasks[0].verdict == "none"


def test_a_verification_its_verifier_attested_but_did_not_publish_judges_nobody(prefect):
    net = connect(load_settings())
    upload, plan, assignment, training = _trained(net, "c7")
    verifier, report = _reexecuted(net, upload, plan.validators[0], training)
    junk, _ = put_signed(net.store, Identity.generate("squatter"), plan, name="not a report")
    _unpublished(net, verifier, report, REPORT_VERIFICATION, junk)
    score(SMALL, upload, plan, training, net)
    with pytest.raises(InputMismatch, match=f"the verification report that {verifier.address}, the verifier of order "
                       f"{upload.order_id}, attested for task 0 cannot be read .*: nothing was judged"):
        audit(upload, plan, assignment, training, net)
    assert net.market.order(bytes.fromhex(upload.order_id[2:])).tasks[0].verdict == "none"  # the worker is not to blame
