"""What a party checks of what it is handed (``tasks.inputs``), field by field, on a real devnet.

Each field of the upload, the spec and the salt is changed alone, as a stranger's run would carry it,
and the check must name that field and nothing else; the order's own inputs pass, whatever the
letter case of an auditor's address. The worker's evidence and the model key are judged only when
they are the ones the worker the chain names signed, committed and sealed its proof under.
"""

import pytest
from privacy.errors import TamperedError
from privacy.identity import Identity
from privacy.stream import key_id, new_data_key
from proof.bundle import ProofBundle
from proof.response import Response
from storage.errors import StoreUnavailableError
from storage.manifest import Manifest
from storage.refs import ArtifactRef

from bahen.artifacts import get_signed, open_stored_grant, put_signed
from bahen.parties import CLIENT
from bahen.spec import OrderSpec
from tasks.encrypt_upload import encrypt_upload
from tasks.inputs import InputMismatch, check_case_grants, check_inputs, proof_key, signed_inputs, worker_evidence
from tasks.shard import shard
from tasks.train import train

AUDITOR = Identity.generate("auditor")
SPEC = OrderSpec(dataset="digits", model="mlp", epochs=1, auditors=[f"{AUDITOR.address}:{AUDITOR.x25519_public.hex()}"])
STRANGER = Identity.generate("stranger")


@pytest.fixture(scope="module")
def opened(net):
    """Two orders of one client, opened on chain with the same spec: each upload with its shard."""
    uploads = [encrypt_upload(SPEC, net, salt="0x" + salt * 32) for salt in ("a1", "a2")]
    return [(upload, shard(SPEC, upload, net)) for upload in uploads]


@pytest.fixture(scope="module")
def tuned(net, tmp_path_factory):
    """A fine-tuning order: its upload names the client's starting weights and their digest."""
    from safetensors.torch import save_file
    from training.models import build_model

    path = tmp_path_factory.mktemp("weights") / "start.safetensors"
    save_file(build_model("mlp", seed=3, input_shape=(1, 8, 8), num_classes=10).state_dict(), path)
    spec = SPEC.model_copy(update={"initial_weights_path": str(path)})
    upload = encrypt_upload(spec, net, salt="0x" + "a3" * 32)
    shard(spec, upload, net)
    return spec, upload


@pytest.fixture(scope="module")
def placed(opened):
    return [upload for upload, _ in opened]


@pytest.fixture(scope="module")
def trained(net, opened):
    """The first order's task trained and committed by the worker the chain drew, as its train stage does."""
    (upload, plan), _ = opened
    [assignment] = plan.assignments
    training = train(SPEC, upload, assignment, net)
    order = net.market.order(bytes.fromhex(upload.order_id[2:]))
    validator = net.party_at(plan.validators[0].address, role="validator")
    return upload, order, training, validator


def _changed(upload, field: str, other):
    """``upload`` with ``field`` alone changed."""
    values = {
        "spec_hash": "0x" + "00" * 32, "client": STRANGER.address,
        "rows": upload.rows + 1, "train_rows": upload.train_rows + 1, "holdout_rows": upload.holdout_rows - 1,
        "input_shape": [upload.input_shape[0] + 1, *upload.input_shape[1:]], "num_classes": upload.num_classes - 1,
        "expectations": upload.expectations + 1, "train": upload.holdout, "holdout": upload.train,
        "weights": upload.train, "initial_weights": "0x" + "11" * 32,
        "client_grants": {"train": upload.client_grants["holdout"], "holdout": upload.client_grants["train"]},
        "auditor_grants": {STRANGER.address: upload.auditor_grants[AUDITOR.address]},
        "client_x25519": STRANGER.x25519_public.hex(), "salt": other.salt,
    }
    return upload.model_copy(update={field: values[field]})


FIELDS = ["spec_hash", "client", "rows", "train_rows", "holdout_rows", "input_shape", "num_classes", "expectations",
          "train", "holdout", "weights", "initial_weights", "client_grants", "auditor_grants", "client_x25519", "salt"]


def _mismatch(upload, fields: str) -> str:
    return f"the upload of order {upload.order_id} differs from its client-signed manifest and the chain in {fields}"


def test_the_orders_own_inputs_pass_and_give_the_order_as_the_chain_holds_it(net, placed):
    upload = placed[0]
    order = check_inputs(SPEC, upload, 0, net)
    assert order.order_id == upload.order_id and order.client == upload.client == net.party(CLIENT).address
    spec, manifest, same = signed_inputs(upload, 0, net)
    assert (spec, manifest.order_id, same) == (SPEC, upload.order_id, order)


def test_an_auditors_address_in_another_letter_case_is_the_same_auditor(net, placed):
    upload = placed[0]
    (address, grant), = upload.auditor_grants.items()
    for form in (address.lower(), "0x" + address[2:].upper()):
        assert check_inputs(SPEC, upload.model_copy(update={"auditor_grants": {form: grant}}), 0, net).order_id == upload.order_id
    # but not twice, in two letter cases: the record would carry a grant nobody checked beside the real one
    twice = {address: upload.train, address.lower(): grant}
    with pytest.raises(InputMismatch, match="differs from its client-signed manifest and the chain in auditor_grants$"):
        check_inputs(SPEC, upload.model_copy(update={"auditor_grants": twice}), 0, net)


@pytest.mark.parametrize("field", FIELDS)
def test_each_field_of_the_upload_changed_alone_is_named(net, placed, field):
    upload, other = placed
    handed = _changed(upload, field, other)
    assert handed != upload
    for check in (lambda: check_inputs(SPEC, handed, 0, net), lambda: signed_inputs(handed, 0, net)):
        with pytest.raises(InputMismatch) as refused:
            check()
        assert str(refused.value) == _mismatch(upload, field)


@pytest.mark.parametrize("field", ["weights", "initial_weights"])
def test_a_fine_tuning_orders_starting_weights_left_out_are_named(net, tuned, field):
    spec, upload = tuned
    assert check_inputs(spec, upload, 0, net).order_id == upload.order_id
    with pytest.raises(InputMismatch) as refused:
        check_inputs(spec, upload.model_copy(update={field: None}), 0, net)
    assert str(refused.value) == _mismatch(upload, field)


def test_the_upload_of_another_order_names_its_id_and_salt(net, placed):
    upload, other = placed
    handed = upload.model_copy(update={"order_id": other.order_id})  # the other order's chain record, this manifest
    with pytest.raises(InputMismatch) as refused:
        check_inputs(SPEC, handed, 0, net)
    assert str(refused.value) == _mismatch(handed, "order_id, salt")


@pytest.mark.parametrize("salt", ["0x00", "0xzz" + "00" * 31, "", "0x" + "00" * 33])
def test_a_salt_of_no_form_is_named_not_raised(net, placed, salt):
    upload = placed[0]
    with pytest.raises(InputMismatch) as refused:
        check_inputs(SPEC, upload.model_copy(update={"salt": salt}), 0, net)
    assert str(refused.value) == _mismatch(upload, "salt")


def test_a_spec_other_than_the_orders_is_named(net, placed):
    upload = placed[0]
    with pytest.raises(InputMismatch) as refused:
        check_inputs(SPEC.model_copy(update={"lr": SPEC.lr * 10}), upload, 0, net)
    order = net.market.order(bytes.fromhex(upload.order_id[2:]))
    assert str(refused.value) == (f"the order spec handed over does not hash to order {upload.order_id}'s spec hash "
                                  f"{order.spec_hash} on chain")


@pytest.mark.parametrize("task", [-1, 1, 2**255])
def test_a_task_the_order_does_not_have_is_named(net, placed, task):
    upload = placed[0]
    for check in (lambda: check_inputs(SPEC, upload, task, net), lambda: signed_inputs(upload, task, net)):
        with pytest.raises(InputMismatch) as refused:
            check()
        assert str(refused.value) == f"order {upload.order_id} has no task {task}"


def _manifest(net, upload, signer, **meta):
    """The upload with its manifest's meta updated by ``meta`` and signed again by ``signer``."""
    manifest, _ = get_signed(net.store, upload.manifest, Manifest)
    ref, _ = put_signed(net.store, signer, manifest.model_copy(update={"meta": manifest.meta | meta}), name="a manifest")
    return upload.model_copy(update={"manifest": ref})


def test_a_manifest_its_client_did_not_sign_is_named(net, placed):
    handed = _manifest(net, placed[0], STRANGER)
    for check in (lambda: check_inputs(SPEC, handed, 0, net), lambda: signed_inputs(handed, 0, net)):
        with pytest.raises(InputMismatch, match=f"the dataset manifest of order {handed.order_id} is not its client's: "):
            check()


def test_a_manifest_its_client_signed_again_with_other_figures_is_named(net, placed):
    upload = placed[0]
    handed = _manifest(net, upload, net.party(CLIENT), rows=upload.rows + 1, num_classes=upload.num_classes + 1)
    with pytest.raises(InputMismatch) as refused:
        check_inputs(SPEC, handed, 0, net)
    assert str(refused.value) == _mismatch(upload, "num_classes, rows")


@pytest.mark.parametrize("spec, named", [
    (None, "holds no order spec its client signed (KeyError: 'spec')"),
    ({"dataset": "nope"}, "holds no order spec its client signed (ValidationError: "),
    ({"dataset": "digits"}, "does not hash to its spec hash"),
])
def test_the_spec_a_party_reads_from_the_manifest_must_be_the_orders(net, placed, spec, named):
    upload = placed[0]
    manifest, _ = get_signed(net.store, upload.manifest, Manifest)
    meta = {k: v for k, v in manifest.meta.items() if k != "spec"} | ({} if spec is None else {"spec": spec})
    ref, _ = put_signed(net.store, net.party(CLIENT), manifest.model_copy(update={"meta": meta}), name="no spec")
    with pytest.raises(InputMismatch) as refused:
        signed_inputs(upload.model_copy(update={"manifest": ref}), 0, net)
    assert f"order {upload.order_id}" in str(refused.value) and named in str(refused.value)


def test_the_workers_committed_evidence_is_given_back_as_it_signed_it(net, trained):
    upload, order, training, _ = trained
    bundle, response = worker_evidence(training, order, 0, net)
    assert bundle == get_signed(net.store, training.bundle, ProofBundle, expected_signer=order.tasks[0].worker)[0]
    assert response == get_signed(net.store, training.response, Response, expected_signer=order.tasks[0].worker)[0]
    assert (bundle.order_id, bundle.task, "0x" + bundle.merkle_root) == (upload.order_id, 0, order.tasks[0].root)
    assert training.final_model == bundle.checkpoints[-1][1]


def test_a_task_with_no_commitment_has_no_evidence_to_judge(net, opened, trained):
    (_, _), (other, _) = opened
    _, _, training, _ = trained
    uncommitted = net.market.order(bytes.fromhex(other.order_id[2:]))
    with pytest.raises(InputMismatch) as refused:
        worker_evidence(training, uncommitted, 0, net)
    assert str(refused.value) == (f"task 0 of order {other.order_id} has no proof committed on chain: nothing to judge yet")


def _evidence_refused(net, order, training) -> str:
    with pytest.raises(InputMismatch) as refused:
        worker_evidence(training, order, 0, net)
    return str(refused.value)


@pytest.mark.parametrize("what, field", [("proof manifest", "bundle"), ("challenge response", "response")])
def test_evidence_its_worker_did_not_sign_is_the_handers(net, trained, what, field):
    upload, order, training, _ = trained
    worker = order.tasks[0].worker
    document, _ = get_signed(net.store, getattr(training, field), ProofBundle if field == "bundle" else Response)
    copy, _ = put_signed(net.store, STRANGER, document, name="a copy")
    for handed, cause in ((copy, f"the document is signed by {STRANGER.address}, not by the expected {worker}"),
                          (None, "none was handed over")):
        assert _evidence_refused(net, order, training.model_copy(update={field: handed})) == (
            f"the {what} handed over for order {upload.order_id} task 0 is not one its worker {worker} signed ({cause}): "
            "nothing was judged. Hand over the worker's train result")


@pytest.mark.parametrize("what, field", [("proof manifest", "bundle"), ("challenge response", "response")])
@pytest.mark.parametrize("change", ["order_id", "task", "merkle_root"])
def test_evidence_its_worker_signed_for_another_order_task_or_root_is_not_this_tasks(net, trained, what, field, change):
    upload, order, training, _ = trained
    worker = net.party_at(order.tasks[0].worker, role="worker")
    document, _ = get_signed(net.store, getattr(training, field), ProofBundle if field == "bundle" else Response)
    value = {"order_id": "0x" + "ee" * 32, "task": 1, "merkle_root": "ab" * 32}[change]
    other, _ = put_signed(net.store, worker, document.model_copy(update={change: value}), name="another of its runs")
    claimed = {"order_id": upload.order_id, "task": 0, "merkle_root": document.merkle_root} | {change: value}
    assert _evidence_refused(net, order, training.model_copy(update={field: other})) == (
        f"the {what} handed over for order {upload.order_id} task 0 is its worker's for order {claimed['order_id']} task "
        f"{claimed['task']} root {claimed['merkle_root']}, not the root {order.tasks[0].root[2:]} committed on chain: "
        "nothing was judged")


def test_a_final_model_other_than_the_proofs_last_checkpoint_is_the_handers(net, trained):
    upload, order, training, _ = trained
    bundle, _ = worker_evidence(training, order, 0, net)
    for other in (bundle.checkpoints[0][1], bundle.checkpoints[-2][1], training.bundle):
        assert _evidence_refused(net, order, training.model_copy(update={"final_model": other})) == (
            f"the final model handed over for order {upload.order_id} task 0 is not the last checkpoint of its worker's "
            "committed proof: nothing was judged")


def test_the_key_the_proof_is_sealed_under_is_given_back(net, trained):
    upload, order, training, validator = trained
    bundle, _ = worker_evidence(training, order, 0, net)
    key = open_stored_grant(net.store, training.model_grants[validator.address], validator, order_id=upload.order_id)
    assert proof_key(lambda: key, bundle, upload.order_id, 0, net) == key


def test_a_key_that_does_not_open_or_is_not_the_proofs_is_the_handers(net, trained):
    upload, order, training, _ = trained
    bundle, _ = worker_evidence(training, order, 0, net)
    sealed = get_signed(net.store, training.bundle, ProofBundle)[0].step_log

    def unopened():
        raise TamperedError("a grant", "it fails authentication")

    with pytest.raises(InputMismatch) as refused:
        proof_key(unopened, bundle, upload.order_id, 0, net)
    assert str(refused.value) == (f"the model key of order {upload.order_id} task 0 handed over does not open "
                                  "(cannot decrypt a grant: it fails authentication): nothing was judged. Hand over the "
                                  "worker's train result, whose grants the worker wrapped")
    other = new_data_key()
    with pytest.raises(InputMismatch) as refused:
        proof_key(lambda: other, bundle, upload.order_id, 0, net)
    header = net.store.get(sealed)
    assert str(refused.value) == (f"the model key of order {upload.order_id} task 0 handed over ({key_id(other)}) is not "
                                  f"the one its proof is sealed under ({header[16:24].hex()}): nothing was judged")


@pytest.mark.parametrize("step_log", ["missing", "not encrypted"])
def test_a_step_log_the_worker_withheld_or_broke_is_left_to_the_checks(net, trained, step_log):
    upload, order, training, _ = trained
    bundle, _ = worker_evidence(training, order, 0, net)
    broken = (ArtifactRef(name="gone", md5="0" * 32, sha256="0" * 64, size=1) if step_log == "missing" else training.response)
    key = new_data_key()
    assert proof_key(lambda: key, bundle.model_copy(update={"step_log": broken}), upload.order_id, 0, net) == key


@pytest.mark.parametrize("unanswered", ["dataset manifest", "grant", "proof manifest", "challenge response",
                                        "model key", "step log"])
def test_a_store_that_does_not_answer_is_never_taken_for_missing_or_forged_evidence(net, opened, trained, monkeypatch,
                                                                                     unanswered):
    """An outage raises the store's own error at every read of another party's artifact: none takes it for
    a mismatch (the run judges nothing, and a dispute's resolver casts no vote on it)."""
    upload, order, training, validator = trained
    bundle, _ = worker_evidence(training, order, 0, net)
    failing = {"dataset manifest": upload.manifest, "grant": upload.client_grants["train"],
               "proof manifest": training.bundle, "challenge response": training.response,
               "model key": training.model_grants[validator.address], "step log": bundle.step_log}[unanswered]
    read = net.store.iter_chunks

    def unanswered_read(ref, *args, **kwargs):
        if ref == failing:
            raise StoreUnavailableError(f"{net.store.url} does not answer")
        return read(ref, *args, **kwargs)

    monkeypatch.setattr(net.store, "iter_chunks", unanswered_read)
    with pytest.raises(StoreUnavailableError):
        check_inputs(SPEC, upload, 0, net)
        worker_evidence(training, order, 0, net)
        proof_key(lambda: open_stored_grant(net.store, training.model_grants[validator.address], validator,
                                            order_id=upload.order_id), bundle, upload.order_id, 0, net)
        check_case_grants(upload, opened[0][1], training, bundle, order, net)
