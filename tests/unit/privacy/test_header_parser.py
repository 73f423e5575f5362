"""The header parser: round trips, and fuzzing that shows it fails only with its own errors."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.errors import HeaderError, TruncatedError
from privacy.header import MAGIC, MAX_CHUNK_SIZE, EncryptionContext, Header, read_header
from privacy.stream import key_id

KEY = bytes(range(32))
VALID = Header(1, 1, key_id(KEY), 1024, bytes(16), bytes(7), EncryptionContext("0xabc", "dataset")).to_bytes()

contexts = st.builds(
    EncryptionContext,
    order_id=st.text(min_size=1, max_size=200).filter(lambda s: len(s.encode("utf-8")) <= 1024),
    role=st.text(min_size=1, max_size=60),
)


@settings(max_examples=100, deadline=None)
@given(context=contexts, chunk_size=st.integers(1, MAX_CHUNK_SIZE), salt=st.binary(min_size=16, max_size=16),
       prefix=st.binary(min_size=7, max_size=7), trailing=st.binary(max_size=40))
def test_header_round_trips(context, chunk_size, salt, prefix, trailing):
    header = Header(1, 1, key_id(KEY), chunk_size, salt, prefix, context)
    assert read_header(header.to_bytes() + trailing) == header


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_fail_only_with_header_errors(data):
    try:
        read_header(data)
    except (HeaderError, TruncatedError):
        pass


@settings(max_examples=500, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.integers(0, len(VALID) + 5))
def test_mutated_headers_fail_only_with_header_errors(edits, cut):
    data = bytearray(VALID)
    for position, value in edits:
        data[position] = value
    try:
        header = read_header(bytes(data[:cut]))
    except (HeaderError, TruncatedError):
        return
    assert header.to_bytes() == bytes(data[: len(header.to_bytes())])


@pytest.mark.parametrize("field, offset, value", [
    ("algorithm", 9, b"\x07"),
    ("length too small", 10, struct.pack(">H", 10)),
    ("length too large", 10, struct.pack(">H", len(VALID) + 1)),
    ("chunk size zero", 12, struct.pack(">I", 0)),
    ("chunk size huge", 12, struct.pack(">I", MAX_CHUNK_SIZE + 1)),
])
def test_invalid_fields_are_header_errors(field, offset, value):
    data = bytearray(VALID + b"\x00" * 8)
    data[offset : offset + len(value)] = value
    with pytest.raises(HeaderError):
        read_header(bytes(data))


def test_invalid_utf8_context_is_a_header_error():
    data = VALID.replace(b"dataset", b"datas\xffe")
    with pytest.raises(HeaderError):
        read_header(data)


def test_a_prefix_of_the_magic_is_a_truncation():
    with pytest.raises(TruncatedError):
        read_header(MAGIC[:5])
    with pytest.raises(TruncatedError):
        read_header(VALID[:-1])
