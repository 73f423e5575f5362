"""The Proof-of-Train recorder: what the worker writes down while it trains.

The trainer hands the recorder every step's record, every epoch's order digest and a checkpoint
every k steps. Checkpoints are serialised, hashed, encrypted and stored on one background thread
through the caller's ``put(name, plaintext) -> ArtifactRef`` (which encrypts and stores), so the
training loop only pays for copying the weights. At most :data:`MAX_PENDING` checkpoints wait at
once; past that the loop waits, which bounds memory when storage is slower than training.

Every step's full training state (``training.state``) is hashed on a second background thread,
and its SHA-256 fills the step record's ``state_sha256``; the state itself goes into the
recorder's :class:`~proof.spool.StateSpool` so the worker can reveal it when challenged. The same
thread fills ``update_norm`` with the distance between the weights of the step's state and the
state before it: both fields are read off the committed states, not written beside them. The
step log is a Merkle leaf, so every per-step digest is committed before any challenge exists.
States wait for that thread in batches of at most :data:`STATE_BATCH`, at most
:data:`MAX_PENDING_BATCHES` batches and :data:`STATE_BUDGET` bytes at once (one state always
passes); past that the loop waits, so a large model's states do not pile up in memory.

Crash recovery: after each checkpoint the recorder stores a small JSON *journal* next to it
(``journal-<step>``): the step records since the previous checkpoint, the refs and plaintext
hashes of every checkpoint and journal so far, the epoch digests and the resumes. Checkpoints
themselves stay pure training state, so they are bitwise reproducible. :meth:`Recorder.resume`
reads the last journal, the earlier journals it lists and the checkpoint it names, and rebuilds
the record; a resumed run's proof equals an uninterrupted one's plus the resume step.
"""

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from proof.errors import CheckpointUnavailableError, CheckpointWriteError
from proof.spool import StateSpool, state_name
from proof.telemetry import TelemetrySample, TelemetrySampler
from storage.refs import ArtifactRef
from training.checkpoint import Checkpoint
from training.errors import CheckpointError
from training.profiles import ProfileInfo
from training.state import EncodedState, update_norms
from training.steps import StepRecord

MAX_PENDING = 2
STATE_BATCH = 16  # states handed to the background thread at once: one hand-off per batch, not per step
MAX_PENDING_BATCHES = 4
STATE_BUDGET = 256 << 20  # bytes of states handed to the background thread and not yet spooled
JOURNAL_FORMAT = "bahen.journal.v1"
Put = Callable[[str, bytes], ArtifactRef]
Get = Callable[[ArtifactRef], bytes]


class RecordedProof(BaseModel):
    """Everything recorded during one training task; ``checkpoints[0]`` is step 0, the initial weights.

    ``checkpoint_sha256`` holds the SHA-256 of each checkpoint's plaintext, in the same order, so an
    auditor can check a decryption and a verifier can compare a replayed checkpoint byte for byte.
    """

    steps: list[StepRecord]
    checkpoints: list[tuple[int, ArtifactRef]]
    checkpoint_sha256: list[str]
    epoch_digests: list[str]
    telemetry: list[TelemetrySample]
    profile: ProfileInfo
    resumes: list[int]


def checkpoint_name(step: int) -> str:
    """The name a checkpoint is stored under."""
    return f"checkpoint-{step:08d}"


JOURNAL_PREFIX = "journal-"


def journal_name(step: int) -> str:
    """The name the journal written after a checkpoint is stored under."""
    return f"{JOURNAL_PREFIX}{step:08d}"


class Recorder:
    """Records one training task; pass it to ``training.trainer.train`` and call :meth:`close`."""

    def __init__(self, *, put: Put, telemetry: TelemetrySampler | None = None, spool: StateSpool | None = None):
        self._put = put
        self.spool = spool or StateSpool()
        self._telemetry = telemetry
        self._steps: list[StepRecord] = []
        self._journaled = 0  # records before this index are already inside a stored journal
        self._epoch_digests: dict[int, str] = {}
        self._resumes: list[int] = []
        self._stored: list[dict] = []  # one entry per stored checkpoint; the background thread appends
        self._write_failed = False  # the background thread's: a checkpoint or journal it could not store
        self._profile: ProfileInfo | None = None
        self._restored_step: int | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bahen-checkpoint")
        self._pending: list[tuple[int, Future]] = []
        self._state_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bahen-state")
        self._state_batch: list[tuple[int, EncodedState]] = []
        self._state_batch_bytes = 0
        self._state_pending: list[tuple[int, Future, int]] = []  # (first step, outcomes, payload bytes)
        self._last_state: EncodedState | None = None  # the state thread's: the state before the next one

    def start(self, profile: ProfileInfo, state: EncodedState, *, resumed_at: int | None = None) -> None:
        """Begin recording under ``profile`` from ``state``; a resumed run names the checkpoint step it resumed at."""
        if resumed_at != self._restored_step:
            raise CheckpointError(
                f"training resumes at step {resumed_at} but the recorder was restored at step "
                f"{self._restored_step}; build the recorder with Recorder.resume from the same checkpoint"
            )
        self._profile = profile
        self._last_state = state
        if resumed_at is not None:
            self._resumes.append(resumed_at)
        if self._telemetry is not None:
            self._telemetry.start()

    def record_step(self, record: StepRecord) -> None:
        """Append one step's record."""
        self._steps.append(record)

    def record_state(self, step: int, state: EncodedState) -> None:
        """Hash and spool the state after ``step`` steps (its tensors must be a private copy)."""
        self._state_batch.append((step, state))
        self._state_batch_bytes += state.payload.nbytes
        if len(self._state_batch) >= STATE_BATCH or self._state_batch_bytes >= STATE_BUDGET // MAX_PENDING_BATCHES:
            self._flush_states()

    def _flush_states(self) -> None:
        if not self._state_batch:
            return
        while self._state_pending and (
            len(self._state_pending) >= MAX_PENDING_BATCHES
            or sum(size for _, _, size in self._state_pending) + self._state_batch_bytes > STATE_BUDGET
        ):
            self._settle_oldest_states()
        batch, size = self._state_batch, self._state_batch_bytes
        self._state_batch, self._state_batch_bytes = [], 0
        self._state_pending.append((batch[0][0], self._state_pool.submit(self._spool_states, batch), size))

    def _spool_states(self, batch: list[tuple[int, EncodedState]]) -> list[tuple[int, str, float]]:
        states = [state for _, state in batch]
        norms = update_norms(self._last_state, states)
        self._last_state = states[-1]
        return [(step, digest, norm) for (step, _), digest, norm in zip(batch, self.spool.add_all(batch), norms)]

    def _settle_oldest_states(self) -> None:
        first, future, _ = self._state_pending.pop(0)
        for step, digest, norm in _state_results(first, future):
            # the state after `step` steps is the outcome of the record of step `step - 1`
            record = self._steps[step - 1]
            record.state_sha256, record.update_norm = digest, norm

    def _settle_states(self) -> None:
        self._flush_states()
        while self._state_pending:
            self._settle_oldest_states()

    def record_epoch(self, epoch: int, digest: str) -> None:
        """Record an epoch's order digest; recording it again (after a resume) must agree."""
        known = self._epoch_digests.setdefault(epoch, digest)
        if known != digest:
            raise CheckpointError(
                f"epoch {epoch}'s data order digest {digest[:12]}… differs from the recorded {known[:12]}…; "
                "the resumed run uses another seed, task or dataset size than the checkpoint's"
            )

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Queue a checkpoint for storage; its tensors must be a private copy the loop won't touch.

        The loop does not wait for the states before it to be hashed: the checkpoint thread waits
        for them and fills their digests and update norms into the journal.
        """
        self._raise_failed()
        while len(self._pending) >= MAX_PENDING:
            self._wait_oldest()
        self._flush_states()
        journal = {
            "format": JOURNAL_FORMAT,
            "step": checkpoint.step,
            "epoch_digests": self._digest_list(),
            "resumes": list(self._resumes),
        }
        records = self._steps[self._journaled:]
        hashing = [(first, future) for first, future, _ in self._state_pending]
        self._journaled = len(self._steps)
        self._pending.append((checkpoint.step, self._pool.submit(self._write, checkpoint, journal, records, hashing)))

    def wait_idle(self) -> None:
        """Wait until the background threads have done everything handed to them so far.

        States not handed over yet (a batch still filling) stay with the loop, and nothing is
        settled: a failure still surfaces at the next checkpoint or at :meth:`close`.
        """
        wait([future for _, future, _ in self._state_pending] + [future for _, future in self._pending])

    def close(self) -> RecordedProof:
        """Wait for pending checkpoint writes, stop telemetry and return the record."""
        telemetry = self._telemetry.stop() if self._telemetry is not None else []
        try:
            self._settle_states()
            while self._pending:
                self._wait_oldest()
        finally:
            self._state_pool.shutdown(wait=True)
            self._pool.shutdown(wait=True)
        if self._profile is None:
            raise CheckpointError("the recorder was closed before training started; pass it to train()")
        return RecordedProof(
            steps=self._steps,
            checkpoints=[(e["step"], ArtifactRef(**e["checkpoint"])) for e in self._stored],
            checkpoint_sha256=[e["checkpoint_sha256"] for e in self._stored],
            epoch_digests=self._digest_list(),
            telemetry=list(telemetry),
            profile=self._profile,
            resumes=self._resumes,
        )

    def _digest_list(self) -> list[str]:
        return [self._epoch_digests[e] for e in sorted(self._epoch_digests)]

    def _write(self, checkpoint: Checkpoint, journal: dict, records: list[StepRecord],
               hashing: list[tuple[int, Future]]) -> None:
        """Store a checkpoint and its journal; nothing once an earlier one failed.

        A journal lists every checkpoint before it: written after a failed one, it would name a
        chain with a gap, which no resume could use.
        """
        if self._write_failed:
            raise CheckpointWriteError(checkpoint_name(checkpoint.step),
                                       RuntimeError("an earlier checkpoint or journal was not stored"))
        try:
            self._store(checkpoint, journal, records, hashing)
        except BaseException:
            self._write_failed = True
            raise

    def _store(self, checkpoint: Checkpoint, journal: dict, records: list[StepRecord],
               hashing: list[tuple[int, Future]]) -> None:
        journal["records"] = _to_columns(_with_state_outcomes(records, hashing))
        data = checkpoint.to_bytes()
        entry = {
            "step": checkpoint.step,
            "checkpoint": self._put(checkpoint_name(checkpoint.step), data).model_dump(mode="json"),
            "checkpoint_sha256": hashlib.sha256(data).hexdigest(),
        }
        journal["stored"] = [*self._stored, entry]
        text = json.dumps(journal, sort_keys=True, separators=(",", ":")).encode()
        entry["journal"] = self._put(journal_name(checkpoint.step), text).model_dump(mode="json")
        entry["journal_sha256"] = hashlib.sha256(text).hexdigest()
        self._stored.append(entry)

    def _wait_oldest(self) -> None:
        step, future = self._pending.pop(0)
        try:
            future.result()
        except Exception as exc:
            raise _write_error(checkpoint_name(step), exc) from exc

    def _raise_failed(self) -> None:
        for step, future in self._pending:
            if future.done() and future.exception() is not None:
                raise _write_error(checkpoint_name(step), future.exception())

    @classmethod
    def resume(
        cls, last_journal: ArtifactRef, *, get: Get, put: Put, telemetry: TelemetrySampler | None = None
    ) -> tuple["Recorder", Checkpoint]:
        """Rebuild a recorder from the last stored journal; return it with the checkpoint to resume from.

        ``get(ref) -> plaintext`` fetches and decrypts a stored artifact. Every artifact read is
        checked against the plaintext hash recorded for it. Pass the checkpoint to
        ``train(..., resume_from=...)`` together with the recorder.
        """
        journal_bytes = _fetch(last_journal, get, None)
        journal = _load_journal(journal_bytes, last_journal.name)
        recorder = cls(put=put, telemetry=telemetry)
        for entry in journal.stored[:-1]:
            if entry.journal is None or entry.journal_sha256 is None:
                raise CheckpointError(f"{last_journal.name} lists the checkpoint at step {entry.step} without its "
                                      "journal; resume from an earlier journal")
            earlier = _load_journal(_fetch(entry.journal, get, entry.journal_sha256), entry.journal.name)
            recorder._steps += _from_columns(earlier.records, entry.journal.name)
        recorder._steps += _from_columns(journal.records, last_journal.name)
        last = journal.stored[-1]
        checkpoint = Checkpoint.from_bytes(_fetch(last.checkpoint, get, last.checkpoint_sha256), name=last.checkpoint.name)
        if len(recorder._steps) != checkpoint.step or journal.step != checkpoint.step:
            raise CheckpointError(
                f"{last_journal.name} and its predecessors hold {len(recorder._steps)} step records for a "
                f"checkpoint at step {checkpoint.step}; resume from an earlier journal"
            )
        recorder._journaled = len(recorder._steps)
        recorder._epoch_digests = dict(enumerate(journal.epoch_digests))
        recorder._resumes = list(journal.resumes)
        stored = [entry.model_dump(mode="json", exclude_none=True) for entry in journal.stored]
        stored[-1]["journal"] = last_journal.model_dump(mode="json")
        stored[-1]["journal_sha256"] = hashlib.sha256(journal_bytes).hexdigest()
        recorder._stored = stored
        recorder._restored_step = checkpoint.step
        return recorder, checkpoint


def _fetch(ref: ArtifactRef, get: Get, expected_sha256: str | None) -> bytes:
    try:
        data = get(ref)
    except Exception as exc:  # the caller's store decides how a missing object fails
        raise CheckpointUnavailableError(ref.name, exc) from exc
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise CheckpointError(
            f"{ref.name} does not match the plaintext hash recorded when it was written; "
            "it was altered or replaced, resume from an earlier journal or restart the task"
        )
    return data


class _StoredEntry(BaseModel, strict=True):
    """A stored checkpoint as a journal lists it; the journal naming it is absent in its own entry."""

    step: int
    checkpoint: ArtifactRef
    checkpoint_sha256: str
    journal: ArtifactRef | None = None
    journal_sha256: str | None = None


class _Journal(BaseModel):
    """A journal as :meth:`Recorder.save_checkpoint` writes it; ``records`` are StepRecord columns."""

    format: Literal[JOURNAL_FORMAT]
    step: int = Field(strict=True)
    epoch_digests: list[str]
    resumes: list[int]
    records: dict[str, list]
    stored: list[_StoredEntry] = Field(min_length=1)


def _load_journal(data: bytes, name: str) -> _Journal:
    # pydantic-core's parser: nesting stops at 200 levels whatever Python's recursion limit is.
    try:
        return _Journal.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or JOURNAL_FORMAT
        raise CheckpointError(f"{name} is not a readable journal ({where}: {first['msg']}); "
                              "resume from an earlier journal") from None


def _state_results(first: int, future: Future) -> list[tuple[int, str, float]]:
    """A batch of the state thread's (step, digest, update norm); a failure names the batch's first state."""
    try:
        return future.result()
    except Exception as exc:
        raise CheckpointWriteError(state_name(first), exc) from exc


def _write_error(name: str, exc: BaseException) -> CheckpointWriteError:
    """The error of storing ``name``, or the error of a state its journal waited for."""
    return exc if isinstance(exc, CheckpointWriteError) else CheckpointWriteError(name, exc)


def _with_state_outcomes(records: list[StepRecord], hashing: list[tuple[int, Future]]) -> list[StepRecord]:
    """``records`` with the digests and update norms that the state thread's ``hashing`` batches yield.

    The loop settles the same batches into its own records later; these are copies.
    """
    outcomes = {step - 1: {"state_sha256": digest, "update_norm": norm}
                for first, future in hashing for step, digest, norm in _state_results(first, future)}
    return [r.model_copy(update=outcomes[r.step]) if r.step in outcomes else r for r in records]


def _to_columns(records: list[StepRecord]) -> dict[str, list]:
    # Columns, not one object per record: the field names are stored once per journal.
    return {name: [getattr(r, name) for r in records] for name in StepRecord.model_fields}


def _from_columns(columns: dict[str, list], name: str) -> list[StepRecord]:
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1 or set(columns) != set(StepRecord.model_fields):
        raise CheckpointError(f"{name}'s step records are not {len(StepRecord.model_fields)} columns of one "
                              "length; resume from an earlier journal")
    try:
        return [StepRecord(**{field: values[i] for field, values in columns.items()}) for i in range(min(lengths))]
    except ValidationError as exc:
        raise CheckpointError(f"{name} holds an invalid step record ({exc.errors()[0]['msg']}); "
                              "resume from an earlier journal") from None
