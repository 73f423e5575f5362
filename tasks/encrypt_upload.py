"""encrypt_upload — on the client's machine: validate, split, encrypt, store.

The dataset is checked by the Great Expectations suite before anything is written; a failing
dataset stops the order with the list of failed expectations. The train and holdout splits go to
the store as Parquet sealed under their own keys (the holdout key never reaches a worker), and a
signed dataset manifest records plaintext and ciphertext hashes so an auditor can check both, the
order spec itself (its hash is on chain), and the client's X25519 key, to which the model key is
delivered once the work verdict is final. Each auditor the order names gets the train split's key.
"""

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE
from privacy.signing import digest
from privacy.stream import new_data_key
from storage.manifest import ArtifactEntry, Manifest
from training.datasets import (
    BYTE_VOCAB, CLASSES_KEY, FEATURES_KEY, SCALES_KEY, SHAPE_KEY, image_folder_table, is_text, load_dataset,
    named_table, scale_features, table_to_arrays, text_table,
)
from training.errors import DatasetError
from training.models import load_weights, weights_digest
from training.trainer import starting_weights_fault
from training.validation import count_features, infer_input_shape, num_classes_of, validate_dataset

from bahen.artifacts import WEIGHTS_ROLE, put_encrypted, put_grant, put_signed
from bahen.network import Network
from bahen.orders import order_id_for
from bahen.parties import CLIENT
from bahen.records import OrderRecord, Upload
from bahen.spec import OrderSpec
from tasks.runtime import network, order_book, recorded, timed
from tasks.shard import architecture

SAMPLE_CLASSES = {"digits": 10, "mnist": 10, "shakespeare": BYTE_VOCAB}
KEY_ROLES = ("train", "holdout")  # the model key is the worker's: the client gets it once the verdict is final
# what the manifest repeats of a table's metadata: names and scales the client needs to use the model
METADATA_FIELDS = {"class_names": CLASSES_KEY, "feature_names": FEATURES_KEY, "feature_scales": SCALES_KEY}


def read_dataset(spec: OrderSpec) -> tuple[pa.Table, str, int | None]:
    """The order's table, its name for messages, and its class count when known in advance.

    Text (a gpt order) becomes windows of the order's context, each labelled with the next byte; a
    folder, its images labelled by subfolder; a table of named columns, features ``x0..`` in its
    column order, scaled to [0, 1] where the order asks.
    """
    if spec.dataset_path is None:
        return load_dataset(spec.dataset, context=spec.context), spec.dataset, SAMPLE_CLASSES[spec.dataset]
    path = Path(spec.dataset_path)
    if path.is_dir():
        return image_folder_table(path), str(path), None
    if spec.text:
        try:
            return text_table(path.read_bytes(), spec.context), str(path), BYTE_VOCAB
        except OSError as exc:
            raise DatasetError(f"dataset {path} cannot be read: {exc.strerror}") from None
    try:
        # One thread: Arrow's reader threads can abort the interpreter at exit (apache/arrow#34314)
        table = (pq.read_table(path, use_threads=False) if path.suffix == ".parquet"
                 else pa_csv.read_csv(path, read_options=pa_csv.ReadOptions(use_threads=False)))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"dataset {path} cannot be read as {'Parquet' if path.suffix == '.parquet' else 'CSV'}: {exc}") from None
    if "x0" not in table.column_names:  # named columns
        table = named_table(table, spec.label_column)
    elif SHAPE_KEY not in (table.schema.metadata or {}):
        shape = infer_input_shape(count_features(table))
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), SHAPE_KEY: json.dumps(list(shape)).encode()})
    return (scale_features(table) if spec.scale_features else table), str(path), None


def split_holdout(table: pa.Table, fraction: float, seed: int) -> tuple[pa.Table, pa.Table]:
    """Stratified split: in each class, a seeded permutation sends the first ⌈fraction·n⌉ rows to holdout.

    Text keeps its order: the last ⌈fraction·n⌉ windows are the holdout, text the model never saw
    (a window drawn from between two training windows would share their sentences).
    """
    if is_text(table):
        cut = table.num_rows - int(np.ceil(fraction * table.num_rows))
        return table.slice(0, cut), table.slice(cut)
    labels = table.column("label").to_numpy()
    rng = np.random.default_rng(seed)
    holdout = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        holdout[members[: int(np.ceil(fraction * len(members)))]] = True
    return table.filter(pa.array(~holdout)), table.filter(pa.array(holdout))


def to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, use_dictionary=False, compression="zstd")
    return sink.getvalue()


def read_initial_weights(spec: OrderSpec, input_shape: list[int], num_classes: int) -> tuple[bytes, str] | None:
    """A fine-tuning order's starting weights as the client's file holds them, and their digest,
    once they are shown to be tensors (never unpickled) of exactly the ordered model."""
    if spec.initial_weights_path is None:
        return None
    path = Path(spec.initial_weights_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"initial_weights_path {path} cannot be read: {exc.strerror}") from None
    weights = load_weights(data, name=f"initial_weights_path {path}")
    fault = starting_weights_fault(spec.model, input_shape=tuple(input_shape), num_classes=num_classes,
                                   architecture=architecture(spec), weights=weights)
    if fault:
        raise DatasetError(f"initial_weights_path {path} {fault}: it must be the state_dict of the ordered {spec.model} "
                           "model on this data, saved with safetensors.torch.save_file")
    return data, weights_digest(weights)


def encrypt_upload(spec: OrderSpec, net: Network, *, salt: str) -> Upload:
    """Validate the order's dataset, then encrypt and store its splits with grants to the client, under
    the id of the order the client will open with ``salt``."""
    client = net.party(CLIENT)
    order_id = order_id_for(client.address, salt)
    table, name, classes = read_dataset(spec)
    features = count_features(table)
    classes = classes or max(num_classes_of(table), 1)
    report = validate_dataset(table, num_features=features, num_classes=classes, name=name)
    train, holdout = split_holdout(table, spec.holdout_fraction, spec.seed)
    input_shape = list(table_to_arrays(train.slice(0, 1))[2])
    initial = read_initial_weights(spec, input_shape, classes)
    keys = {role: new_data_key() for role in KEY_ROLES}
    plain = {"train": to_parquet(train), "holdout": to_parquet(holdout)}
    refs = {
        role: put_encrypted(net.store, keys[role], data, order_id=order_id, role=role, name=f"order {order_id[:10]}/{role} split")
        for role, data in plain.items()
    }
    if initial is not None:  # whoever may read the training data may read the weights training starts from
        refs[WEIGHTS_ROLE] = put_encrypted(net.store, keys["train"], initial[0], order_id=order_id, role=WEIGHTS_ROLE,
                                           name=f"order {order_id[:10]}/starting weights")
    grants = {role: put_grant(net.store, key, client.public(), order_id=order_id, role=role) for role, key in keys.items()}
    auditor_grants = {a.address: put_grant(net.store, keys["train"], a, order_id=order_id, role="train")
                      for a in spec.auditor_identities}
    manifest = Manifest(
        kind="dataset",
        order_id=order_id,
        entries=[ArtifactEntry(role=role, ref=ref) for role, ref in refs.items()]
        + [ArtifactEntry(role=f"grant/{role}/client", ref=ref) for role, ref in grants.items()]
        + [ArtifactEntry(role=f"grant/train/{address}", ref=ref) for address, ref in auditor_grants.items()],
        meta={
            "source": name,
            "rows": table.num_rows,
            "train_rows": train.num_rows,
            "holdout_rows": holdout.num_rows,
            "schema": table.schema.to_string(show_schema_metadata=False),
            "plaintext_sha256": {role: hashlib.sha256(data).hexdigest() for role, data in plain.items()},
            "expectations_evaluated": report.evaluated,
            "client_x25519": client.x25519_public.hex(),
            "spec": spec.model_dump(mode="json"),
            "input_shape": input_shape,
            "num_classes": classes,
            "initial_weights": initial[1] if initial else None,
            **{field: json.loads(table.schema.metadata[key]) for field, key in METADATA_FIELDS.items()
               if key in table.schema.metadata},
        },
    )
    manifest_ref, _ = put_signed(net.store, client, manifest, name=f"order {order_id[:10]}/dataset manifest")
    return Upload(
        order_id=order_id,
        salt=salt,
        spec_hash="0x" + digest(spec).hex(),
        client=client.address,
        rows=table.num_rows,
        train_rows=train.num_rows,
        holdout_rows=holdout.num_rows,
        input_shape=input_shape,
        num_classes=classes,
        expectations=report.evaluated,
        train=refs["train"],
        holdout=refs["holdout"],
        weights=refs.get(WEIGHTS_ROLE),
        initial_weights=initial[1] if initial else None,
        client_grants=grants,
        auditor_grants=auditor_grants,
        client_x25519=client.x25519_public.hex(),
        manifest=manifest_ref,
    )


@task(name="encrypt_upload", cache_policy=NO_CACHE)
def encrypt_upload_task(spec: OrderSpec, salt: str) -> Upload:
    """Prefect task: run the stage as the client and open the order's record."""
    net = network()
    order_id = order_id_for(net.party(CLIENT).address, salt)
    if (done := recorded(order_id, "upload")) is not None:
        return done
    book = order_book()
    upload, seconds = timed(encrypt_upload, spec, net, salt=salt)
    book.save(OrderRecord(order_id=order_id, spec=spec, status="uploaded"))
    book.record_stage(order_id, "encrypt_upload", seconds, "uploaded", upload=upload)
    return upload
