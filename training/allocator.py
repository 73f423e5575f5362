"""Keep freed tensor memory inside the process between training steps (glibc malloc).

glibc serves an allocation above its mmap threshold with a fresh ``mmap`` and unmaps it on
``free``, and returns the free top of its heap to the kernel above the trim threshold. Both
thresholds adapt to the program at run time. A CPU training step allocates and frees the same
activation buffers every step, and with the adaptive thresholds whether they stay mapped changes
from run to run: the same bare loop of the CNN on MNIST took 1,389 page faults and 2.3 ms of
kernel time per 13.8 ms step in one run, 123 faults and 0.2 ms in the next; ResNet-20 on
CIFAR-sized inputs spent 50-60 ms of a 540 ms step in the kernel. Every fault is a page the
kernel zero-fills again.

:func:`tune_allocator` fixes both thresholds: blocks below 32 MiB (the ceiling of glibc's own
adaptive threshold on 64-bit) come from the heap, and the heap keeps up to 1 GiB of free memory
at its top. A training process then reuses its peak footprint every step, with no page faults
after the first: both loops above ran without faults, 7-25% faster, and their speed stopped
varying between runs. The process's peak memory does not grow; what it keeps is memory it
already used.
"""

import ctypes
import functools
import platform

MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's <malloc.h>


@functools.cache
def tune_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; False where malloc is not glibc's.

    The setting is process-wide, so it is made once; later calls return the first answer.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
