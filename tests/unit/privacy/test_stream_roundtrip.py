"""Round trips of the encrypted artifact format through bytes, chunk iterators and files."""

import os
import stat
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.errors import TamperedError, WrongKeyError
from privacy.header import TAG_SIZE
from privacy.stream import (
    DEFAULT_CHUNK_SIZE,
    EncryptionContext,
    decrypt_bytes,
    decrypt_chunks,
    decrypt_file,
    encrypt_bytes,
    encrypt_chunks,
    encrypt_file,
    new_data_key,
    read_header,
)

CHUNK = 64
CONTEXT = EncryptionContext("0xorder", "dataset")
KEY = bytes(range(32))
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 10 * CHUNK, 10 * CHUNK + 7]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


@pytest.mark.parametrize("size", SIZES)
def test_bytes_round_trip_and_length(size):
    data = os.urandom(size)
    sealed = encrypt_bytes(KEY, data, context=CONTEXT, chunk_size=CHUNK)
    chunks = max(1, -(-size // CHUNK))
    assert len(sealed) == len(read_header(sealed).to_bytes()) + size + chunks * TAG_SIZE
    assert decrypt_bytes(KEY, sealed, context=CONTEXT) == data


@pytest.mark.parametrize("size", SIZES)
def test_chunk_iterators_yield_header_then_one_piece_per_chunk(size):
    data = os.urandom(size)
    pieces = list(encrypt_chunks(KEY, [data], context=CONTEXT, chunk_size=CHUNK))
    assert len(pieces) == 1 + max(1, -(-size // CHUNK))
    plain = list(decrypt_chunks(KEY, pieces, context=CONTEXT))
    assert b"".join(plain) == data
    assert all(len(p) == CHUNK for p in plain[:-1])


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=700), plain_cuts=st.lists(st.integers(0, 10_000), max_size=12),
       sealed_cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_of_input_and_ciphertext_round_trips(data, plain_cuts, sealed_cuts):
    sealed = b"".join(encrypt_chunks(KEY, _split(data, plain_cuts), context=CONTEXT, chunk_size=CHUNK))
    assert b"".join(decrypt_chunks(KEY, _split(sealed, sealed_cuts), context=CONTEXT)) == data


def test_reused_mutable_buffer_as_input_is_safe():
    data = os.urandom(5 * CHUNK + 3)

    def producer():
        buffer = bytearray(CHUNK // 2)
        for start in range(0, len(data), len(buffer)):
            piece = data[start : start + len(buffer)]
            buffer[: len(piece)] = piece
            yield memoryview(buffer)[: len(piece)]

    sealed = b"".join(encrypt_chunks(KEY, producer(), context=CONTEXT, chunk_size=CHUNK))
    assert decrypt_bytes(KEY, sealed, context=CONTEXT) == data


def test_two_encryptions_of_the_same_data_differ():
    first = encrypt_bytes(KEY, b"same", context=CONTEXT)
    second = encrypt_bytes(KEY, b"same", context=CONTEXT)
    assert first != second
    assert read_header(first).nonce_prefix != read_header(second).nonce_prefix


def test_new_data_keys_are_random_32_bytes():
    keys = {new_data_key() for _ in range(8)}
    assert len(keys) == 8 and all(len(k) == 32 for k in keys)


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError):
        encrypt_bytes(b"short", b"", context=CONTEXT)
    with pytest.raises(ValueError):
        encrypt_bytes(KEY, b"", context=CONTEXT, chunk_size=0)
    with pytest.raises(ValueError):
        EncryptionContext("", "dataset")
    with pytest.raises(ValueError):
        EncryptionContext("0x1", "r" * 256)


@pytest.mark.parametrize("size", [0, 1, DEFAULT_CHUNK_SIZE - 1, DEFAULT_CHUNK_SIZE + 1, 3 * DEFAULT_CHUNK_SIZE])
def test_file_round_trip(tmp_path, size):
    data = os.urandom(size)
    (tmp_path / "plain").write_bytes(data)
    encrypt_file(KEY, tmp_path / "plain", tmp_path / "sealed", context=CONTEXT)
    decrypt_file(KEY, tmp_path / "sealed", tmp_path / "out", context=CONTEXT)
    assert (tmp_path / "out").read_bytes() == data
    assert decrypt_bytes(KEY, (tmp_path / "sealed").read_bytes(), context=CONTEXT) == data
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o600


def test_file_with_small_chunks_round_trips(tmp_path):
    data = os.urandom(10 * CHUNK + 5)
    (tmp_path / "plain").write_bytes(data)
    encrypt_file(KEY, tmp_path / "plain", tmp_path / "sealed", context=CONTEXT, chunk_size=CHUNK)
    decrypt_file(KEY, tmp_path / "sealed", tmp_path / "out", context=CONTEXT)
    assert (tmp_path / "out").read_bytes() == data


def test_failed_file_decryption_leaves_nothing_behind(tmp_path):
    data = os.urandom(4 * DEFAULT_CHUNK_SIZE)
    sealed = bytearray(encrypt_bytes(KEY, data, context=CONTEXT))
    sealed[-100] ^= 1  # the last chunk fails after three chunks were already decrypted
    (tmp_path / "sealed").write_bytes(sealed)
    (tmp_path / "out").write_bytes(b"previous version")
    with pytest.raises(TamperedError) as caught:
        decrypt_file(KEY, tmp_path / "sealed", tmp_path / "out", context=CONTEXT)
    assert str(tmp_path / "sealed") in str(caught.value)
    assert (tmp_path / "out").read_bytes() == b"previous version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "sealed"]


def test_wrong_key_file_decryption_creates_no_file(tmp_path):
    (tmp_path / "sealed").write_bytes(encrypt_bytes(KEY, b"secret", context=CONTEXT))
    with pytest.raises(WrongKeyError):
        decrypt_file(new_data_key(), tmp_path / "sealed", tmp_path / "out", context=CONTEXT, artifact="holdout")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sealed"]


def test_streaming_memory_is_independent_of_size():
    """32 MiB through encrypt then decrypt iterators allocates at most a few chunks at once."""
    chunk_size = 256 * 1024

    def source():
        block = os.urandom(chunk_size)
        for _ in range(128):
            yield block

    tracemalloc.start()
    try:
        total = 0
        sealed = encrypt_chunks(KEY, source(), context=CONTEXT, chunk_size=chunk_size)
        for piece in decrypt_chunks(KEY, sealed, context=CONTEXT):
            total += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 128 * chunk_size
    assert peak < 8 * chunk_size
