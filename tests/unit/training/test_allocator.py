"""The allocator setting: freed buffers stay mapped, so a step's allocations do not fault again."""

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# Each round allocates three 8 MiB buffers and frees them. With glibc's adaptive thresholds the
# first round raises the mmap threshold to 8 MiB and the trim threshold to 16 MiB, so later rounds
# come from the heap, and freeing 24 MiB at its top returns it to the kernel: every round faults
# the 24 MiB back in.
ROUNDS = """
import resource, sys
from training.allocator import tune_allocator
if sys.argv[1] == "tuned":
    assert tune_allocator()
def round_():
    blocks = [bytearray(8 << 20) for _ in range(3)]
    for b in blocks:
        b[::4096] = b"x" * len(b[::4096])
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_tuned_allocator_reuses_freed_memory_without_page_faults():
    untuned, tuned = _faults("default"), _faults("tuned")
    pages_per_round = 3 * (8 << 20) // 4096
    assert untuned >= 10 * pages_per_round  # the adaptive thresholds fault most rounds back in
    assert tuned < pages_per_round // 10


def test_tuning_is_idempotent():
    from training.allocator import tune_allocator

    assert tune_allocator() and tune_allocator()
