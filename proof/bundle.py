"""The proof bundle: the worker's Proof of Train as stored artifacts and one Merkle root.

``build_bundle`` stores the step log and the telemetry as Parquet through the caller's ``put``,
then commits to every artifact with a Merkle tree (``proof.merkle``) whose leaves are the
artifacts' SHA-256 commitments (of the stored bytes) in this order: the checkpoints by step
(step 0, the initial weights, first), then the step log, then the telemetry. The caller signs
``bundle.model_dump(mode="json")`` and commits ``merkle_root`` on chain before any challenge.
"""

import io
from collections.abc import Callable
from typing import Annotated, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field, ValidationError

from proof.errors import BundleError
from proof.merkle import inclusion_proof, merkle_root, verify_inclusion
from proof.recorder import RecordedProof
from proof.telemetry import TelemetrySample
from storage.refs import ArtifactRef
from training.profiles import ProfileInfo
from training.steps import StepRecord
from training.trainer import TrainSpec

STEP_LOG_SCHEMA = pa.schema(
    [("step", pa.int64()), ("epoch", pa.int64()), ("batch_digest", pa.string()), ("loss", pa.float64()),
     ("lr", pa.float64()), ("grad_norm", pa.float64()), ("update_norm", pa.float64()), ("seconds", pa.float64()),
     ("state_sha256", pa.string())],
    metadata={b"bahen.format": b"step-log.v2"},
)
TELEMETRY_SCHEMA = pa.schema(
    [("time", pa.float64()), ("source", pa.string()), ("device", pa.int64()), ("utilization_pct", pa.float64()),
     ("memory_used_bytes", pa.int64()), ("memory_total_bytes", pa.int64()), ("power_w", pa.float64()),
     ("temperature_c", pa.float64()), ("sm_clock_mhz", pa.float64())],
    metadata={b"bahen.format": b"telemetry.v1"},
)
MAX_TABLE_BYTES = 1 << 30  # decoded bytes a step log or telemetry table may declare: ~5 million steps
R = TypeVar("R", bound=BaseModel)


Step = Annotated[int, Field(ge=0, lt=2**63, description="A step of the run: an int64, as the step log stores it")]
Digest = Annotated[str, Field(pattern="^[0-9a-f]{64}$", description="A SHA-256 in lowercase hex")]


class ProofBundle(BaseModel):
    """The worker's proof, minus the signature; ``leaves`` are in :func:`artifacts` order."""

    order_id: str
    task: int
    spec: TrainSpec
    profile: ProfileInfo
    step_log: ArtifactRef
    telemetry: ArtifactRef
    checkpoints: list[tuple[Step, ArtifactRef]]
    checkpoint_sha256: list[str] = Field(default_factory=list, description="Plaintext SHA-256 per checkpoint")
    epoch_digests: list[str]
    resumes: list[Step]
    merkle_root: Digest
    leaves: list[Digest]


def _parquet(rows: list[BaseModel], schema: pa.Schema) -> bytes:
    columns = {name: [getattr(r, name) for r in rows] for name in schema.names}
    buffer = io.BytesIO()
    # No dictionary encoding: float data gains nothing from it (and the file stays simple to read).
    pq.write_table(pa.table(columns, schema=schema), buffer, use_dictionary=False, compression="zstd")
    return buffer.getvalue()


def _read(data: bytes, schema: pa.Schema, model: type[R], what: str, max_rows: int | None) -> list[R]:
    """Rows of a table written by :func:`_parquet`; :class:`BundleError` for anything else, named ``what``, and
    for a table that declares more than ``max_rows`` rows (dictionary-encoded, millions of rows fit in a few
    kilobytes that declare as few, and every row becomes an object)."""
    try:
        file = pq.ParquetFile(pa.BufferReader(data))
        declared = sum(file.metadata.row_group(i).total_byte_size for i in range(file.metadata.num_row_groups))
        if declared > MAX_TABLE_BYTES:
            raise BundleError(f"the {what} declares {declared:,} bytes of data, over the {MAX_TABLE_BYTES:,} a "
                              "verifier reads; reject the proof")
        # The file's row count and its row groups' are written apart, and the reader decodes the groups':
        # either over the bound refuses.
        rows = max(file.metadata.num_rows, sum(file.metadata.row_group(i).num_rows
                                               for i in range(file.metadata.num_row_groups)))
        if max_rows is not None and rows > max_rows:
            raise BundleError(f"the {what} declares {rows:,} rows, over the {max_rows:,} the order allows; reject the proof")
        table = file.read(use_threads=False)  # Arrow's reader threads can abort the interpreter at exit
        names = table.column_names  # pyarrow decodes the names as UTF-8 only when asked
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"the {what} is not a Parquet file ({exc}); fetch it again or reject the proof") from exc
    if (table.schema.metadata or {}).get(b"bahen.format") != schema.metadata[b"bahen.format"]:
        raise BundleError(f"the {what} lacks the {schema.metadata[b'bahen.format'].decode()} format mark")
    if not set(schema.names) <= set(names) or len(set(names)) != len(names):
        raise BundleError(f"the {what} lacks columns {sorted(set(schema.names) - set(names))} or repeats one")
    table = table.select(schema.names)
    wrong = [f"{field.name} is {field.type}" for field, want in zip(table.schema, schema) if field.type != want.type]
    if wrong:
        raise BundleError(f"the {what} has columns of the wrong type ({', '.join(wrong)}); reject the proof")
    try:
        return [model(**row) for row in table.to_pylist()]
    except (pa.ArrowException, UnicodeDecodeError, ValidationError) as exc:
        raise BundleError(f"the {what} holds values of the wrong type or out of range "
                          f"({type(exc).__name__}: {str(exc)[:200]}); reject the proof") from exc


def write_step_log(steps: list[StepRecord]) -> bytes:
    """The step log as Parquet bytes."""
    return _parquet(steps, STEP_LOG_SCHEMA)


def read_step_log(data: bytes, *, max_rows: int | None = None) -> list[StepRecord]:
    """Parse a step log written by :func:`write_step_log`: at most ``max_rows`` rows, when given."""
    return _read(data, STEP_LOG_SCHEMA, StepRecord, "step log", max_rows)


def write_telemetry(samples: list[TelemetrySample]) -> bytes:
    """Telemetry samples as Parquet bytes."""
    return _parquet(samples, TELEMETRY_SCHEMA)


def read_telemetry(data: bytes) -> list[TelemetrySample]:
    """Parse telemetry written by :func:`write_telemetry`."""
    return _read(data, TELEMETRY_SCHEMA, TelemetrySample, "telemetry", None)


def build_bundle(
    recorded: RecordedProof, *, order_id: str, task: int, spec: TrainSpec, put: Callable[[str, bytes], ArtifactRef]
) -> ProofBundle:
    """Store the step log and telemetry through ``put`` and commit to all artifacts in a Merkle root."""
    if not recorded.checkpoints or recorded.checkpoints[0][0] != 0:
        raise BundleError(f"order {order_id} task {task}: the record has no step-0 checkpoint; train with a recorder")
    step_log = put("step-log.parquet", write_step_log(recorded.steps))
    telemetry = put("telemetry.parquet", write_telemetry(recorded.telemetry))
    checkpoints = recorded.checkpoints
    if [step for step, _ in checkpoints] != sorted({step for step, _ in checkpoints}):
        raise BundleError(f"order {order_id} task {task}: checkpoints are not in increasing step order")
    leaves = [ref.sha256 for _, ref in checkpoints] + [step_log.sha256, telemetry.sha256]
    return ProofBundle(
        order_id=order_id, task=task, spec=spec, profile=recorded.profile, step_log=step_log,
        telemetry=telemetry, checkpoints=checkpoints, checkpoint_sha256=recorded.checkpoint_sha256,
        epoch_digests=recorded.epoch_digests,
        resumes=recorded.resumes, merkle_root=merkle_root([bytes.fromhex(x) for x in leaves]).hex(), leaves=leaves,
    )


def artifacts(bundle: ProofBundle) -> list[ArtifactRef]:
    """The bundle's artifacts in leaf order: checkpoints by step, step log, telemetry."""
    return [ref for _, ref in bundle.checkpoints] + [bundle.step_log, bundle.telemetry]


def artifact_proof(bundle: ProofBundle, sha256: str) -> tuple[int, list[str]]:
    """Leaf index and inclusion proof (hex) of the artifact whose stored bytes hash to ``sha256``."""
    if sha256 not in bundle.leaves:
        raise BundleError(f"artifact {sha256[:12]}… is not part of order {bundle.order_id} task {bundle.task}'s proof")
    index = bundle.leaves.index(sha256)
    proof = inclusion_proof([bytes.fromhex(x) for x in bundle.leaves], index)
    return index, [p.hex() for p in proof]


def verify_artifact(sha256: str, index: int, proof: list[str], root: str, *, size: int) -> bool:
    """Whether an artifact commitment is leaf ``index`` under the committed ``root`` (hex inputs)."""
    return verify_inclusion(
        bytes.fromhex(sha256), index, [bytes.fromhex(p) for p in proof], bytes.fromhex(root), size=size
    )


def check_bundle(bundle: ProofBundle) -> None:
    """Raise :class:`BundleError` unless the leaves match the artifacts and the root matches the leaves."""
    if [ref.sha256 for ref in artifacts(bundle)] != bundle.leaves:
        raise BundleError(f"order {bundle.order_id} task {bundle.task}: the leaves do not list the bundle's artifacts")
    if merkle_root([bytes.fromhex(x) for x in bundle.leaves]).hex() != bundle.merkle_root:
        raise BundleError(f"order {bundle.order_id} task {bundle.task}: the Merkle root does not match the leaves")
