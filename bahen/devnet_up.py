"""Bringing a devnet up, and joining it as a worker or validator host.

``up`` orders its steps so each failure names the part that failed: the ports, the chain, the
Prefect server, the contracts, the pools and deployments, then the workers. A failed ``up`` stops
what it had started, so nothing is left running without a ``devnet.json`` to find it by.
"""

import subprocess
import sys
from pathlib import Path

from contracts.chain import Chain
from privacy.identity import Keystore
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists

from bahen import devnet
from bahen.devnet_services import (
    POOLS, PROJECT_DIR, DevnetError, DevnetState, anvil_binary, down, load_state, port_free, save_state,
    service_env, settings_for, spawn, state_path, wait_healthy,
)
from bahen.network import keystore_of, save_addresses
from bahen.parties import validator_name, worker_name
from bahen.settings import Settings

ROLE_OF_POOL = {"gpu": "worker", "validators": "validator"}


def worker_argv(pool: str, name: str, limit: int | None) -> list[str]:
    """A Prefect process worker polling ``pool`` (at most ``limit`` runs at once)."""
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process", "--name", name]
    return argv + (["--limit", str(limit)] if limit else [])


def _start_chain_and_server(settings: Settings, prefect_port: int, anvil_port: int, project_dir: Path) -> DevnetState:
    for port, what, option in ((prefect_port, "the Prefect server", "--prefect-port"), (anvil_port, "anvil", "--anvil-port")):
        if not port_free(port):
            raise DevnetError(f"port {port} for {what} is in use: stop what listens there or choose another with {option}")
    state = DevnetState(
        home=settings.home, project_dir=project_dir, prefect_api_url=f"http://127.0.0.1:{prefect_port}/api",
        chain_rpc_url=f"http://127.0.0.1:{anvil_port}", store_url=settings.resolved_store_url,
        s3_endpoint_url=settings.s3_endpoint_url,
    )
    env = service_env(state)
    anvil = spawn("anvil", "anvil", [str(anvil_binary(project_dir)), "--host", "127.0.0.1", "--port", str(anvil_port)],
                  env, settings.home, url=state.chain_rpc_url)
    state.services.append(anvil)
    save_state(state)
    wait_healthy(anvil, timeout=30)
    server = spawn("prefect-server", "prefect", [sys.executable, "-m", "prefect", "server", "start"],
                   {**env, "PREFECT_SERVER_API_PORT": str(prefect_port), "PREFECT_SERVER_API_HOST": "127.0.0.1"},
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
       workers: bool = True) -> DevnetState:
    """Start the devnet of ``settings.home`` and return what runs where."""
    if state_path(settings.home).is_file():
        raise DevnetError(f"a devnet already runs from {settings.home}: `bahen status` shows it, `bahen down` stops it")
    settings.home.mkdir(parents=True, exist_ok=True)
    try:
        state = _start_chain_and_server(settings, prefect_port, anvil_port, project_dir)
        market = devnet.bootstrap(Chain.connect(state.chain_rpc_url), keystore_of(settings))
        save_addresses(settings_for(state, settings), market.addresses)
        create_pools(state.prefect_api_url)
        apply_deployments(state)
        if workers:
            for pool in POOLS:
                state.services.append(spawn(f"worker-{pool}", "worker", worker_argv(pool, f"{pool}-1", None), service_env(state), settings.home))
            save_state(state)
        return state
    except BaseException:
        if state_path(settings.home).is_file():
            down(settings.home)
        raise


def ensure_staked(state: DevnetState, settings: Settings, keystore: Keystore, role: str, name: str) -> str:
    """Register and stake ``name`` as a ``role`` on the devnet's chain unless it is already; its address."""
    from bahen.network import connect

    net = connect(settings_for(state, settings))
    identity = keystore.load_or_create(name)
    member = net.market.member(identity.address)
    if member.role == role and member.stake > 0:
        return identity.address
    net.chain.fund(identity.address, devnet.FUNDING_WEI)
    if role == "worker":
        net.market.register_worker(
            identity.account, x25519_public=identity.x25519_public, declared_gflops=devnet.WORKER_GFLOPS,
            stake=net.market.required_stake(devnet.WORKER_GFLOPS),
        )
    else:
        net.market.register_validator(identity.account, x25519_public=identity.x25519_public, stake=devnet.PARAMS.min_validator_stake)
    return identity.address


def join(settings: Settings, pool: str, *, name: str | None, limit: int | None) -> tuple[list[str], dict[str, str], str]:
    """Stake this host's party on the devnet's chain; the Prefect worker command and environment to run."""
    if pool not in ROLE_OF_POOL:
        raise DevnetError(f"pool {pool!r} has no party to stake: use gpu (workers) or validators")
    state = load_state(settings.home)
    role = ROLE_OF_POOL[pool]
    party = name or (worker_name(0) if role == "worker" else validator_name(0))
    if not party.startswith(f"{role}-") or not party.split("-", 1)[1].isdigit():
        raise DevnetError(f"{party!r} is not a {role} name: use {role}-<number>, e.g. {role}-2")
    address = ensure_staked(state, settings, keystore_of(settings), role, party)
    return worker_argv(pool, f"{pool}-{party}", limit), service_env(state), address
