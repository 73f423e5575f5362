"""The worker's state spool: in memory or sealed on disk, read back exactly, deleted on close."""

import hashlib
import weakref

import pytest
import torch

from proof.spool import SpoolTamperedError, StateNotSpooledError, StateSpool
from training.state import encode_state


def _state(step: int):
    weights = {"w": torch.full((64,), float(step))}
    return encode_state(step, 0, weights, {"state": {}, "param_groups": []}, torch.zeros(4, dtype=torch.uint8), "{}")


@pytest.mark.parametrize("memory_limit", [10**9, 0])
def test_states_read_back_exactly(memory_limit):
    spool = StateSpool(memory_limit=memory_limit)
    try:
        digests = {s: spool.add(s, _state(s)) for s in (1, 2, 3)}
        assert len(set(digests.values())) == 3
        for s in (1, 2, 3):
            assert s in spool and spool.get(s) == _state(s).to_bytes()
            assert digests[s] == hashlib.sha256(_state(s).to_bytes()).hexdigest()
    finally:
        spool.close()


def test_a_batch_straddling_the_memory_limit_reads_back_exactly():
    size = len(_state(1).to_bytes())
    spool = StateSpool(memory_limit=2 * size)  # two of the batch stay in memory, the rest is sealed on disk
    try:
        digests = spool.add_all([(s, _state(s)) for s in (1, 2, 3, 4)])
        assert digests == [hashlib.sha256(_state(s).to_bytes()).hexdigest() for s in (1, 2, 3, 4)]
        assert sorted(spool._memory) == [1, 2] and sorted(spool._files) == [3, 4]
        assert [spool.get(s) for s in (1, 2, 3, 4)] == [_state(s).to_bytes() for s in (1, 2, 3, 4)]
    finally:
        spool.close()


class FullDiskSpool(StateSpool):
    def _seal(self, step, state):
        raise OSError(28, "No space left on device")


def test_a_failed_write_keeps_the_states_that_fit_in_memory():
    spool = FullDiskSpool(memory_limit=len(_state(1).to_bytes()))
    try:
        with pytest.raises(OSError, match="No space left"):
            spool.add_all([(1, _state(1)), (2, _state(2))])
        assert 1 in spool and spool.get(1) == _state(1).to_bytes()
        assert 2 not in spool
    finally:
        spool.close()


@pytest.mark.parametrize("memory_limit", [10**9, 0])
def test_the_spool_keeps_its_own_copy_and_lets_go_of_the_callers_buffer(memory_limit):
    spool = StateSpool(memory_limit=memory_limit)
    try:
        state = _state(7)
        expected = state.to_bytes()
        spool.add(7, state)
        payload = weakref.ref(state.payload)
        state.payload.zero_()  # the training loop may reuse the memory once the state is spooled
        del state
        assert payload() is None
        assert spool.get(7) == expected
    finally:
        spool.close()


def test_spilled_states_are_sealed_and_deleted_on_close():
    spool = StateSpool(memory_limit=0)
    spool.add(5, _state(5))
    directory = spool._directory
    stored = next(directory.iterdir()).read_bytes()
    assert b"bahen.state.v1" not in stored and _state(5).payload.numpy().tobytes() not in stored
    spool.close()
    assert not directory.exists()
    with pytest.raises(StateNotSpooledError, match="state after step 5 is not in this worker's spool"):
        spool.get(5)


def test_altered_spool_file_is_detected():
    spool = StateSpool(memory_limit=0)
    try:
        spool.add(2, _state(2))
        path = next(spool._directory.iterdir())
        data = bytearray(path.read_bytes())
        data[40] ^= 1
        path.write_bytes(bytes(data))
        with pytest.raises(SpoolTamperedError, match="state after step 2 fails authentication"):
            spool.get(2)
    finally:
        spool.close()
