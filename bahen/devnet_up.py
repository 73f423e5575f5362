"""Bringing a devnet up, and joining a network as a worker, validator or Wasp host.

``up`` orders its steps so each failure names the part that failed: the ports, the chain, the
Prefect server, the party homes and contracts, the pools, the shared result storage and the
deployments, then the workers. A failed ``up`` stops
what it had started, so nothing is left running without a ``devnet.json`` to find it by.
"""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from contracts.chain import Chain
from privacy.identity import Identity
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.filesystems import LocalFileSystem, RemoteFileSystem, WritableFileSystem

from bahen import devnet
from bahen.devnet_services import (
    POSTGRES_ROLE, PROJECT_DIR, DevnetError, DevnetState, PartyHost, anvil_binary, anvil_cache, create_database, down,
    free_port, init_postgres, party_env, port_free, postgres_account, postgres_argv, postgres_binaries, save_state,
    service_env, settings_for, spawn, state_path, wait_healthy,
)
from bahen.host_worker import FLOWS_OF_POOL
from bahen.network import Network, connect, keystore_of, save_addresses
from bahen.parties import CLIENT, POOL_OF_ROLE, POOLS, WASP, party_queue, validator_name, worker_name
from bahen.settings import Settings, load_settings

def worker_argv(pool: str, name: str, limit: int | None, queue: str | None = None) -> list[str]:
    """A party's Prefect worker (``bahen.host_worker``, which runs only this host's code) polling ``pool``,
    at most ``limit`` runs at once: only its work queue ``queue`` if named, and on the control pool also
    ``default``, where the UI's re-audits go (and an order sent to no client's queue, which the order
    refuses)."""
    argv = [sys.executable, "-m", "bahen.host_worker", "start", "--pool", pool, "--name", name]
    queues = [queue, "default"] if queue and pool == POOL_OF_ROLE["client"] else [queue] if queue else []
    return argv + [arg for q in queues for arg in ("--work-queue", q)] + (["--limit", str(limit)] if limit else [])


def party_worker(state: DevnetState, party: PartyHost) -> tuple[list[str], dict[str, str]]:
    """The command and environment of ``party``'s Prefect worker, whose runs leave their results in the
    party's own folder of the store."""
    settings = load_settings(home=party.home, store_url=state.store_url, s3_endpoint_url=state.s3_endpoint_url,
                             store_party=party.address)
    return worker_argv(party.pool, party.name, None, party.queue), party_env(state, party) | own_results(
        state.prefect_api_url, settings)


def provision(state: DevnetState, settings: Settings, *, workers: int, validators: int) -> list[PartyHost]:
    """One home per party under ``HOME/parties``, its ``config.yaml`` naming the devnet's services.

    Identities are made in each home's own keystore when the devnet is bootstrapped; nothing else
    of one party is written to another's home. The client takes unsigned order runs (on sample datasets),
    so that the devnet's operator can order from the Prefect UI's form.
    """
    names = [(CLIENT, POOL_OF_ROLE["client"]), (WASP, POOL_OF_ROLE["wasp"]),
             *((worker_name(i), POOL_OF_ROLE["worker"]) for i in range(workers)),
             *((validator_name(i), POOL_OF_ROLE["validator"]) for i in range(validators))]
    config = {"chain_rpc_url": state.chain_rpc_url, "store_url": state.store_url, "prefect_api_url": state.prefect_api_url,
              "scrypt_n": settings.scrypt_n}
    if state.s3_endpoint_url:
        config["s3_endpoint_url"] = state.s3_endpoint_url
    parties = []
    for name, pool in names:
        home = settings.home / "parties" / name
        home.mkdir(parents=True, exist_ok=True)
        own = {"accept_unsigned_orders": True} if name == CLIENT else {}
        (home / "config.yaml").write_text(yaml.safe_dump(config | own, sort_keys=False))
        parties.append(PartyHost(name=name, home=home, pool=pool))
    return parties


def _name_store_party(party: PartyHost) -> None:
    """Write the party's account into its ``config.yaml`` as its ``store_party``: its uploads stage and its
    runs' results land in its own folders of the store, as on a store with per-party policies."""
    path = party.home / "config.yaml"
    config = yaml.safe_load(path.read_text()) | {"store_party": party.address}
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _start_database(state: DevnetState) -> dict[str, str]:
    """A PostgreSQL server of the devnet's own, with the database of the Prefect server; returns the
    server's setting that names it."""
    binaries, user = postgres_binaries(), postgres_account()
    state.database_dir = init_postgres(binaries, user)
    save_state(state)
    port = free_port()
    url = f"postgresql://{POSTGRES_ROLE}@127.0.0.1:{port}/{POSTGRES_ROLE}"
    database = spawn("postgres", "postgres", postgres_argv(binaries, state.database_dir, port), service_env(state),
                     state.home, url=url, user=user)
    state.services.append(database)
    save_state(state)
    wait_healthy(database, timeout=60)
    create_database(binaries, url)
    return {"PREFECT_API_DATABASE_CONNECTION_URL": url.replace("postgresql://", "postgresql+asyncpg://", 1)}


def _start_chain_and_server(settings: Settings, prefect_port: int, anvil_port: int, project_dir: Path,
                            postgres: bool) -> DevnetState:
    for port, what, option in ((prefect_port, "the Prefect server", "--prefect-port"), (anvil_port, "anvil", "--anvil-port")):
        if not port_free(port):
            raise DevnetError(f"port {port} for {what} is in use: stop what listens there or choose another with {option}")
    state = DevnetState(
        home=settings.home, project_dir=project_dir, prefect_api_url=f"http://127.0.0.1:{prefect_port}/api",
        chain_rpc_url=f"http://127.0.0.1:{anvil_port}", store_url=settings.resolved_store_url,
        s3_endpoint_url=settings.s3_endpoint_url,
    )
    env = service_env(state)
    anvil = spawn("anvil", "anvil", [str(anvil_binary(project_dir)), "--host", "127.0.0.1", "--port", str(anvil_port),
                                      "--cache-path", str(anvil_cache(settings.home))],
                  env, settings.home, url=state.chain_rpc_url)
    state.services.append(anvil)
    save_state(state)
    wait_healthy(anvil, timeout=30)
    database = _start_database(state) if postgres else {}
    server = spawn("prefect-server", "prefect", [sys.executable, "-m", "prefect", "server", "start"],
                   {**env, **database, "PREFECT_SERVER_API_PORT": str(prefect_port), "PREFECT_SERVER_API_HOST": "127.0.0.1"},
                   settings.home, url=state.prefect_api_url)
    state.services.append(server)
    save_state(state)
    wait_healthy(server, timeout=120)
    return state


def create_pools(api_url: str) -> None:
    """The process work pools the deployments name."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        for pool in POOLS:
            try:
                client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            except ObjectAlreadyExists:
                pass


RESULTS_BLOCK = "bahen-results"


def result_storage(settings: Settings) -> WritableFileSystem:
    """Where this host's runs leave their results for the order: beside the artifact store's objects,
    under ``prefect-results`` (a directory, or the S3 prefix of an S3 store), never a host's own disk;
    in its own folder ``prefect-results/<address>`` where the host names its ``store_party``, the
    one its store policy lets it write."""
    url = settings.resolved_store_url
    folder = f"prefect-results/{settings.store_party.lower()}" if settings.store_party else "prefect-results"
    if url.startswith("s3://"):
        client_kwargs = {k: v for k, v in (("endpoint_url", settings.s3_endpoint_url), ("region_name", settings.s3_region)) if v}
        return RemoteFileSystem(basepath=f"{url.rstrip('/')}/{folder}", settings={"client_kwargs": client_kwargs})
    return LocalFileSystem(basepath=str(Path(url) / folder))


def share_results(api_url: str, storage: WritableFileSystem) -> None:
    """Make ``storage`` (saved as the block ``bahen-results``) the default result storage of the Prefect
    server at ``api_url``, so every party's run on any host writes its result there and the order
    reads it back through the same block."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        block_id = storage.save(RESULTS_BLOCK, overwrite=True)
        with get_client(sync_client=True) as client:
            client.update_server_default_result_storage(block_id)


def own_results(api_url: str, settings: Settings) -> dict[str, str]:
    """The environment by which this host's Prefect workers make its runs write their results in its
    own folder (:func:`result_storage`), saved on the server at ``api_url`` as the block
    ``bahen-results-<address>`` (whoever reads a result finds it through that block); nothing for a
    host that names no ``store_party``, whose runs use the server's default (:func:`share_results`)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if not settings.store_party:
        return {}
    storage, name = result_storage(settings), f"{RESULTS_BLOCK}-{settings.store_party.lower()}"
    with temporary_settings({PREFECT_API_URL: api_url}):
        storage.save(name, overwrite=True)
    return {"PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": f"{storage.get_block_type_slug()}/{name}"}


def schedule_resolver(api_url: str, address: str, every_minutes: int) -> None:
    """The deployment ``resolve-pending/<address>``: the ``resolve-pending`` flow for validator ``address``,
    every ``every_minutes`` from then on, in its own queue of the validators pool, so its host's worker looks
    for the disputes that drew it whether or not their disputers send it runs. Created or updated in place."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import IntervalSchedule
    from prefect.settings import PREFECT_API_URL, temporary_settings

    every = timedelta(minutes=every_minutes)
    schedule = IntervalSchedule(interval=every, anchor_date=datetime.now(UTC) + every)
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        client.create_deployment(
            flow_id=client.create_flow_from_name("resolve-pending"), name=address.lower(),
            entrypoint=FLOWS_OF_POOL[POOL_OF_ROLE["validator"]]["resolve-pending"],
            work_pool_name=POOL_OF_ROLE["validator"], work_queue_name=party_queue(address),
            parameters={"resolver": address}, schedules=[DeploymentScheduleCreate(schedule=schedule)],
            tags=["bahen", "validator"],
        )


def apply_deployments(state: DevnetState) -> None:
    """``prefect deploy --all`` on the project's ``prefect.yaml``."""
    if not (state.project_dir / "prefect.yaml").is_file():
        raise DevnetError(f"no prefect.yaml in {state.project_dir}: pass the bahen checkout with --project-dir")
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=state.project_dir,
        env=service_env(state), capture_output=True, text=True, timeout=300, check=False,
    )
    if done.returncode != 0:
        raise DevnetError(f"`prefect deploy --all` failed in {state.project_dir}:\n{(done.stdout + done.stderr)[-3000:]}")


def up(settings: Settings, *, prefect_port: int, anvil_port: int, project_dir: Path = PROJECT_DIR,
       workers: int = devnet.WORKERS, validators: int = devnet.VALIDATORS, start_workers: bool = True,
       postgres: bool = False) -> DevnetState:
    """Start the devnet of ``settings.home`` with ``workers`` workers and ``validators`` validators, each in
    its own home, and return what runs where; with ``postgres``, the Prefect server keeps its database in a
    PostgreSQL server the devnet starts (as a production deployment does) instead of SQLite."""
    if state_path(settings.home).is_file():
        raise DevnetError(f"a devnet already runs from {settings.home}: `bahen status` shows it, `bahen down` stops it")
    settings.home.mkdir(parents=True, exist_ok=True)
    try:
        state = _start_chain_and_server(settings, prefect_port, anvil_port, project_dir, postgres)
        state.parties = provision(state, settings, workers=workers, validators=validators)
        homes = {p.name: p.home for p in state.parties}
        market = devnet.bootstrap(
            Chain.connect(state.chain_rpc_url), keystore_of(settings), workers=workers, validators=validators,
            keystore_of=lambda name: keystore_of(settings.model_copy(update={"home": homes[name]})),
        )
        for home in (settings.home, *homes.values()):
            save_addresses(settings.model_copy(update={"home": home}), market.addresses)
        for party in state.parties:
            party.address = keystore_of(settings.model_copy(update={"home": party.home})).public(party.name).address
            if party.pool != POOL_OF_ROLE["wasp"]:
                party.queue = party_queue(party.address)
            _name_store_party(party)
        save_state(state)
        create_pools(state.prefect_api_url)
        share_results(state.prefect_api_url, result_storage(settings_for(state, settings)))
        apply_deployments(state)
        for party in state.parties:
            if party.pool == POOL_OF_ROLE["validator"]:
                schedule_resolver(state.prefect_api_url, party.address, settings.resolve_every_minutes)
        if start_workers:
            for party in state.parties:
                argv, env = party_worker(state, party)
                state.services.append(spawn(party.name, "worker", argv, env, settings.home))
            save_state(state)
        return state
    except BaseException:
        if state_path(settings.home).is_file():
            down(settings.home)
        raise


def ensure_staked(net: Network, identity: Identity, role: str) -> None:
    """Register and stake ``identity`` as a ``role`` on the chain unless it is already (a devnet funds it)."""
    member = net.market.member(identity.address)
    if member.role == role and member.stake > 0:
        return
    net.chain.fund(identity.address, devnet.FUNDING_WEI)
    if role == "worker":
        net.market.register_worker(
            identity.account, x25519_public=identity.x25519_public, declared_gflops=devnet.WORKER_GFLOPS,
            stake=net.market.required_stake(devnet.WORKER_GFLOPS),
        )
    else:
        net.market.register_validator(identity.account, x25519_public=identity.x25519_public, stake=devnet.PARAMS.min_validator_stake)


# The roles that stake.
STAKED = ("worker", "validator")


def join(settings: Settings, role: str, *, name: str | None, stake: bool = True) -> tuple[Identity, Network]:
    """This host's ``role`` identity on the configured chain, registered and staked if ``stake`` (a worker or
    validator). ``name`` defaults to the home's only identity, or ``<role>-0`` (``wasp``, ``client``) in an
    empty home."""
    if settings.chain_rpc_url is None:
        raise DevnetError("this host names no chain: set chain_rpc_url in config.yaml (or BAHEN_CHAIN_RPC_URL) to the "
                          "network's RPC endpoint; an in-process chain has nobody else on it")
    net = connect(settings)
    names = net.keystore.names()
    party = name or (names[0] if len(names) == 1 else None) or {"wasp": WASP, "client": CLIENT}.get(role, f"{role}-0")
    if role in STAKED and not (party.startswith(f"{role}-") and party.split("-", 1)[1].isdigit()):
        raise DevnetError(f"{party!r} is not a {role} name: use {role}-<number>, e.g. {role}-2")
    identity = net.party(party)
    if role == "wasp" and not net.market.is_wasp(identity.address):
        raise DevnetError(f"{party} ({identity.address}) does not hold the Wasp role of market "
                          f"{net.market.addresses.market}: run Wasp with the key the contracts were deployed for")
    if stake and role in STAKED:
        ensure_staked(net, identity, role)
    return identity, net


def start_command(settings: Settings, identity: Identity, role: str, limit: int | None) -> tuple[list[str], dict[str, str]]:
    """The Prefect worker that takes ``identity``'s runs from its role's pool, and its environment."""
    api_url = settings.prefect_api_url or os.environ.get("PREFECT_API_URL")
    if not api_url:
        raise DevnetError("this host names no Prefect server: set prefect_api_url in config.yaml (or PREFECT_API_URL)")
    if settings.store_party and settings.store_party.lower() != identity.address.lower():
        raise DevnetError(f"this host's store_party {settings.store_party} is not the account of {identity.name} "
                          f"({identity.address}): name the party whose store credentials the host holds")
    pool = POOL_OF_ROLE[role]
    queue = None if role == "wasp" else party_queue(identity.address)
    env = {**os.environ, "PREFECT_API_URL": api_url, "BAHEN_PROJECT_DIR": os.environ.get("BAHEN_PROJECT_DIR", str(PROJECT_DIR))}
    return worker_argv(pool, f"{pool}-{identity.name}", limit, queue), env | own_results(api_url, settings)
