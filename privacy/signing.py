"""Canonical JSON, keccak digests and Ethereum signatures over them.

Every signed document (manifests, verification and performance reports, verdicts) is signed as
an EIP-191 personal message over its 32-byte digest: the signature is over
``keccak256("\\x19Ethereum Signed Message:\\n32" ‖ digest)``, exactly what OpenZeppelin's
``ECDSA.recover(MessageHashUtils.toEthSignedMessageHash(digest), signature)`` checks on chain.

Canonical JSON rules (the digest depends on every one of them):

* objects: keys are strings, sorted by Unicode code point; no duplicate keys;
* no whitespace: separators are ``,`` and ``:``;
* strings: UTF-8, non-ASCII characters written raw; only ``"``, ``\\`` and control characters
  below U+0020 are escaped (``\\b \\f \\n \\r \\t`` short forms, others as ``\\u00XX``);
* integers: decimal, any size; floats: Python's shortest round-trip ``repr`` (``0.1``, ``1e-07``,
  ``1.0``); NaN and infinities are rejected;
* ``true``, ``false``, ``null``; tuples are arrays; pydantic models are their
  ``model_dump(mode="json")``, except that a model configured with ``ser_json_inf_nan="strings"``
  writes its non-finite floats as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (measurements
  such as a failed check's observed value); bytes are rejected (encode them as hex strings first).
"""

import json
import math
from typing import Any, TypeVar

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature, ValidationError
from eth_utils import is_address, keccak, to_checksum_address
from pydantic import BaseModel
from pydantic import ValidationError as InvalidModel

from privacy.errors import CanonicalJsonError, DocumentError, SignatureError
from privacy.identity import Identity

M = TypeVar("M", bound=BaseModel)

DIGEST_SIZE = 32
SIGNATURE_SIZE = 65
# OpenZeppelin's ECDSA rejects s above half the curve order (malleable twins) and v other than
# 27/28; rejecting them here too keeps off-chain and on-chain verdicts identical.
_HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
# The largest document or grant a party parses. The largest bahen writes, a proof manifest, holds a
# few hundred bytes per checkpoint: 16 MiB is tens of thousands of checkpoints.
MAX_DOCUMENT_BYTES = 16 * 2**20


class SignedDocument(BaseModel):
    """A JSON object with its digest, the signer's address and the signature over the digest."""

    payload: dict
    digest: str
    signer: str
    signature: str


def parse_document(model: type[M], data: bytes | dict, *, what: str) -> M:
    """``data``, JSON bytes or a parsed object another party wrote, as ``model``.

    Raises :class:`DocumentError` naming ``what`` and the first problem, and nothing else. Bytes are
    bounded before anything is built: at most :data:`MAX_DOCUMENT_BYTES`, and nested at most 200
    deep. pydantic-core's parser stops there whatever Python's recursion limit is set to, while
    ``json.loads`` under a raised limit (eth-keys raises it to 100,000) overflows the C stack and
    kills the process on a document of ~70,000 nested brackets.
    """
    if isinstance(data, bytes | bytearray) and len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"{what} is {len(data):,} bytes, over the {MAX_DOCUMENT_BYTES:,} a party reads; "
                            "it was not written by bahen, reject it")
    try:
        if isinstance(data, bytes | bytearray):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except InvalidModel as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the document"
        more = f", and {exc.error_count() - 1} more problems" if exc.error_count() > 1 else ""
        raise DocumentError(f"{what} is not a valid {model.__name__} ({where}: {first['msg']}{more}); "
                            "reject it or fetch it again") from None


def canonical_json(obj: Any) -> bytes:
    """The canonical JSON encoding of ``obj`` (rules in this module's docstring), as UTF-8 bytes."""
    normal = _normalise(obj)
    try:
        text = json.dumps(normal, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise CanonicalJsonError(f"a string is not valid Unicode ({error}); clean the value before signing") from None


def digest(obj: Any) -> bytes:
    """``keccak256(canonical_json(obj))``: 32 bytes."""
    return keccak(canonical_json(obj))


def sign_digest(identity: Identity, digest: bytes) -> bytes:
    """Sign a 32-byte digest as an EIP-191 personal message; returns 65 bytes ``r ‖ s ‖ v`` (v 27/28)."""
    _check_digest(digest)
    return bytes(identity.account.sign_message(encode_defunct(primitive=digest)).signature)


def recover_signer(digest: bytes, signature: bytes) -> str:
    """The checksummed address that made ``signature`` over ``digest``; :class:`SignatureError` if invalid."""
    _check_digest(digest)
    if len(signature) != SIGNATURE_SIZE:
        raise SignatureError(f"a signature is {SIGNATURE_SIZE} bytes (r ‖ s ‖ v), got {len(signature)}")
    if signature[64] not in (27, 28) or int.from_bytes(signature[32:64], "big") > _HALF_ORDER:
        raise SignatureError("the signature is not in canonical form (v 27/28, low s), so the contracts "
                             "would reject it; ask the signer to sign again")
    try:
        return Account.recover_message(encode_defunct(primitive=digest), signature=bytes(signature))
    except (BadSignature, ValidationError, ValueError) as error:
        raise SignatureError(f"the signature is malformed ({error}); ask the signer to sign again") from None


def sign_document(identity: Identity, payload: Any) -> SignedDocument:
    """Sign ``payload`` (a JSON object or pydantic model) with ``identity``'s Ethereum key."""
    normal = json.loads(canonical_json(payload))
    if not isinstance(normal, dict):
        raise CanonicalJsonError(f"a signed payload is a JSON object, not {type(normal).__name__}")
    payload_digest = digest(normal)
    signature = sign_digest(identity, payload_digest)
    return SignedDocument(payload=normal, digest="0x" + payload_digest.hex(), signer=identity.address,
                          signature="0x" + signature.hex())


def verify_document(doc: SignedDocument, *, expected_signer: str | None = None) -> str:
    """Check ``doc`` and return its signer's checksummed address.

    Raises :class:`SignatureError` if the payload does not hash to the digest, the signature does
    not recover to the stated signer, or the signer is not ``expected_signer``.
    """
    actual = "0x" + digest(doc.payload).hex()
    if actual != doc.digest.lower():
        raise SignatureError(f"the document's payload hashes to {actual}, not to its stated digest "
                             f"{doc.digest}: the payload was changed after signing")
    signature = _hex_bytes(doc.signature, "signature")
    signer = recover_signer(bytes.fromhex(actual[2:]), signature)
    if not is_address(doc.signer) or signer != to_checksum_address(doc.signer):
        raise SignatureError(f"the document says it was signed by {doc.signer}, but the signature is "
                             f"by {signer}")
    if expected_signer is not None and signer != _checksum(expected_signer):
        raise SignatureError(f"the document is signed by {signer}, not by the expected {expected_signer}")
    return signer


def _normalise(obj: Any) -> Any:
    """``obj`` as plain JSON values, rejecting what has no single canonical form."""
    if isinstance(obj, BaseModel):
        if obj.model_config.get("ser_json_inf_nan") == "strings":
            # The model opted in to writing non-finite floats as "NaN" / "Infinity" / "-Infinity".
            return _normalise(json.loads(obj.model_dump_json()))
        return _normalise(obj.model_dump(mode="json"))
    if isinstance(obj, dict):
        if not all(isinstance(key, str) for key in obj):
            raise CanonicalJsonError("canonical JSON object keys are strings; convert the keys first")
        return {key: _normalise(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_normalise(value) for value in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        raise CanonicalJsonError(f"{obj} has no JSON form; record it as a string or null")
    if obj is None or isinstance(obj, str | bool | int | float):
        return obj
    raise CanonicalJsonError(f"a {type(obj).__name__} has no canonical JSON form; convert it (bytes as hex)")


def _check_digest(value: bytes) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != DIGEST_SIZE:
        raise SignatureError(f"a digest is {DIGEST_SIZE} bytes")


def _hex_bytes(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise SignatureError(f"the document's {what} is not hex") from None


def _checksum(address: str) -> str:
    if not is_address(address):
        raise SignatureError(f"{address!r} is not an Ethereum address")
    return to_checksum_address(address)
