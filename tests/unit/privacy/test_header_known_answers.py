"""The header's refusals as known answers: each malformed field gives its own error and exact message,
naming the artifact, and every limit is reached and passed by one."""

import struct

import pytest

from privacy.errors import HeaderError, TruncatedError
from privacy.header import (
    MAX_CHUNK_SIZE, MAX_ORDER_ID_BYTES, MAX_ROLE_BYTES, EncryptionContext, Header, check_key, header_size, read_header,
)
from privacy.stream import key_id

KEY = bytes(range(32))
NAME = "order 0xabc/dataset"
FIXED = 47  # magic 8, version 1, algorithm 1, length 2, chunk size 4, key id 8, salt 16, nonce prefix 7


def _header(order_id: bytes = b"0xabc", role: bytes = b"dataset", *, size: int | None = None, version: int = 1,
            algorithm: int = 1, chunk_size: int = 1024, id_length: int | None = None) -> bytes:
    """Header bytes written by hand from the layout in privacy/README.md, any field as given."""
    fields = (struct.pack(">H", len(order_id) if id_length is None else id_length) + order_id
              + struct.pack(">B", len(role)) + role)
    size = FIXED + len(fields) if size is None else size
    fixed = struct.pack(">8sBBHI8s16s7s", b"BAHENENC", version, algorithm, size, chunk_size,
                        bytes.fromhex(key_id(KEY)), bytes(16), bytes(7))
    return fixed + fields


def test_the_hand_written_header_is_the_one_the_code_writes():
    header = read_header(_header(), artifact=NAME)
    assert header.to_bytes() == _header() and header.context == EncryptionContext("0xabc", "dataset")


@pytest.mark.parametrize(("data", "error", "reason"), [
    (b"BAHENEND" + _header()[8:], HeaderError, "it is not a bahen encrypted artifact (wrong magic bytes)"),
    (_header(version=2), HeaderError, "format version 2 is unknown to this bahen (it reads version 1); upgrade bahen"),
    (_header(algorithm=7), HeaderError, "algorithm 7 is unknown; upgrade bahen"),
    (_header(size=FIXED + 4), HeaderError, f"the header claims an impossible length of {FIXED + 4} bytes"),
    (_header()[:-1], TruncatedError, "it ends inside its header; fetch the artifact again"),
    (_header()[:11], TruncatedError, "it ends inside its header; fetch the artifact again"),
    (_header(size=0x8000), TruncatedError, "it ends inside its header; fetch the artifact again"),
    (_header(chunk_size=0), HeaderError, f"chunk size 0 is outside 1..{MAX_CHUNK_SIZE}"),
    (_header(chunk_size=MAX_CHUNK_SIZE + 1), HeaderError,
     f"chunk size {MAX_CHUNK_SIZE + 1} is outside 1..{MAX_CHUNK_SIZE}"),
    (_header(size=FIXED + 16) + b"\0", HeaderError, "the header's length does not match its fields"),
    (_header(size=FIXED + 13), HeaderError, "the header's length does not match its fields"),
    (_header(b"0xabc", b"", size=FIXED + 7) + b"\0" * 9, HeaderError,
     "the header's length does not match its fields"),
    (_header(id_length=0x8000) + b"\0" * 8, HeaderError, "the header's length does not match its fields"),
    (_header(role=b""), HeaderError, f"its context is malformed (role must be 1..{MAX_ROLE_BYTES} UTF-8 bytes, got 0)"),
    (_header(order_id=b""), HeaderError,
     f"its context is malformed (order id must be 1..{MAX_ORDER_ID_BYTES} UTF-8 bytes, got 0)"),
], ids=["magic", "version", "algorithm", "too short", "cut by one", "cut in the prefix", "length over 32767", "chunk size 0",
        "chunk size over", "longer than its fields", "order id past the end", "role length past the end",
        "order id length over 32767", "empty role", "empty order id"])
def test_each_malformed_header_is_refused_with_its_reason(data, error, reason):
    with pytest.raises(HeaderError if error is HeaderError else TruncatedError) as caught:
        read_header(data, artifact=NAME)
    assert type(caught.value) is error and caught.value.artifact == NAME
    assert str(caught.value) == f"cannot decrypt {NAME}: {reason}"


def test_the_shortest_possible_header_is_read():
    shortest = _header(b"o", b"r")
    assert len(shortest) == FIXED + 5 and header_size(shortest[:12]) == FIXED + 5
    assert read_header(shortest).context == EncryptionContext("o", "r")


@pytest.mark.parametrize(("order_id", "role"), [("é" * (MAX_ORDER_ID_BYTES // 2), "r"), ("o", "x" * MAX_ROLE_BYTES)])
def test_a_context_at_its_limits_round_trips(order_id, role):
    header = Header.new(KEY, EncryptionContext(order_id, role), MAX_CHUNK_SIZE)
    assert read_header(header.to_bytes()) == header


@pytest.mark.parametrize(("order_id", "role", "message"), [
    ("é" * (MAX_ORDER_ID_BYTES // 2) + "x", "r", f"order id must be 1..{MAX_ORDER_ID_BYTES} UTF-8 bytes, got 1025"),
    ("", "r", f"order id must be 1..{MAX_ORDER_ID_BYTES} UTF-8 bytes, got 0"),
    ("o", "x" * (MAX_ROLE_BYTES + 1), f"role must be 1..{MAX_ROLE_BYTES} UTF-8 bytes, got 256"),
    ("o", "", f"role must be 1..{MAX_ROLE_BYTES} UTF-8 bytes, got 0"),
])
def test_a_context_past_its_limits_is_refused(order_id, role, message):
    with pytest.raises(ValueError) as caught:
        EncryptionContext(order_id, role)
    assert str(caught.value) == message


@pytest.mark.parametrize("chunk_size", [0, MAX_CHUNK_SIZE + 1])
def test_a_chunk_size_past_its_limits_is_refused(chunk_size):
    with pytest.raises(ValueError) as caught:
        Header.new(KEY, EncryptionContext("o", "r"), chunk_size)
    assert str(caught.value) == f"chunk size must be 1..{MAX_CHUNK_SIZE} bytes, got {chunk_size}"
    assert Header.new(KEY, EncryptionContext("o", "r"), 1).chunk_size == 1


@pytest.mark.parametrize("key", [KEY[:31], KEY + b"\0", "k" * 32])
def test_a_data_key_is_32_bytes(key):
    with pytest.raises(ValueError) as caught:
        check_key(key)
    assert str(caught.value) == "a data key is 32 bytes"
