"""A party acts only on the order the chain and its client's signed manifest fix, whoever hands it the inputs.

Every stage of another party takes the order's spec and upload as its run's parameters: from the
client's order flow, or from anyone who can create a run on the shared Prefect server. A worker that
trained what it was handed, when that differs from the order, would commit a proof the validators
reject (re-executing the order's own inputs), and be slashed for honest work: the bounty would go to
the validators, so a validator (or a client out to hurt a worker) gains by handing it such a run.
Validators, Wasp and the delivering validator likewise judge and deliver only the task's own evidence.
"""

import pytest
from privacy.identity import Identity
from privacy.stream import new_data_key
from proof.bundle import ProofBundle
from proof.wasp import LOSS_GAP
from proof.response import Response
from storage.manifest import Manifest

from bahen.artifacts import PROOF_ROLE, get_decrypted, get_signed, open_stored_grant, put_grant, put_signed
from bahen.audit import delivering_validator
from bahen.network import connect
from bahen.parties import CLIENT
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from bahen.worker_runs import WorkerRunBook
from tasks.audit import audit
from tasks.deliver import deliver
from tasks.encrypt_upload import encrypt_upload
from tasks.inputs import InputMismatch
from tasks.score import score, score_as
from tasks.settle import settle
from tasks.shard import shard
from tasks.train import train
from tasks.verify import verify

SMALL = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32)


def _handed(upload, change: str, net):
    """The order's spec and upload with one thing changed, as a stranger's run would carry them."""
    spec, altered = SMALL, upload
    if change == "spec":
        spec = SMALL.model_copy(update={"lr": SMALL.lr * 10})
    elif change == "train split":
        altered = upload.model_copy(update={"train": upload.holdout})
    elif change == "input shape":
        altered = upload.model_copy(update={"input_shape": [upload.input_shape[0] // 2]})
    elif change == "classes":
        altered = upload.model_copy(update={"num_classes": upload.num_classes - 1})
    elif change == "rows":
        altered = upload.model_copy(update={"train_rows": upload.train_rows - 1, "holdout_rows": upload.holdout_rows + 1})
    elif change == "client":
        altered = upload.model_copy(update={"client": Identity.generate("stranger").address})
    elif change == "salt":
        altered = upload.model_copy(update={"salt": "0x" + "00" * 32})
    elif change == "salt of no form":
        altered = upload.model_copy(update={"salt": "0x00"})
    elif change == "manifest":  # the train split swapped in a manifest of the same order, signed by its maker
        manifest, _ = get_signed(net.store, upload.manifest, Manifest)
        entries = [e.model_copy(update={"ref": upload.holdout}) if e.role == "train" else e for e in manifest.entries]
        ref, _ = put_signed(net.store, Identity.generate("stranger"), manifest.model_copy(update={"entries": entries}),
                            name="a manifest of its own")
        altered = upload.model_copy(update={"train": upload.holdout, "manifest": ref})
    return spec, altered


@pytest.fixture(scope="module")
def placed(prefect):
    net = connect(load_settings())
    upload = encrypt_upload(SMALL, net, salt="0x" + "4d" * 32)
    plan = shard(SMALL, upload, net)
    return net, upload, plan


CHANGES = ["spec", "train split", "input shape", "classes", "rows", "client", "salt", "salt of no form", "manifest"]


@pytest.mark.parametrize("change", CHANGES)
def test_a_worker_handed_anything_but_its_orders_inputs_trains_nothing_and_commits_nothing(placed, change):
    net, upload, plan = placed
    [assignment] = plan.assignments
    spec, handed = _handed(upload, change, net)
    with pytest.raises(InputMismatch, match=f"order {handed.order_id}"):
        train(spec, handed, assignment, net)
    task = net.market.order(bytes.fromhex(upload.order_id[2:])).tasks[0]
    assert task.commit_block == 0 and int(task.root, 16) == 0
    assert WorkerRunBook(load_settings().worker_runs_dir).load(upload.order_id, 0) is None


def _regranted(plan, slot: int, role: str, ref):
    """The shard with validator ``slot``'s grant of ``role`` replaced by ``ref``."""
    validators = list(plan.validators)
    validators[slot] = validators[slot].model_copy(update={"grants": {**validators[slot].grants, role: ref}})
    return plan.model_copy(update={"validators": validators})


def _refused(call, match: str) -> None:
    with pytest.raises(InputMismatch, match=match):
        call()


def test_nothing_a_stranger_hands_the_worker_validators_or_wasp_gets_honest_work_rejected(placed):
    """The whole task, with a stranger's run of every stage of another party before the honest one."""
    net, upload, plan = placed
    [assignment] = plan.assignments
    oid, stranger = bytes.fromhex(upload.order_id[2:]), Identity.generate("stranger")
    validator = net.party_at(plan.validators[0].address, role="validator")
    audit_case = lambda training, shard=plan, handed=assignment, up=upload: audit(up, shard, handed, training, net)  # noqa: E731

    _refused(lambda: train(*_handed(upload, "spec", net), assignment, net), "does not hash to")
    training = train(SMALL, upload, assignment, net)
    _refused(lambda: audit_case(training), "has attested no verification report of task 0 on chain: nothing was "
             "judged. Wait for the verify stage")

    bundle, _ = get_signed(net.store, training.bundle, ProofBundle)
    response, _ = get_signed(net.store, training.response, Response)
    forged_bundle, _ = put_signed(net.store, stranger, bundle, name="a copy of the proof manifest")
    forged_response, _ = put_signed(net.store, stranger, response, name="a copy of the response")
    other_key = put_grant(net.store, new_data_key(), validator.public(), order_id=upload.order_id, role="task 0 model")
    # what a second run of the worker's own train stage, started by a stranger beside the worker's, signs
    orphan, _ = put_signed(net.store, net.party_at(assignment.address, role="worker"),
                           bundle.model_copy(update={"merkle_root": "ab" * 32}), name="another run's proof manifest")
    handed = {
        "the proof manifest handed over .* is not one its worker": training.model_copy(update={"bundle": forged_bundle}),
        "the challenge response handed over .*none was handed over": training.model_copy(update={"response": None}),
        "the challenge response handed over .* is not one its worker": training.model_copy(
            update={"response": forged_response}),
        "the model key of order .* is not the one its proof is sealed under": training.model_copy(
            update={"model_grants": {**training.model_grants, validator.address: other_key}}),
        "the model key of order .* does not open": training.model_copy(
            update={"model_grants": {**training.model_grants, validator.address: training.bundle}}),
        "the proof manifest handed over .* not the root": training.model_copy(update={"bundle": orphan}),
        "the final model handed over .* is not the last checkpoint": training.model_copy(
            update={"final_model": bundle.checkpoints[0][1]}),
    }
    for match, altered in handed.items():
        _refused(lambda altered=altered: verify(SMALL, upload, plan, assignment, altered, net), match)
        _refused(lambda altered=altered: score(SMALL, upload, plan, altered, net), match)
    _refused(lambda: verify(SMALL, upload, plan, assignment.model_copy(update={"task": 1}), training, net),
             "the assignment handed over is of task 1")
    _refused(lambda: score(*_handed(upload, "train split", net), plan, training, net), "differs from its client-signed")
    _refused(lambda: verify(SMALL, upload, plan.model_copy(update={"validators": []}), assignment, training, net),
             "names no validator")
    _refused(lambda: verify(SMALL, upload, plan.model_copy(update={"validators": plan.validators[::-1]}), assignment,
                            training, net), f"names {plan.validators[1].address} first, not the order's verifier")
    granted_nothing = [v.model_copy(update={"grants": {}}) for v in plan.validators]
    _refused(lambda: verify(SMALL, upload, plan.model_copy(update={"validators": granted_nothing}), assignment,
                            training, net), "holds no grant of the train split")
    _refused(lambda: score_as(SMALL, upload, training, granted_nothing[1], net), "holds no grant of the holdout split")
    no_id = upload.model_copy(update={"order_id": "0x" + "zz" * 32})
    _refused(lambda: verify(SMALL, no_id, plan, assignment, training, net), "'0xzz.*', which is no order id")
    _refused(lambda: score_as(SMALL, no_id, training, plan.validators[1], net), "which is no order id")
    _refused(lambda: score_as(SMALL, upload, training.model_copy(update={"task": -1}), plan.validators[1], net),
             "has no task -1")
    assert all(net.market.report_of(oid, 0, kind, v.address) == bytes(32) for kind in (0, 1) for v in plan.validators)

    verification = verify(SMALL, upload, plan, assignment, training, net)
    assert verification.passed, [c for c in verification.checks if not c["passed"]]
    score(SMALL, upload, plan, training, net)
    not_the_worker = "the worker handed over for task 0 .* is not the one the chain names"
    not_the_validators = "the validators handed over .* are not the ones the chain names, in its slot order and each"
    not_the_assignments = "the assignments handed over .* are not the tasks and workers the chain names, each once"
    junk = net.store.put(b"{}", name="not a grant")
    one_key = new_data_key()  # one key, correctly wrapped to every member, but not the one the proof is sealed under
    members = [(v.address, "validator") for v in plan.validators] + [(assignment.address, "worker")]
    to_stranger = put_grant(net.store, new_data_key(), stranger.public(), order_id=upload.order_id, role="holdout")
    other_split_key = put_grant(net.store, new_data_key(), validator.public(), order_id=upload.order_id, role="train")
    cases = [
        (not_the_worker, dict(handed=assignment.model_copy(update={"address": plan.validators[1].address}))),
        (not_the_worker, dict(training=training.model_copy(update={"worker": stranger.address}))),
        (not_the_worker, dict(shard=plan.model_copy(update={"assignments": []}))),
        (not_the_validators, dict(shard=plan.model_copy(update={"validators": plan.validators[:1]}))),
        (not_the_validators, dict(shard=plan.model_copy(update={"validators": [*plan.validators, *plan.validators]}))),
        (not_the_validators, dict(shard=plan.model_copy(update={"validators": [
            v.model_copy(update={"address": v.address.lower()}) for v in plan.validators]}))),
        # the chain's slot order decides who verified and who delivers; the names label the scores
        (not_the_validators, dict(shard=plan.model_copy(update={"validators": plan.validators[::-1]}))),
        (not_the_validators, dict(shard=plan.model_copy(update={"validators": [
            v.model_copy(update={"name": "v"}) for v in plan.validators]}))),
        ("the proof manifest handed over", dict(training=training.model_copy(update={"bundle": forged_bundle}))),
        ("the proof manifest handed over .* not the root", dict(training=training.model_copy(update={"bundle": orphan}))),
        # what Wasp signs into its audit case must hold when an auditor re-checks the case: every assignment
        # the chain's, every grant stored whole and the order's, to the party it is filed under
        (not_the_assignments, dict(shard=plan.model_copy(update={"assignments": [
            assignment, assignment.model_copy(update={"task": 1})]}))),
        (not_the_assignments, dict(shard=plan.model_copy(update={"assignments": [assignment, assignment]}))),
        # labels name files in an audit export: a path would make every later export fail
        (not_the_assignments, dict(shard=plan.model_copy(update={"assignments": [
            assignment.model_copy(update={"worker": "../outside"})]}), handed=assignment.model_copy(
            update={"worker": "../outside"}))),
        (not_the_validators, dict(shard=plan.model_copy(update={"validators": [
            plan.validators[0], plan.validators[1].model_copy(update={"name": "../../outside"})]}))),
        ("the model grants handed over .* wrap another key, not the one its worker's proof is sealed under", dict(
            training=training.model_copy(update={"model_grants": {to: put_grant(
                net.store, one_key, net.party_at(to, role=role).public(),
                order_id=upload.order_id, role="task 0 model") for to, role in members}}))),
        ("the train grant handed over for .* cannot be read", dict(shard=_regranted(plan, 1, "train", junk))),
        ("the holdout grant handed over for .* is a key grant of order .* for 0x.*, not that party's",
         dict(shard=_regranted(plan, 1, "holdout", to_stranger))),
        ("the train grant handed over for .* wraps another key than the client's own grant of that split",
         dict(shard=_regranted(plan, 0, "train", other_split_key))),
        ("the weights grant handed over for .* wraps another key than the client's own grant of that split",
         dict(shard=_regranted(plan, 0, "weights", plan.validators[0].grants["train"]))),
        ("holds model grants to others than the order's validators and its worker", dict(training=training.model_copy(
            update={"model_grants": {**training.model_grants, stranger.address: to_stranger}}))),
        ("the model grants handed over .* wrap different keys", dict(training=training.model_copy(
            update={"model_grants": {**training.model_grants, validator.address: other_key}}))),
        ("the model grant handed over for .* cannot be read", dict(training=training.model_copy(
            update={"model_grants": {**training.model_grants, validator.address: junk}}))),
        ("differs from its client-signed manifest and the chain in auditor_grants, client_grants", dict(
            up=upload.model_copy(update={"auditor_grants": {stranger.address: upload.train}, "client_grants": {}}))),
        ("differs from its client-signed manifest and the chain in order_id", dict(
            up=upload.model_copy(update={"order_id": "0x" + upload.order_id[2:].upper()}))),
    ]
    for match, case in cases:
        _refused(lambda case=case: audit_case(**{"training": training, **case}), match)
    assert net.market.order(oid).tasks[0].verdict == "none"

    # a training loss handed over is not what Wasp weighs the holdout loss against: the worker's step log is
    decision = audit_case(training.model_copy(update={"final_loss": 1e-9}))
    assert decision.accepted
    [consistent] = [f for f in decision.model_report.findings if f.rule == "loss-consistent"]
    assert consistent.passed and f"bound {LOSS_GAP * training.final_loss + 0.5:.4f} from" in consistent.detail
    settle(upload, net)
    ledger = net.market.ledger(oid)
    assert ledger.slashes == [] and ledger.total("task payment") == net.market.order(oid).tasks[0].payment

    _refused(lambda: deliver(upload.model_copy(update={"client": stranger.address}), plan, training, net),
             "differs from its client-signed manifest and the chain in client")
    _refused(lambda: deliver(upload, plan.model_copy(update={"validators": plan.validators[::-1]}), training, net),
             "the validators handed over .* are not the ones the chain names, in its slot order")
    deliverer = net.party_at(delivering_validator(plan, net.market.order(oid)).address, role="validator")
    other_key = put_grant(net.store, new_data_key(), deliverer.public(), order_id=upload.order_id, role="task 0 model")
    _refused(lambda: deliver(upload, plan, training.model_copy(
        update={"model_grants": {**training.model_grants, deliverer.address: other_key}}), net),
        "is not the one its proof is sealed under")
    assert net.market.delivery_of(oid, 0, deliverer.address) == bytes(32)
    delivery = deliver(upload, plan, training, net)
    key = open_stored_grant(net.store, delivery.grant, net.party(CLIENT), order_id=upload.order_id)
    assert get_decrypted(net.store, key, training.final_model, order_id=upload.order_id, role=PROOF_ROLE)
