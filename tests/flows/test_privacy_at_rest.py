"""After an order, no plaintext of the data splits or of any checkpoint rests on disk or in Prefect."""

import hashlib
import json
import os
from pathlib import Path

from prefect.settings import PREFECT_HOME
from privacy.signing import SignedDocument

from bahen.network import store_of
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from flows.order import order

PLAINTEXT_MAGIC = (b"PAR1", b"PK\x03\x04")  # Parquet files, torch.save zip archives


def files_under(*roots: Path):
    for root in roots:
        for path in Path(root).rglob("*"):
            if path.is_file():
                yield path


def test_no_plaintext_split_or_checkpoint_on_disk(prefect, bahen_home):
    record = order(OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=10))
    store = store_of(load_settings())
    manifest = SignedDocument.model_validate(json.loads(store.get(record.upload.manifest))).payload
    bundle = SignedDocument.model_validate(json.loads(store.get(record.training.bundle))).payload
    secrets = set(manifest["meta"]["plaintext_sha256"].values()) | set(bundle["checkpoint_sha256"])
    assert len(secrets) >= 3

    roots = [bahen_home, PREFECT_HOME.value()]
    for path in files_under(*roots):
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() not in secrets, f"{path} holds plaintext of the order"
        assert not data.startswith(PLAINTEXT_MAGIC), f"{path} is a plaintext Parquet file or checkpoint"
    assert os.environ.get("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "false").lower() == "false"
