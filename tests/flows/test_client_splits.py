"""A client's split must be what its signed manifest declares, and a broken one costs nobody else anything.

The client signs its splits' hashes, not their contents. A client that uploads a split its manifest
misdescribes (labels outside its classes, another input shape, a row count it did not declare,
features that are not numbers) would otherwise crash every scorer, which then attests nothing and
earns no fee while the fee returns to the client, or make a worker train into a crash or into weights
that are not numbers, which the verifier rejects. Each party checks a split once it has decrypted
it (``tasks.train.check_split``): a worker trains nothing on it, a validator signs a report that names it.
"""

import numpy as np
import pyarrow as pa
import pytest
from storage.refs import ArtifactRef
from training.errors import DatasetError

import tasks.encrypt_upload as encrypt_upload_module
from bahen.records import Upload
from bahen.spec import OrderSpec
from tasks.audit import audit, scoring_closes
from tasks.score import score_as
from tasks.settle import settle
from tasks.shard import shard
from tasks.train import check_split, train
from tasks.verify import verify

SMALL = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32)
REF = ArtifactRef(name="train.parquet.enc", sha256="0" * 64, md5="0" * 32, size=1)


def _upload(**declared) -> Upload:
    return Upload.model_construct(**{"train_rows": 4, "holdout_rows": 4, "input_shape": [1, 2], "num_classes": 3,
                                     "train": REF, "holdout": REF, **declared})


def _split(rows=4, shape=(1, 2), labels=(0, 1, 2, 0)):
    X = np.arange(rows * int(np.prod(shape)), dtype=np.float32).reshape(rows, *shape) % 2
    return X, np.array(labels, dtype=np.int64)[:rows]


def test_a_split_as_its_manifest_declares_it_passes():
    check_split(*_split(), _upload(), "train", tokens=False, batch_size=4)
    check_split(*_split(), _upload(), "holdout", tokens=True, batch_size=4)  # features 0 and 1: tokens of three


@pytest.mark.parametrize(("change", "words", "role", "batch"), [
    (lambda X, y: (X[:3], y[:3]), "3 rows where the manifest declares 4", "train", 1),
    (lambda X, y: (X.reshape(4, 2, 1), y), r"inputs of shape \[2, 1\] where the manifest declares \[1, 2\]", "train", 1),
    (lambda X, y: (X, np.array([0, 1, 3, 0])), "labels from 0 to 3, outside the 3 classes it declares", "train", 1),
    (lambda X, y: (X, np.array([0, -1, 2, 0])), "labels from -1 to 2, outside the 3 classes", "train", 1),
    (lambda X, y: (np.where(X == 1, np.nan, X), y), "features that are not finite numbers", "train", 1),
    (lambda X, y: (np.where(X == 1, np.inf, X), y), "features that are not finite numbers", "train", 1),
    (lambda X, y: (X * 1e10, y), "features from 0 to 1e\\+10, outside the 0 to 1 its expectations admit", "train", 1),
    (lambda X, y: (X - 0.5, y), "features from -0.5 to 0.5, outside the 0 to 1", "train", 1),
    (lambda X, y: (X, y), "4 rows, fewer than the 5 a batch of the order takes", "train", 5),
    (lambda X, y: (X[:0], y[:0]), "0 rows, fewer than the 1 a score needs", "holdout", 1),
])
def test_a_split_its_manifest_misdescribes_is_named(change, words, role, batch):
    declared = _upload(holdout_rows=0) if role == "holdout" else _upload()
    with pytest.raises(DatasetError, match=rf"the {role} split train\.parquet\.enc is not the one its client's signed "
                                           rf"manifest declares: .*{words}.*the client must upload its dataset again"):
        check_split(*change(*_split()), declared, role, tokens=False, batch_size=batch)


@pytest.mark.parametrize("value", [3.0, -1.0, 0.5])
def test_a_language_model_split_holds_tokens_of_its_vocabulary(value):
    X = np.full((4, 1, 2), value)
    with pytest.raises(DatasetError, match="inputs that are not tokens of its 3-token vocabulary"):
        check_split(X, _split()[1], _upload(), "holdout", tokens=True, batch_size=1)


def _broken(role: str, label: int, monkeypatch):
    """The client's holdout split (or train split) with one label outside its classes, as a client that skips
    its own expectations would upload it; the manifest still declares the order's classes."""
    real = encrypt_upload_module.split_holdout

    def split(table, fraction, seed):
        parts = dict(zip(("train", "holdout"), real(table, fraction, seed), strict=True))
        labels = parts[role].column("label").to_pylist()
        labels[-1] = label
        at = parts[role].schema.get_field_index("label")
        parts[role] = parts[role].set_column(at, parts[role].schema.field(at), pa.array(labels, type=pa.int64()))
        return parts["train"], parts["holdout"]

    monkeypatch.setattr(encrypt_upload_module, "split_holdout", split)


def _credits(net, order_id, account):
    return [c.kind for c in net.market.ledger(bytes.fromhex(order_id[2:])).credits if c.account == account]


def test_a_broken_holdout_is_reported_by_every_validator_which_earns_its_fee(staked_net, monkeypatch):
    net = staked_net
    _broken("holdout", 99, monkeypatch)
    upload = encrypt_upload_module.encrypt_upload(SMALL, net, salt="0x" + "e5" * 32)
    monkeypatch.undo()
    plan = shard(SMALL, upload, net)
    [assignment] = plan.assignments
    training = train(SMALL, upload, assignment, net)
    verify(SMALL, upload, plan, assignment, training, net)
    for slot in plan.validators:
        report = score_as(SMALL, upload, training, slot, net).report
        assert report.error.startswith("DatasetError: the holdout split") and "labels from 0 to 99" in report.error
        assert report.samples == 0
    net.chain.increase_time(scoring_closes(net.market.order(bytes.fromhex(upload.order_id[2:])), 0) - net.chain.now() + 1)
    verdict = audit(upload, plan, assignment, training, net)
    assert verdict.accepted  # the work was done as ordered: a broken holdout is no fault of the worker's
    settle(upload, net)
    assert "task payment" in _credits(net, upload.order_id, assignment.address)
    for slot in plan.validators:
        assert _credits(net, upload.order_id, slot.address) == ["validator fee"]


def test_a_worker_trains_nothing_on_a_broken_train_split(staked_net, monkeypatch):
    net = staked_net
    _broken("train", -1, monkeypatch)
    upload = encrypt_upload_module.encrypt_upload(SMALL, net, salt="0x" + "c8" * 32)
    monkeypatch.undo()
    [assignment] = shard(SMALL, upload, net).assignments
    with pytest.raises(DatasetError, match="the train split .* labels from -1 to 9, outside the 10 classes"):
        train(SMALL, upload, assignment, net)
    assert net.market.order(bytes.fromhex(upload.order_id[2:])).tasks[0].commit_block == 0
