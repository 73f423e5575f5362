"""Identities of the parties (client, worker, validator, Wasp) and their keystore.

An identity is an Ethereum account (it signs; the chain knows its address) plus an X25519 key
(data keys are granted to it). The keystore keeps each identity in one JSON file, mode 0600,
its secrets sealed with AES-256-GCM under a key derived from a passphrase with scrypt.
"""

import json
import os
import re
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address
from pydantic import BaseModel, field_validator

from privacy.errors import KeystoreError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FORMAT = "bahen-keystore"
_VERSION = 1
_MAX_SCRYPT_N = 2**20


class PublicIdentity(BaseModel):
    """What a party publishes: its name, its checksummed address and its X25519 public key (hex)."""

    name: str
    address: str
    x25519_public: str

    @field_validator("address")
    @classmethod
    def _checksummed(cls, value: str) -> str:
        if not is_address(value):
            raise ValueError(f"{value!r} is not an Ethereum address")
        return to_checksum_address(value)

    @field_validator("x25519_public")
    @classmethod
    def _hex32(cls, value: str) -> str:
        value = value.removeprefix("0x").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("an X25519 public key is 64 hex digits")
        return value

    def x25519_public_bytes(self) -> bytes:
        """The X25519 public key as 32 raw bytes."""
        return bytes.fromhex(self.x25519_public)


class Identity:
    """A party's secret keys: an Ethereum account and an X25519 private key."""

    def __init__(self, name: str, account: LocalAccount, x25519_private: X25519PrivateKey) -> None:
        self.name = name
        self.account = account
        self.address: str = account.address
        self._x25519 = x25519_private
        self.x25519_public: bytes = x25519_private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls, name: str) -> "Identity":
        """A new identity with fresh random keys."""
        return cls(name, Account.create(), X25519PrivateKey.generate())

    @classmethod
    def from_secrets(cls, name: str, eth_private_key: bytes, x25519_private_key: bytes) -> "Identity":
        """Rebuild an identity from its two 32-byte private keys."""
        return cls(name, Account.from_key(eth_private_key), X25519PrivateKey.from_private_bytes(x25519_private_key))

    def public(self) -> PublicIdentity:
        """The identity's public part, safe to publish."""
        return PublicIdentity(name=self.name, address=self.address, x25519_public=self.x25519_public.hex())

    def exchange(self, peer_public: bytes) -> bytes:
        """The X25519 shared secret with ``peer_public`` (32 raw bytes)."""
        return self._x25519.exchange(X25519PublicKey.from_public_bytes(peer_public))

    def secrets(self) -> bytes:
        """The 64 secret bytes: Ethereum private key then X25519 private key. Never log them."""
        x25519 = self._x25519.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return bytes(self.account.key) + x25519

    def __repr__(self) -> str:
        return f"Identity(name={self.name!r}, address={self.address!r})"


class Keystore:
    """A directory of identities, one ``<name>.json`` file each, encrypted under one passphrase.

    ``scrypt_n`` is the scrypt cost for new files (memory is 128 · 8 · n bytes); files record
    their own cost, so loading never depends on it.
    """

    def __init__(self, root: Path, passphrase: str, *, scrypt_n: int = 2**15) -> None:
        if not passphrase:
            raise KeystoreError("the keystore passphrase is empty; choose a passphrase")
        if scrypt_n < 2 or scrypt_n & (scrypt_n - 1) or scrypt_n > _MAX_SCRYPT_N:
            raise ValueError(f"scrypt_n must be a power of two in 2..{_MAX_SCRYPT_N}")
        self.root = Path(root)
        self._passphrase = passphrase.encode("utf-8")
        self._scrypt_n = scrypt_n

    def names(self) -> list[str]:
        """The names of the identities in the keystore, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob("*.json") if _NAME.match(p.stem))

    def create(self, name: str) -> Identity:
        """Generate and store a new identity; refuses to overwrite an existing one."""
        identity = Identity.generate(_check_name(name))
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        document = self._seal(identity)
        fd, temp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.", suffix=".part")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(document, out, indent=2)
                out.flush()
                os.fsync(out.fileno())
            # link() fails if the name exists, so two concurrent creators cannot overwrite each other.
            os.link(temp, self._path(name))
        except FileExistsError:
            raise KeystoreError(f"identity {name!r} already exists in {self.root}; load it or pick "
                                "another name") from None
        finally:
            os.unlink(temp)
        return identity

    def load(self, name: str) -> Identity:
        """Decrypt and return the identity ``name``."""
        document = self._read(name)
        kdf, cipher = document["kdf"], document["cipher"]
        key = _scrypt(self._passphrase, bytes.fromhex(kdf["salt"]), kdf["n"], kdf["r"], kdf["p"])
        try:
            secrets = AESGCM(key).decrypt(bytes.fromhex(cipher["nonce"]), bytes.fromhex(document["ciphertext"]),
                                          _associated_data(document))
        except InvalidTag:
            raise KeystoreError(f"wrong passphrase for identity {name!r} in {self.root} (or its file was "
                                "altered)") from None
        identity = Identity.from_secrets(name, secrets[:32], secrets[32:])
        if identity.public() != self.public(name):
            raise KeystoreError(f"identity file {self._path(name)} does not match its keys; restore it")
        return identity

    def load_or_create(self, name: str) -> Identity:
        """Load ``name`` if it exists, else create it."""
        if self._path(_check_name(name)).exists():
            return self.load(name)
        try:
            return self.create(name)
        except KeystoreError:
            # Another process created it between the check and the link.
            return self.load(name)

    def public(self, name: str) -> PublicIdentity:
        """The public part of ``name``, read without the passphrase."""
        document = self._read(name)
        return PublicIdentity(name=name, address=document["address"], x25519_public=document["x25519_public"])

    def _path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def _seal(self, identity: Identity) -> dict:
        salt, nonce = os.urandom(16), os.urandom(12)
        document = {
            "format": _FORMAT, "version": _VERSION, "name": identity.name, "address": identity.address,
            "x25519_public": identity.x25519_public.hex(),
            "kdf": {"name": "scrypt", "n": self._scrypt_n, "r": 8, "p": 1, "salt": salt.hex()},
            "cipher": {"name": "aes-256-gcm", "nonce": nonce.hex()},
        }
        key = _scrypt(self._passphrase, salt, self._scrypt_n, 8, 1)
        document["ciphertext"] = AESGCM(key).encrypt(nonce, identity.secrets(), _associated_data(document)).hex()
        return document

    def _read(self, name: str) -> dict:
        path = self._path(_check_name(name))
        try:
            mode = path.stat().st_mode
            if os.name == "posix" and mode & 0o077:
                raise KeystoreError(f"{path} is readable by other users; run `chmod 600 {path}`")
            document = json.loads(path.read_text())
            _check_document(document)
            if document["name"] != name:
                raise ValueError(f"it holds identity {document['name']!r}")
        except FileNotFoundError:
            raise KeystoreError(f"no identity {name!r} in {self.root}; create it with `bahen keys new "
                                f"{name}`") from None
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise KeystoreError(f"{path} is not a valid bahen keystore file ({error}); restore it") from None
        return document


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise KeystoreError(f"{name!r} is not a valid identity name: use letters, digits, '_', '.', '-' "
                            "(at most 64, starting with a letter or digit)")
    return name


def _check_document(document: dict) -> None:
    """Raise ``ValueError``/``KeyError`` unless ``document`` is a keystore file this code reads."""
    if document.get("format") != _FORMAT or document.get("version") != _VERSION:
        raise ValueError(f"expected format {_FORMAT!r} version {_VERSION}")
    kdf = document["kdf"]
    if kdf["name"] != "scrypt" or document["cipher"]["name"] != "aes-256-gcm":
        raise ValueError("unknown key derivation or cipher")
    if not (1 < kdf["n"] <= _MAX_SCRYPT_N and 0 < kdf["r"] <= 32 and 0 < kdf["p"] <= 16):
        raise ValueError("scrypt parameters out of range")
    for field in (kdf["salt"], document["cipher"]["nonce"], document["ciphertext"]):
        bytes.fromhex(field)


def _associated_data(document: dict) -> bytes:
    """Bind the public fields to the sealed secrets, so they cannot be swapped in the file."""
    fields = [document["format"], str(document["version"]), document["name"], document["address"],
              document["x25519_public"]]
    return "\n".join(fields).encode("utf-8")


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)
