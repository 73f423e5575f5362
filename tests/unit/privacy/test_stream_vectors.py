"""Known-answer vectors for the encrypted artifact format, and an independent re-implementation
of privacy/README.md that must produce the same bytes."""

import hashlib
import hmac
import re
import struct
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privacy.stream import EncryptionContext, Header, decrypt_bytes, key_id, read_header, seal_stream

KEY = bytes(range(32))
SALT = bytes(range(16))
PREFIX = bytes.fromhex("a0a1a2a3a4a5a6")
CONTEXT = EncryptionContext("0x01", "dataset")
PLAINTEXT = b"bahen known-answer vector, three chunks"
VECTOR_BODY = (
    "743ac60bf1cb59b67efba96a974c42061a72caf81f163fd048aaeee7d5ecc6ae7fd0e12e7cd8903999966661754670cc"
    "0ec7b782b9d23896cc25c0494189a55fe931d815426113fc2674f9ff19935703ca087a5e5dc2d9"
)


def _header(chunk_size: int, salt: bytes = SALT, prefix: bytes = PREFIX,
            context: EncryptionContext = CONTEXT) -> Header:
    return Header(1, 1, key_id(KEY), chunk_size, salt, prefix, context)


def _readme_encrypt(key: bytes, plaintext: bytes, chunk_size: int, salt: bytes, prefix: bytes,
                    order_id: str, role: str) -> bytes:
    """The format as privacy/README.md describes it, written without the package's code."""
    kid = hmac.new(key, b"bahen/v1/key-id", hashlib.sha256).digest()[:8]
    order, rol = order_id.encode(), role.encode()
    length = 47 + 2 + len(order) + 1 + len(rol)
    header = (b"BAHENENC" + bytes([1, 1]) + struct.pack(">HI", length, chunk_size) + kid + salt + prefix
              + struct.pack(">H", len(order)) + order + bytes([len(rol)]) + rol)
    file_key = HKDF(hashes.SHA256(), 32, salt, b"bahen/v1/stream-chunk-key").derive(key)
    pieces = [plaintext[i : i + chunk_size] for i in range(0, len(plaintext), chunk_size)] or [b""]
    out = [header]
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        nonce = prefix + struct.pack(">I", index) + bytes([last])
        out.append(AESGCM(file_key).encrypt(nonce, piece, header))
    return b"".join(out)


def test_key_id_known_answers():
    assert key_id(KEY) == "36a56f6cfb8567b6"
    assert key_id(bytes(32)) == "7cd69b48c410e33e"


def test_three_chunk_vector_matches_fixed_bytes():
    sealed = b"".join(seal_stream(KEY, _header(16), [PLAINTEXT]))
    assert sealed.hex() == (
        "424148454e454e430101003d0000001036a56f6cfb8567b6000102030405060708090a0b0c0d0e0fa0a1a2a3a4a5a6"
        "0004307830310764617461736574" + VECTOR_BODY
    )
    assert decrypt_bytes(KEY, sealed, context=CONTEXT) == PLAINTEXT


def test_empty_plaintext_vector_is_one_empty_final_chunk():
    sealed = b"".join(seal_stream(KEY, _header(16), []))
    assert sealed.hex() == (
        "424148454e454e430101003d0000001036a56f6cfb8567b6000102030405060708090a0b0c0d0e0fa0a1a2a3a4a5a6"
        "0004307830310764617461736574168f10c085207ef623ba528f397b1c58"
    )


def test_multi_chunk_vector_digest():
    data = bytes(i % 251 for i in range(1000))
    header = _header(256, salt=bytes(16), prefix=bytes(7), context=EncryptionContext("order-7", "checkpoint/step-40"))
    sealed = b"".join(seal_stream(KEY, header, [data]))
    assert len(sealed) == 75 + 1000 + 4 * 16
    assert hashlib.sha256(sealed).hexdigest() == "e42363f75946328f2a69ed2caed9c2de00acf65bccf07e9ec764f5852fdc409e"


def test_readme_reimplementation_agrees_on_every_boundary():
    for size in (0, 1, 15, 16, 17, 48, 100):
        data = bytes(range(256))[:size]
        expected = _readme_encrypt(KEY, data, 16, SALT, PREFIX, "0x01", "dataset")
        assert b"".join(seal_stream(KEY, _header(16), [data])) == expected


def test_header_layout_fields():
    header = read_header(b"".join(seal_stream(KEY, _header(16), [b"x"])))
    assert header == _header(16)
    assert len(header.to_bytes()) == 61


def test_readme_vector_is_the_format():
    """The vector printed in privacy/README.md decrypts, so the document cannot drift from the code."""
    readme = (Path(__file__).parents[3] / "privacy" / "README.md").read_text()
    section = readme.split("### Known-answer vector", 1)[1].split("The same key", 1)[0]
    hex_lines = re.findall(r"\b[0-9a-f]{40,}\b", section)
    sealed = bytes.fromhex("".join(hex_lines))
    assert decrypt_bytes(KEY, sealed, context=CONTEXT) == PLAINTEXT
