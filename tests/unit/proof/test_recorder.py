"""The recorder: background checkpoint storage, storage failures, resume in process, telemetry."""

import hashlib
import json
import threading
import time

import pytest
import torch

from proof.errors import CheckpointUnavailableError, CheckpointWriteError
from proof.recorder import RecordedProof, Recorder, journal_name
from proof.spool import StateSpool
from proof.telemetry import TelemetrySampler
from storage.refs import ArtifactRef
from training import trainer
from training.checkpoint import Checkpoint
from training.datasets import load_dataset, table_to_arrays
from training.errors import CheckpointError
from training.hooks import TrainHooks
from training.trainer import StepRecord, TrainSpec, train

SPEC = TrainSpec(model="mlp", input_shape=(1, 8, 8), num_classes=10, optimizer="sgd", lr=0.05,
                 batch_size=64, epochs=2, seed=3, checkpoint_every=6)


@pytest.fixture(scope="module")
def data():
    X, y, _ = table_to_arrays(load_dataset("digits"))
    return X, y


class Store:
    def __init__(self, fail_on: str | None = None):
        self.objects: dict[str, bytes] = {}
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def put(self, name: str, data: bytes) -> ArtifactRef:
        self.threads.add(threading.current_thread().name)
        if name == self.fail_on:
            raise ConnectionError("store unreachable")
        self.objects[name] = data
        return ArtifactRef(name=name, md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest(),
                           size=len(data))

    def get(self, ref: ArtifactRef) -> bytes:
        return self.objects[ref.name]


class ThreadsSpool(StateSpool):
    """Notes the threads that spool states."""

    def __init__(self):
        super().__init__()
        self.threads: set[str] = set()

    def add_all(self, states):
        self.threads.add(threading.current_thread().name)
        return super().add_all(states)


def test_records_everything_off_the_training_thread(data):
    store = Store()
    recorder = Recorder(put=store.put, telemetry=TelemetrySampler(interval_s=0.01, use_nvml=False), spool=ThreadsSpool())
    train(SPEC, *data, recorder=recorder)
    proof = recorder.close()
    assert [s for s, _ in proof.checkpoints] == [0, 6, 12, 18, 24, 30, 36, 42, 48, 54, 56]
    assert len(proof.steps) == 56 and proof.resumes == [] and len(proof.epoch_digests) == 2
    assert proof.telemetry and proof.profile.name == "cpu-fp32-exact"
    assert threading.current_thread().name not in store.threads  # puts ran on the background thread
    assert {name.rsplit("_", 1)[0] for name in store.threads} == {"bahen-checkpoint"}
    assert {name.rsplit("_", 1)[0] for name in recorder.spool.threads} == {"bahen-state"}
    for (step, ref), digest in zip(proof.checkpoints, proof.checkpoint_sha256):
        assert hashlib.sha256(store.objects[ref.name]).hexdigest() == digest == ref.sha256
        assert Checkpoint.from_bytes(store.objects[ref.name]).step == step


def test_update_norms_are_the_distances_between_consecutive_weights(data):
    spec = SPEC.model_copy(update={"epochs": 1, "checkpoint_every": 1})
    store = Store()
    recorder = Recorder(put=store.put)
    train(spec, *data, recorder=recorder)
    proof = recorder.close()
    weights = [torch.cat([t.reshape(-1) for t in Checkpoint.from_bytes(store.objects[ref.name]).model_state.values()])
               for _, ref in proof.checkpoints]
    assert [r.step for r in proof.steps] == list(range(len(weights) - 1))
    for record, before, after in zip(proof.steps, weights, weights[1:]):
        assert record.update_norm == pytest.approx(torch.linalg.vector_norm(after - before).item(), rel=1e-6)
        assert record.grad_norm > 0 and record.state_sha256


class GradientNorms(TrainHooks):
    """Records each step's gradient norm as torch computes it, while the gradients are still there."""

    def __init__(self):
        self.norms: list[float] = []

    def on_update(self, step, model, optimizer):
        self.norms.append(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]).item())


@pytest.mark.parametrize("budget", [trainer.GRADIENT_BUDGET, 1])  # 1 byte: every record made on its own
def test_gradient_norms_are_torchs_bitwise(data, monkeypatch, budget):
    monkeypatch.setattr(trainer, "GRADIENT_BUDGET", budget)
    hooks = GradientNorms()
    recorder = Recorder(put=Store().put)
    train(SPEC, *data, recorder=recorder, hooks=hooks)
    assert [s.grad_norm for s in recorder.close().steps] == hooks.norms


def test_storage_failure_stops_training_with_a_clear_error(data):
    store = Store(fail_on="checkpoint-00000012")
    recorder = Recorder(put=store.put)
    with pytest.raises(CheckpointWriteError, match="storing checkpoint-00000012 failed .*ConnectionError"):
        train(SPEC, *data, recorder=recorder)
        recorder.close()


class FullDiskSpool(StateSpool):
    def add_all(self, states):
        if any(step == 20 for step, _ in states):
            raise OSError(28, "No space left on device")
        return super().add_all(states)


def test_a_state_that_cannot_be_spooled_stops_training_and_is_named(data):
    # States go to the spool in batches that end at checkpoints (every 6 steps): 19-24 holds 20.
    recorder = Recorder(put=Store().put, spool=FullDiskSpool())
    with pytest.raises(CheckpointWriteError) as failed:
        train(SPEC, *data, recorder=recorder)
        recorder.close()
    assert str(failed.value).startswith("storing state-00000019 failed (OSError: [Errno 28] No space left on device)")


class HeldSpool(StateSpool):
    """Holds the state thread at its first state until released."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def add_all(self, states):
        self.release.wait()
        return super().add_all(states)


class WatchedRecorder(Recorder):
    """Counts the states handed over, and notes how many when the loop first waits for the state thread."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.handed, self.state_bytes = 0, 0
        self.handed_when_waiting: int | None = None
        self.waiting = threading.Event()

    def record_state(self, step, state):
        super().record_state(step, state)
        self.handed += 1
        self.state_bytes = state.payload.numel()

    def _settle_oldest_states(self):
        if not self.waiting.is_set():
            self.handed_when_waiting = self.handed
            self.waiting.set()
        super()._settle_oldest_states()


def test_states_waiting_for_the_state_thread_stay_within_the_byte_budget(data, monkeypatch):
    free = WatchedRecorder(put=Store().put)
    train(SPEC, *data, recorder=free)
    expected = free.close()

    monkeypatch.setattr("proof.recorder.STATE_BUDGET", 3 * free.state_bytes)
    spool = HeldSpool()
    held = WatchedRecorder(put=Store().put, spool=spool)
    training = threading.Thread(target=train, args=(SPEC, *data), kwargs={"recorder": held})
    training.start()
    try:
        assert held.waiting.wait(timeout=120), "the loop never waited for the held state thread"
        assert held.handed_when_waiting == 3  # three states fit the budget; the fourth waits
    finally:
        spool.release.set()
        training.join()
    # every state spooled, none lost or reordered
    assert [s.model_dump(exclude={"seconds"}) for s in held.close().steps] == \
        [s.model_dump(exclude={"seconds"}) for s in expected.steps]


class SlowSpool(StateSpool):
    def add_all(self, states):
        time.sleep(0.05)
        return super().add_all(states)


class SlowStore(Store):
    def put(self, name, data):
        time.sleep(0.05)
        return super().put(name, data)


class WaitIdleAt(TrainHooks):
    """At one step, waits for the recorder's threads and notes what they have stored by then."""

    def __init__(self, recorder, spool, store, step):
        self.recorder, self.spool, self.store, self.step = recorder, spool, store, step
        self.spooled: list[int] = []
        self.stored: set[str] = set()

    def on_update(self, step, model, optimizer):
        if step == self.step:
            self.recorder.wait_idle()
            self.spooled = [s for s in range(1, step + 1) if s in self.spool]
            self.stored = set(self.store.objects)


def test_wait_idle_returns_when_everything_handed_over_is_spooled_and_stored(data):
    spool, store = SlowSpool(), SlowStore()
    recorder = Recorder(put=store.put, spool=spool)
    hooks = WaitIdleAt(recorder, spool, store, step=40)
    train(SPEC, *data, recorder=recorder, hooks=hooks)
    recorder.close()
    # at step 40 the states up to the checkpoint at 36 were handed over, 37-40 not yet
    assert hooks.spooled == list(range(1, 37))
    assert {"checkpoint-00000036", "journal-00000036"} <= hooks.stored


def test_resume_needs_the_restored_recorder(data):
    store = Store()
    recorder = Recorder(put=store.put)
    train(SPEC, *data, recorder=recorder)
    recorder.close()
    checkpoint = Checkpoint.from_bytes(store.objects["checkpoint-00000012"])
    with pytest.raises(CheckpointError, match="build the recorder with Recorder.resume"):
        train(SPEC, *data, recorder=Recorder(put=store.put), resume_from=checkpoint)


def test_resume_from_a_non_journal(data):
    store = Store()
    store.objects["journal-00000006"] = b"\x00garbage"
    ref = ArtifactRef(name="journal-00000006", md5="0" * 32, sha256="0" * 64, size=8)
    with pytest.raises(CheckpointError, match="journal-00000006 is not a readable journal"):
        Recorder.resume(ref, get=store.get, put=store.put)


def test_corrupted_checkpoint_bytes():
    with pytest.raises(CheckpointError, match="step 6 is corrupted or not a bahen checkpoint"):
        Checkpoint.from_bytes(b"PK\x03\x04 truncated", name="step 6")


class JournalFailsLate(Store):
    """A store whose put of one journal hangs until the loop is past the next checkpoint, then fails."""

    def __init__(self, failing: str):
        super().__init__()
        self.failing, self.release = failing, threading.Event()

    def put(self, name: str, data: bytes) -> ArtifactRef:
        if name == self.failing:
            self.release.wait(timeout=60)
            raise ConnectionError("store unreachable")
        return super().put(name, data)


class ReleaseAt(TrainHooks):
    def __init__(self, step: int, release: threading.Event):
        self.step, self.release = step, release

    def on_batch(self, step, indices, X, y):
        if step == self.step:
            self.release.set()
        return X, y


def test_no_checkpoint_or_journal_is_stored_after_one_that_failed(data):
    # Checkpoint 12's write is queued while journal 6's put still hangs: stored after the failure,
    # journal 12 would list a chain without checkpoint 6, from which no resume could continue.
    store = JournalFailsLate(journal_name(6))
    recorder = Recorder(put=store.put)
    with pytest.raises(CheckpointWriteError, match="storing checkpoint-00000006 failed"):
        train(SPEC, *data, recorder=recorder, hooks=ReleaseAt(14, store.release))
    recorder.wait_idle()
    assert "checkpoint-00000006" in store.objects
    assert not {"checkpoint-00000012", "journal-00000012"} & set(store.objects)


def test_every_step_commits_the_state_it_spooled_and_each_checkpoint_a_journal(data):
    store = Store()
    recorder = Recorder(put=store.put)
    train(SPEC, *data, recorder=recorder)
    proof = recorder.close()
    for record in proof.steps:  # a step's record commits the state after it
        assert record.state_sha256 == hashlib.sha256(recorder.spool.get(record.step + 1)).hexdigest()
    assert sorted(store.objects) == sorted([f"checkpoint-{s:08d}" for s, _ in proof.checkpoints]
                                           + [f"journal-{s:08d}" for s, _ in proof.checkpoints])
    recorder.spool.close()


def _recorded(data) -> tuple[Store, RecordedProof]:
    store = Store()
    recorder = Recorder(put=store.put)
    train(SPEC, *data, recorder=recorder)
    return store, recorder.close()


def _left_behind(store: Store, step: int) -> Store:
    """What a worker killed right after step ``step``'s journal leaves in its store."""
    part = Store()
    part.objects = {k: v for k, v in store.objects.items() if int(k.split("-")[1]) <= step}
    return part


def _resume(store: Store, step: int, data, telemetry: TelemetrySampler | None = None) -> RecordedProof:
    """Resume from step ``step``'s journal in ``store`` and train to the end."""
    journal = store.objects[journal_name(step)]
    ref = ArtifactRef(name=journal_name(step), md5=hashlib.md5(journal).hexdigest(),
                      sha256=hashlib.sha256(journal).hexdigest(), size=len(journal))
    recorder, checkpoint = Recorder.resume(ref, get=store.get, put=store.put, telemetry=telemetry)
    train(SPEC, *data, recorder=recorder, resume_from=checkpoint)
    return recorder.close()


def _numbers(proof: RecordedProof) -> list[dict]:
    """Every recorded number but the time (the update norm of a resumed step from the resumed state too)."""
    return [s.model_dump(exclude={"seconds"}) for s in proof.steps]


def test_resume_in_process_equals_uninterrupted(data):
    store, expected = _recorded(data)
    resumed = _resume(_left_behind(store, 24), 24, data)
    assert resumed.checkpoints == expected.checkpoints and resumed.resumes == [24]
    assert _numbers(resumed) == _numbers(expected)


def test_a_worker_resumed_twice_records_what_an_uninterrupted_one_does_and_keeps_sampling(data):
    store, expected = _recorded(data)
    first = _left_behind(store, 24)
    _resume(first, 24, data)
    resumed = _resume(_left_behind(first, 36), 36, data, TelemetrySampler(interval_s=0.01, use_nvml=False))
    assert resumed.checkpoints == expected.checkpoints and resumed.resumes == [24, 36] and resumed.telemetry
    assert _numbers(resumed) == _numbers(expected)


def test_an_earlier_journal_altered_since_is_refused_on_resume(data):
    store, _ = _recorded(data)
    left = _left_behind(store, 24)
    left.objects[journal_name(12)] += b" "  # still JSON, no longer the journal the later one commits to
    with pytest.raises(CheckpointError, match=f"{journal_name(12)}.*altered or replaced"):
        _resume(left, 24, data)


# Known answers: what a worker reads when a journal, a checkpoint or the run's own records do not hold.


@pytest.fixture(scope="module")
def recorded(data) -> Store:
    """The store of one whole recorded run; a test edits its own copy."""
    return _recorded(data)[0]


def _copy(store: Store) -> Store:
    copy = Store()
    copy.objects = dict(store.objects)
    return copy


def _ref(name: str, data: bytes) -> ArtifactRef:
    return ArtifactRef(name=name, md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest(),
                       size=len(data))


def _rewrite(store: Store, step: int, change) -> ArtifactRef:
    """Edit the journal of ``step`` with ``change`` (on its JSON) and store it canonically, as the recorder writes."""
    journal = json.loads(store.objects[journal_name(step)])
    change(journal)
    data = json.dumps(journal, sort_keys=True, separators=(",", ":")).encode()
    store.objects[journal_name(step)] = data
    return _ref(journal_name(step), data)


def _refused(store: Store, last: ArtifactRef) -> str:
    with pytest.raises(CheckpointError) as refused:
        Recorder.resume(last, get=store.get, put=store.put)
    return str(refused.value)


def test_journals_are_canonical_json(recorded):
    for name, data in recorded.objects.items():
        if name.startswith("journal-"):
            assert data == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":")).encode(), name


def test_an_epoch_order_that_changes_and_a_recorder_never_started_are_refused_by_exact_messages():
    recorder = Recorder(put=Store().put)
    recorder.record_epoch(0, "a" * 64)
    with pytest.raises(CheckpointError) as refused:
        recorder.record_epoch(0, "b" * 64)
    assert str(refused.value) == ("epoch 0's data order digest bbbbbbbbbbbb… differs from the recorded aaaaaaaaaaaa…; "
                                  "the resumed run uses another seed, task or dataset size than the checkpoint's")
    with pytest.raises(CheckpointError) as refused:
        recorder.close()
    assert str(refused.value) == "the recorder was closed before training started; pass it to train()"


def test_a_journal_the_store_cannot_give_names_it_and_the_cause():
    def get(ref):
        raise KeyError(ref.name)

    ref = ArtifactRef(name=journal_name(6), md5="0" * 32, sha256="0" * 64, size=8)
    with pytest.raises(CheckpointUnavailableError) as refused:
        Recorder.resume(ref, get=get, put=Store().put)
    assert str(refused.value) == (f"{journal_name(6)} could not be read (KeyError: '{journal_name(6)}'); it is missing "
                                  "or unreadable in the store, resume from an earlier checkpoint or restart the task")


def test_an_earlier_journal_altered_since_is_named_exactly(recorded):
    store = _copy(recorded)
    store.objects[journal_name(12)] += b" "
    assert _refused(store, _ref(journal_name(24), store.objects[journal_name(24)])) == (
        f"{journal_name(12)} does not match the plaintext hash recorded when it was written; it was altered or "
        "replaced, resume from an earlier journal or restart the task")


def test_a_journal_field_of_the_wrong_type_is_named_by_its_path(recorded):
    store = _copy(recorded)
    last = _rewrite(store, 24, lambda j: j["stored"][0].update(step="six"))
    assert _refused(store, last).startswith(f"{journal_name(24)} is not a readable journal (stored.0.step: ")
    assert _refused(store, last).endswith("; resume from an earlier journal")


def _commit_earlier(store: Store, step: int, data: bytes) -> ArtifactRef:
    """Replace the journal of ``step`` by ``data``, which the last journal (24) then commits to."""
    store.objects[journal_name(step)] = data

    def commit(journal):
        entry = next(e for e in journal["stored"] if e["step"] == step)
        entry["journal"] = _ref(journal_name(step), data).model_dump(mode="json")
        entry["journal_sha256"] = hashlib.sha256(data).hexdigest()
    return _rewrite(store, 24, commit)


def test_an_unreadable_or_malformed_earlier_journal_is_named(recorded):
    store = _copy(recorded)
    last = _commit_earlier(store, 12, b"\x00not json")
    assert _refused(store, last).startswith(f"{journal_name(12)} is not a readable journal (")
    earlier = json.loads(recorded.objects[journal_name(12)])
    earlier["records"]["loss"].pop()
    last = _commit_earlier(store, 12, json.dumps(earlier).encode())
    assert _refused(store, last) == (f"{journal_name(12)}'s step records are not {len(StepRecord.model_fields)} columns "
                                     "of one length; resume from an earlier journal")


def test_malformed_records_of_the_last_journal_are_named(recorded):
    store = _copy(recorded)
    last = _rewrite(store, 24, lambda j: j["records"]["step"].pop())
    assert _refused(store, last) == (f"{journal_name(24)}'s step records are not {len(StepRecord.model_fields)} columns "
                                     "of one length; resume from an earlier journal")
    store = _copy(recorded)
    last = _rewrite(store, 24, lambda j: j["records"]["step"].__setitem__(-1, "x"))
    refusal = _refused(store, last)
    assert refusal.startswith(f"{journal_name(24)} holds an invalid step record (")
    assert refusal.endswith("); resume from an earlier journal")


def test_a_journal_whose_step_is_not_its_checkpoints_is_refused(recorded):
    store = _copy(recorded)
    last = _rewrite(store, 24, lambda j: j.update(step=18))
    assert _refused(store, last) == (f"{journal_name(24)} and its predecessors hold 24 step records for a checkpoint "
                                     "at step 24; resume from an earlier journal")


def test_a_damaged_checkpoint_the_journal_commits_to_is_named(recorded):
    store = _copy(recorded)
    store.objects["checkpoint-00000024"] = b"PK\x03\x04 damaged"

    def commit(journal):
        journal["stored"][-1]["checkpoint_sha256"] = hashlib.sha256(b"PK\x03\x04 damaged").hexdigest()
    assert _refused(store, _rewrite(store, 24, commit)).startswith("checkpoint-00000024 is corrupted or not a bahen "
                                                                  "checkpoint")


def test_the_last_checkpoint_failing_to_store_surfaces_at_close_with_its_cause(data):
    recorder = Recorder(put=Store(fail_on="checkpoint-00000056").put)
    with pytest.raises(CheckpointWriteError) as failed:
        train(SPEC, *data, recorder=recorder)
        recorder.close()
    assert str(failed.value) == ("storing checkpoint-00000056 failed (ConnectionError: store unreachable); training "
                                 "stopped so that no step goes unproven; fix the store and resume from the last stored "
                                 "checkpoint")
