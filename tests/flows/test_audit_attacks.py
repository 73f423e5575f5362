"""Adaptive attacks on the audit, the auditor's re-verification and Wasp's evidence: a dishonest validator,
worker, client or Wasp, or a stranger who writes any name into the shared store."""

import math
import time

import pytest
from privacy.identity import Identity
from privacy.signing import digest
from proof.report import VerificationReport
from storage.manifest import Manifest

from bahen.artifacts import get_signed, put_grant, put_signed, signed
from bahen.audit import case_pointer, delivery_pointer, recheck, reconstruct, report_pointer
from bahen.errors import BahenError
from bahen.network import connect
from bahen.parties import CLIENT, WASP
from bahen.records import Delivery
from bahen.settings import load_settings
from tasks.audit import audit as wasp_audit
from tasks.audit import gather, void_verification
from tasks.encrypt_upload import encrypt_upload
from tasks.inputs import InputMismatch, signed_inputs
from tasks.reaudit import ReauditDisagreesError, reaudit_task, reverify
from tasks.score import score
from tasks.shard import replace_verifier, shard
from tasks.train import grant_model, train
from tasks.verify import REPORT_VERIFICATION, UnusableVerification, attest, verify
from tests.flows.test_reaudit import SMALL, _as_auditor, _stranger, auditor_keys, settled  # noqa: F401


def _named(monkeypatch, store, fragment, ref):
    """Every pointer whose name holds ``fragment`` reads back ``ref``, as if its writer had come first."""
    original = type(store).get_pointer
    monkeypatch.setattr(type(store), "get_pointer",
                        lambda s, owner, name: ref if fragment in name else original(s, owner, name))


def _until_scored(net, salt: str):
    upload = encrypt_upload(SMALL, net, salt=salt)
    plan = shard(SMALL, upload, net)
    [assignment] = plan.assignments
    return upload, plan, assignment, train(SMALL, upload, assignment, net)


def _signed_report(net, record, report: VerificationReport, name: str) -> object:
    """``record`` whose verification report is ``report``, signed by the order's verifier."""
    validator = net.party_at(record.verification.verifier, role="validator")
    ref, _ = put_signed(net.store, validator, report, name=name)
    return record.model_copy(update={"verification": record.verification.model_copy(update={"report": ref})})


def test_a_stranger_who_computes_wasps_rules_cannot_take_the_name_of_its_case(prefect, tmp_path):
    from proof.wasp import decide

    net = connect(load_settings())
    upload, plan, assignment, training = _until_scored(net, "0x" + "c3" * 32)
    verification = verify(SMALL, upload, plan, assignment, training, net)
    scores = score(SMALL, upload, plan, training, net)
    # the rules are a function of public evidence: anyone can run them before Wasp does
    predicted = decide(gather(upload, plan, assignment, training, verification, scores, _stranger(net, tmp_path)))
    junk, _ = put_signed(net.store, Identity.generate("squatter"), plan, name="junk")
    net.store.put_pointer(net.wasp().address, case_pointer(upload.order_id, 0, "0x" + digest(predicted).hex()), junk)
    verdict = wasp_audit(upload, plan, assignment, training, net)
    assert verdict.accepted and verdict.digest != "0x" + digest(predicted).hex()  # Wasp's nonce made it unknowable
    [case] = reconstruct(upload.order_id, net.store, net.market)
    assert case.verdict == verdict


def test_a_case_wasp_signed_with_a_verdict_the_chain_did_not_record_is_refused(settled, monkeypatch):
    net = connect(load_settings())
    [case] = reconstruct(settled.order_id, net.store, net.market)
    lying = case.model_copy(update={"verdict": case.verdict.model_copy(update={"accepted": False})})
    ref, _ = put_signed(net.store, net.party(WASP), lying, name="a case whose verdict is not the chain's")
    _named(monkeypatch, net.store, "/case-", ref)
    with pytest.raises(BahenError, match="other than the one Wasp recorded on chain .*Wasp signed a case it did not record"):
        reconstruct(settled.order_id, net.store, net.market)


def test_a_delivery_other_than_the_one_its_deliverer_recorded_for_this_task_is_ignored(settled, monkeypatch):
    from privacy.stream import new_data_key

    net = connect(load_settings())
    oid = bytes.fromhex(settled.order_id[2:])
    deliverer = settled.delivery.validator
    other = next(v.address for v in settled.shard.validators if v.address.lower() != deliverer.lower())
    wrong = put_grant(net.store, new_data_key(), net.party(CLIENT).public(), order_id=settled.order_id, role="x")
    framed = settled.delivery.model_copy(update={"auditor_grants": {a: wrong for a in settled.delivery.auditor_grants}})
    # another validator of the order records its own delivery on chain and names it: the deliverer's entry decides
    ref, doc = put_signed(net.store, net.party_at(other, role="validator"), framed, name="another validator's delivery")
    net.market.record_delivery(net.party_at(other, role="validator").account, order_id=oid, task=0,
                               digest=bytes.fromhex(doc.digest[2:]))
    net.store.put_pointer(other, delivery_pointer(settled.order_id, 0, doc.digest), ref)
    [case] = reconstruct(settled.order_id, net.store, net.market)
    assert case.delivery == settled.delivery
    # a name (or an exported workspace's pin) holding any delivery but the one the deliverer recorded, even its own
    ref, _ = put_signed(net.store, net.party_at(deliverer, role="validator"), framed, name="an unrecorded delivery")
    _named(monkeypatch, net.store, "/delivery-", ref)
    [case] = reconstruct(settled.order_id, net.store, net.market)
    assert case.delivery is None
    # the deliverer's own entry on chain pointing at a delivery it signed for someone else, or not for this task
    for signer, delivery in ((other, framed), (deliverer, framed.model_copy(update={"validator": other})),
                             (deliverer, Delivery.model_validate({**settled.delivery.model_dump(), "task": 1})),
                             (deliverer, Delivery.model_validate({**settled.delivery.model_dump(),
                                                                  "order_id": "0x" + "77" * 32}))):
        ref, doc = put_signed(net.store, net.party_at(signer, role="validator"), delivery, name="a framing delivery")
        _named(monkeypatch, net.store, "/delivery-", ref)
        monkeypatch.setattr(net.market, "delivery_of", lambda *_, doc=doc: bytes.fromhex(doc.digest[2:]))
        [case] = reconstruct(settled.order_id, net.store, net.market)
        assert case.delivery is None
    monkeypatch.setattr(net.market, "delivery_of", lambda *_: bytes(32))  # nothing recorded: nothing read
    _named(monkeypatch, net.store, "/delivery-", net.store.get_pointer(
        deliverer, delivery_pointer(settled.order_id, 0, "0x" + digest(settled.delivery).hex())))
    [case] = reconstruct(settled.order_id, net.store, net.market)
    assert case.delivery is None


def test_grants_keyed_in_another_case_still_reach_the_auditor(settled, auditor_keys):
    net = connect(load_settings())
    upload = settled.upload.model_copy(update={"auditor_grants": {a.lower(): r for a, r in
                                                                  settled.upload.auditor_grants.items()}})
    delivery = settled.delivery.model_copy(update={"auditor_grants": {a.lower(): r for a, r in
                                                                      settled.delivery.auditor_grants.items()}})
    check = reverify(settled.model_copy(update={"upload": upload, "delivery": delivery}), _as_auditor(net, auditor_keys))
    assert check.passed and check.accepted  # both keys found, and the re-execution ran
    # the only difference named: the delivery re-keyed is not the one its validator signed and recorded on chain
    [problem] = check.problems
    assert problem.startswith("delivery: its digest is not the 0x") and problem.endswith(" recorded on chain")


def test_a_case_with_no_worker_for_its_task_re_audits_in_disagreement(settled, auditor_keys):
    hollow = settled.model_copy(update={"shard": settled.shard.model_copy(update={"assignments": []})})
    with pytest.raises(ReauditDisagreesError, match="names 0 workers for task 0"):
        reaudit_task(hollow)
    with pytest.raises(ReauditDisagreesError, match="names 0 workers for task 0"):
        reverify(hollow, _as_auditor(connect(load_settings()), auditor_keys))
    net = connect(load_settings())
    assert any("task 0: the record names no worker" in p for p in recheck(hollow, net.store, net.market))


def test_a_validator_report_of_made_up_numbers_on_another_challenge_disagrees(settled, auditor_keys):
    net = connect(load_settings())
    report, _ = get_signed(net.store, settled.verification.report, VerificationReport)
    made_up = report.model_copy(update={
        "checks": [c.model_copy(update={"observed": math.nan, "threshold": math.inf}) for c in report.checks],
        "challenge_seed": "00" * 32, "merkle_root": "ff" * 32})
    check = reverify(_signed_report(net, settled, made_up, "made-up numbers"), _as_auditor(net, auditor_keys))
    assert not check.agrees
    assert f"the validator's report is of challenge seed {'00' * 32!r}, the task's is {report.challenge_seed!r}" \
        in check.problems
    assert any(p.startswith(f"check {report.checks[0].name}: threshold inf") for p in check.problems)
    claimed = reverify(_signed_report(net, settled, report.model_copy(update={"claimed_final_loss": 1e-3}), "a loss"),
                       _as_auditor(net, auditor_keys))
    assert f"the worker's final loss: 0.001 in the validator's report, {report.claimed_final_loss:.6g} in the worker's " \
        "step log" in claimed.problems
    # a report made before verifiers recorded the loss is not found out for lacking it
    older = reverify(_signed_report(net, settled, report.model_copy(update={"claimed_final_loss": None}), "an older report"),
                     _as_auditor(net, auditor_keys))
    assert not [p for p in older.problems if "final loss" in p]
    # passing flags with other numbers, on the right challenge: a validator that ran nothing is found out
    lazy = report.model_copy(update={"checks": [c.model_copy(update={"observed": c.observed + 1})
                                                for c in report.checks]})
    check = reverify(_signed_report(net, settled, lazy, "numbers it did not compute"), _as_auditor(net, auditor_keys))
    assert [p for p in check.problems if "on re-execution of the same bits" in p]


@pytest.mark.parametrize("spec", [None, {"dataset": "nope"}, {"dataset": "digits"}])
def test_a_manifest_without_the_orders_signed_spec_is_named(settled, auditor_keys, spec):
    net = connect(load_settings())
    manifest, _ = get_signed(net.store, settled.upload.manifest, Manifest)
    meta = {k: v for k, v in manifest.meta.items() if k != "spec"} | ({} if spec is None else {"spec": spec})
    ref, _ = put_signed(net.store, net.party(CLIENT), manifest.model_copy(update={"meta": meta}), name="no spec")
    upload = settled.upload.model_copy(update={"manifest": ref})
    with pytest.raises(InputMismatch, match=f"order {settled.order_id}"):
        reverify(settled.model_copy(update={"upload": upload}), _as_auditor(net, auditor_keys))
    with pytest.raises(InputMismatch, match=f"order {settled.order_id}"):  # the delivering validator's stage
        signed_inputs(upload, settled.training.task, net)


def test_wasp_judges_no_worker_by_a_report_of_another_order_and_voids_it_once_its_window_closed(settled, staked_net):
    net = staked_net
    upload, plan, assignment, training = _until_scored(net, "0x" + "e6" * 32)
    passing, _ = get_signed(net.store, settled.verification.report, VerificationReport)  # of another order
    # a copy with one timing changed: the chain refuses a digest a validator already attested (ReportReplayed)
    copied = passing.model_copy(update={"checks": [passing.checks[0].model_copy(
        update={"seconds": passing.checks[0].seconds + 1}), *passing.checks[1:]]})
    verifier = net.party_at(plan.validators[0].address, role="validator")
    data, ref, doc = signed(verifier, copied, name="another order's report")
    net.store.put_pointer(verifier.address, report_pointer(upload.order_id, 0, REPORT_VERIFICATION, doc.digest), ref)
    net.store.put(data, name=ref.name)
    attest(net, verifier, upload.order_id, 0, REPORT_VERIFICATION, doc.digest)
    score(SMALL, upload, plan, training, net)
    with pytest.raises(UnusableVerification, match=f"{verifier.address}, .* checked another task: order "
                                                   f"{settled.order_id} task 0"):
        wasp_audit(upload, plan, assignment, training, net)  # the worker is not to blame for its verifier's report
    net.chain.increase_time(SMALL.commit_minutes * 60 + 1)
    assert void_verification(upload, 0, net).verifier == verifier.address
    replaced = replace_verifier(upload, plan, 0, net, until=time.monotonic() + 60, poll_s=0.01)
    training = grant_model(upload, training, net)
    verify(SMALL, upload, replaced, assignment, training, net)
    score(SMALL, upload, replaced, training, net)
    assert wasp_audit(upload, replaced, assignment, training, net).accepted  # the honest work, judged by the next verifier
    [case] = reconstruct(upload.order_id, net.store, net.market)
    [check] = reaudit_task(case)
    assert check.agrees and check.accepted



def test_the_case_wasp_signs_holds_scores_no_validator_could_compute(settled):
    """A model no validator could read: every score an error, the medians NaN; Wasp still signs the case it judged."""
    from privacy.signing import sign_document, verify_document

    net = connect(load_settings())
    [case] = reconstruct(settled.order_id, net.store, net.market)
    nan = {"median_accuracy": math.nan, "median_loss": math.nan, "perplexity": math.inf}
    unscored = case.model_copy(update={
        "scores": case.scores.model_copy(update={"accuracy": dict.fromkeys(case.scores.accuracy, math.nan),
                                                 "loss": dict.fromkeys(case.scores.loss, math.nan),
                                                 "median_accuracy": math.nan}),
        "verdict": case.verdict.model_copy(update={"model_report": case.verdict.model_report.model_copy(update=nan)}),
    })
    doc = sign_document(net.wasp(), unscored)
    verify_document(doc)
    assert math.isnan(type(case).model_validate(doc.payload).verdict.model_report.median_accuracy)
