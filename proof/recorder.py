"""The Proof-of-Train recorder: what the worker writes down while it trains.

The trainer hands the recorder every step's record, every epoch's order digest and a checkpoint
every k steps. Checkpoints are serialised, hashed, encrypted and stored on one background thread
through the caller's ``put(name, plaintext) -> ArtifactRef`` (which encrypts and stores), so the
training loop only pays for copying the weights. At most :data:`MAX_PENDING` checkpoints wait at
once; past that the loop waits, which bounds memory when storage is slower than training.

Crash recovery: each checkpoint's ``journal`` carries the step records since the previous
checkpoint, the refs and plaintext hashes of all earlier checkpoints, the epoch digests and the
resumes so far. :meth:`Recorder.resume` reads the last checkpoint and walks back through the
earlier ones to rebuild the full record, so a resumed run's proof equals an uninterrupted one's
plus the resume step.
"""

import hashlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from pydantic import BaseModel

from proof.errors import CheckpointUnavailableError, CheckpointWriteError
from proof.telemetry import TelemetrySample, TelemetrySampler
from storage.refs import ArtifactRef
from training.checkpoint import Checkpoint
from training.errors import CheckpointError
from training.profiles import ProfileInfo

MAX_PENDING = 2
Put = Callable[[str, bytes], ArtifactRef]
Get = Callable[[ArtifactRef], bytes]


class StepRecord(BaseModel):
    """One optimizer step as the worker recorded it."""

    step: int
    epoch: int
    batch_digest: str
    loss: float
    lr: float
    grad_norm: float
    update_norm: float
    seconds: float


class RecordedProof(BaseModel):
    """Everything recorded during one training task; ``checkpoints[0]`` is step 0, the initial weights."""

    steps: list[StepRecord]
    checkpoints: list[tuple[int, ArtifactRef]]
    epoch_digests: list[str]
    telemetry: list[TelemetrySample]
    profile: ProfileInfo
    resumes: list[int]


def checkpoint_name(step: int) -> str:
    """The name a checkpoint is stored under."""
    return f"checkpoint-{step:08d}"


def _journal_entry(step: int, ref: ArtifactRef, plain_sha256: str) -> dict:
    return {"step": step, "ref": ref.model_dump(mode="json"), "plain_sha256": plain_sha256}


class Recorder:
    """Records one training task; pass it to ``training.trainer.train`` and call :meth:`close`."""

    def __init__(self, *, put: Put, telemetry: TelemetrySampler | None = None):
        self._put = put
        self._telemetry = telemetry
        self._steps: list[StepRecord] = []
        self._journaled = 0  # records before this index are already inside a stored checkpoint
        self._epoch_digests: dict[int, str] = {}
        self._resumes: list[int] = []
        self._history: list[dict] = []  # journal entries of stored checkpoints, background thread only
        self._profile: ProfileInfo | None = None
        self._restored_step: int | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bahen-checkpoint")
        self._pending: list[tuple[int, Future]] = []

    def start(self, profile: ProfileInfo, *, resumed_at: int | None = None) -> None:
        """Begin recording under ``profile``; a resumed run names the checkpoint step it resumed at."""
        if resumed_at != self._restored_step:
            raise CheckpointError(
                f"training resumes at step {resumed_at} but the recorder was restored at step "
                f"{self._restored_step}; build the recorder with Recorder.resume from the same checkpoint"
            )
        self._profile = profile
        if resumed_at is not None:
            self._resumes.append(resumed_at)
        if self._telemetry is not None:
            self._telemetry.start()

    def record_step(self, record: StepRecord) -> None:
        """Append one step's record."""
        self._steps.append(record)

    def record_epoch(self, epoch: int, digest: str) -> None:
        """Record an epoch's order digest; recording it again (after a resume) must agree."""
        known = self._epoch_digests.setdefault(epoch, digest)
        if known != digest:
            raise CheckpointError(
                f"epoch {epoch}'s data order digest {digest[:12]}… differs from the recorded {known[:12]}…; "
                "the resumed run uses another seed, task or dataset size than the checkpoint's"
            )

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Queue a checkpoint for storage; its tensors must be a private copy the loop won't touch."""
        self._raise_failed()
        while len(self._pending) >= MAX_PENDING:
            self._wait_oldest()
        records = _to_columns(self._steps[self._journaled:])
        self._journaled = len(self._steps)
        journal = {"records": records, "epoch_digests": self._digest_list(), "resumes": list(self._resumes)}
        future = self._pool.submit(self._write, checkpoint, journal)
        self._pending.append((checkpoint.step, future))

    def close(self) -> RecordedProof:
        """Wait for pending checkpoint writes, stop telemetry and return the record."""
        telemetry = self._telemetry.stop() if self._telemetry is not None else []
        try:
            while self._pending:
                self._wait_oldest()
        finally:
            self._pool.shutdown(wait=True)
        if self._profile is None:
            raise CheckpointError("the recorder was closed before training started; pass it to train()")
        return RecordedProof(
            steps=self._steps,
            checkpoints=[(e["step"], ArtifactRef(**e["ref"])) for e in self._history],
            epoch_digests=self._digest_list(),
            telemetry=list(telemetry),
            profile=self._profile,
            resumes=self._resumes,
        )

    def _digest_list(self) -> list[str]:
        return [self._epoch_digests[e] for e in sorted(self._epoch_digests)]

    def _write(self, checkpoint: Checkpoint, journal: dict) -> None:
        checkpoint.journal = {**journal, "history": list(self._history)}
        data = checkpoint.to_bytes()
        ref = self._put(checkpoint_name(checkpoint.step), data)
        self._history.append(_journal_entry(checkpoint.step, ref, hashlib.sha256(data).hexdigest()))

    def _wait_oldest(self) -> None:
        step, future = self._pending.pop(0)
        try:
            future.result()
        except Exception as exc:
            raise CheckpointWriteError(checkpoint_name(step), exc) from exc

    def _raise_failed(self) -> None:
        for step, future in self._pending:
            if future.done() and future.exception() is not None:
                raise CheckpointWriteError(checkpoint_name(step), future.exception())

    @classmethod
    def resume(
        cls, last: ArtifactRef, *, get: Get, put: Put, telemetry: TelemetrySampler | None = None
    ) -> tuple["Recorder", Checkpoint]:
        """Rebuild a recorder from the last stored checkpoint and return it with that checkpoint.

        ``get(ref) -> plaintext`` fetches and decrypts a stored checkpoint. Every earlier checkpoint
        is read too (their records make up the step log) and checked against the plaintext hash
        the later checkpoint recorded. Pass the checkpoint to ``train(..., resume_from=...)``.
        """
        checkpoint, plain = _fetch(last, get, expected_sha256=None)
        recorder = cls(put=put, telemetry=telemetry)
        history = checkpoint.journal.get("history", [])
        for entry in history:
            earlier, _ = _fetch(ArtifactRef(**entry["ref"]), get, expected_sha256=entry["plain_sha256"])
            recorder._steps += _from_columns(earlier.journal.get("records", {}))
        recorder._steps += _from_columns(checkpoint.journal.get("records", {}))
        if len(recorder._steps) != checkpoint.step:
            raise CheckpointError(
                f"{last.name} holds {len(recorder._steps)} step records for step {checkpoint.step}; "
                "its journal is incomplete, resume from an earlier checkpoint"
            )
        recorder._journaled = len(recorder._steps)
        recorder._epoch_digests = dict(enumerate(checkpoint.journal.get("epoch_digests", [])))
        recorder._resumes = list(checkpoint.journal.get("resumes", []))
        recorder._history = [*history, _journal_entry(checkpoint.step, last, plain)]
        recorder._restored_step = checkpoint.step
        return recorder, checkpoint


def _fetch(ref: ArtifactRef, get: Get, *, expected_sha256: str | None) -> tuple[Checkpoint, str]:
    try:
        data = get(ref)
    except Exception as exc:  # the caller's store decides how a missing object fails
        raise CheckpointUnavailableError(ref.name, exc) from exc
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise CheckpointError(
            f"{ref.name} does not match the plaintext hash a later checkpoint recorded; "
            "it was altered after it was written, restart the task"
        )
    return Checkpoint.from_bytes(data, name=ref.name), digest


def _to_columns(records: list[StepRecord]) -> dict[str, list]:
    # Columns, not one dict per record: the field names are stored once per checkpoint.
    return {name: [getattr(r, name) for r in records] for name in StepRecord.model_fields}


def _from_columns(columns: dict[str, list]) -> list[StepRecord]:
    count = len(columns.get("step", []))
    return [StepRecord(**{name: values[i] for name, values in columns.items()}) for i in range(count)]
