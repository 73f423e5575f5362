"""Stage cores on a real devnet: bad input stops an order before anything is stored or paid."""

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from contracts.client import UnknownOrderError
from sklearn.datasets import load_digits
from training.datasets import text_table
from training.errors import CheckpointError, TrainingError
from training.validation import DatasetInvalidError

from bahen.artifacts import open_stored_grant
from bahen.orders import salt_of_run
from bahen.parties import CLIENT
from bahen.spec import OrderSpec
from tasks.encrypt_upload import encrypt_upload, split_holdout
from tasks.shard import BudgetError, shard
from tasks.train import load_initial, order_seed, train_spec


def digits_csv(path, *, corrupt: bool):
    d = load_digits()
    X = (d.data / 16).astype(np.float32)
    if corrupt:
        X[5, 3] = np.nan
        X[9, 0] = 4.0
    columns = {f"x{i}": X[:, i] for i in range(X.shape[1])} | {"label": d.target}
    pa_csv.write_csv(pa.table(columns), path)
    return path


def stored_objects(net):
    return sorted(p for p in (net.settings.home / "store").rglob("*") if p.is_file())


def test_dataset_failing_expectations_stores_nothing_and_names_each_failure(net, tmp_path):
    before = stored_objects(net)
    spec = OrderSpec(dataset_path=str(digits_csv(tmp_path / "bad.csv", corrupt=True)))
    with pytest.raises(DatasetInvalidError) as refused:
        encrypt_upload(spec, net, salt=salt_of_run(None))
    message = str(refused.value)
    assert "feature_nulls" in message and "feature_max" in message
    assert "nothing was uploaded" in message
    assert stored_objects(net) == before


@pytest.mark.parametrize("field", ["dataset_path", "initial_weights_path"])
def test_a_file_gone_from_the_clients_host_is_named_and_nothing_stored(net, tmp_path, field):
    before = stored_objects(net)
    gone = tmp_path / ("gone.csv" if field == "dataset_path" else "gone.safetensors")
    with pytest.raises(TrainingError, match=f"{gone} cannot be read"):  # a spec from the UI was never checked here
        encrypt_upload(OrderSpec(**{field: str(gone)}), net, salt=salt_of_run(None))
    assert stored_objects(net) == before


def test_own_csv_dataset_is_uploaded_encrypted(net, tmp_path):
    spec = OrderSpec(dataset_path=str(digits_csv(tmp_path / "good.csv", corrupt=False)))
    upload = encrypt_upload(spec, net, salt=salt_of_run(None))
    assert upload.input_shape == [1, 8, 8] and upload.num_classes == 10
    assert upload.train_rows + upload.holdout_rows == 1797
    stored = net.store.get(upload.train)
    assert b"PAR1" not in stored  # Parquet's magic never appears: the split is ciphertext


def test_a_text_file_is_uploaded_as_windows_of_the_context(net, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes("Ünïcode is bytes too. ".encode() * 400)
    spec = OrderSpec(dataset_path=str(path), model="gpt", context=16)
    upload = encrypt_upload(spec, net, salt=salt_of_run(None))
    assert upload.input_shape == [16] and upload.num_classes == 256
    assert upload.train_rows + upload.holdout_rows == (len(path.read_bytes()) - 1) // 16


def test_a_text_that_is_not_text_names_each_failure_and_stores_nothing(net, tmp_path):
    before = stored_objects(net)
    path = tmp_path / "short.txt"
    path.write_bytes(b"too short for a hundred windows")
    with pytest.raises(DatasetInvalidError) as refused:
        encrypt_upload(OrderSpec(dataset_path=str(path), model="gpt", context=8), net, salt=salt_of_run(None))
    message = str(refused.value)
    assert "expect_table_row_count_to_be_between(table): observed 3" in message and "A text dataset is" in message
    assert stored_objects(net) == before


def _weights_file(path, **overrides):
    from safetensors.torch import save_file
    from training.models import build_model

    shape = {"input_shape": (1, 8, 8), "num_classes": 10, **overrides}
    save_file(build_model("mlp", seed=3, **shape).state_dict(), path)
    return path


def test_starting_weights_are_uploaded_sealed_and_pinned_by_their_digest(net, tmp_path):
    from training.models import build_model, weights_digest

    spec = OrderSpec(initial_weights_path=str(_weights_file(tmp_path / "start.safetensors")))
    upload = encrypt_upload(spec, net, salt=salt_of_run(None))
    assert upload.initial_weights == weights_digest(build_model("mlp", input_shape=(1, 8, 8), num_classes=10, seed=3).state_dict())
    assert upload.weights is not None and b'"dtype"' not in net.store.get(upload.weights)  # the header is sealed too
    key = open_stored_grant(net.store, upload.client_grants["train"], net.party(CLIENT), order_id=upload.order_id)
    tspec = train_spec(spec, upload, 0, net)
    assert weights_digest(load_initial(net.store, key, upload, tspec)) == upload.initial_weights
    bloated = upload.model_copy(update={"weights": upload.weights.model_copy(update={"size": 10**12})})
    with pytest.raises(CheckpointError, match="over the .* a model of this order takes; it was not fetched"):
        load_initial(net.store, key, bloated, tspec)


def test_the_trainer_splits_each_batch_as_the_order_asks(net):
    spec = OrderSpec(grad_shards=4)
    upload = encrypt_upload(spec, net, salt=salt_of_run(None))
    assert train_spec(spec, upload, 0, net).grad_shards == 4


class Payload:
    def __reduce__(self):
        return (exec, ("raise SystemExit('unpickled')",))


@pytest.mark.parametrize("kind", ["pickle", "other-shape"])
def test_starting_weights_that_are_not_the_ordered_models_are_refused_unread_and_nothing_is_stored(net, tmp_path, kind):
    import pickle

    path = tmp_path / "start.safetensors"
    if kind == "pickle":  # a pickle payload posing as weights: loading it would run code
        path.write_bytes(pickle.dumps(Payload()))
    else:
        _weights_file(path, num_classes=3)
    before = stored_objects(net)
    with pytest.raises(TrainingError) as refused:
        encrypt_upload(OrderSpec(initial_weights_path=str(path)), net, salt=salt_of_run(None))
    expected = "is not a safetensors file of tensors" if kind == "pickle" else "it must be the state_dict of the ordered mlp"
    assert expected in str(refused.value) and str(path) in str(refused.value)
    assert stored_objects(net) == before


def test_a_parquet_file_of_named_columns_is_scaled_and_its_names_signed(net, tmp_path):
    import pyarrow.parquet as pq
    from storage.manifest import Manifest

    from bahen.artifacts import get_signed

    d = load_digits()
    columns = {f"pixel_{i}": d.data[:, i] for i in range(64)} | {"digit": d.target}
    pq.write_table(pa.table(columns), tmp_path / "digits.parquet")
    spec = OrderSpec(dataset_path=str(tmp_path / "digits.parquet"), label_column="digit", scale_features=True)
    upload = encrypt_upload(spec, net, salt=salt_of_run(None))
    assert upload.input_shape == [64] and upload.num_classes == 10  # named columns are a flat vector
    manifest, _ = get_signed(net.store, upload.manifest, Manifest)
    assert manifest.meta["feature_names"] == [f"pixel_{i}" for i in range(64)]
    assert manifest.meta["feature_scales"]["x36"] == [0.0, 16.0]
    with pytest.raises(DatasetInvalidError, match="feature_max"):  # unscaled pixels 0..16 fail the suite, listed
        encrypt_upload(spec.model_copy(update={"scale_features": False}), net, salt=salt_of_run(None))


def test_text_keeps_its_order_and_holds_out_its_end():
    table = text_table(bytes(range(256)) * 4, 10)
    train, holdout = split_holdout(table, 0.2, seed=7)
    assert holdout.num_rows == 21 and train.num_rows == table.num_rows - 21
    assert train.equals(table.slice(0, train.num_rows)) and holdout.equals(table.slice(train.num_rows))


def test_holdout_split_is_stratified_and_seeded():
    labels = np.repeat(np.arange(4), 25)
    table = pa.table({"x0": np.zeros(100, np.float32), "label": labels})
    train, holdout = split_holdout(table, 0.2, seed=7)
    assert holdout.num_rows == 20 and train.num_rows == 80
    assert np.bincount(holdout.column("label").to_numpy()).tolist() == [5, 5, 5, 5]
    again, _ = split_holdout(table, 0.2, seed=7)
    assert again.equals(train)


def test_order_over_budget_is_refused_before_opening(net):
    spec = OrderSpec(budget_eth=0.000001)
    upload = encrypt_upload(spec, net, salt=salt_of_run(None))
    with pytest.raises(BudgetError, match="raise budget_eth"):
        shard(spec, upload, net)
    with pytest.raises(UnknownOrderError):
        net.market.order(bytes.fromhex(upload.order_id[2:]))


def test_the_training_seed_is_bound_to_the_order():
    binding = "31337/0x5FbDB2315678afecb367f032d93F642f64180aa3/0x" + "ab" * 32
    assert order_seed(binding, 0) == 619_612_036_350_749_943  # top 63 bits of SHA-256 of the tag, binding and seed
    other = binding[:-2] + "ac"
    assert len({order_seed(binding, 0), order_seed(other, 0), order_seed(binding, 1)}) == 3
    assert all(0 <= order_seed(b, s) < 2**63 for b in (binding, other) for s in (0, -5, 2**40))
