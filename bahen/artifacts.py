"""Encrypted and signed artifacts of an order: privacy's envelope over storage's addresses.

Data, checkpoints and logs are stored as ciphertext bound to (order, role); grants, manifests and
signed reports are public by design (wrapped keys, hashes and signatures) and stored as canonical
JSON, so an auditor can read them without any key.
"""

from typing import TypeVar

from privacy.grants import KeyGrant, grant_key, open_grant
from privacy.identity import Identity, PublicIdentity
from privacy.errors import DocumentError
from privacy.signing import MAX_DOCUMENT_BYTES, SignedDocument, canonical_json, parse_document, sign_document, verify_document
from privacy.stream import EncryptionContext, decrypt_bytes, encrypt_bytes
from pydantic import BaseModel
from storage.digest import Digest, iter_views
from storage.refs import ArtifactRef
from storage.store import ArtifactStore

M = TypeVar("M", bound=BaseModel)

PROOF_ROLE = "proof"  # a worker's checkpoints, step log and telemetry, sealed under the order's model key
WEIGHTS_ROLE = "weights"  # a fine-tuning order's starting weights, sealed under the train split's key


def put_encrypted(store: ArtifactStore, key: bytes, plaintext: bytes, *, order_id: str, role: str, name: str) -> ArtifactRef:
    """Encrypt ``plaintext`` for (order, role) and store the ciphertext."""
    ciphertext = encrypt_bytes(key, plaintext, context=EncryptionContext(order_id=order_id, role=role))
    return store.put(ciphertext, name=name)


def get_decrypted(store: ArtifactStore, key: bytes, ref: ArtifactRef, *, order_id: str, role: str) -> bytes:
    """Fetch, verify the commitment, and decrypt in memory."""
    return decrypt_bytes(key, store.get(ref), context=EncryptionContext(order_id=order_id, role=role), artifact=ref.name)


def put_grant(store: ArtifactStore, data_key: bytes, recipient: PublicIdentity, *, order_id: str, role: str) -> ArtifactRef:
    """Wrap ``data_key`` to ``recipient`` and store the grant."""
    grant = grant_key(data_key, recipient, order_id=order_id)
    return store.put(canonical_json(grant), name=f"order {order_id[:10]}/{role} key grant to {recipient.name}")


def get_grant(store: ArtifactStore, ref: ArtifactRef) -> KeyGrant:
    """A stored grant, read back whole; its public header says for which order, recipient and key it is."""
    return parse_document(KeyGrant, get_document(store, ref), what=ref.name)


def open_stored_grant(store: ArtifactStore, ref: ArtifactRef, identity: Identity, *, order_id: str) -> bytes:
    """Unwrap a stored grant with the recipient's identity."""
    return open_grant(get_grant(store, ref), identity, order_id=order_id)


def put_signed(store: ArtifactStore, signer: Identity, payload: BaseModel, *, name: str) -> tuple[ArtifactRef, SignedDocument]:
    """Sign ``payload`` as ``signer`` and store the signed document."""
    data, _, doc = signed(signer, payload, name=name)
    return store.put(data, name=name), doc


def signed(signer: Identity, payload: BaseModel, *, name: str) -> tuple[bytes, ArtifactRef, SignedDocument]:
    """``payload`` signed as ``signer``: the document's bytes and the reference they will have once stored,
    for a writer that must name a document before anyone can read it."""
    doc = sign_document(signer, payload)
    data = canonical_json(doc)
    return data, Digest().consume(iter_views(data)).ref(name), doc


def get_signed(store: ArtifactStore, ref: ArtifactRef, model: type[M], *, expected_signer: str | None = None) -> tuple[M, SignedDocument]:
    """Fetch a signed document, check its signature (and signer), and parse its payload."""
    return parse_signed(get_document(store, ref), model, what=ref.name, expected_signer=expected_signer)


def parse_signed(data: bytes, model: type[M], *, what: str, expected_signer: str | None = None) -> tuple[M, SignedDocument]:
    """Parse another party's signed document, check its signature (and signer), and parse its payload.

    Raises only :class:`~privacy.errors.PrivacyError`: :class:`DocumentError` for bytes or a payload
    of the wrong form, :class:`~privacy.errors.SignatureError` for a bad signature.
    """
    doc = parse_document(SignedDocument, data, what=what)
    verify_document(doc, expected_signer=expected_signer)
    return parse_document(model, doc.payload, what=f"the payload of {what}"), doc


def get_document(store: ArtifactStore, ref: ArtifactRef) -> bytes:
    """The bytes of a stored document or grant, refused before fetching if ``ref`` says they are too large."""
    if ref.size > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"{ref.name} is {ref.size:,} bytes, over the {MAX_DOCUMENT_BYTES:,} a party reads; "
                            "it was not written by bahen, reject it")
    return store.get(ref)
