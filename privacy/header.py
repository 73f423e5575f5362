"""The header of a bahen encrypted artifact: what it holds, how it is written and parsed.

The byte layout is specified in ``privacy/README.md``; this module is its reference. The parser
is strict: anything it does not understand is a :class:`HeaderError`, never a crash.
"""

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from privacy.errors import HeaderError, TruncatedError

MAGIC = b"BAHENENC"
FORMAT_VERSION = 1
# AES-256-GCM with a per-artifact key from HKDF-SHA256, in the STREAM construction.
ALGORITHM_AES256GCM_HKDF_STREAM = 1
KEY_SIZE = 32
KEY_ID_SIZE = 8
SALT_SIZE = 16
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
MAX_CHUNK_SIZE = 64 * 1024 * 1024
MAX_ORDER_ID_BYTES = 1024
MAX_ROLE_BYTES = 255

# magic, version, algorithm, header length, chunk size, key id, salt, nonce prefix
_FIXED = struct.Struct(">8sBBHI8s16s7s")
# The prefix a reader needs before it knows the header's full length.
HEADER_LENGTH_PREFIX = _FIXED.size - 4 - KEY_ID_SIZE - SALT_SIZE - NONCE_PREFIX_SIZE
_KEY_ID_LABEL = b"bahen/v1/key-id"


@dataclass(frozen=True)
class EncryptionContext:
    """What an artifact is: the order it belongs to and its role in it (``dataset``, ``holdout``…)."""

    order_id: str
    role: str

    def __post_init__(self) -> None:
        order_id = self.order_id.encode("utf-8")
        role = self.role.encode("utf-8")
        if not 0 < len(order_id) <= MAX_ORDER_ID_BYTES:
            raise ValueError(f"order id must be 1..{MAX_ORDER_ID_BYTES} UTF-8 bytes, got {len(order_id)}")
        if not 0 < len(role) <= MAX_ROLE_BYTES:
            raise ValueError(f"role must be 1..{MAX_ROLE_BYTES} UTF-8 bytes, got {len(role)}")


@dataclass(frozen=True)
class Header:
    """The parsed header of an encrypted artifact. ``key_id`` is hex; the other bytes are raw."""

    version: int
    algorithm: int
    key_id: str
    chunk_size: int
    salt: bytes
    nonce_prefix: bytes
    context: EncryptionContext

    @classmethod
    def new(cls, key: bytes, context: EncryptionContext, chunk_size: int) -> "Header":
        """A header for a fresh artifact under ``key``, with a random salt and nonce prefix."""
        check_key(key)
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size must be 1..{MAX_CHUNK_SIZE} bytes, got {chunk_size}")
        return cls(
            version=FORMAT_VERSION,
            algorithm=ALGORITHM_AES256GCM_HKDF_STREAM,
            key_id=key_id(key),
            chunk_size=chunk_size,
            salt=os.urandom(SALT_SIZE),
            nonce_prefix=os.urandom(NONCE_PREFIX_SIZE),
            context=context,
        )

    def to_bytes(self) -> bytes:
        """The header as written at the start of the artifact (and bound to every chunk)."""
        order_id = self.context.order_id.encode("utf-8")
        role = self.context.role.encode("utf-8")
        size = _FIXED.size + 2 + len(order_id) + 1 + len(role)
        fixed = _FIXED.pack(
            MAGIC, self.version, self.algorithm, size, self.chunk_size,
            bytes.fromhex(self.key_id), self.salt, self.nonce_prefix,
        )
        return fixed + struct.pack(">H", len(order_id)) + order_id + struct.pack(">B", len(role)) + role


def check_key(key: bytes) -> None:
    """Raise ``ValueError`` unless ``key`` is a 32-byte data key."""
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        raise ValueError(f"a data key is {KEY_SIZE} bytes")


def key_id(key: bytes) -> str:
    """A short public fingerprint of a data key: 16 hex digits of HMAC-SHA256(key, label)."""
    check_key(key)
    return hmac.new(bytes(key), _KEY_ID_LABEL, hashlib.sha256).digest()[:KEY_ID_SIZE].hex()


def header_size(prefix: bytes, *, artifact: str = "artifact") -> int | None:
    """The header's total size, read from the first bytes of an artifact; ``None`` if too few."""
    if not MAGIC.startswith(prefix[: len(MAGIC)]):
        raise HeaderError(artifact, "it is not a bahen encrypted artifact (wrong magic bytes)")
    if len(prefix) < HEADER_LENGTH_PREFIX:
        return None
    version, algorithm, size = struct.unpack_from(">BBH", prefix, len(MAGIC))
    if version != FORMAT_VERSION:
        raise HeaderError(artifact, f"format version {version} is unknown to this bahen (it reads "
                                    f"version {FORMAT_VERSION}); upgrade bahen")
    if algorithm != ALGORITHM_AES256GCM_HKDF_STREAM:
        raise HeaderError(artifact, f"algorithm {algorithm} is unknown; upgrade bahen")
    if size < _FIXED.size + 2 + 1 + 1 + 1:
        raise HeaderError(artifact, f"the header claims an impossible length of {size} bytes")
    return size


def read_header(data: bytes, *, artifact: str = "artifact") -> Header:
    """Parse the header at the start of ``data`` (which may hold more than the header)."""
    size = header_size(data, artifact=artifact)
    if size is None or len(data) < size:
        raise TruncatedError(artifact, "it ends inside its header; fetch the artifact again")
    _, version, algorithm, _, chunk_size, kid, salt, prefix = _FIXED.unpack_from(data)
    if not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise HeaderError(artifact, f"chunk size {chunk_size} is outside 1..{MAX_CHUNK_SIZE}")
    order_id, offset = _read_field(data, _FIXED.size, ">H", size, artifact)
    role, offset = _read_field(data, offset, ">B", size, artifact)
    if offset != size:
        raise HeaderError(artifact, "the header's length does not match its fields")
    try:
        context = EncryptionContext(order_id.decode("utf-8"), role.decode("utf-8"))
    except ValueError as error:
        raise HeaderError(artifact, f"its context is malformed ({error})") from None
    return Header(version, algorithm, kid.hex(), chunk_size, salt, prefix, context)


def _read_field(data: bytes, offset: int, length_format: str, end: int, artifact: str) -> tuple[bytes, int]:
    """Read one length-prefixed field that must end within the header's first ``end`` bytes."""
    width = struct.calcsize(length_format)
    if offset + width > end:
        raise HeaderError(artifact, "the header's length does not match its fields")
    (length,) = struct.unpack_from(length_format, data, offset)
    start = offset + width
    if start + length > end:
        raise HeaderError(artifact, "the header's length does not match its fields")
    return bytes(data[start : start + length]), start + length
