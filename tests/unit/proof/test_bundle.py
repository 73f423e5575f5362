"""The proof bundle: Parquet artifacts, Merkle commitment, inclusion proofs for every artifact."""

import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from proof.bundle import (
    ProofBundle, artifact_proof, artifacts, build_bundle, check_bundle, read_step_log, read_telemetry,
    verify_artifact, write_step_log,
)
from proof.errors import BundleError
from proof.merkle import merkle_root
from proof.recorder import Recorder
from proof.telemetry import TelemetrySampler
from storage.refs import ArtifactRef
from training.datasets import load_dataset, table_to_arrays
from training.trainer import TrainSpec, train

SPEC = TrainSpec(model="mlp", input_shape=(1, 8, 8), num_classes=10, optimizer="adamw", lr=1e-3,
                 batch_size=128, epochs=2, seed=9, checkpoint_every=5)


@pytest.fixture(scope="module")
def built():
    objects: dict[str, bytes] = {}

    def put(name: str, data: bytes) -> ArtifactRef:
        objects[name] = data
        return ArtifactRef(name=name, md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest(),
                           size=len(data))

    X, y, _ = table_to_arrays(load_dataset("digits"))
    recorder = Recorder(put=put, telemetry=TelemetrySampler(interval_s=0.01, use_nvml=False))
    train(SPEC, X, y, recorder=recorder)
    recorded = recorder.close()
    bundle = build_bundle(recorded, order_id="0xorder", task=0, spec=SPEC, put=put)
    return bundle, recorded, objects


def test_bundle_contents(built):
    bundle, recorded, objects = built
    assert read_step_log(objects["step-log.parquet"]) == recorded.steps
    assert read_telemetry(objects["telemetry.parquet"]) == recorded.telemetry
    assert bundle.leaves == [ref.sha256 for ref in artifacts(bundle)]
    assert bundle.leaves[0] == recorded.checkpoints[0][1].sha256 and len(bundle.leaves) == len(recorded.checkpoints) + 2
    assert bundle.merkle_root == merkle_root([bytes.fromhex(x) for x in bundle.leaves]).hex()
    check_bundle(bundle)


def test_bundle_survives_json(built):
    bundle, _, _ = built
    again = ProofBundle.model_validate_json(bundle.model_dump_json())
    assert again == bundle
    check_bundle(again)


def test_every_artifact_has_an_inclusion_proof(built):
    bundle, _, _ = built
    for ref in artifacts(bundle):
        index, proof = artifact_proof(bundle, ref.sha256)
        assert verify_artifact(ref.sha256, index, proof, bundle.merkle_root, size=len(bundle.leaves))
        assert not verify_artifact("00" * 32, index, proof, bundle.merkle_root, size=len(bundle.leaves))
    with pytest.raises(BundleError, match="not part of order 0xorder"):
        artifact_proof(bundle, "ab" * 32)


def test_tampered_bundle_is_detected(built):
    bundle, _, _ = built
    swapped = bundle.model_copy(update={"leaves": [bundle.leaves[1], bundle.leaves[0], *bundle.leaves[2:]]})
    with pytest.raises(BundleError, match="leaves do not list"):
        check_bundle(swapped)
    rerooted = bundle.model_copy(update={"merkle_root": "00" * 32})
    with pytest.raises(BundleError, match="Merkle root does not match"):
        check_bundle(rerooted)


def test_step_log_is_deterministic(built):
    _, recorded, objects = built
    assert write_step_log(recorded.steps) == objects["step-log.parquet"]


def test_unreadable_step_log():
    with pytest.raises(BundleError, match="step log is not a Parquet file"):
        read_step_log(b"not parquet")
    foreign = io.BytesIO()
    pq.write_table(pa.table({"step": [0]}), foreign)
    with pytest.raises(BundleError, match="step-log.v2 format mark"):
        read_step_log(foreign.getvalue())


def test_a_record_without_a_step_0_checkpoint_or_out_of_order_is_refused(built):
    _, recorded, objects = built

    def put(name, data):
        raise AssertionError("nothing is stored for a record that cannot become a proof")

    cps = recorded.checkpoints
    for checkpoints, reason in (([], "the record has no step-0 checkpoint; train with a recorder"),
                                (cps[1:], "the record has no step-0 checkpoint; train with a recorder")):
        with pytest.raises(BundleError) as caught:
            build_bundle(recorded.model_copy(update={"checkpoints": checkpoints}), order_id="0xo", task=3, spec=SPEC,
                         put=put)
        assert str(caught.value) == f"order 0xo task 3: {reason}"
    swapped = recorded.model_copy(update={"checkpoints": [cps[0], cps[2], cps[1], *cps[3:]]})
    with pytest.raises(BundleError) as caught:
        build_bundle(swapped, order_id="0xo", task=3, spec=SPEC, put=lambda name, data: cps[0][1])
    assert str(caught.value) == "order 0xo task 3: checkpoints are not in increasing step order"


def test_logs_are_zstd_parquet_without_dictionaries(built):
    bundle, _, objects = built
    for name in ("step-log.parquet", "telemetry.parquet"):
        metadata = pq.ParquetFile(io.BytesIO(objects[name])).metadata
        columns = [metadata.row_group(0).column(i) for i in range(metadata.num_columns)]
        assert {c.compression for c in columns} == {"ZSTD"}
        assert not any("DICTIONARY" in encoding for c in columns for encoding in c.encodings), name


def test_a_log_lacking_or_repeating_a_column_is_refused_by_name(built):
    _, _, objects = built
    table = pq.read_table(io.BytesIO(objects["telemetry.parquet"]))

    def written(t):
        buffer = io.BytesIO()
        pq.write_table(t, buffer)
        return buffer.getvalue()

    lacking = table.drop_columns(["power_w", "device"])
    with pytest.raises(BundleError) as caught:
        read_telemetry(written(lacking))
    assert str(caught.value) == "the telemetry lacks columns ['device', 'power_w'] or repeats one"
    repeated = pa.Table.from_arrays([*table.columns, table.column("time")], names=[*table.column_names, "time"])
    with pytest.raises(BundleError) as caught:
        read_telemetry(written(repeated.replace_schema_metadata(table.schema.metadata)))
    assert str(caught.value) == "the telemetry lacks columns [] or repeats one"


def test_a_log_with_columns_of_the_wrong_type_names_each(built):
    _, _, objects = built
    table = pq.read_table(io.BytesIO(objects["step-log.parquet"]))
    retyped = table.set_column(table.schema.get_field_index("step"), "step", table.column("step").cast(pa.float64()))
    retyped = retyped.set_column(retyped.schema.get_field_index("loss"), "loss", table.column("loss").cast(pa.string()))
    buffer = io.BytesIO()
    pq.write_table(retyped.replace_schema_metadata(table.schema.metadata), buffer)
    with pytest.raises(BundleError) as caught:
        read_step_log(buffer.getvalue())
    assert str(caught.value) == ("the step log has columns of the wrong type (step is double, loss is string); "
                                 "reject the proof")


def test_a_log_value_out_of_range_is_named_with_its_error(built):
    _, _, objects = built
    table = pq.read_table(io.BytesIO(objects["telemetry.parquet"]))
    sources = pa.array(["gpu"] * table.num_rows)
    buffer = io.BytesIO()
    pq.write_table(table.set_column(table.schema.get_field_index("source"), "source", sources), buffer)
    with pytest.raises(BundleError) as caught:
        read_telemetry(buffer.getvalue())
    message = str(caught.value)
    assert message.startswith("the telemetry holds values of the wrong type or out of range (ValidationError: ")
    assert "source" in message and message.endswith("); reject the proof")
    assert len(message) <= len("the telemetry holds values of the wrong type or out of range (ValidationError: ") + 200 + len("); reject the proof")
