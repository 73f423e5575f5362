"""Key grants: a data key wrapped to one recipient's X25519 public key, for one order.

The wrap is ECIES-style: an ephemeral X25519 key agrees a secret with the recipient's key,
HKDF-SHA256 (salt = ephemeral ‖ recipient public keys) turns it into an AES-256-GCM key, and
the grant's context (order id, recipient address and key, data key id, ephemeral key) is the
associated data. A grant is public: only the recipient's X25519 private key opens it.
"""

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel

from privacy.errors import ContextMismatchError, PrivacyError, TamperedError, WrongKeyError
from privacy.header import KEY_SIZE, check_key, key_id
from privacy.identity import Identity, PublicIdentity
from privacy.signing import canonical_json

GRANT_VERSION = 1
_WRAP_INFO = b"bahen/v1/key-grant"


class KeyGrant(BaseModel):
    """A data key wrapped for one recipient and one order. Byte fields are lowercase hex."""

    version: int = GRANT_VERSION
    order_id: str
    recipient: str
    recipient_x25519: str
    key_id: str
    ephemeral_public: str
    nonce: str
    wrapped_key: str

    def name(self) -> str:
        """How error messages name this grant."""
        return f"key grant of order {self.order_id} for {self.recipient}"


def accepts_grants(recipient: PublicIdentity) -> bool:
    """Whether a key can be wrapped to ``recipient``'s published X25519 key. A low-order point (all zeros,
    for one) gives every sender the same shared secret, which ``cryptography`` refuses: a member that
    publishes one can be granted nothing, and a party that must wrap keys to many goes on without it."""
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(recipient.x25519_public_bytes()))
    except ValueError:
        return False
    return True


def grant_key(data_key: bytes, recipient: PublicIdentity, *, order_id: str) -> KeyGrant:
    """Wrap ``data_key`` so that only ``recipient`` can open it, for order ``order_id`` only."""
    check_key(data_key)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient.x25519_public_bytes()))
    except ValueError:
        raise PrivacyError(f"{recipient.name} ({recipient.address}) publishes an invalid X25519 key; they "
                           "must publish a new one before data can be granted to them") from None
    grant = KeyGrant(
        order_id=order_id, recipient=recipient.address, recipient_x25519=recipient.x25519_public,
        key_id=key_id(data_key), ephemeral_public=ephemeral_public.hex(), nonce=os.urandom(12).hex(),
        wrapped_key="",
    )
    wrapping = _wrapping_key(shared, ephemeral_public, recipient.x25519_public_bytes())
    wrapped = AESGCM(wrapping).encrypt(bytes.fromhex(grant.nonce), bytes(data_key), _associated_data(grant))
    return grant.model_copy(update={"wrapped_key": wrapped.hex()})


def open_grant(grant: KeyGrant, identity: Identity, *, order_id: str) -> bytes:
    """Unwrap the data key of ``grant`` with ``identity``, checking it is for order ``order_id``.

    Raises :class:`ContextMismatchError` for a grant of another order, :class:`WrongKeyError` for a
    grant to another recipient (or to this name's older keys), :class:`TamperedError` if any field
    was altered.
    """
    name = grant.name()
    if grant.version != GRANT_VERSION:
        raise TamperedError(name, f"grant version {grant.version} is unknown; upgrade bahen")
    if grant.order_id != order_id:
        raise ContextMismatchError(name, f"it grants a key of order {grant.order_id}, not of order {order_id}")
    if grant.recipient.lower() != identity.address.lower() or grant.recipient_x25519 != identity.x25519_public.hex():
        raise WrongKeyError(name, f"it is addressed to {grant.recipient} (X25519 key {grant.recipient_x25519[:16]}…), "
                                  f"not to {identity.name} ({identity.address}); ask the client for a grant")
    try:
        ephemeral_public = bytes.fromhex(grant.ephemeral_public)
        shared = identity.exchange(ephemeral_public)
        wrapping = _wrapping_key(shared, ephemeral_public, identity.x25519_public)
        data_key = AESGCM(wrapping).decrypt(bytes.fromhex(grant.nonce), bytes.fromhex(grant.wrapped_key),
                                            _associated_data(grant))
    except (ValueError, InvalidTag):
        raise TamperedError(name, "it fails authentication: a field was altered; fetch the grant again") from None
    if len(data_key) != KEY_SIZE:  # sealed by whoever made the grant: any length authenticates
        raise TamperedError(name, f"it wraps {len(data_key)} bytes, not a {KEY_SIZE}-byte data key")
    if key_id(data_key) != grant.key_id:
        raise TamperedError(name, f"the wrapped key has id {key_id(data_key)}, not the stated {grant.key_id}")
    return data_key


def _wrapping_key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral_public + recipient_public, info=_WRAP_INFO)
    return hkdf.derive(shared)


def _associated_data(grant: KeyGrant) -> bytes:
    """The grant's context, bound to the wrapped key: everything but the nonce and the ciphertext."""
    return canonical_json(grant.model_dump(exclude={"nonce", "wrapped_key"}))
