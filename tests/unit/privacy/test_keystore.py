"""Identities and the passphrase-encrypted keystore."""

import json
import os
import stat

import pytest

from privacy.errors import KeystoreError
from privacy.identity import Identity, Keystore, PublicIdentity

N = 2**10  # cheap scrypt for tests; the default is 2**15


def _store(tmp_path, passphrase="correct horse", n=N) -> Keystore:
    return Keystore(tmp_path / "keys", passphrase, scrypt_n=n)


def test_created_identity_loads_back_with_the_same_keys(tmp_path):
    created = _store(tmp_path).create("client")
    loaded = _store(tmp_path).load("client")
    assert loaded.address == created.address
    assert loaded.x25519_public == created.x25519_public
    assert loaded.secrets() == created.secrets()
    assert loaded.public() == created.public()


def test_files_are_private_and_hold_no_plaintext_secret(tmp_path):
    identity = _store(tmp_path).create("worker-1")
    path = tmp_path / "keys" / "worker-1.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    text = path.read_text()
    assert identity.secrets()[:32].hex() not in text and identity.secrets()[32:].hex() not in text
    assert json.loads(text)["address"] == identity.address


def test_wrong_passphrase_is_refused(tmp_path):
    _store(tmp_path).create("client")
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        _store(tmp_path, passphrase="wrong").load("client")


def test_missing_identity_says_how_to_create_it(tmp_path):
    with pytest.raises(KeystoreError, match="bahen keys new validator"):
        _store(tmp_path).load("validator")


def test_create_refuses_to_overwrite(tmp_path):
    store = _store(tmp_path)
    first = store.create("client")
    before = (tmp_path / "keys" / "client.json").read_bytes()
    with pytest.raises(KeystoreError, match="already exists"):
        store.create("client")
    assert (tmp_path / "keys" / "client.json").read_bytes() == before
    assert store.load("client").address == first.address
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["client.json"]


def test_load_or_create_is_idempotent(tmp_path):
    store = _store(tmp_path)
    assert store.load_or_create("wasp").address == store.load_or_create("wasp").address


def test_names_lists_identities(tmp_path):
    store = _store(tmp_path)
    assert store.names() == []
    for name in ["worker-2", "client", "worker-1"]:
        store.create(name)
    assert store.names() == ["client", "worker-1", "worker-2"]


def test_files_readable_by_others_are_refused(tmp_path):
    _store(tmp_path).create("client")
    path = tmp_path / "keys" / "client.json"
    os.chmod(path, 0o644)
    with pytest.raises(KeystoreError, match="chmod 600"):
        _store(tmp_path).load("client")


def test_swapped_public_fields_are_refused(tmp_path):
    store = _store(tmp_path)
    store.create("client")
    other = Identity.generate("client")
    path = tmp_path / "keys" / "client.json"
    document = json.loads(path.read_text())
    document["address"] = other.address
    path.write_text(json.dumps(document))
    with pytest.raises(KeystoreError):
        store.load("client")


@pytest.mark.parametrize("content", ["not json", "[]", '{"format": "bahen-keystore", "version": 9}'])
def test_corrupt_files_are_refused(tmp_path, content):
    store = _store(tmp_path)
    store.create("client")
    (tmp_path / "keys" / "client.json").write_text(content)
    with pytest.raises(KeystoreError, match="not a valid bahen keystore file"):
        store.load("client")


def test_renamed_file_is_refused(tmp_path):
    store = _store(tmp_path)
    store.create("client")
    os.rename(tmp_path / "keys" / "client.json", tmp_path / "keys" / "wasp.json")
    with pytest.raises(KeystoreError):
        store.load("wasp")


@pytest.mark.parametrize("name", ["", "../escape", ".hidden", "a/b", "x" * 65])
def test_invalid_names_are_refused(tmp_path, name):
    with pytest.raises(KeystoreError, match="not a valid identity name"):
        _store(tmp_path).create(name)


def test_files_record_their_scrypt_cost(tmp_path):
    _store(tmp_path, n=2**11).create("client")
    assert json.loads((tmp_path / "keys" / "client.json").read_text())["kdf"]["n"] == 2**11
    assert _store(tmp_path, n=2**12).load("client").name == "client"


def test_public_part_is_readable_without_the_passphrase(tmp_path):
    identity = _store(tmp_path).create("client")
    assert _store(tmp_path, passphrase="anything").public("client") == identity.public()


def test_empty_passphrase_is_refused(tmp_path):
    with pytest.raises(KeystoreError, match="passphrase"):
        Keystore(tmp_path, "")


def test_repr_shows_no_secret():
    identity = Identity.generate("client")
    assert identity.secrets()[:32].hex() not in repr(identity)
    assert identity.address in repr(identity)


def test_public_identity_normalises_and_validates():
    identity = Identity.generate("w")
    public = PublicIdentity(name="w", address=identity.address.lower(),
                            x25519_public="0x" + identity.x25519_public.hex())
    assert public == identity.public()
    with pytest.raises(ValueError):
        PublicIdentity(name="w", address="0x1234", x25519_public=identity.x25519_public.hex())
    with pytest.raises(ValueError):
        PublicIdentity(name="w", address=identity.address, x25519_public="00" * 31)
