"""Resume after a real SIGKILL: the final weights and step log equal an uninterrupted run's."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proof.errors import CheckpointUnavailableError
from proof.recorder import Recorder
from training.errors import CheckpointError
from training.trainer import train

sys.path.insert(0, str(Path(__file__).parent))
from resume_worker import SPEC, dataset, file_store, ref_of  # noqa: E402  (the worker is a script too)

ROOT = Path(__file__).resolve().parents[3]


def _kill_after_journals(directory: Path, count: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen([sys.executable, str(Path(__file__).parent / "resume_worker.py"), str(directory)], env=env)
    try:
        deadline = time.monotonic() + 120
        while len(list(directory.glob("journal-*"))) < count:
            assert worker.poll() is None, "the worker ended before it could be killed"
            assert time.monotonic() < deadline, "the worker wrote no journals"
            time.sleep(0.02)
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait()
    assert worker.returncode == -signal.SIGKILL


def _last_journal(directory: Path):
    name = sorted(p.name for p in directory.glob("journal-*"))[-1]
    return ref_of(name, (directory / name).read_bytes())


def _state_bytes(state: dict) -> bytes:
    return b"".join(k.encode() + v.numpy().tobytes() for k, v in state.items())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    put, _ = file_store(tmp_path_factory.mktemp("whole"))
    X, y = dataset()
    recorder = Recorder(put=put)
    result = train(SPEC, X, y, recorder=recorder)
    return result, recorder.close()


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    """The files a worker left behind when it was SIGKILLed after its fourth journal."""
    directory = tmp_path_factory.mktemp("killed")
    _kill_after_journals(directory, 4)
    return directory


@pytest.fixture
def workdir(killed, tmp_path) -> Path:
    shutil.copytree(killed, tmp_path, dirs_exist_ok=True)
    return tmp_path


def test_resume_after_sigkill_is_bitwise_identical(workdir, uninterrupted):
    tmp_path = workdir
    put, get = file_store(tmp_path)
    recorder, checkpoint = Recorder.resume(_last_journal(tmp_path), get=get, put=put)
    assert 0 < checkpoint.step < 168
    X, y = dataset()
    result = train(SPEC, X, y, recorder=recorder, resume_from=checkpoint)
    resumed = recorder.close()

    whole_result, whole = uninterrupted
    assert _state_bytes(result.final_state) == _state_bytes(whole_result.final_state)
    assert [s.model_dump(exclude={"seconds"}) for s in resumed.steps] == [
        s.model_dump(exclude={"seconds"}) for s in whole.steps
    ]
    assert resumed.checkpoints == whole.checkpoints  # checkpoint bytes and refs are identical
    assert resumed.epoch_digests == whole.epoch_digests
    assert resumed.resumes == [checkpoint.step] and whole.resumes == []


def test_corrupted_checkpoint_on_resume(workdir):
    tmp_path = workdir
    put, get = file_store(tmp_path)
    last = _last_journal(tmp_path)
    step = int(last.name.split("-")[1])
    (tmp_path / f"checkpoint-{step:08d}").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=f"checkpoint-{step:08d} does not match the plaintext hash"):
        Recorder.resume(last, get=get, put=put)


def test_missing_journal_on_resume(workdir):
    tmp_path = workdir
    put, get = file_store(tmp_path)
    last = _last_journal(tmp_path)
    (tmp_path / "journal-00000000").unlink()
    with pytest.raises(CheckpointUnavailableError, match="journal-00000000 could not be read"):
        Recorder.resume(last, get=get, put=put)
