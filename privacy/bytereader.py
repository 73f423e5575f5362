"""Re-cut a stream of byte pieces of any sizes into reads of exact sizes, copying as little as possible."""

from collections import deque
from collections.abc import Iterable


class ByteReader:
    """Exact-size reads over an iterable of byte pieces, with look-ahead for end of stream.

    A piece that already has the requested size is passed through without a copy, so a producer
    that yields whole chunks costs nothing extra. Pieces that are not ``bytes`` are copied on
    arrival, because producers often reuse one mutable buffer for every piece.
    """

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self._queue: deque[bytes | memoryview] = deque()
        self._size = 0

    def read(self, n: int) -> bytes:
        """The next ``n`` bytes, or fewer only at the end of the stream."""
        self._fill(n)
        if self._queue and len(self._queue[0]) == n:
            self._size -= n
            return bytes(self._queue.popleft())
        parts = []
        wanted = min(n, self._size)
        self._size -= wanted
        while wanted:
            head = self._queue[0]
            if len(head) <= wanted:
                parts.append(self._queue.popleft())
                wanted -= len(head)
            else:
                view = memoryview(head)
                parts.append(view[:wanted])
                self._queue[0] = view[wanted:]
                wanted = 0
        return b"".join(parts)

    def peek(self, n: int) -> bytes:
        """Up to the next ``n`` bytes, without consuming them."""
        self._fill(n)
        parts, wanted = [], n
        for piece in self._queue:
            if wanted <= 0:
                break
            parts.append(piece[:wanted])
            wanted -= len(piece)
        return b"".join(parts)

    def at_eof(self) -> bool:
        """Whether the stream has no bytes left."""
        self._fill(1)
        return self._size == 0

    def _fill(self, n: int) -> None:
        while self._size < n:
            piece = next(self._pieces, None)
            if piece is None:
                return
            if not isinstance(piece, bytes):
                piece = bytes(piece)
            if piece:
                self._queue.append(piece)
                self._size += len(piece)
