"""One pass over the bytes: md5 (DVC's address), sha256 (the commitment) and size together.

For large chunks md5 (~0.75 GB/s on one core) and sha256 (~1.8 GB/s) each run on a helper thread
while the caller's thread writes the chunk out; hashlib releases the GIL on buffers above 2 KiB,
so the three overlap and the pass costs about as much as md5 alone, given a second core.
"""

import hashlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from storage.refs import ArtifactRef

CHUNK_SIZE = 4 << 20
# Below this, the hand-off to a second thread costs more than it saves.
_THREAD_MIN = 1 << 20


def iter_views(data: bytes | bytearray | memoryview | Iterable[bytes],
               chunk_size: int = CHUNK_SIZE) -> Iterator[memoryview]:
    """Yield ``data`` as memoryviews: slices of a bytes-like object, or the iterable's own chunks."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
        for start in range(0, len(view), chunk_size):
            yield view[start:start + chunk_size]
        return
    for chunk in data:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"artifact chunks must be bytes, got {type(chunk).__name__}")
        yield memoryview(chunk).cast("B")


class Digest:
    """Accumulates md5, sha256 and size; ``consume`` also hands each chunk to a sink."""

    def __init__(self) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self.size = 0

    def consume(self, chunks: Iterable[memoryview],
                sink: Callable[[memoryview], object] | None = None) -> "Digest":
        """Hash every chunk once, passing it to ``sink`` (a file's write, a spool) as it goes.

        Each chunk is fully hashed and written before the next is pulled, so a producer may reuse
        its buffer between chunks.
        """
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="digest") as helpers:
            for chunk in chunks:
                if len(chunk) >= _THREAD_MIN:
                    pending = [helpers.submit(self._md5.update, chunk),
                               helpers.submit(self._sha256.update, chunk)]
                else:
                    pending = []
                    self._md5.update(chunk)
                    self._sha256.update(chunk)
                if sink is not None:
                    sink(chunk)
                self.size += len(chunk)
                for done in pending:
                    done.result()
        return self

    def ref(self, name: str) -> ArtifactRef:
        """The reference of the bytes consumed so far."""
        return ArtifactRef(name=name, md5=self._md5.hexdigest(),
                           sha256=self._sha256.hexdigest(), size=self.size)
