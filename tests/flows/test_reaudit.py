"""Re-audit re-hashes every pinned artifact and recomputes every commitment: one flipped byte anywhere disagrees."""

import pytest
from proof.wasp import Decision
from storage.store import object_key

from bahen.artifacts import PROOF_ROLE, get_decrypted, get_signed, open_stored_grant, put_grant, put_signed
from bahen.audit import (
    AUDIT_STAGES,
    NoVerdictError,
    judged_case,
    pinned_artifacts,
    recheck,
    reconstruct,
    stage_artifacts,
    staged_artifacts,
)
from bahen.errors import BahenError
from bahen.network import connect
from bahen.parties import CLIENT, WASP
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from flows.audit import audit
from flows.order import order
from tasks.reaudit import ReauditDisagreesError, stage_problems

SMALL = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32)
# One artifact of every kind an order pins, by the start of its workspace path.
# The stage that made each kind, the first an auditor's `dvc repro` finds broken when the kind is.
STAGE_OF = {"data/train.enc": "encrypt", "data/manifest.json": "validate", "grants/client-train.json": "encrypt",
            "proof/task0/manifest.json": "train", "proof/task0/checkpoint-": "train", "proof/task0/step-log.enc": "train",
            "proof/task0/telemetry.enc": "train", "proof/task0/response.json": "train", "proof/task0/state-": "train",
            "reports/task0-verification.json": "verify", "reports/score-": "score", "reports/task0-verdict.json": "audit"}
KINDS = list(STAGE_OF)


@pytest.fixture(scope="module")
def auditor_keys(tmp_path_factory):
    """An outside auditor's keystore, on a host of its own: the order names its public keys, nothing more."""
    from privacy.identity import Keystore

    keystore = Keystore(tmp_path_factory.mktemp("auditor") / "keys", "pass", scrypt_n=2**10)
    keystore.create("auditor")
    return keystore


@pytest.fixture(scope="module")
def settled(prefect, auditor_keys):
    public = auditor_keys.public("auditor")
    record = order(SMALL.model_copy(update={"auditors": [f"{public.address}:{public.x25519_public}"]}))
    assert record.verdict.accepted
    return record


def test_an_untouched_order_re_audits_in_agreement(settled):
    checks = audit(settled.order_id)
    assert [(c.agrees, c.problems) for c in checks] == [(True, [])]
    assert checks[0].accepted and checks[0].recorded_accepted


def test_the_export_pins_the_response_and_every_revealed_state(settled):
    pins = pinned_artifacts(settled, connect(load_settings()).store)
    assert all(any(path.startswith(kind) for path in pins) for kind in KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_one_flipped_byte_in_any_pinned_artifact_disagrees_naming_it(settled, kind):
    store = connect(load_settings()).store
    path, ref = next((p, r) for p, r in pinned_artifacts(settled, store).items() if p.startswith(kind))
    stored = store.root / object_key(ref)
    original = stored.read_bytes()
    stored.chmod(0o644)
    stored.write_bytes(original[:len(original) // 2] + bytes([original[len(original) // 2] ^ 0x10])
                       + original[len(original) // 2 + 1:])
    net = connect(load_settings())
    try:
        with pytest.raises(ReauditDisagreesError, match="disagrees") as disagreement:
            audit(settled.order_id)
        problems = {stage: stage_problems(settled, stage, net) for stage in AUDIT_STAGES}
    finally:
        stored.write_bytes(original)
        stored.chmod(0o444)
    named = str(disagreement.value)
    assert path in named or f"artifact {ref.name} is tampered" in named
    [first, *_] = [stage for stage, found in problems.items() if found]
    assert first == STAGE_OF[kind]
    assert any(p.startswith(f"{path}: ") or f"artifact {ref.name} is tampered" in p for p in problems[first]), problems[first]


def test_every_stage_of_an_untouched_order_re_checks_on_its_own(settled):
    net = connect(load_settings())
    assert {stage: stage_problems(settled, stage, net) for stage in AUDIT_STAGES} == {s: [] for s in AUDIT_STAGES}
    staged, pins = staged_artifacts(settled, net.store), pinned_artifacts(settled, net.store)
    assert sum(map(len, staged.values())) == len(pins)  # each under one stage
    assert all(path in staged[STAGE_OF[kind]] for kind in KINDS for path in pins if path.startswith(kind))
    # a fine-tuning order's starting weights are sealed at upload, beside the splits
    tuned = settled.model_copy(update={"upload": settled.upload.model_copy(update={"weights": settled.upload.holdout})})
    assert stage_artifacts(tuned, net.store, "encrypt") == {**staged["encrypt"], "data/weights.enc": settled.upload.holdout}


def _unattested(settled) -> str:
    """The verify stage's words for a verification report the order's verifier did not attest."""
    return (f"verify: the verification report is not one that task 0's verifier {settled.verification.verifier} "
            "signed and attested on chain for this order, task, challenge seed and committed root")


def test_a_manifest_or_report_its_party_did_not_sign_and_attest_fails_its_stage_naming_it(settled):
    from proof.report import VerificationReport
    from proof.scoring import PerformanceReport
    from storage.manifest import Manifest

    net = connect(load_settings())
    client, wasp = net.party(CLIENT), net.party(WASP)
    manifest, _ = get_signed(net.store, settled.upload.manifest, Manifest)
    resigned, _ = put_signed(net.store, wasp, manifest, name="the dataset manifest, signed by another")
    record = settled.model_copy(update={"upload": settled.upload.model_copy(update={"manifest": resigned})})
    [problem] = stage_problems(record, "validate", net)
    assert problem.startswith("validate: ") and "dataset manifest" in problem
    assert stage_problems(record, "encrypt", net) == []

    report, _ = get_signed(net.store, settled.verification.report, VerificationReport)
    forged, _ = put_signed(net.store, client, report, name="the verification report, signed by the client")
    record = settled.model_copy(update={"verification": settled.verification.model_copy(update={"report": forged})})
    assert stage_problems(record, "verify", net) == [_unattested(settled)]
    assert stage_problems(record, "score", net) == []

    name, ref = next(iter(settled.scores.reports.items()))
    slot = next(v for v in settled.shard.validators if v.name == name)
    score, _ = get_signed(net.store, ref, PerformanceReport)
    unattested, _ = put_signed(net.store, net.party_at(slot.address, role="validator"),
                               score.model_copy(update={"loss": score.loss + 1}),
                               name="a performance report its validator never attested")
    record = settled.model_copy(update={"scores": settled.scores.model_copy(
        update={"reports": {**settled.scores.reports, name: unattested}})})
    assert stage_problems(record, "score", net) == [
        f"score: 1 of {len(settled.scores.reports)} performance reports ({name}) are not signed by the validator of "
        "the slot they are named under and attested on chain for this task"]
    assert stage_problems(record, "verify", net) == []


def _lie(settled, net, lie: str):
    """``settled``'s record with one lie an auditor must not accept, told as a record could tell it."""
    from bahen.records import Delivery
    from privacy.stream import new_data_key
    from proof.report import VerificationReport

    if lie == "a verification the report does not say":
        return settled.model_copy(update={"verification": settled.verification.model_copy(update={"passed": False})})
    if lie == "a forged verification, the scores left out":
        report, _ = get_signed(net.store, settled.verification.report, VerificationReport)
        forged, _ = put_signed(net.store, net.party(CLIENT), report.model_copy(update={"passed": False}), name="forged")
        return settled.model_copy(update={"scores": None, "verification": settled.verification.model_copy(
            update={"report": forged})})
    if lie == "the challenge response hidden":
        return settled.model_copy(update={"training": settled.training.model_copy(update={"response": None})})
    if lie == "another root":
        return settled.model_copy(update={"training": settled.training.model_copy(update={"merkle_root": "ab" * 32})})
    if lie == "the validators' grants swapped for the client's":
        own = settled.upload.client_grants
        return settled.model_copy(update={"shard": settled.shard.model_copy(update={"validators": [
            v.model_copy(update={"grants": {r: own[r] for r in v.grants}}) for v in settled.shard.validators]})})
    if lie == "the validators in another order":
        return settled.model_copy(update={"shard": settled.shard.model_copy(
            update={"validators": settled.shard.validators[::-1]})})
    if lie == "a delivery by the client":
        grant = put_grant(net.store, new_data_key(), net.party(CLIENT).public(), order_id=settled.order_id, role="model")
        return settled.model_copy(update={"delivery": Delivery(order_id=settled.order_id, task=0,
                                                               validator=net.party(CLIENT).address, grant=grant)})
    if lie == "a median accuracy the reports do not give":
        return settled.model_copy(update={"scores": settled.scores.model_copy(update={"median_accuracy": 0.999})})
    if lie == "a validator's loss lowered":
        name = next(iter(settled.scores.loss))
        return settled.model_copy(update={"scores": settled.scores.model_copy(
            update={"loss": {**settled.scores.loss, name: 0.0}})})
    if lie == "the verdict's reasons reworded":
        return settled.model_copy(update={"verdict": settled.verdict.model_copy(
            update={"reasons": [r.replace("✗", "✓") for r in settled.verdict.reasons] + ["✓ above-chance: 0.99"]})})
    if lie == "a model report the validators did not measure":
        report = settled.verdict.model_report.model_copy(update={"median_accuracy": 0.999})
        return settled.model_copy(update={"verdict": settled.verdict.model_copy(update={"model_report": report})})
    if lie == "a payout raised":
        paid = {address: wei + 1 for address, wei in settled.settled.payouts_wei.items()}
        return settled.model_copy(update={"settled": settled.settled.model_copy(update={"payouts_wei": paid})})
    if lie == "the upload left out":
        return settled.model_copy(update={"upload": None})
    if lie == "the settlement left out":
        return settled.model_copy(update={"settled": None})
    if lie == "the delivery left out":
        return settled.model_copy(update={"delivery": None})
    if lie == "another spec":
        return settled.model_copy(update={"spec": settled.spec.model_copy(update={"epochs": 7})})
    if lie == "the verification's checks and cost told otherwise":
        checks = [dict(c, passed=not c["passed"]) for c in settled.verification.checks]
        return settled.model_copy(update={"verification": settled.verification.model_copy(
            update={"checks": checks, "cost_fraction": 9.0})})
    if lie == "another commitment block, escrow, deadline and pay":
        shard = settled.shard.model_copy(update={
            "escrow_wei": 1, "deadline": 0, "assignments": [a.model_copy(update={"payment_wei": a.payment_wei + 1})
                                                            for a in settled.shard.assignments],
            "validators": [v.model_copy(update={"fee_wei": 1}) for v in settled.shard.validators]})
        return settled.model_copy(update={"shard": shard, "training": settled.training.model_copy(
            update={"commit_block": settled.training.commit_block + 1})})
    if lie == "the verdict left out":
        return settled.model_copy(update={"verdict": None})
    if lie == "scores made up, the verdict and the training left out":
        return settled.model_copy(update={"verdict": None, "training": None, "scores": settled.scores.model_copy(
            update={"median_accuracy": 0.999})})
    if lie == "a validator labelled as the client's grants":
        return settled.model_copy(update={"shard": settled.shard.model_copy(update={"validators": [
            settled.shard.validators[0].model_copy(update={"name": "client"}), *settled.shard.validators[1:]]})})
    if lie == "another verdict digest":
        return settled.model_copy(update={"verdict": settled.verdict.model_copy(update={"digest": "0x" + "ab" * 32})})
    if lie == "a task the order does not have":
        shard = settled.shard.model_copy(update={"assignments": [
            a.model_copy(update={"task": 5}) for a in settled.shard.assignments]})
        return settled.model_copy(update={"shard": shard, "training": settled.training.model_copy(update={"task": 5}),
                                          "verdict": settled.verdict.model_copy(update={"task": 5})})
    assert lie == "another order's upload"
    return settled.model_copy(update={"upload": settled.upload.model_copy(update={"order_id": "0x" + "77" * 32})})


@pytest.mark.parametrize(("lie", "stage", "named"), [
    ("a verification the report does not say", "verify", "the record's account of the verification"),
    ("a forged verification, the scores left out", "verify", "is not one that task 0's verifier"),
    ("a forged verification, the scores left out", "score", "the record holds a verdict but no scores"),
    ("the challenge response hidden", "train", "challenge response handed over"),
    ("another root", "train", "the order's record names the root abab"),
    ("the validators' grants swapped for the client's", "train", "grant"),
    ("the validators in another order", "train", "in its slot order"),
    ("a delivery by the client", "audit", "not the validator that delivers the order's model key"),
    ("another verdict digest", "audit", "the order's record names the digest 0xabab"),
    ("a median accuracy the reports do not give", "score", "the record's median_accuracy 0.999 is not the"),
    ("a payout raised", "audit", "audit: the record's settlement is not the chain's in payouts_wei"),
    ("the verdict left out", "audit", "Wasp recorded a verdict of task 0 on chain (accepted), the record holds none"),
    ("the upload left out", "train", "train: order 0x"),
    ("the settlement left out", "audit", "the record holds no settlement: a record written before it"),
    ("the delivery left out", "audit", "recorded on chain the delivery of task 0's model key, the record holds none"),
    ("another spec", "validate", "validate: the order spec handed over does not hash to order"),
    ("the verification's checks and cost told otherwise", "verify", "the signed report's in checks, cost_fraction"),
    ("another commitment block, escrow, deadline and pay", "train", "the record's commitment block"),
    ("another commitment block, escrow, deadline and pay", "train", "task 0: the record pays its worker"),
    ("another commitment block, escrow, deadline and pay", "train", "the record's shard holds an escrow of 1 wei"),
    ("another commitment block, escrow, deadline and pay", "score", "a fee of 1 wei, the chain"),
    ("scores made up, the verdict and the training left out", "score", "the record's median_accuracy 0.999 is not"),
    ("a validator labelled as the client's grants", "encrypt", "encrypt: the record names two artifacts at "
     "grants/client-train.json"),
    ("a validator's loss lowered", "score", "the record's loss {"),
    ("the verdict's reasons reworded", "audit", "the record's account of the verdict"),
    ("a model report the validators did not measure", "audit", "the record's account of the verdict"),
    ("a task the order does not have", "train", "the record is of task 5, which order"),
    ("a task the order does not have", "audit", "task 5: the record's verdict is of a task"),
    ("another order's upload", "validate", "the record's upload is of order 0x7777"),
])
def test_a_record_that_lies_is_named_by_the_stage_it_lies_about(settled, lie, stage, named):
    net = connect(load_settings())
    record = type(settled).model_validate_json(_lie(settled, net, lie).model_dump_json())  # as a record on disk
    problems = {s: stage_problems(record, s, net) for s in AUDIT_STAGES}  # each a list, never a raise
    assert any(named in p for p in problems[stage]), problems


def test_a_verdict_not_signed_by_wasp_or_not_the_chains_is_named(settled):
    net = connect(load_settings())
    decision, _ = get_signed(net.store, settled.verdict.verdict, Decision)
    forged, _ = put_signed(net.store, net.party(CLIENT), decision, name="a verdict the client signed")
    record = settled.model_copy(update={"verdict": settled.verdict.model_copy(update={"verdict": forged})})
    assert recheck(record, net.store, net.market) == [
        f"verdict: signed by {net.party(CLIENT).address}, which does not hold Wasp's role"]
    flipped = decision.model_copy(update={"accepted": False})
    forged, _ = put_signed(net.store, net.party(WASP), flipped, name="a verdict the chain did not record")
    record = settled.model_copy(update={"verdict": settled.verdict.model_copy(update={"verdict": forged})})
    problems = recheck(record, net.store, net.market)
    assert any("its digest is not the" in p for p in problems)
    assert "verdict: it says rejected, Wasp's on chain accepted" in problems
    assert "verdict: it says rejected, the order's record accepted" in problems


def test_a_case_holding_other_evidence_than_wasp_judged_or_a_decision_its_rules_do_not_reach_is_named(settled):
    from proof.bundle import ProofBundle
    from proof.scoring import PerformanceReport
    from tasks.score import SignedScore, gathered

    net = connect(load_settings())
    [case] = reconstruct(settled.order_id, net.store, net.market)
    assert judged_case(settled.order_id, 0, net.store, net.market) == case.model_copy(update={"delivery": None})
    with pytest.raises(NoVerdictError, match=f"order {settled.order_id} task 5 has no verdict on chain"):
        judged_case(settled.order_id, 5, net.store, net.market)
    assert stage_problems(case, "audit", net) == []  # an honest Wasp's decision, reached again bit for bit
    # a score left out of the case, its figures made up again from the rest: only what Wasp decided tells
    kept = dict(list(case.scores.reports.items())[1:])
    fewer = gathered(case.order_id, [SignedScore(validator=n, report=get_signed(net.store, r, PerformanceReport)[0], ref=r)
                                     for n, r in kept.items()])
    left_out = case.model_copy(update={"scores": fewer})
    assert stage_problems(left_out, "score", net) == []
    [quorum] = [p for p in stage_problems(left_out, "audit", net) if "score-quorum" in p]
    assert quorum.startswith("audit: Wasp's rules, re-run on the case Wasp signed, find score-quorum: 1 attested scores")
    assert "where Wasp signed score-quorum: 2 attested scores, quorum 2 of 2" in quorum
    # the client's record may hold fewer scores than Wasp judged (a validator's run that never came back):
    # Wasp is judged on its own case, so that blames nobody
    assert {s: stage_problems(settled.model_copy(update={"scores": fewer}), s, net) for s in ("score", "audit")} == \
        {"score": [], "audit": []}
    # a decision Wasp signed whose figures, or whose outcome, its evidence does not give
    decision, _ = get_signed(net.store, case.verdict.verdict, Decision)
    for update, named in (({"model_report": decision.model_report.model_copy(update={"median_accuracy": 0.25})},
                           f"measure median_accuracy {decision.model_report.median_accuracy} where Wasp signed 0.25"),
                          ({"accepted": False}, "decide accepted where Wasp signed rejected")):
        forged, _ = put_signed(net.store, net.party(WASP), decision.model_copy(update=update), name="a verdict")
        signed = case.model_copy(update={"verdict": case.verdict.model_copy(update={"verdict": forged})})
        problems = stage_problems(signed, "audit", net)
        assert f"audit: Wasp's rules, re-run on the case Wasp signed, {named}" in problems, problems
        assert "audit: the record's account of the verdict (its decision, reasons or model report) is not the decision " \
               "Wasp signed" in problems
    # a proof of nothing its worker signed (no checkpoints): the rules re-run on it say so, and nothing raises
    bundle, _ = get_signed(net.store, case.training.bundle, ProofBundle)
    empty, _ = put_signed(net.store, net.party_at(case.training.worker, role="worker"),
                          bundle.model_copy(update={"checkpoints": []}), name="a proof of nothing")
    nothing = case.model_copy(update={"training": case.training.model_copy(update={"bundle": empty})})
    assert "audit: Wasp's rules, re-run on the case Wasp signed, find score-quorum: 0 attested scores, quorum 2 of 2 " \
           "where Wasp signed score-quorum: 2 attested scores, quorum 2 of 2" in stage_problems(nothing, "audit", net)
    assert not [p for p in stage_problems(nothing, "train", net) if "final model" in p]  # nothing to compare it with
    # figures nobody could measure (NaN) are the same figures on both sides: only the one that differs is named
    unmeasured = decision.model_report.model_copy(update={"median_loss": float("nan"), "perplexity": float("nan")})
    forged, _ = put_signed(net.store, net.party(WASP), decision.model_copy(update={"model_report": unmeasured}), name="v")
    signed = case.model_copy(update={"verdict": case.verdict.model_copy(update={"verdict": forged, "model_report": unmeasured})})
    assert [p for p in stage_problems(signed, "audit", net) if p.startswith("audit: ")] == [
        f"audit: Wasp's rules, re-run on the case Wasp signed, measure {field} {getattr(decision.model_report, field)} "
        "where Wasp signed NaN" for field in ("median_loss", "perplexity")]


def _verified(net, salt: str):
    """A fresh order of its own, trained and verified, not yet scored: its upload, shard, assignment and training."""
    from tasks.encrypt_upload import encrypt_upload
    from tasks.shard import shard
    from tasks.train import train
    from tasks.verify import verify

    upload = encrypt_upload(SMALL, net, salt=salt)
    plan = shard(SMALL, upload, net)
    [assignment] = plan.assignments
    training = train(SMALL, upload, assignment, net)
    verify(SMALL, upload, plan, assignment, training, net)
    return upload, plan, assignment, training


@pytest.mark.parametrize(("salt", "field", "value"), [("e9", "model_sha256", "00" * 32), ("e7", "validator", "[/] another"),
                                                      ("e8", "task", 1)])
def test_a_validator_that_attests_a_score_of_another_model_costs_no_re_audit_its_agreement(prefect, salt, field, value):
    """A score of another model or task, or under another name than its signer's: the record and Wasp's case carry
    what the validator attested; Wasp's evidence leaves it out. Neither is to blame, so the re-audit of either
    agrees, every stage with it."""
    from proof.scoring import PerformanceReport
    from tasks.audit import audit as judge
    from tasks.reaudit import rechecked
    from tasks.score import REPORT_PERFORMANCE, gathered, score_as, score_one
    from bahen.artifacts import signed
    from bahen.audit import report_pointer
    from tasks.verify import attest

    net = connect(load_settings())
    upload, plan, assignment, training = _verified(net, "0x" + salt * 32)
    honest, other = plan.validators
    elsewhere = score_one(SMALL, upload, training, other, net).model_copy(update={field: value})
    validator = net.party_at(other.address, role="validator")
    data, ref, doc = signed(validator, elsewhere, name="elsewhere")  # attested for task 0, whatever it says
    net.store.put_pointer(other.address, report_pointer(upload.order_id, 0, REPORT_PERFORMANCE, doc.digest), ref)
    net.store.put(data, name="elsewhere")
    attest(net, validator, upload.order_id, 0, REPORT_PERFORMANCE, doc.digest)
    scored = [score_as(SMALL, upload, training, slot, net) for slot in (honest, other)]
    assert getattr(scored[1].report, field) == value  # the score it attested
    verdict = judge(upload, plan, assignment, training, net)
    assert verdict.accepted and "1 attested scores, quorum 2 of 2" in verdict.model_report.findings[0].detail
    [case] = reconstruct(upload.order_id, net.store, net.market)
    assert set(case.scores.reports) == {honest.name, other.name}
    assert rechecked(case, net) == []
    record = case.model_copy(update={"scores": gathered(upload.order_id, scored)})  # the client's, as it gathered them
    assert getattr(get_signed(net.store, record.scores.reports[other.name], PerformanceReport)[0], field) == value
    assert rechecked(record, net) == []


def test_a_case_holding_figures_no_number_writes_is_read_back_whole(settled):
    """Whatever figures Wasp was handed or read (a verifier's cost, a client's GFLOP, a worker's telemetry), the case
    it signs reads back the same: an unreadable case would leave the verdict with nothing to re-audit or dispute."""
    from bahen.records import AuditCase

    net = connect(load_settings())
    [case] = reconstruct(settled.order_id, net.store, net.market)
    inf = float("inf")
    odd = case.model_copy(update={
        "verification": case.verification.model_copy(update={"cost_fraction": inf}),
        "shard": case.shard.model_copy(update={"train_gflops": inf}),
        "training": case.training.model_copy(update={"telemetry": [
            case.training.telemetry[0].model_copy(update={"utilization_pct": inf, "power_w": -inf})]}),
    })
    ref, _ = put_signed(net.store, net.party(WASP), odd, name="a case of odd figures")
    back, _ = get_signed(net.store, ref, AuditCase)
    assert back.model_dump_json() == odd.model_dump_json()
    assert back.verification.cost_fraction == back.shard.train_gflops == back.training.telemetry[0].utilization_pct == inf


def test_an_upload_of_no_classes_is_no_record(settled):
    """Every party's figures against chance divide by the classes: a record of none does not load."""
    from pydantic import ValidationError

    from bahen.records import Upload

    assert Upload.model_validate({**settled.upload.model_dump(), "num_classes": 1}).num_classes == 1
    for count in (0, 2**1024):  # figures against chance divide by it, as a float
        with pytest.raises(ValidationError, match="num_classes"):
            Upload.model_validate({**settled.upload.model_dump(), "num_classes": count})


def test_a_record_pointing_at_another_final_model_is_named(settled):
    net = connect(load_settings())
    first = pinned_artifacts(settled, net.store)["proof/task0/checkpoint-0000000.enc"]
    record = settled.model_copy(update={"training": settled.training.model_copy(update={"final_model": first})})
    assert recheck(record, net.store, net.market) == ["the order's final model is not the proof's last checkpoint"]


def test_the_cli_reports_agreement(settled):
    from typer.testing import CliRunner

    from bahen.cli import app

    result = CliRunner().invoke(app, ["audit", "check", settled.order_id])
    assert result.exit_code == 0, result.output
    assert "task 0: agrees with the recorded verdict (accepted)" in result.output
    count = len(staged_artifacts(settled, connect(load_settings()).store)["train"])
    result = CliRunner().invoke(app, ["audit", "check", settled.order_id, "--stage", "train"])
    assert result.exit_code == 0, result.output
    assert f"task 0: the train stage re-checks: {count} artifacts re-hashed" in result.output
    result = CliRunner().invoke(app, ["audit", "check", settled.order_id, "--stage", "shard"])
    assert "'shard' is no stage of an order: one of validate, encrypt, train, verify, score, audit" in str(result.exception)


def test_an_order_the_chain_does_not_know_is_named_not_raised(settled):
    net = connect(load_settings())
    unknown = settled.model_copy(update={"order_id": "0x" + "77" * 32})
    [problem] = recheck(unknown, net.store, net.market)
    assert problem.startswith(f"chain: order {unknown.order_id} does not exist on market")


def _stranger(net, tmp_path):
    """The same chain and store, seen from a host that never saw the order and holds none of its keys."""
    import dataclasses

    from privacy.identity import Keystore

    return dataclasses.replace(net, keystore=Keystore(tmp_path / "auditor-keys", "pass", scrypt_n=2**10), _identities={})


def test_a_host_without_the_record_rebuilds_the_order_from_the_chain_and_the_store(settled, tmp_path):
    auditor = _stranger(connect(load_settings()), tmp_path)
    [case] = reconstruct(settled.order_id, auditor.store, auditor.market)
    parts = ("upload", "shard", "training", "verification", "scores", "verdict")
    assert {p: getattr(case, p) for p in parts} == {p: getattr(settled, p) for p in parts}
    assert recheck(case, auditor.store, auditor.market) == []
    assert case.delivery == settled.delivery  # signed by the validator that released the model key
    assert pinned_artifacts(case, auditor.store) == pinned_artifacts(settled, auditor.store)
    assert auditor.keystore.names() == []  # nothing of any party was needed


def test_a_case_not_signed_by_wasp_or_of_another_order_is_refused(settled, monkeypatch):
    from bahen.records import AuditCase

    net = connect(load_settings())
    [case] = reconstruct(settled.order_id, net.store, net.market)
    forged, _ = put_signed(net.store, net.party(CLIENT), case, name="a case the client signed")
    monkeypatch.setattr(type(net.store), "get_pointer", lambda store, owner, name: forged)
    with pytest.raises(BahenError, match=f"signed by {net.party(CLIENT).address}, which does not hold Wasp's role"):
        reconstruct(settled.order_id, net.store, net.market)
    other = AuditCase.model_validate({**case.model_dump(), "order_id": "0x" + "77" * 32})
    moved, _ = put_signed(net.store, net.party(WASP), other, name="another order's case")
    monkeypatch.setattr(type(net.store), "get_pointer", lambda store, owner, name: moved)
    with pytest.raises(BahenError, match="is the case of order 0x7777"):
        reconstruct(settled.order_id, net.store, net.market)


def test_an_order_without_a_verdict_on_chain_has_nothing_to_reconstruct(settled):
    from tasks.encrypt_upload import encrypt_upload
    from tasks.shard import shard

    net = connect(load_settings())
    upload = encrypt_upload(SMALL, net, salt="0x" + "a7" * 32)
    shard(SMALL, upload, net)
    with pytest.raises(NoVerdictError, match=f"order {upload.order_id} has no verdict on chain yet"):
        reconstruct(upload.order_id, net.store, net.market)
    # nor a settlement: a record that holds one is named
    told = settled.model_copy(update={"order_id": upload.order_id, "verdict": None, "delivery": None})
    assert stage_problems(told, "audit", net) == [
        f"audit: the record holds a settlement of order {upload.order_id}, which the chain has not settled"]


def test_members_other_than_the_chain_drew_are_named(settled):
    net = connect(load_settings())
    stranger = "0x" + "12" * 20
    shard = settled.shard.model_copy(update={
        "assignments": [settled.shard.assignments[0].model_copy(update={"address": stranger})],
        "validators": [settled.shard.validators[0].model_copy(update={"address": stranger}), *settled.shard.validators[1:]]})
    problems = recheck(settled.model_copy(update={"shard": shard}), net.store, net.market)
    assert f"task 0: the record names worker {stranger}, the chain drew {settled.shard.assignments[0].address}" in problems
    assert any(p.startswith("the record names validators") and stranger in p for p in problems)
    training = settled.training.model_copy(update={"worker": stranger})
    problems = recheck(settled.model_copy(update={"training": training}), net.store, net.market)
    assert f"task 0: the proof names worker {stranger}, the chain drew {settled.shard.assignments[0].address}" in problems


def _as_auditor(net, keystore):
    """The same chain and store, seen from the auditor's host: it holds its own identity and nothing else."""
    import dataclasses

    return dataclasses.replace(net, keystore=keystore, _identities={})


def test_an_auditor_the_order_names_re_executes_its_verification_in_agreement(settled, auditor_keys):
    from tasks.reaudit import reverify

    auditor = _as_auditor(connect(load_settings()), auditor_keys)
    [case] = reconstruct(settled.order_id, auditor.store, auditor.market)  # a host that never saw the order
    check = reverify(case, auditor)
    assert (check.agrees, check.problems, check.passed, check.accepted) == (True, [], True, True)
    assert check.auditor == auditor_keys.public("auditor").address
    assert [(c.name, c.passed) for c in check.checks] == [(c["name"], c["passed"]) for c in settled.verification.checks]
    assert all(c.observed == c.recorded_observed for c in check.checks if c.name.startswith(("replay", "spot")))
    assert check.report.localiser and check.report.merkle_root == settled.training.merkle_root
    assert auditor_keys.names() == ["auditor"]


def test_a_validator_report_the_re_execution_contradicts_disagrees_naming_the_check(settled, auditor_keys):
    from proof.report import VerificationReport
    from tasks.reaudit import reverify

    net = connect(load_settings())
    report, _ = get_signed(net.store, settled.verification.report, VerificationReport)
    [first, *rest] = report.checks
    lying = report.model_copy(update={"checks": [first.model_copy(update={"passed": False}), *rest], "passed": False})
    validator = net.party_at(settled.verification.verifier, role="validator")
    ref, _ = put_signed(net.store, validator, lying, name="a report the re-execution contradicts")
    record = settled.model_copy(update={"verification": settled.verification.model_copy(update={"report": ref})})
    check = reverify(record, _as_auditor(net, auditor_keys))
    assert not check.agrees
    assert check.problems == [f"check {first.name}: passes on re-execution, failed in the validator's report",
                              "the verification passes on re-execution and failed in the validator's report",
                              _unattested(settled)]  # and it is not the report the verifier attested


def test_a_tampered_checkpoint_fails_the_re_execution_of_an_accepted_task(settled, auditor_keys):
    from tasks.reaudit import reverify

    net = connect(load_settings())
    pins = pinned_artifacts(settled, net.store)
    path = max(p for p in pins if p.startswith("proof/task0/checkpoint-"))
    stored = net.store.root / object_key(pins[path])
    original = stored.read_bytes()
    stored.chmod(0o644)
    stored.write_bytes(original[:-1] + bytes([original[-1] ^ 0x01]))
    try:
        check = reverify(settled, _as_auditor(net, auditor_keys))
    finally:
        stored.write_bytes(original)
        stored.chmod(0o444)
    assert not check.agrees and not check.passed and not check.accepted
    assert "Wasp's rules on the re-executed report decide rejected, the recorded verdict accepted" in check.problems
    assert any(pins[path].name in c.detail for c in check.report.failed_checks)


def test_a_host_the_order_does_not_name_is_told_who_may_re_verify(settled, tmp_path):
    from tasks.reaudit import NotAnAuditorError, reverify

    stranger = _stranger(connect(load_settings()), tmp_path)
    stranger.keystore.create("auditor")
    with pytest.raises(NotAnAuditorError, match="holds no key of the auditors order .* names"):
        reverify(settled, stranger)
    unnamed = settled.model_copy(update={"upload": settled.upload.model_copy(update={"auditor_grants": {}})})
    with pytest.raises(NotAnAuditorError, match="names no auditors"):
        reverify(unnamed, stranger)


def test_an_auditor_gets_no_model_key_before_the_task_is_delivered(settled, auditor_keys):
    from tasks.reaudit import NotAnAuditorError, reverify

    undelivered = settled.model_copy(update={"delivery": None})
    with pytest.raises(NotAnAuditorError, match="no validator has released task 0's model key"):
        reverify(undelivered, _as_auditor(connect(load_settings()), auditor_keys))


def test_delivering_again_returns_the_signed_delivery(settled):
    from tasks.deliver import deliver

    net = connect(load_settings())
    assert deliver(settled.upload, settled.shard, settled.training, net) == settled.delivery


def test_a_model_key_that_does_not_seal_the_proof_is_blamed_on_the_delivery(settled, auditor_keys):
    from privacy.stream import new_data_key
    from tasks.reaudit import FaultyDeliveryError, reverify

    net = connect(load_settings())
    public = auditor_keys.public("auditor")
    wrong = put_grant(net.store, new_data_key(), public, order_id=settled.order_id, role="task 0 model")
    delivery = settled.delivery.model_copy(update={"auditor_grants": {public.address: wrong}})
    with pytest.raises(FaultyDeliveryError, match="does not open the worker's proof: the delivery is faulty"):
        reverify(settled.model_copy(update={"delivery": delivery}), _as_auditor(net, auditor_keys))


def test_names_taken_before_wasp_and_the_validator_cost_neither_the_verdict_nor_the_model(prefect):
    from privacy.identity import Identity
    from privacy.signing import digest

    from tasks.audit import audit as wasp_audit
    from tasks.deliver import deliver
    from tasks.score import score
    from tasks.settle import settle

    net = connect(load_settings())
    upload, plan, assignment, training = _verified(net, "0x" + "5b" * 32)
    score(SMALL, upload, plan, training, net)
    # a stranger who reads the order on chain takes every name it can know before Wasp and the validators write,
    # in their folders (a store without per-party policies lets it)
    squatter = Identity.generate("squatter")
    junk, _ = put_signed(net.store, squatter, plan, name="not a case, not a delivery")
    for owner in (net.wasp().address, *(v.address for v in plan.validators)):
        for name in ("case", "delivery", "delivery-"):
            net.store.put_pointer(owner, f"orders/{upload.order_id.lower()}/task-0/{name}", junk)
    verdict = wasp_audit(upload, plan, assignment, training, net)
    assert verdict.accepted  # the case is named by the verdict's digest, which nobody knew in time
    settle(upload, net)
    delivery = deliver(upload, plan, training, net)  # and the delivery by its own, recorded on chain
    key = open_stored_grant(net.store, delivery.grant, net.party(CLIENT), order_id=upload.order_id)
    assert get_decrypted(net.store, key, training.final_model, order_id=upload.order_id, role=PROOF_ROLE)
    assert net.market.delivery_of(bytes.fromhex(upload.order_id[2:]), 0, delivery.validator) == digest(delivery)
    assert deliver(upload, plan, training, net) == delivery  # run again, the chain's delivery: no second one
    [case] = reconstruct(upload.order_id, net.store, net.market)
    assert case.verdict == verdict and case.delivery == delivery
    assert recheck(case, net.store, net.market) == []


def test_a_validator_report_naming_a_check_twice_cannot_hide_its_failure(settled, auditor_keys):
    from proof.report import VerificationReport
    from tasks.reaudit import reverify

    net = connect(load_settings())
    report, _ = get_signed(net.store, settled.verification.report, VerificationReport)
    first = report.checks[0]
    doubled = report.model_copy(update={"checks": [first.model_copy(update={"passed": False}), *report.checks]})
    validator = net.party_at(settled.verification.verifier, role="validator")
    ref, _ = put_signed(net.store, validator, doubled, name="a report with a check twice")
    record = settled.model_copy(update={"verification": settled.verification.model_copy(update={"report": ref})})
    check = reverify(record, _as_auditor(net, auditor_keys))
    assert check.problems == [f"check {first.name}: the validator's report has it 2 times",
                              _unattested(settled)]  # and it is not the report the verifier attested


def test_the_cli_tells_a_host_the_order_does_not_name_who_may_re_verify(settled):
    from typer.testing import CliRunner

    from bahen.cli import app

    result = CliRunner().invoke(app, ["audit", "verify", settled.order_id])
    assert result.exit_code != 0
    assert "holds no key of the auditors order" in " ".join(str(result.exception or result.output).split())
