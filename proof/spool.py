"""The worker's spool of per-step training states, kept until the challenge is answered.

Every state the recorder commits to (one per optimizer step) must be revealable later, when the
challenge names the steps to spot-check. The first ``memory_limit`` bytes of states stay in
memory, in the clear: the live weights sit in the same memory, and sealing a copy under a key kept
beside it would protect nothing while costing every training step a pass of AES-GCM. The spool
keeps its own copy of those states, made on the thread that adds them (one block for each batch
added at once), and not the caller's buffer: the training loop then gets the memory of the states
it handed over back for the next ones, where keeping its buffers would make every step's state
copy land on pages the process has never touched (50 to 80 page faults per CNN step on the
training thread of a fresh process). Later states go to files in a private temporary folder
(written to a temporary name, then renamed), sealed with AES-256-GCM under a fresh key that lives
only in this process, so nothing is ever written to disk in plaintext. Each file is one GCM
message whose nonce is its step (unique per key: a step is spooled once) and whose associated data
is its name. The streaming construction of ``privacy.stream`` would cost ten times more per state
(a key derivation and a header each) and buys nothing for a blob that never leaves this process
and is read whole. :meth:`StateSpool.close` forgets every state and deletes the files.

The key dies with the process: a worker that crashed and resumed regenerates the states before
its resume point by replaying from its checkpoints (``proof.response.respond``'s ``regenerate``).
"""

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privacy.stream import new_data_key
from proof.errors import ProofError
from training.state import EncodedState

DEFAULT_MEMORY_LIMIT = 256 * 1024 * 1024


class StateNotSpooledError(ProofError):
    def __init__(self, step: int):
        super().__init__(
            f"the state after step {step} is not in this worker's spool (it was closed, or the run resumed "
            "after it); regenerate it by replaying from the checkpoint before it"
        )


class SpoolTamperedError(ProofError):
    def __init__(self, step: int):
        super().__init__(
            f"the spooled state after step {step} fails authentication: its file was altered on disk; "
            "regenerate it by replaying from the checkpoint before it"
        )


def state_name(step: int) -> str:
    """The name a revealed state is stored under (the state after ``step`` optimizer steps)."""
    return f"state-{step:08d}"


class StateSpool:
    """Sealed states by step; thread-safe for one writer and readers of finished steps."""

    def __init__(self, *, memory_limit: int = DEFAULT_MEMORY_LIMIT):
        self._aead = AESGCM(new_data_key())
        self._memory_limit = memory_limit
        self._memory: dict[int, tuple[bytes, torch.Tensor]] = {}  # step: (header, payload)
        self._in_memory = 0
        self._files: dict[int, Path] = {}
        self._directory: Path | None = None

    def add(self, step: int, state: EncodedState) -> str:
        """Keep a copy of the state after ``step`` steps; return the SHA-256 (hex) of its bytes."""
        return self.add_all([(step, state)])[0]

    def add_all(self, states: list[tuple[int, EncodedState]]) -> list[str]:
        """Keep a copy of each ``(step, state)``; return the SHA-256 (hex) of each state's bytes.

        The states kept in memory are copied together, into one block: one call, in which torch
        copies without holding the GIL that the training thread needs between its kernels.
        """
        digests, kept, sealed, in_memory = [], [], [], self._in_memory
        for step, state in states:
            header, payload = state.header, state.payload
            digest = hashlib.sha256(header)
            digest.update(payload.numpy())
            digests.append(digest.hexdigest())
            size = len(header) + payload.nbytes
            if in_memory + size <= self._memory_limit:
                kept.append((step, header, payload))
                in_memory += size
            else:
                sealed.append((step, state))
        if kept:  # kept before any file is written: a failed write leaves the spool's count true
            block = torch.cat([payload for _, _, payload in kept])
            for (step, header, _), copy in zip(kept, block.split([payload.numel() for _, _, payload in kept])):
                self._memory[step] = (header, copy)
            self._in_memory = in_memory
        for step, state in sealed:
            self._seal(step, state)
        return digests

    def _seal(self, step: int, state: EncodedState) -> None:
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="bahen-spool-"))
        path = self._directory / state_name(step)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self._aead.encrypt(_nonce(step), state.to_bytes(), state_name(step).encode()))
        os.replace(tmp, path)
        self._files[step] = path

    def __contains__(self, step: int) -> bool:
        return step in self._memory or step in self._files

    def get(self, step: int) -> bytes:
        """The bytes of the state after ``step`` steps."""
        if step in self._memory:
            header, payload = self._memory[step]
            return b"".join((header, memoryview(payload.numpy())))
        if step not in self._files:
            raise StateNotSpooledError(step)
        try:
            return self._aead.decrypt(_nonce(step), self._files[step].read_bytes(), state_name(step).encode())
        except InvalidTag:
            raise SpoolTamperedError(step) from None

    def close(self) -> None:
        """Forget every state and delete the spool's files."""
        self._memory.clear()
        self._files.clear()
        self._in_memory = 0
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


def _nonce(step: int) -> bytes:
    return step.to_bytes(12, "big")
