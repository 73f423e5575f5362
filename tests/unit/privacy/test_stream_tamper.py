"""Every change to an encrypted artifact is detected and reported by its own error."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.errors import (
    ContextMismatchError,
    DecryptionError,
    HeaderError,
    TamperedError,
    TruncatedError,
    WrongKeyError,
)
from privacy.header import TAG_SIZE
from privacy.stream import EncryptionContext, decrypt_bytes, encrypt_bytes, new_data_key, read_header

CHUNK = 32
KEY = bytes(range(32))
CONTEXT = EncryptionContext("0xorder", "checkpoint/step-40")
DATA = bytes(range(256)) * 2 + b"tail"  # 16 full chunks and a short final one
SEALED = encrypt_bytes(KEY, DATA, context=CONTEXT, chunk_size=CHUNK)
HEADER = len(read_header(SEALED).to_bytes())
SEGMENT = CHUNK + TAG_SIZE


def _chunks(sealed: bytes) -> tuple[bytes, list[bytes]]:
    body = sealed[HEADER:]
    return sealed[:HEADER], [body[i : i + SEGMENT] for i in range(0, len(body), SEGMENT)]


def _decrypt(sealed: bytes, key: bytes = KEY, context: EncryptionContext = CONTEXT) -> bytes:
    return decrypt_bytes(key, sealed, context=context, artifact="order 0xorder/checkpoint step 40")


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(SEALED) - 1), flip=st.integers(1, 255))
def test_every_single_byte_change_is_detected(position, flip):
    altered = bytearray(SEALED)
    altered[position] ^= flip
    expected = TamperedError if position >= HEADER else DecryptionError
    with pytest.raises(expected):
        _decrypt(bytes(altered))


@settings(max_examples=200, deadline=None)
@given(length=st.integers(0, len(SEALED) - 1))
def test_every_truncation_is_detected(length):
    with pytest.raises(DecryptionError):
        _decrypt(SEALED[:length])


@pytest.mark.parametrize("chunks", [1, 5, 16])
def test_truncation_at_a_chunk_boundary_is_a_truncation(chunks):
    with pytest.raises(TruncatedError) as caught:
        _decrypt(SEALED[: HEADER + chunks * SEGMENT])
    assert not isinstance(caught.value, TamperedError)
    assert f"ends after chunk {chunks - 1}" in caught.value.reason


@pytest.mark.parametrize("length", [0, 5, 20, HEADER - 1, HEADER, HEADER + 3])
def test_truncation_inside_the_header_or_first_tag_is_a_truncation(length):
    with pytest.raises(TruncatedError):
        _decrypt(SEALED[:length])


def test_truncation_inside_the_final_chunk_is_truncation_or_tampering():
    with pytest.raises(TruncatedError) as caught:
        _decrypt(SEALED[:-3])
    assert isinstance(caught.value, TamperedError)


@pytest.mark.parametrize("edit", ["drop", "duplicate", "swap", "move last", "append copy of last"])
def test_reordered_dropped_or_duplicated_chunks_are_tampering(edit):
    header, chunks = _chunks(SEALED)
    if edit == "drop":
        del chunks[3]
    elif edit == "duplicate":
        chunks.insert(3, chunks[3])
    elif edit == "swap":
        chunks[2], chunks[3] = chunks[3], chunks[2]
    elif edit == "move last":
        chunks.insert(0, chunks.pop())
    else:
        chunks.append(chunks[-1])
    with pytest.raises(TamperedError):
        _decrypt(header + b"".join(chunks))


def test_bytes_after_the_final_chunk_are_tampering():
    full = encrypt_bytes(KEY, bytes(4 * CHUNK), context=CONTEXT, chunk_size=CHUNK)
    with pytest.raises(TamperedError) as caught:
        _decrypt(full + os.urandom(SEGMENT))
    assert "follow its final chunk" in caught.value.reason
    with pytest.raises(TamperedError):
        _decrypt(SEALED + b"\x00")


@settings(max_examples=100, deadline=None)
@given(index=st.integers(0, 16), donor_index=st.integers(0, 16))
def test_chunks_spliced_from_another_artifact_are_tampering(index, donor_index):
    other = encrypt_bytes(KEY, DATA, context=CONTEXT, chunk_size=CHUNK)
    header, chunks = _chunks(SEALED)
    _, donor = _chunks(other)
    chunks[index] = donor[donor_index]
    with pytest.raises(TamperedError):
        _decrypt(header + b"".join(chunks))


def test_header_of_one_artifact_with_body_of_another_is_tampering():
    other = encrypt_bytes(KEY, DATA, context=CONTEXT, chunk_size=CHUNK)
    with pytest.raises(TamperedError):
        _decrypt(other[:HEADER] + SEALED[HEADER:])


def test_wrong_key_is_reported_with_both_key_ids():
    with pytest.raises(WrongKeyError) as caught:
        _decrypt(SEALED, key=new_data_key())
    error = caught.value
    assert error.artifact == "order 0xorder/checkpoint step 40"
    assert read_header(SEALED).key_id in error.reason
    assert "order 0xorder/checkpoint step 40" in str(error)


@pytest.mark.parametrize("expected", [EncryptionContext("0xorder", "holdout"),
                                      EncryptionContext("0xother", "checkpoint/step-40")])
def test_artifact_of_another_order_or_role_is_a_context_mismatch(expected):
    with pytest.raises(ContextMismatchError) as caught:
        _decrypt(SEALED, context=expected)
    assert "'checkpoint/step-40'" in caught.value.reason


def test_artifact_of_another_order_under_its_own_key_is_a_context_mismatch():
    other_key = new_data_key()
    sealed = encrypt_bytes(other_key, b"x", context=EncryptionContext("0xother", "dataset"))
    with pytest.raises(ContextMismatchError):
        _decrypt(sealed)


def test_altered_context_in_the_header_is_tampering_not_a_mismatch():
    altered = SEALED.replace(b"0xorder", b"0xordes", 1)
    with pytest.raises(TamperedError):
        _decrypt(altered, context=EncryptionContext("0xordes", "checkpoint/step-40"))


def test_unknown_version_is_a_header_error():
    altered = bytearray(SEALED)
    altered[8] = 2
    with pytest.raises(HeaderError) as caught:
        _decrypt(bytes(altered))
    assert "upgrade" in caught.value.reason


def test_plaintext_file_is_not_an_artifact():
    with pytest.raises(HeaderError) as caught:
        _decrypt(b"PAR1 plain parquet bytes")
    assert "not a bahen encrypted artifact" in caught.value.reason
