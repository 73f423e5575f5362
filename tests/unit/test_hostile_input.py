"""Bytes another party wrote are refused with bahen's errors, never a crash or a foreign exception.

Every parser a party runs on another party's bytes is a target of ``bench.fuzz`` (the long
campaign is ``bahen bench fuzz``). Here each target meets: inputs nested tens of thousands of
levels deep under the recursion limit that eth-keys sets (in a child process, where a C stack
overflow is a death, not a lost test run); the committed corpus under ``tests/corpus/<target>``
(inputs that once escaped); and a short property-based campaign of random mutations.
"""

import io
import json
import multiprocessing
import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz import TARGETS, mutate, outcome, targets
from privacy.errors import DocumentError
from proof.bundle import STEP_LOG_SCHEMA, TELEMETRY_SCHEMA, read_step_log, read_telemetry
from proof.errors import BundleError
from storage.errors import IntegrityError
from training.errors import CheckpointError

CORPUS = Path(__file__).parent.parent / "corpus"
JSON_TARGETS = ("signed-document", "key-grant", "manifest", "directory-listing", "journal")
DEPTH = 70_000  # ~140 KB: what overflowed the C stack under json.loads


def _deep(opener: bytes, closer: bytes) -> bytes:
    return opener * DEPTH + b"1" + closer * DEPTH


def _state_parts() -> tuple[bytes, bytes, bytes]:
    """The sample state's mark, JSON header and tensor payload."""
    sample = targets()["state"].sample
    mark = sample[:sample.index(b"\x00")]  # the mark ends where the 8-byte big-endian header length begins
    size = int.from_bytes(sample[len(mark):len(mark) + 8], "big")
    start = len(mark) + 8
    return mark, sample[start:start + size], sample[start + size:]


def _state_with_header(header: bytes, payload: bytes = b"") -> bytes:
    return _state_parts()[0] + len(header).to_bytes(8, "big") + header + payload


def _deep_inputs() -> list[tuple[str, bytes]]:
    inputs = [(name, _deep(b"[", b"]")) for name in JSON_TARGETS]
    inputs += [(name, b'{"payload":' + _deep(b'{"a":', b"}") + b"}") for name in ("signed-document", "signed-payload")]
    inputs += [("journal", b'{"format":"bahen.journal.v1","records":' + _deep(b"[", b"]") + b"}")]
    inputs += [("state", _state_with_header(b'{"layout":' + _deep(b'{"l":[', b"]}") + b"}"))]
    return inputs


def _parse_all(inputs: list[tuple[str, bytes]], results) -> None:
    sys.setrecursionlimit(100_000)  # what py_ecc sets when eth-keys loads it: no setting may turn input into a crash
    results.put([(name, outcome(targets()[name], data)) for name, data in inputs])


def test_inputs_nested_tens_of_thousands_deep_are_refused_without_a_crash():
    targets()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_parse_all, args=(_deep_inputs(), results))
    child.start()
    child.join(timeout=300)
    assert child.exitcode == 0, f"the parsing process died with exit code {child.exitcode}"
    outcomes = results.get(timeout=10)
    assert [o for _, o in outcomes] == ["refused"] * len(outcomes), outcomes


@pytest.mark.parametrize("path", sorted(p for p in CORPUS.rglob("*") if p.is_file()), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_corpus_is_refused(path):
    assert outcome(targets()[path.parent.name], path.read_bytes()) == "refused"


def test_the_corpus_covers_only_known_targets():
    assert {p.name for p in CORPUS.iterdir()} <= set(TARGETS)


@pytest.mark.parametrize("name", TARGETS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False))
def test_mutated_inputs_are_accepted_or_refused_with_bahens_error(name, rng):
    target = targets()[name]
    assert outcome(target, mutate(target.sample, rng, text=target.text)) in ("accepted", "refused")


def test_every_target_accepts_its_sample():
    assert {name: outcome(t, t.sample) for name, t in targets().items()} == dict.fromkeys(TARGETS, "accepted")


def test_mutation_is_deterministic_in_its_seed_and_changes_the_sample():
    sample = targets()["manifest"].sample
    first = [mutate(sample, random.Random(i), text=True) for i in range(20)]
    assert first == [mutate(sample, random.Random(i), text=True) for i in range(20)]
    assert sample not in first


def _table(schema: pa.Schema, columns: dict) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns, schema=schema), buffer)
    return buffer.getvalue()


def _step_log_columns(**changes) -> dict:
    row = {"step": [0], "epoch": [0], "batch_digest": ["d"], "loss": [1.0], "lr": [0.1], "grad_norm": [1.0],
           "update_norm": [0.1], "seconds": [0.01], "state_sha256": ["s"]}
    return {**row, **changes}


def test_a_step_log_column_of_another_type_is_named():
    schema = STEP_LOG_SCHEMA.set(0, pa.field("step", pa.string()))
    with pytest.raises(BundleError, match="step is string"):
        read_step_log(_table(schema, _step_log_columns(step=["zero"])))


def test_a_step_log_with_a_missing_value_is_refused():
    with pytest.raises(BundleError, match="wrong type or out of range"):
        read_step_log(_table(STEP_LOG_SCHEMA, _step_log_columns(loss=[None])))


def test_a_step_log_declaring_more_data_than_a_verifier_reads_is_refused(monkeypatch):
    import proof.bundle

    monkeypatch.setattr(proof.bundle, "MAX_TABLE_BYTES", 100)
    with pytest.raises(BundleError, match="over the 100 a verifier reads"):
        read_step_log(targets()["step-log"].sample)


def test_telemetry_with_a_source_it_does_not_know_is_refused():
    sample = {"time": [1.0], "source": ["radio"], "device": [0], "utilization_pct": [50.0],
              "memory_used_bytes": [1], "memory_total_bytes": [2], "power_w": [None], "temperature_c": [None],
              "sm_clock_mhz": [None]}
    with pytest.raises(BundleError, match="wrong type or out of range"):
        read_telemetry(_table(TELEMETRY_SCHEMA, sample))


@pytest.mark.parametrize("listing, why", [
    (b'[{"md5":"0","relpath":1,"sha256":"0","size":1}]', "relpath"),
    (b'[{"md5":"0","relpath":"a","sha256":"0","size":-1}]', "size"),
    (b'[{"md5":"0","relpath":"../a","sha256":"0","size":1}]', "relative POSIX path"),
    (b'{"md5":"0"}', "list"),
])
def test_a_listing_of_the_wrong_form_is_named(listing, why):
    with pytest.raises(IntegrityError, match=why):
        targets()["directory-listing"].parse(listing)


@pytest.mark.parametrize("change, why", [
    (lambda j: j.pop("stored"), "stored"),
    (lambda j: j.update(stored=[]), "at least 1"),
    (lambda j: j.update(step="6"), "integer"),
    (lambda j: j["records"].update(loss=j["records"]["loss"][:-1]), "columns of one length"),
    (lambda j: j["records"]["loss"].__setitem__(0, "high"), "invalid step record"),
    (lambda j: j["stored"][0].pop("journal", None) or j["stored"].insert(0, {**j["stored"][-1]}), "without its journal"),
])
def test_a_journal_of_the_wrong_form_is_named(change, why):
    journal = json.loads(targets()["journal"].sample)
    change(journal)
    with pytest.raises(CheckpointError, match=why):
        targets()["journal"].parse(json.dumps(journal).encode())


def test_a_document_over_the_size_a_party_reads_is_refused_before_parsing(monkeypatch):
    import privacy.signing

    monkeypatch.setattr(privacy.signing, "MAX_DOCUMENT_BYTES", 1000)
    with pytest.raises(DocumentError, match="over the 1,000 a party reads"):
        targets()["signed-document"].parse(targets()["signed-document"].sample)


def test_a_payload_of_the_wrong_form_names_the_field():
    target = targets()["signed-payload"]
    payload = json.loads(target.sample)
    payload["task"] = "first"
    with pytest.raises(DocumentError, match="the payload of manifest is not a valid ProofBundle \\(task:"):
        target.parse(json.dumps(payload).encode())


def test_a_state_whose_fields_have_other_types_is_refused():
    _, header, payload = _state_parts()
    fields = json.loads(header)
    fields["step"] = str(fields["step"])
    with pytest.raises(CheckpointError, match="wrong type \\(step\\)"):
        targets()["state"].parse(_state_with_header(json.dumps(fields).encode(), payload))


def test_a_checkpoint_whose_member_inflates_is_refused_before_torch_reads_it():
    import zipfile

    sample = zipfile.ZipFile(io.BytesIO(targets()["checkpoint"].sample))
    bomb, first = io.BytesIO(), next(m.filename for m in sample.infolist() if "/data/" in m.filename)
    with zipfile.ZipFile(bomb, "w") as archive:
        for member in sample.infolist():
            data = sample.read(member.filename)
            if member.filename == first:
                data = bytes(50_000_000)  # 50 MB of zeros deflate to 50 KB
            archive.writestr(member.filename, data, compress_type=zipfile.ZIP_DEFLATED)
    assert len(bomb.getvalue()) < 1_000_000
    with pytest.raises(CheckpointError, match="holds compressed members"):
        targets()["checkpoint"].parse(bomb.getvalue())


def _checkpoint(**change) -> bytes:
    """The sample checkpoint with fields changed, saved as torch.save saves one."""
    from training.checkpoint import FORMAT, Checkpoint

    checkpoint = Checkpoint.from_bytes(targets()["checkpoint"].sample)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **{**checkpoint.__dict__, **change}}, buffer)
    return buffer.getvalue()


def _weights(tensor) -> dict:
    from training.checkpoint import Checkpoint

    state = dict(Checkpoint.from_bytes(targets()["checkpoint"].sample).model_state)
    return {**state, next(iter(state)): tensor}


@pytest.mark.parametrize(("tensor", "named"), [
    (lambda: torch.quantize_per_tensor(torch.ones(4), 0.1, 0, torch.qint8), "a torch.strided torch.qint8 tensor on cpu"),
    (lambda: torch.ones(4).to_sparse(), "a torch.sparse_coo torch.float32 tensor on cpu"),
    (lambda: torch.ones(4, device="meta"), "a torch.strided torch.float32 tensor on meta"),
    (lambda: torch.ones(4, dtype=torch.complex64), "a torch.strided torch.complex64 tensor on cpu"),
    (lambda: torch.ones(1).expand(2**40), r"a view of strides \(0,\) over a tensor of shape \(1099511627776,\)"),
    (lambda: torch.ones(8)[::2], r"a view of strides \(2,\) over a tensor of shape \(4,\)"),
])
def test_a_checkpoint_holding_a_tensor_no_training_writes_is_refused(tensor, named):
    """A quantized weight loads under weights_only and crashed the interpreter in torch.cat, in the state digest."""
    with pytest.raises(CheckpointError, match=f"checkpoint holds {named}, which training never writes"):
        targets()["checkpoint"].parse(_checkpoint(model_state=_weights(tensor())))


def test_a_checkpoint_nested_deep_or_walking_as_a_huge_tree_is_refused():
    from training.checkpoint import MAX_DEPTH, MAX_VALUES

    deep: list = []
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(CheckpointError, match=f"values nested more than {MAX_DEPTH} deep"):
        targets()["checkpoint"].parse(_checkpoint(spec={"deep": deep}))
    shared: list = [0]
    for _ in range(12):  # twelve levels, each naming the one below four times: 4^12 = 16.8M values to walk
        shared = [shared] * 4
    data = _checkpoint(spec={"wide": shared})
    assert len(data) < len(targets()["checkpoint"].sample) + 1_000  # pickle stores each level once
    with pytest.raises(CheckpointError, match=f"more than {MAX_VALUES:,} values"):
        targets()["checkpoint"].parse(data)


def test_a_checkpoint_whose_spec_holds_a_tensor_is_refused():
    """Compared with the order's spec, a tensor in it raised "Boolean value of Tensor ... is ambiguous"."""
    from training.checkpoint import Checkpoint

    spec = Checkpoint.from_bytes(targets()["checkpoint"].sample).spec
    with pytest.raises(CheckpointError, match="checkpoint holds a tensor in its spec"):
        targets()["checkpoint"].parse(_checkpoint(spec={**spec, "lr": [torch.ones(2)]}))


def test_a_checkpoint_whose_optimizer_state_is_not_per_parameter_dicts_is_refused():
    with pytest.raises(CheckpointError, match="wrong type \\(optimizer_state\\)"):
        targets()["checkpoint"].parse(_checkpoint(optimizer_state={"state": {0: 5}, "param_groups": []}))


def test_a_step_log_of_more_rows_than_the_order_has_steps_is_refused_before_it_is_decoded():
    data = _table(STEP_LOG_SCHEMA, _step_log_columns())
    assert len(read_step_log(data, max_rows=1)) == 1
    with pytest.raises(BundleError, match="the step log declares 1 rows, over the 0 the order allows"):
        read_step_log(data, max_rows=0)


def test_a_step_log_whose_footer_understates_its_rows_is_refused_by_its_row_groups():
    """The file's row count and its row groups' are written apart; the reader decodes the groups'."""
    buffer = io.BytesIO()
    rows = 1_000
    columns = {name: values * rows for name, values in _step_log_columns().items()}
    pq.write_table(pa.table(columns, schema=STEP_LOG_SCHEMA), buffer, row_group_size=rows // 2)
    data = bytearray(buffer.getvalue())
    size = int.from_bytes(data[-8:-4], "little")
    footer = bytes(data[-8 - size:-8])
    declared = b"\x16" + _varint(2 * rows)  # field 3 of FileMetaData (num_rows, i64, zigzag varint)
    assert footer.count(declared) == 1
    forged_footer = footer.replace(declared, b"\x16" + _varint(2 * 10))
    forged = bytes(data[:-8 - size]) + forged_footer + len(forged_footer).to_bytes(4, "little") + b"PAR1"
    assert pq.ParquetFile(pa.BufferReader(forged)).metadata.num_rows == 10
    with pytest.raises(BundleError, match=f"the step log declares {rows:,} rows, over the 36 the order allows"):
        read_step_log(forged, max_rows=36)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), -1.0])
def test_a_step_log_whose_step_took_no_duration_is_refused(seconds):
    with pytest.raises(BundleError, match="holds values of the wrong type or out of range"):
        read_step_log(_table(STEP_LOG_SCHEMA, _step_log_columns(seconds=[seconds])))


@pytest.mark.parametrize(("change", "field"), [
    ({"checkpoints": 2**63}, "checkpoints.0.0"), ({"checkpoints": -1}, "checkpoints.0.0"), ({"resumes": [2**64 + 1]}, "resumes.0"),
    ({"leaves": ["zz" * 32]}, "leaves.0"), ({"merkle_root": "AB" * 32}, "merkle_root"),
])
def test_a_proof_manifest_of_steps_past_an_int64_or_digests_not_in_hex_is_refused(change, field):
    """A step of 2**64 + 1 made the challenge's sampling loop forever; a leaf not in hex raised in the integrity check."""
    fields = json.loads(targets()["signed-payload"].sample)
    for key, value in change.items():
        fields[key] = [[value, ref] for _, ref in fields[key]] if key == "checkpoints" else value
    with pytest.raises(DocumentError, match=field.replace(".", r"\.")):
        targets()["signed-payload"].parse(json.dumps(fields).encode())
