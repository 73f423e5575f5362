"""The parties and services one process works against: keystore, artifact store, chain.

Stages resolve it from settings with :func:`connect`, so a stage runs the same inside the client's
flow, on a worker host or in an auditor's re-run. The in-process EVM lives in process memory, so a
process keeps one network per configuration.
"""

import json
import threading
from dataclasses import dataclass, field

from contracts.chain import Chain
from contracts.client import Addresses, Bahen
from contracts.errors import ChainError
from privacy.identity import Identity, Keystore
from storage.store import ArtifactStore, open_store

from bahen import devnet
from bahen.errors import BahenError
from bahen.jsonfile import save_json
from bahen.settings import Settings


class NoKeyError(BahenError):
    """This host holds no key of the party that must act."""


@dataclass
class Network:
    """What a stage needs to act as one of the parties."""

    settings: Settings
    store: ArtifactStore
    chain: Chain
    market: Bahen
    keystore: Keystore
    _identities: dict[str, Identity] = field(default_factory=dict, repr=False)

    def party(self, name: str) -> Identity:
        """The identity ``name`` from this host's keystore (created on a devnet's first use)."""
        if name not in self._identities:
            self._identities[name] = self.keystore.load_or_create(name)
        return self._identities[name]

    def party_at(self, address: str, *, role: str) -> Identity:
        """The identity of this host whose account is ``address``, to act as ``role`` (named in the error)."""
        for name in self.keystore.names():
            if self.keystore.public(name).address.lower() == address.lower():
                return self.party(name)
        raise NoKeyError(f"this host ({self.keystore.root}) holds no key of {role} {address}: run the command "
                         f"on the {role}'s host, with its BAHEN_HOME")

    def wasp(self) -> Identity:
        """The identity of this host that holds the market's Wasp role."""
        for name in self.keystore.names():
            if self.market.is_wasp(self.keystore.public(name).address):
                return self.party(name)
        raise NoKeyError(f"this host ({self.keystore.root}) holds no key with the Wasp role of market "
                         f"{self.market.addresses.market}: audit on Wasp's host, with its BAHEN_HOME")


_networks: dict[tuple, Network] = {}
_lock = threading.Lock()


def connect(settings: Settings) -> Network:
    """The network for ``settings``, built once per process.

    With no RPC URL configured this is an in-process EVM bootstrapped as a devnet: the contracts
    deployed and the local worker and validators funded and staked; a home that holds the contract
    addresses of a running chain (``chain.json``) is refused instead, never silently replaced. With an RPC URL, the contract
    addresses come from ``HOME/chain.json`` (written by ``bahen chain deploy`` or ``bahen up``).
    """
    key = (str(settings.home), settings.resolved_store_url, settings.s3_endpoint_url, settings.chain_rpc_url)
    with _lock:
        if key not in _networks:
            _networks[key] = _build(settings)
        return _networks[key]


def store_of(settings: Settings) -> ArtifactStore:
    """The configured artifact store."""
    return open_store(settings.resolved_store_url, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                      party=settings.store_party)


def keystore_of(settings: Settings) -> Keystore:
    """This host's keystore."""
    return Keystore(settings.keys_dir, settings.passphrase.get_secret_value(), scrypt_n=settings.scrypt_n)


def _build(settings: Settings) -> Network:
    store, keystore = store_of(settings), keystore_of(settings)
    if settings.chain_rpc_url is None and settings.chain_file.is_file():
        raise ChainError(
            f"{settings.home} holds the contract addresses of a running chain ({settings.chain_file}) but names no "
            "chain_rpc_url: set it in config.yaml (or BAHEN_CHAIN_RPC_URL) rather than act on a fresh in-process chain"
        )
    if settings.chain_rpc_url is None:
        chain = Chain.in_process()
        market = devnet.bootstrap(chain, keystore)
    else:
        chain = Chain.connect(settings.chain_rpc_url)
        market = Bahen.attach(chain, load_addresses(settings))
    return Network(settings=settings, store=store, chain=chain, market=market, keystore=keystore)


def load_addresses(settings: Settings) -> Addresses:
    """Contract addresses deployed on the configured chain."""
    path = settings.chain_file
    if not path.is_file():
        raise ChainError(
            f"no contract addresses for {settings.chain_rpc_url} in {path}: run `bahen chain deploy` first"
        )
    return Addresses.model_validate(json.loads(path.read_text()))


def save_addresses(settings: Settings, addresses: Addresses) -> None:
    """Record where the contracts live, atomically."""
    save_json(settings.chain_file, addresses)
