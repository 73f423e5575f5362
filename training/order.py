"""The committed data order: which samples form each batch, derived from the order's seed alone.

The pseudo-random function (version 1), fully specified so any implementation can reproduce it:

1. ``key = SHA-256("bahen.order.v1" || i64be(seed) || u64be(task) || u64be(epoch))`` where
   ``i64be``/``u64be`` are 8-byte big-endian two's-complement / unsigned integers.
2. A keystream of 64-bit words: block ``j`` (j = 0, 1, ...) is ``SHA-256(key || u64be(j))``,
   read as four big-endian unsigned 64-bit words; word ``i`` of the stream is the sort key of
   sample ``i`` (i = 0 .. num_samples-1).
3. The epoch's permutation sorts the sample indices by (sort key, index) ascending.
4. Batch ``b`` is ``permutation[b*batch_size : (b+1)*batch_size]`` for
   ``b < num_samples // batch_size``; the final partial batch is dropped, so every step sees a
   full batch (the dropped samples change from epoch to epoch).

It depends on SHA-256 only, not on a library's RNG whose stream may change between versions.

Commitments: ``batch_digest`` is SHA-256 of the indices as 8-byte big-endian integers;
``epoch_order_digest`` is SHA-256 of ``"bahen.epoch.v1"`` followed, for each batch in order, by
``u64be(len(batch))`` and the batch's indices as 8-byte big-endian integers.
"""

import hashlib

import numpy as np

from training.errors import DataOrderError

_BE_U64 = np.dtype(">u8")
_BE_I64 = np.dtype(">i8")


def _order_key(seed: int, task: int, epoch: int) -> bytes:
    if task < 0 or epoch < 0:
        raise DataOrderError(f"task ({task}) and epoch ({epoch}) must be non-negative")
    material = b"bahen.order.v1" + seed.to_bytes(8, "big", signed=True)
    return hashlib.sha256(material + task.to_bytes(8, "big") + epoch.to_bytes(8, "big")).digest()


def _sort_keys(key: bytes, count: int) -> np.ndarray:
    blocks = (count + 3) // 4
    stream = b"".join(hashlib.sha256(key + j.to_bytes(8, "big")).digest() for j in range(blocks))
    return np.frombuffer(stream, dtype=_BE_U64)[:count]


def epoch_permutation(seed: int, task: int, epoch: int, num_samples: int) -> np.ndarray:
    """The permutation of ``range(num_samples)`` for one epoch (steps 1-3 of the PRF)."""
    keys = _sort_keys(_order_key(seed, task, epoch), num_samples)
    # A stable sort breaks ties between equal 64-bit keys by index, as step 3 specifies.
    return np.argsort(keys, kind="stable").astype(np.int64)


def batch_order(seed: int, task: int, epoch: int, num_samples: int, batch_size: int) -> list[np.ndarray]:
    """The batches of one epoch as arrays of int64 sample indices (the module docstring's PRF)."""
    if batch_size < 1 or num_samples < batch_size:
        raise DataOrderError(
            f"cannot form a batch of {batch_size} from {num_samples} samples: lower the batch size or add data"
        )
    perm = epoch_permutation(seed, task, epoch, num_samples)
    count = num_samples // batch_size
    return [perm[b * batch_size:(b + 1) * batch_size] for b in range(count)]


def batch_digest(indices: np.ndarray) -> str:
    """SHA-256 hex of a batch's indices as 8-byte big-endian integers."""
    return hashlib.sha256(np.asarray(indices, dtype=_BE_I64).tobytes()).hexdigest()


def batch_digests(batches: list[np.ndarray]) -> list[str]:
    """:func:`batch_digest` of each of an epoch's batches (all of one size), converting the indices at once."""
    return [hashlib.sha256(row).hexdigest() for row in np.asarray(batches, dtype=_BE_I64)]


def epoch_order_digest(batches: list[np.ndarray]) -> str:
    """SHA-256 hex committing to an epoch's whole batch order, batch boundaries included."""
    return index_lists_digest(b"bahen.epoch.v1", batches)


def index_lists_digest(tag: bytes, lists: list[np.ndarray]) -> str:
    """SHA-256 hex of ``tag``, then of each list in order its length (``u64be``) and its indices
    as 8-byte big-endian integers: a commitment to the lists and their boundaries."""
    h = hashlib.sha256(tag)
    for indices in lists:
        h.update(len(indices).to_bytes(8, "big"))
        h.update(np.asarray(indices, dtype=_BE_I64).tobytes())
    return h.hexdigest()
