"""The order flow end to end on the embedded defaults: real Prefect, real EVM, real training."""

import asyncio
import math

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
import torch
from contracts.errors import ContractRevert
from prefect.client.orchestration import get_client

from privacy.errors import WrongKeyError
from proof.bundle import ProofBundle
from storage.manifest import Manifest
from training.datasets import CORPUS
from training.models import load_weights

from bahen.artifacts import PROOF_ROLE, get_decrypted, get_signed, open_stored_grant, put_signed
from bahen.delivery import fetch_model
from bahen.errors import BahenError
from bahen.network import connect
from bahen.parties import CLIENT
from bahen.runner import STAGES
from bahen.settings import host_settings, load_settings
from bahen.spec import OrderSpec
from flows.order import order
from tasks.audit import audit
from tasks.deliver import NotDeliverable, deliver
from tasks.encrypt_upload import encrypt_upload
from tasks.score import score, score_one
from tasks.settle import settle
from tasks.shard import shard
from tasks.train import train
from tasks.verify import verify

SMALL = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32)


def _artifacts():
    async def read():
        async with get_client() as client:
            return await client.read_artifacts()

    return asyncio.run(read())


def _paid(record, address):
    return record.settled.payouts_wei.get(address, 0)


def test_honest_order_is_accepted_paid_and_cannot_settle_twice(prefect, tmp_path):
    record = order(SMALL)

    assert [t.stage for t in record.timings] == list(STAGES)
    assert record.verification.passed
    assert all(c["passed"] for c in record.verification.checks if c["decisive"])
    assert record.scores.median_accuracy > 0.5
    assert record.verdict.accepted
    worker = record.shard.assignments[0]
    assert _paid(record, worker.address) == worker.payment_wei
    for slot in record.shard.validators:
        assert _paid(record, slot.address) == slot.fee_wei
    assert record.settled.slashed_wei == {}
    assert record.settled.refund_wei == record.shard.escrow_wei - worker.payment_wei - sum(
        s.fee_wei for s in record.shard.validators
    )

    artifacts = {a.key: a for a in _artifacts()}
    summary = artifacts[f"order-{record.order_id[2:14]}"]
    assert record.order_id in summary.data and "accepted" in summary.data
    assert "data:image/png;base64," in summary.data
    checks = artifacts[f"checks-{record.order_id[2:14]}"]
    rows = [line.split(" | ")[0].removeprefix("| ") for line in checks.data.splitlines()[6:] if line.startswith("| ")]
    assert rows == [c["name"] for c in record.verification.checks] and {"integrity", "replay-random", "loss"} <= set(rows)
    assert all(f"- **{c['name']}** ({c['metric']}): {c['detail']}" in checks.data for c in record.verification.checks)

    net = connect(load_settings())
    with pytest.raises(ContractRevert) as refused:
        net.market.settle(net.party(CLIENT).account, order_id=bytes.fromhex(record.order_id[2:]))
    assert "AlreadySettled" in str(refused.value)

    assert record.status == "settled (accepted), model delivered"
    assert record.delivery.validator == record.shard.validators[0].address
    weights = torch.load(fetch_model(record.order_id, tmp_path / "model.pt"), weights_only=True)
    assert weights and all(torch.isfinite(t).all() for t in weights.values())
    # a .safetensors name gets the same tensors as safetensors: what a fine-tuning order starts from
    same = load_weights(fetch_model(record.order_id, tmp_path / "model.safetensors").read_bytes())
    assert same.keys() == weights.keys() and all(torch.equal(same[k], weights[k]) for k in weights)


def test_worker_that_altered_its_logged_losses_is_rejected_and_not_paid(prefect, cheating_worker):
    cheating_worker("fabricated-losses")
    record = order(SMALL)

    assert not record.verification.passed
    assert not record.verdict.accepted
    worker = record.shard.assignments[0]
    assert _paid(record, worker.address) == 0
    assert record.settled.slashed_wei.get(worker.address, 0) > 0
    assert any("verification-passed" in r and r.startswith("✗") for r in record.verdict.reasons)
    # the slash goes to the verifier's bounty and the treasury; the client gets back its escrow only
    client = record.upload.client
    assert [c.kind for c in record.settled.credits if c.account == client] == ["refund"]
    verifier = record.shard.validators[0].address
    kinds = {(c.account, c.kind) for c in record.settled.credits}
    assert (verifier, "bounty") in kinds and any(kind == "treasury" for _, kind in kinds)
    slashed = sum(x.amount for x in record.settled.slashes)
    assert slashed == sum(c.amount for c in record.settled.credits if c.kind in ("bounty", "treasury"))
    # a rejected task's model is not delivered
    assert record.delivery is None and record.status == "settled (rejected), no model delivered"
    with pytest.raises(BahenError, match="no delivered model"):
        fetch_model(record.order_id, record.order_id + ".pt")


def test_the_client_holds_no_key_to_the_model_until_the_verdict_is_final(prefect, bahen_home):
    net = connect(load_settings())
    client = net.party(CLIENT)
    upload = encrypt_upload(SMALL, net, salt="0x" + "5e" * 32)
    plan = shard(SMALL, upload, net)
    [assignment] = plan.assignments
    training = train(SMALL, upload, assignment, net)
    # the worker wrapped its model key to the order's validators and to itself, to nobody else
    assert set(training.model_grants) == {slot.address for slot in plan.validators} | {assignment.address}
    for ref in upload.client_grants.values():  # the client's own keys open the splits, never the model
        with pytest.raises(WrongKeyError):
            get_decrypted(net.store, open_stored_grant(net.store, ref, client, order_id=upload.order_id),
                          training.final_model, order_id=upload.order_id, role=PROOF_ROLE)
    verify(SMALL, upload, plan, assignment, training, net)
    score(SMALL, upload, plan, training, net)
    assert audit(upload, plan, assignment, training, net).accepted
    with pytest.raises(NotDeliverable, match="is open on chain"):  # accepted, but inside the dispute window
        deliver(upload, plan, training, net)

    settle(upload, net)
    delivery = deliver(upload, plan, training, net)
    key = open_stored_grant(net.store, delivery.grant, client, order_id=upload.order_id)
    assert get_decrypted(net.store, key, training.final_model, order_id=upload.order_id, role=PROOF_ROLE)


def _labelled_csv(path, *, classes: int, random_labels: bool):
    """Digits of the first `classes` classes; with `random_labels`, labels drawn independently of the images."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    keep = y < classes
    X, y = X[keep] / 16.0, y[keep]
    if random_labels:
        y = np.random.default_rng(7).permutation(np.arange(len(y)) % classes)
    columns = {f"x{i}": X[:, i] for i in range(X.shape[1])} | {"label": y.astype("int64")}
    pa_csv.write_csv(pa.table(columns), path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("classes", "random_labels"), [(2, False), (3, True)], ids=["binary", "random-labels"])
def test_honest_work_is_paid_whatever_the_model_learns(prefect, tmp_path, classes, random_labels):
    path = _labelled_csv(tmp_path / f"data{classes}.csv", classes=classes, random_labels=random_labels)
    # a salt of its own fixes the order id, hence the training seed: from a seed drawn anew each run, the nine
    # steps left the binary model under the above-chance bound in one run of six
    state = order(OrderSpec(dataset_path=str(path), model="mlp", epochs=1, checkpoint_every=4, batch_size=32),
                  salt="0x" + f"e{classes}" * 32, return_state=True)
    record = state.result()
    with get_client(sync_client=True) as client:  # the run is named after the client's file, not a sample dataset
        assert client.read_flow_run(state.state_details.flow_run_id).name == f"order-mlp-{path.name}"

    assert record.verdict.accepted and record.verification.passed
    worker = record.shard.assignments[0]
    assert _paid(record, worker.address) == worker.payment_wei and record.settled.slashed_wei == {}
    report = record.verdict.model_report
    assert report.chance_accuracy == pytest.approx(1 / classes)
    above_chance = next(f for f in report.findings if f.rule == "above-chance")
    assert above_chance.passed != random_labels  # the report tells the client there was nothing to learn


def test_a_language_model_order_is_accepted_and_beats_the_unigram_baseline(prefect, tmp_path):
    corpus = CORPUS.read_bytes()[:200_000]  # a client's own text: the first 200 KB of the plays
    path = tmp_path / "plays.txt"
    path.write_bytes(corpus)
    spec = OrderSpec(dataset_path=str(path), model="gpt", context=64, optimizer="adamw", lr=3e-3, epochs=1,
                     checkpoint_every=10)
    record = order(spec)

    assert record.verdict.accepted and record.verification.passed
    assert record.upload.input_shape == [64] and record.upload.num_classes == 256
    # the holdout is the text's last fifth; a model that knew only byte frequencies would score its entropy
    tail = np.frombuffer(corpus[len(corpus) - record.upload.holdout_rows * 64 - 1:], dtype=np.uint8)
    frequencies = np.bincount(tail, minlength=256)[np.bincount(tail, minlength=256) > 0] / len(tail)
    unigram = math.exp(-(frequencies * np.log(frequencies)).sum())
    report = record.verdict.model_report
    assert report.perplexity < unigram and math.exp(report.input_blind_loss) == pytest.approx(unigram, rel=0.01)
    assert next(f for f in report.findings if f.rule == "uses-its-input").passed


def test_a_worker_with_two_devices_trains_a_sharded_order_on_two_processes_and_is_paid(prefect):
    spec = SMALL.model_copy(update={"grad_shards": 2, "model": "cnn"})
    with host_settings(train_processes=2):
        record = order(spec)

    assert record.training.processes == 2
    assert record.verification.passed and record.verdict.accepted
    worker = record.shard.assignments[0]
    assert _paid(record, worker.address) == worker.payment_wei


def test_an_image_folder_order_is_accepted_and_its_classes_named(prefect, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        if label in (3, 8):  # two classes, each in a folder named after it
            folder = tmp_path / "digits" / ("three" if label == 3 else "eight")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((image * 255 / 16).astype(np.uint8)).save(folder / f"{i}.png")
    record = order(SMALL.model_copy(update={"dataset_path": str(tmp_path / "digits"), "epochs": 3}))

    assert record.verdict.accepted and record.verification.passed
    assert record.upload.input_shape == [1, 8, 8] and record.upload.num_classes == 2
    assert all(f.passed for f in record.verdict.model_report.findings)  # above chance, using its input
    manifest, _ = get_signed(connect(load_settings()).store, record.upload.manifest, Manifest)
    assert manifest.meta["class_names"] == ["eight", "three"]


def test_a_fine_tuning_order_starts_from_the_clients_weights(prefect, tmp_path):
    from safetensors.torch import save_file
    from training.datasets import load_dataset, table_to_arrays
    from training.models import weights_digest
    from training.trainer import TrainSpec, train

    X, y, shape = table_to_arrays(load_dataset("digits"))  # the client's own model, trained at home
    pretrained = train(TrainSpec(model="mlp", input_shape=shape, num_classes=10, optimizer="sgd", lr=0.05, batch_size=32,
                                 epochs=3, seed=5, checkpoint_every=1000), X, y).final_state
    save_file(pretrained, tmp_path / "start.safetensors")
    record = order(SMALL.model_copy(update={"initial_weights_path": str(tmp_path / "start.safetensors")}))

    assert record.verdict.accepted and record.verification.passed
    assert record.upload.initial_weights == weights_digest(pretrained)
    init = next(c for c in record.verification.checks if c["name"] == "initialization")
    assert init["passed"] and init["detail"] == "initial weights equal the client's starting weights"
    # it goes on from the client's model: its first loss is far below a fresh model's ln(10) = 2.3
    assert record.training.losses[0] < 1.0


def test_a_final_model_larger_than_the_order_allows_is_scored_as_an_error_unfetched(prefect, bahen_home):
    net = connect(load_settings())
    upload = encrypt_upload(SMALL, net, salt="0x" + "6e" * 32)
    plan = shard(SMALL, upload, net)
    training = train(SMALL, upload, plan.assignments[0], net)
    # its worker signs a manifest declaring the final model 10^12 bytes: the leaves hash the stored bytes, not
    # the declared size, so the manifest's root is still the committed one
    bundle, _ = get_signed(net.store, training.bundle, ProofBundle)
    step, last = bundle.checkpoints[-1]
    declared = last.model_copy(update={"size": 10**12})
    lying, _ = put_signed(net.store, net.party_at(plan.assignments[0].address, role="worker"),
                          bundle.model_copy(update={"checkpoints": [*bundle.checkpoints[:-1], (step, declared)]}),
                          name="a manifest declaring a huge final model")
    huge = training.model_copy(update={"bundle": lying, "final_model": declared})
    for slot in plan.validators:
        report = score_one(SMALL, upload, huge, slot, net)
        assert "a model of this order takes; it was not fetched" in report.error and math.isnan(report.accuracy)
