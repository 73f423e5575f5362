"""The keystore file format as known answers: a file written by hand from its specification loads with
the secrets it was sealed with, every parameter bound is reached and passed, each refusal is exact."""

import json
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from privacy.errors import KeystoreError
from privacy.identity import Identity, Keystore

ETH_KEY, X25519_KEY = bytes(range(1, 33)), bytes(range(33, 65))
KNOWN = Identity.from_secrets("client", ETH_KEY, X25519_KEY)
PASSPHRASE = "correct horse"
SALT, NONCE = bytes(range(16)), bytes(range(12))


def _file(tmp_path, *, address=KNOWN.address, n=2, r=8, p=1, **changes) -> Keystore:
    """keys/client.json written from the format's description alone: scrypt(passphrase, salt, n, r, p) is
    the AES-256-GCM key that seals the 64 secret bytes, with the public fields, one per line, as
    associated data."""
    document = {
        "format": "bahen-keystore", "version": 1, "name": "client", "address": address,
        "x25519_public": KNOWN.x25519_public.hex(),
        "kdf": {"name": "scrypt", "n": n, "r": r, "p": p, "salt": SALT.hex()},
        "cipher": {"name": "aes-256-gcm", "nonce": NONCE.hex()},
    }
    associated = "\n".join(["bahen-keystore", "1", "client", address, KNOWN.x25519_public.hex()]).encode()
    key = Scrypt(salt=SALT, length=32, n=2, r=8, p=1).derive(PASSPHRASE.encode())
    document["ciphertext"] = AESGCM(key).encrypt(NONCE, ETH_KEY + X25519_KEY, associated).hex()
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = document
        for part in parents:
            target = target[part]
        target[leaf] = value
    root = tmp_path / "keys"
    root.mkdir(mode=0o700, exist_ok=True)
    (root / "client.json").write_text(json.dumps(document))
    os.chmod(root / "client.json", 0o600)
    return Keystore(root, PASSPHRASE, scrypt_n=2)


def _refusal(call) -> str:
    with pytest.raises(KeystoreError) as caught:
        call()
    return str(caught.value)


def test_a_file_written_from_the_specification_loads_with_its_secrets(tmp_path):
    loaded = _file(tmp_path).load("client")
    assert loaded.secrets() == ETH_KEY + X25519_KEY and loaded.public() == KNOWN.public()


def test_public_fields_that_are_not_the_sealed_keys_are_named(tmp_path):
    store = _file(tmp_path, address=Identity.generate("x").address)
    assert _refusal(lambda: store.load("client")) == (
        f"identity file {tmp_path / 'keys' / 'client.json'} does not match its keys; restore it")


def test_a_wrong_passphrase_says_so(tmp_path):
    _file(tmp_path)
    store = Keystore(tmp_path / "keys", "wrong")
    assert _refusal(lambda: store.load("client")) == (
        f"wrong passphrase for identity 'client' in {tmp_path / 'keys'} (or its file was altered)")


@pytest.mark.parametrize("field", ["n", "r", "p"])
def test_each_scrypt_parameter_is_bounded_both_ways(tmp_path, field):
    inside = {"n": (2, 2**20), "r": (1, 32), "p": (1, 16)}[field]
    outside = {"n": (1, 2**20 + 1), "r": (0, 33), "p": (0, 17)}[field]
    for value in inside:
        assert _file(tmp_path, **{f"kdf__{field}": value}).public("client") == KNOWN.public()
    for value in outside:
        store = _file(tmp_path, **{f"kdf__{field}": value})
        assert _refusal(lambda: store.public("client")) == (
            f"{tmp_path / 'keys' / 'client.json'} is not a valid bahen keystore file (scrypt parameters out of "
            "range); restore it")


@pytest.mark.parametrize(("change", "reason"), [
    ({"format": "other"}, "expected format 'bahen-keystore' version 1"),
    ({"version": 2}, "expected format 'bahen-keystore' version 1"),
    ({"kdf__name": "pbkdf2"}, "unknown key derivation or cipher"),
    ({"cipher__name": "chacha20"}, "unknown key derivation or cipher"),
    ({"name": "wasp"}, "it holds identity 'wasp'"),
])
def test_each_malformed_file_is_named_with_its_reason(tmp_path, change, reason):
    store = _file(tmp_path, **change)
    assert _refusal(lambda: store.public("client")) == (
        f"{tmp_path / 'keys' / 'client.json'} is not a valid bahen keystore file ({reason}); restore it")


@pytest.mark.parametrize("n", [2, 2**20])
def test_a_keystore_takes_a_power_of_two_cost_within_bounds(tmp_path, n):
    assert Keystore(tmp_path, "p", scrypt_n=n)


@pytest.mark.parametrize("n", [1, 3, 6, 2**21])
def test_a_keystore_refuses_another_cost(tmp_path, n):
    with pytest.raises(ValueError) as caught:
        Keystore(tmp_path, "p", scrypt_n=n)
    assert str(caught.value) == "scrypt_n must be a power of two in 2..1048576"


def test_a_new_file_has_the_formats_salt_and_nonce_sizes_in_a_new_folder(tmp_path):
    store = Keystore(tmp_path / "a" / "b", PASSPHRASE, scrypt_n=2)
    store.create("client")
    document = json.loads((tmp_path / "a" / "b" / "client.json").read_text())
    assert len(bytes.fromhex(document["kdf"]["salt"])) == 16 and len(bytes.fromhex(document["cipher"]["nonce"])) == 12
    assert _refusal(lambda: store.create("client")) == (
        f"identity 'client' already exists in {tmp_path / 'a' / 'b'}; load it or pick another name")
    assert os.listdir(tmp_path / "a" / "b") == ["client.json"]  # no temporary file left beside it


def test_refusals_of_names_and_passphrases_are_exact(tmp_path):
    assert _refusal(lambda: Keystore(tmp_path, "")) == "the keystore passphrase is empty; choose a passphrase"
    assert _refusal(lambda: Keystore(tmp_path, "p").load_or_create("../x")) == (
        "'../x' is not a valid identity name: use letters, digits, '_', '.', '-' (at most 64, starting with a "
        "letter or digit)")
    store = _file(tmp_path)
    assert store.load_or_create("client").secrets() == ETH_KEY + X25519_KEY
