"""Streaming envelope encryption: AES-256-GCM in the STREAM construction, in constant memory.

An artifact is a header followed by chunks. Chunk ``i`` is sealed under a per-artifact key with
nonce ``nonce_prefix ‖ i (4 bytes) ‖ last-flag`` and the whole header as associated data, so a
changed, reordered, duplicated, dropped or spliced chunk fails authentication, and so does a
stream cut at a chunk boundary (its new final chunk was not sealed as final). The construction is
Hoang, Reyhanitabar, Rogaway and Vizár, "Online Authenticated-Encryption and its Nonce-Reuse
Misuse-Resistance" (CRYPTO 2015); the per-artifact key derivation follows Tink's
AES-GCM-HKDF streaming AEAD. ``privacy/README.md`` specifies the bytes.

Decrypting functions yield plaintext only after it authenticated, but an error may come after
earlier chunks were yielded: a consumer of :func:`decrypt_chunks` must discard what it got when
it raises (:func:`decrypt_file` does).
"""

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privacy.bytereader import ByteReader
from privacy.errors import (
    ContextMismatchError,
    PrivacyError,
    TamperedError,
    TruncatedError,
    TruncatedOrTamperedError,
    WrongKeyError,
)
from privacy.header import (
    HEADER_LENGTH_PREFIX,
    KEY_SIZE,
    TAG_SIZE,
    EncryptionContext,
    Header,
    check_key,
    header_size,
    key_id,
    read_header,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE", "EncryptionContext", "Header", "new_data_key", "key_id",
    "encrypt_bytes", "decrypt_bytes", "encrypt_chunks", "decrypt_chunks", "seal_stream",
    "encrypt_file", "decrypt_file", "read_header",
]

DEFAULT_CHUNK_SIZE = 1024 * 1024
_MAX_CHUNKS = 2**32
_FILE_KEY_INFO = b"bahen/v1/stream-chunk-key"


def new_data_key() -> bytes:
    """A fresh random 256-bit data key."""
    return os.urandom(KEY_SIZE)


def encrypt_chunks(
    key: bytes, chunks: Iterable[bytes], *, context: EncryptionContext, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Iterator[bytes]:
    """Encrypt a stream of plaintext pieces of any sizes; yields the header, then each sealed chunk."""
    return seal_stream(key, Header.new(key, context, chunk_size), chunks)


def seal_stream(key: bytes, header: Header, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Encrypt under an explicit header (fixed salt and nonce prefix give known-answer vectors).

    Never reuse a header for two plaintexts: that reuses GCM nonces under the same key.
    """
    check_key(key)
    if header.key_id != key_id(key):
        raise ValueError("the header's key id does not match the key")
    header_bytes = header.to_bytes()
    aead = AESGCM(_file_key(key, header))
    reader = ByteReader(chunks)
    yield header_bytes
    index = 0
    piece = reader.read(header.chunk_size)
    while True:
        if index >= _MAX_CHUNKS:
            raise PrivacyError(f"a stream holds at most {_MAX_CHUNKS} chunks; use a larger chunk size")
        last = reader.at_eof()
        yield aead.encrypt(_nonce(header, index, last), piece, header_bytes)
        if last:
            return
        index += 1
        piece = reader.read(header.chunk_size)


def decrypt_chunks(
    key: bytes, chunks: Iterable[bytes], *, context: EncryptionContext, artifact: str = "artifact"
) -> Iterator[bytes]:
    """Decrypt a stream of ciphertext pieces of any sizes; yields authenticated plaintext chunks.

    ``context`` is the context the caller expects; an artifact of another order or role raises
    :class:`ContextMismatchError`.
    """
    check_key(key)
    reader = ByteReader(chunks)
    header_bytes = _read_header_bytes(reader, artifact)
    header = read_header(header_bytes, artifact=artifact)
    if header.key_id != key_id(key):
        if header.context != context:
            raise _context_mismatch(header, context, artifact)
        raise WrongKeyError(artifact, f"it was encrypted under key {header.key_id}, not under the "
                                      f"offered key {key_id(key)}; use the data key granted for it")
    aead = AESGCM(_file_key(key, header))
    sealed_size = header.chunk_size + TAG_SIZE
    index = 0
    while True:
        if index >= _MAX_CHUNKS:
            raise TamperedError(artifact, f"it holds more than {_MAX_CHUNKS} chunks, which no writer produces")
        sealed = reader.read(sealed_size)
        last = reader.at_eof()
        plaintext = _open_chunk(aead, header, header_bytes, index, sealed, last, artifact)
        if index == 0 and header.context != context:
            # Checked after the first chunk authenticated the header, so an altered context reads
            # as tampering rather than as another order's artifact.
            raise _context_mismatch(header, context, artifact)
        yield plaintext
        if last:
            return
        index += 1


def encrypt_bytes(
    key: bytes, plaintext: bytes, *, context: EncryptionContext, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> bytes:
    """Encrypt ``plaintext`` held in memory into one artifact."""
    return b"".join(encrypt_chunks(key, [plaintext], context=context, chunk_size=chunk_size))


def decrypt_bytes(key: bytes, ciphertext: bytes, *, context: EncryptionContext, artifact: str = "artifact") -> bytes:
    """Decrypt an artifact held in memory; raises a :class:`DecryptionError` subclass on any failure."""
    return b"".join(decrypt_chunks(key, [ciphertext], context=context, artifact=artifact))


def encrypt_file(
    key: bytes, src: Path, dst: Path, *, context: EncryptionContext, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> None:
    """Encrypt the file ``src`` into ``dst``; ``dst`` appears only when complete."""
    with open(src, "rb") as source:
        _write_atomically(Path(dst), encrypt_chunks(key, _read_pieces(source, chunk_size), context=context,
                                                    chunk_size=chunk_size))


def decrypt_file(
    key: bytes, src: Path, dst: Path, *, context: EncryptionContext, artifact: str | None = None
) -> None:
    """Decrypt the artifact ``src`` into ``dst`` (mode 0600); on failure nothing is left at ``dst``."""
    name = artifact if artifact is not None else str(src)
    with open(src, "rb") as source:
        _write_atomically(Path(dst), decrypt_chunks(key, _read_artifact_pieces(source, name),
                                                    context=context, artifact=name))


def _file_key(key: bytes, header: Header) -> bytes:
    """The per-artifact AES key: HKDF-SHA256 of the data key with the header's salt."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=header.salt, info=_FILE_KEY_INFO)
    return hkdf.derive(bytes(key))


def _nonce(header: Header, index: int, last: bool) -> bytes:
    return header.nonce_prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _read_header_bytes(reader: ByteReader, artifact: str) -> bytes:
    """Read exactly the header's bytes from the front of the stream."""
    prefix = reader.peek(HEADER_LENGTH_PREFIX)
    size = header_size(prefix, artifact=artifact)
    if size is None:
        raise TruncatedError(artifact, "it ends inside its header; fetch the artifact again")
    data = reader.read(size)
    if len(data) < size:
        raise TruncatedError(artifact, "it ends inside its header; fetch the artifact again")
    return data


def _open_chunk(
    aead: AESGCM, header: Header, aad: bytes, index: int, sealed: bytes, last: bool, artifact: str
) -> bytes:
    """Authenticate and decrypt chunk ``index``; classify a failure as truncation or tampering."""
    if len(sealed) < TAG_SIZE:
        raise TruncatedError(artifact, f"it ends inside chunk {index}; fetch the artifact again")
    try:
        return aead.decrypt(_nonce(header, index, last), sealed, aad)
    except InvalidTag:
        pass
    sealed_as_other = _authenticates(aead, _nonce(header, index, not last), sealed, aad)
    if last and sealed_as_other:
        raise TruncatedError(artifact, f"it ends after chunk {index}, but later chunks were written; "
                                       "fetch the artifact again")
    if not last and sealed_as_other:
        raise TamperedError(artifact, f"bytes follow its final chunk {index}; the artifact was altered")
    if last and len(sealed) < header.chunk_size + TAG_SIZE:
        raise TruncatedOrTamperedError(artifact, f"its final chunk {index} fails authentication: it was cut "
                                                 "short or altered; fetch the artifact again")
    raise TamperedError(artifact, f"chunk {index} fails authentication: bytes were altered, or chunks "
                                  "reordered, duplicated or spliced; do not use this artifact")


def _authenticates(aead: AESGCM, nonce: bytes, sealed: bytes, aad: bytes) -> bool:
    try:
        aead.decrypt(nonce, sealed, aad)
    except InvalidTag:
        return False
    return True


def _context_mismatch(header: Header, expected: EncryptionContext, artifact: str) -> ContextMismatchError:
    found = header.context
    return ContextMismatchError(
        artifact,
        f"it belongs to order {found.order_id!r} role {found.role!r}, not to the expected order "
        f"{expected.order_id!r} role {expected.role!r}; check which artifact was fetched",
    )


def _read_pieces(source: BinaryIO, size: int) -> Iterator[bytes]:
    while piece := source.read(size):
        yield piece


def _read_artifact_pieces(source: BinaryIO, artifact: str) -> Iterator[bytes]:
    """Read an artifact file as its header, then whole sealed chunks, so no piece is re-cut."""
    first = source.read(4096)
    size = header_size(first, artifact=artifact)
    if size is None or len(first) < size:
        yield first
        return
    sealed_size = read_header(first, artifact=artifact).chunk_size + TAG_SIZE
    yield first[:size]
    source.seek(size)
    yield from _read_pieces(source, sealed_size)


def _write_atomically(dst: Path, pieces: Iterable[bytes]) -> None:
    """Write ``pieces`` to a temporary file beside ``dst`` and rename it into place when done."""
    fd, temp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for piece in pieces:
                out.write(piece)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, dst)
    except BaseException:
        os.unlink(temp)
        raise
