"""Where bahen keeps its state and which services it talks to.

Resolution order, later wins: the embedded defaults below, the YAML config file
(``config.yaml`` in the home, or ``BAHEN_CONFIG``), then ``BAHEN_*`` environment variables, then
values passed in. The home is ``BAHEN_HOME``, or the one passed in.
The embedded defaults need no services: a local artifact directory, an in-process EVM, CPU
training and Prefect's ephemeral API.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import yaml
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bahen.errors import BahenError

DEVNET_PASSPHRASE = "bahen-devnet"


class SettingsError(BahenError):
    """The config file or an environment variable cannot be used."""


def _home_from_env() -> Path:
    return Path(os.environ.get("BAHEN_HOME", ".bahen")).resolve()


class Settings(BaseSettings):
    """Everything bahen reads from the machine it runs on."""

    model_config = SettingsConfigDict(env_prefix="BAHEN_", extra="forbid")

    home: Path = Field(default_factory=_home_from_env, description="State directory: keys, orders, local store")
    store_url: str | None = Field(
        None, description="Artifact store: a directory, or s3://bucket/prefix (default: HOME/store)"
    )
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint, e.g. http://127.0.0.1:9000 for MinIO")
    s3_region: str | None = Field(None, description="S3 region")
    store_party: str | None = Field(
        None, pattern=r"^0x[0-9a-fA-F]{40}$",
        description="Whose S3 credentials this host uses, as its account address: its uploads are staged under "
        "staging/<address>/ and its runs' results land under prefect-results/<address>/, the folders `bahen store "
        "policy <address>` lets it write (default: the shared staging/ and results, for a store without per-party "
        "policies)",
    )
    chain_rpc_url: str | None = Field(None, description="EVM JSON-RPC endpoint (default: an in-process EVM)")
    prefect_api_url: str | None = Field(
        None, description="Prefect server of the network: `bahen order submit` runs the order through its `order` "
        "deployment, and this host's Prefect workers poll it (default: run the order in this process)"
    )
    resolve_every_minutes: int = Field(
        10, ge=1, le=1440, description="How often a validator's worker (`bahen validator start`) looks for disputes "
        "the chain drew it to resolve that wait for its vote, and votes on them",
    )
    accept_unsigned_orders: bool = Field(
        False, description="Run order runs that carry no signature of this host's client, as the Prefect UI's form "
        "makes them, on sample datasets only: anyone who can create runs on the Prefect server can then spend this "
        "client's money (default: only orders from `bahen order submit` and the SDK, which sign them)",
    )
    passphrase: SecretStr = Field(
        SecretStr(DEVNET_PASSPHRASE), description="Keystore passphrase (set your own outside a devnet)"
    )
    scrypt_n: int = Field(2**15, ge=2**10, description="Keystore scrypt cost")
    worker_attack: str | None = Field(
        None, description="Make this host's workers cheat with the named attack (demonstrations and benchmarks)"
    )
    worker_attack_intensity: float = Field(1.0, gt=0, le=1, description="Share of the work the attack fakes")
    train_processes: int = Field(
        1, ge=1, le=64, description="Devices this host's workers train one order on: an order that splits its batches "
        "into grad_shards shards, no more than this, trains on grad_shards processes with torch.distributed (one per "
        "device); any other order trains in one process",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        home = init_settings.init_kwargs.get("home")
        return (init_settings, env_settings, _YamlSource(settings_cls, None if home is None else Path(home)))

    @property
    def resolved_store_url(self) -> str:
        """The store URL, defaulting to a directory inside the state directory."""
        return self.store_url or str(self.home / "store")

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def orders_dir(self) -> Path:
        return self.home / "orders"

    @property
    def worker_runs_dir(self) -> Path:
        """Where this host's workers note the tasks they train (``bahen.worker_runs``)."""
        return self.home / "worker-runs"

    @property
    def chain_file(self) -> Path:
        """Deployed contract addresses of the configured chain."""
        return self.home / "chain.json"


class _YamlSource(PydanticBaseSettingsSource):
    """Reads ``config.yaml`` of the home the settings name (or ``BAHEN_CONFIG``); a missing file means
    "use the defaults"."""

    def __init__(self, settings_cls: type[BaseSettings], home: Path | None):
        super().__init__(settings_cls)
        self.home = home

    def __call__(self) -> dict:
        path = Path(os.environ.get("BAHEN_CONFIG") or (self.home or _home_from_env()) / "config.yaml")
        if not path.is_file():
            return {}
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SettingsError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise SettingsError(f"config file {path} must be a mapping of settings")
        return data

    def get_field_value(self, field, field_name):  # required by the base class; __call__ does the work
        return None, field_name, False


_HOST: ContextVar[dict] = ContextVar("bahen_host_settings", default={})


@contextmanager
def host_settings(**values) -> Iterator[Settings]:
    """Hold ``values`` as this host's settings for the block, above the config file and the environment.

    For a command that plays a host in its own process (``bahen demo --attack`` runs the worker's
    stages in the client's process): the stages it runs read them through :func:`load_settings`,
    and no other process inherits them, as it would an environment variable.
    """
    settings = load_settings(**values)  # a bad value fails here, before anything runs
    token = _HOST.set({**_HOST.get(), **values})
    try:
        yield settings
    finally:
        _HOST.reset(token)


def load_settings(**overrides) -> Settings:
    """Settings for this process, with ``overrides`` (then :func:`host_settings`) taking precedence."""
    try:
        return Settings(**{**_HOST.get(), **overrides})
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) + f": {e['msg']}" for e in exc.errors())
        raise SettingsError(f"invalid bahen settings ({fields}); check BAHEN_* variables and config.yaml") from None
