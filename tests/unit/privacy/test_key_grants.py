"""Key grants: wrapping a data key to a recipient's X25519 key for one order."""

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privacy.errors import ContextMismatchError, PrivacyError, TamperedError, WrongKeyError
from privacy.grants import KeyGrant, accepts_grants, grant_key, open_grant
from privacy.identity import Identity
from privacy.signing import canonical_json
from privacy.stream import key_id, new_data_key

ORDER = "0x" + "ab" * 32
WORKER = Identity.generate("worker-1")
VALIDATOR = Identity.generate("validator-1")


def test_recipient_opens_its_grant():
    data_key = new_data_key()
    grant = grant_key(data_key, WORKER.public(), order_id=ORDER)
    assert grant.recipient == WORKER.address and grant.key_id == key_id(data_key)
    assert open_grant(grant, WORKER, order_id=ORDER) == data_key


def test_grant_survives_json_transport():
    data_key = new_data_key()
    grant = KeyGrant.model_validate_json(grant_key(data_key, WORKER.public(), order_id=ORDER).model_dump_json())
    assert open_grant(grant, WORKER, order_id=ORDER) == data_key


def test_grants_of_the_same_key_differ():
    data_key = new_data_key()
    first, second = (grant_key(data_key, WORKER.public(), order_id=ORDER) for _ in range(2))
    assert first.ephemeral_public != second.ephemeral_public and first.wrapped_key != second.wrapped_key


def test_grant_follows_the_documented_construction():
    """An independent opening by the recipient's raw X25519 key, as privacy/README.md specifies."""
    data_key = new_data_key()
    grant = grant_key(data_key, VALIDATOR.public(), order_id=ORDER)
    ephemeral = bytes.fromhex(grant.ephemeral_public)
    private = X25519PrivateKey.from_private_bytes(VALIDATOR.secrets()[32:])
    shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral))
    wrapping = HKDF(hashes.SHA256(), 32, ephemeral + VALIDATOR.x25519_public, b"bahen/v1/key-grant").derive(shared)
    context = {
        "version": 1, "order_id": ORDER, "recipient": VALIDATOR.address,
        "recipient_x25519": VALIDATOR.x25519_public.hex(), "key_id": key_id(data_key),
        "ephemeral_public": grant.ephemeral_public,
    }
    opened = AESGCM(wrapping).decrypt(bytes.fromhex(grant.nonce), bytes.fromhex(grant.wrapped_key),
                                      canonical_json(context))
    assert opened == data_key


def test_another_party_cannot_open_a_grant():
    grant = grant_key(new_data_key(), WORKER.public(), order_id=ORDER)
    with pytest.raises(WrongKeyError) as caught:
        open_grant(grant, VALIDATOR, order_id=ORDER)
    assert WORKER.address in str(caught.value) and "ask the client" in str(caught.value)


def test_same_name_with_new_keys_cannot_open_an_old_grant():
    grant = grant_key(new_data_key(), WORKER.public(), order_id=ORDER)
    with pytest.raises(WrongKeyError):
        open_grant(grant, Identity.generate("worker-1"), order_id=ORDER)


def test_grant_of_another_order_is_a_context_mismatch():
    grant = grant_key(new_data_key(), WORKER.public(), order_id=ORDER)
    with pytest.raises(ContextMismatchError):
        open_grant(grant, WORKER, order_id="0x" + "cd" * 32)


def test_grant_relabelled_for_another_order_is_tampering():
    grant = grant_key(new_data_key(), WORKER.public(), order_id=ORDER)
    relabelled = grant.model_copy(update={"order_id": "0x01"})
    with pytest.raises(TamperedError):
        open_grant(relabelled, WORKER, order_id="0x01")


@pytest.mark.parametrize("field", ["key_id", "ephemeral_public", "nonce", "wrapped_key"])
def test_altered_fields_are_tampering(field):
    grant = grant_key(new_data_key(), WORKER.public(), order_id=ORDER)
    value = getattr(grant, field)
    altered = grant.model_copy(update={field: ("0" if value[0] != "0" else "1") + value[1:]})
    with pytest.raises(TamperedError):
        open_grant(altered, WORKER, order_id=ORDER)


def test_unknown_grant_version_is_refused():
    grant = grant_key(new_data_key(), WORKER.public(), order_id=ORDER)
    with pytest.raises(TamperedError, match="upgrade"):
        open_grant(grant.model_copy(update={"version": 2}), WORKER, order_id=ORDER)


# Known answers: every refusal names the grant and says what to do, exactly.


def _refusal(grant, identity=WORKER, order_id=ORDER):
    with pytest.raises(Exception) as caught:
        open_grant(grant, identity, order_id=order_id)
    assert caught.value.artifact == f"key grant of order {grant.order_id} for {grant.recipient}"
    return caught.type, str(caught.value)


def test_each_refusal_of_a_grant_is_known():
    data_key = new_data_key()
    grant = grant_key(data_key, WORKER.public(), order_id=ORDER)
    name = f"cannot decrypt key grant of order {ORDER} for {WORKER.address}"
    assert _refusal(grant.model_copy(update={"version": 2})) == (
        TamperedError, f"{name}: grant version 2 is unknown; upgrade bahen")
    assert _refusal(grant, order_id="0x01") == (
        ContextMismatchError, f"{name}: it grants a key of order {ORDER}, not of order 0x01")
    assert _refusal(grant, VALIDATOR) == (WrongKeyError, (
        f"{name}: it is addressed to {WORKER.address} (X25519 key {WORKER.x25519_public.hex()[:16]}…), "
        f"not to validator-1 ({VALIDATOR.address}); ask the client for a grant"))
    assert _refusal(grant.model_copy(update={"nonce": "00" * 12})) == (
        TamperedError, f"{name}: it fails authentication: a field was altered; fetch the grant again")
    assert _refusal(grant.model_copy(update={"ephemeral_public": "zz"})) == (
        TamperedError, f"{name}: it fails authentication: a field was altered; fetch the grant again")


def test_a_grant_whose_stated_key_id_is_not_the_wrapped_keys_is_tampered(monkeypatch):
    # key_id is bound as associated data, so only a grant wrapped with a wrong stated id reaches this
    # check: the client's own bug, named before anyone decrypts with the wrong key.
    import privacy.grants as grants

    data_key, other = new_data_key(), new_data_key()
    real_key_id = grants.key_id
    monkeypatch.setattr(grants, "key_id", lambda k: real_key_id(other))
    grant = grant_key(data_key, WORKER.public(), order_id=ORDER)
    monkeypatch.setattr(grants, "key_id", real_key_id)
    assert _refusal(grant) == (TamperedError, (
        f"cannot decrypt key grant of order {ORDER} for {WORKER.address}: the wrapped key has id "
        f"{key_id(data_key)}, not the stated {key_id(other)}"))


def test_an_address_with_new_x25519_keys_cannot_open_a_grant_to_its_old_ones():
    grant = grant_key(new_data_key(), WORKER.public(), order_id=ORDER)
    rekeyed = Identity.from_secrets("worker-1", WORKER.secrets()[:32], X25519PrivateKey.generate().private_bytes_raw())
    assert rekeyed.address == WORKER.address
    assert _refusal(grant, rekeyed)[0] is WrongKeyError


def test_a_grant_to_an_invalid_x25519_key_is_refused_with_what_to_do():
    invalid = WORKER.public().model_copy(update={"x25519_public": "00" * 32})  # a low-order point
    with pytest.raises(PrivacyError) as caught:
        grant_key(new_data_key(), invalid, order_id=ORDER)
    assert str(caught.value) == (f"worker-1 ({WORKER.address}) publishes an invalid X25519 key; they must publish a "
                                 "new one before data can be granted to them")


LOW_ORDER = ["00" * 32, "01" + "00" * 31, "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
             "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157", "ec" + "ff" * 30 + "7f",
             "ed" + "ff" * 30 + "7f", "ee" + "ff" * 30 + "7f"]  # 0, 1, the points of order 8, p - 1, p, p + 1


@pytest.mark.parametrize("point", LOW_ORDER)
def test_nothing_can_be_wrapped_to_a_low_order_point(point):
    published = WORKER.public().model_copy(update={"x25519_public": point})
    assert not accepts_grants(published)
    with pytest.raises(PrivacyError, match="publishes an invalid X25519 key"):
        grant_key(new_data_key(), published, order_id=ORDER)


def test_a_generated_key_accepts_grants():
    assert accepts_grants(WORKER.public()) and accepts_grants(VALIDATOR.public())


def test_a_grant_uses_a_96_bit_nonce():
    assert len(bytes.fromhex(grant_key(new_data_key(), WORKER.public(), order_id=ORDER).nonce)) == 12


@pytest.mark.parametrize("size", [0, 16, 33])
def test_a_grant_made_by_hand_around_a_key_of_another_size_is_tampered(size):
    """Anyone can wrap any bytes to a recipient by the documented construction: they authenticate, and
    are refused by name rather than failing later as a data key."""
    wrapped = bytes(range(size))
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(WORKER.x25519_public))
    wrapping = HKDF(hashes.SHA256(), 32, ephemeral_public + WORKER.x25519_public, b"bahen/v1/key-grant").derive(shared)
    grant = KeyGrant(order_id=ORDER, recipient=WORKER.address, recipient_x25519=WORKER.x25519_public.hex(),
                     key_id="00" * 8, ephemeral_public=ephemeral_public.hex(), nonce="00" * 12, wrapped_key="")
    context = canonical_json(grant.model_dump(exclude={"nonce", "wrapped_key"}))
    grant = grant.model_copy(update={"wrapped_key": AESGCM(wrapping).encrypt(bytes(12), wrapped, context).hex()})
    assert _refusal(grant) == (TamperedError, (
        f"cannot decrypt key grant of order {ORDER} for {WORKER.address}: it wraps {size} bytes, not a 32-byte data key"))
