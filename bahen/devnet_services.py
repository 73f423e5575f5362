"""A local devnet of real services: ``bahen up``, ``bahen down``, ``bahen status``.

``up`` starts anvil and a Prefect server on the chosen ports (its database SQLite in
``HOME/prefect``, or with ``postgres`` a PostgreSQL server of the devnet's own), provisions one home
per party under ``HOME/parties/<name>`` (its own keystore holding only its identity, and a
``config.yaml`` naming the shared services), deploys the contracts as the operator of ``HOME``,
stakes the workers and validators, creates the work pools, applies ``prefect.yaml`` and starts one
Prefect worker per party, working from that party's home. Every process it starts is recorded in
``HOME/devnet.json`` with its log under ``HOME/logs``, so ``down`` stops exactly those (workers
first, then the server, then its database, then the chain). The parties share only the services:
the chain, the Prefect server and the artifact store (``HOME/store``, or the S3 store the config
names), beside which the server's default result storage keeps what each party's run hands back to
the order.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import requests
from pydantic import BaseModel, Field

from bahen.errors import BahenError
from bahen.jsonfile import save_json
from bahen.settings import Settings

PROJECT_DIR = Path(__file__).resolve().parents[1]
STOP_ORDER = ("worker", "prefect", "postgres", "anvil")
POSTGRES_USER = "postgres"  # the system user of Debian's package, which the server runs as when started by root
POSTGRES_ROLE = "prefect"   # the role the Prefect server connects as, and the name of its database
DEBIAN_POSTGRES = Path("/usr/lib/postgresql")  # where Debian's package puts each version's programs


class DevnetError(BahenError):
    """A devnet service could not start, answer or stop; the message names it and its log."""


class Service(BaseModel):
    """A process the devnet started."""

    name: str
    kind: str
    pid: int
    url: str | None = None
    log: Path


class PartyHost(BaseModel):
    """One party of the devnet: its home and the work it polls for."""

    name: str
    home: Path
    pool: str
    queue: str | None = Field(None, description="The work queue of its own runs (its address); None: the whole pool")
    address: str | None = Field(None, description="Its account, once the devnet is bootstrapped")


class DevnetState(BaseModel):
    """What ``bahen up`` started and where it listens."""

    home: Path
    project_dir: Path
    prefect_api_url: str
    chain_rpc_url: str
    store_url: str
    s3_endpoint_url: str | None = None
    database_dir: Path | None = Field(None, description="The PostgreSQL cluster's folder, when the server uses one")
    services: list[Service] = []
    parties: list[PartyHost] = []

    @property
    def ui_url(self) -> str:
        return self.prefect_api_url.removesuffix("/api")


class Health(BaseModel):
    name: str
    healthy: bool
    detail: str


def state_path(home: Path) -> Path:
    return home / "devnet.json"


def anvil_cache(home: Path) -> Path:
    """Where the devnet's anvil writes the chain's older states (a few GB over a long run), which anvil
    itself never removes; ``down`` does, since the chain goes with the node."""
    return home / "anvil-cache"


def load_state(home: Path) -> DevnetState:
    """The running devnet of ``home``."""
    path = state_path(home)
    if not path.is_file():
        raise DevnetError(f"no devnet runs from {home} ({path} is missing): start one with `bahen up`")
    return DevnetState.model_validate_json(path.read_text())


def save_state(state: DevnetState) -> None:
    save_json(state_path(state.home), state)


def service_env(state: DevnetState) -> dict[str, str]:
    """The environment of every process working on the devnet."""
    env = {
        **os.environ,
        "BAHEN_HOME": str(state.home),
        "BAHEN_CHAIN_RPC_URL": state.chain_rpc_url,
        "BAHEN_STORE_URL": state.store_url,
        "BAHEN_PROJECT_DIR": str(state.project_dir),
        "PREFECT_API_URL": state.prefect_api_url,
        "PREFECT_HOME": str(state.home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    if state.s3_endpoint_url:
        env["BAHEN_S3_ENDPOINT_URL"] = state.s3_endpoint_url
    return env


def party_env(state: DevnetState, party: PartyHost) -> dict[str, str]:
    """The environment of a party's processes: its own home (whose config.yaml names the services),
    no other bahen setting of the shell that started the devnet, and the Prefect server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAHEN_")}
    return env | {
        "BAHEN_HOME": str(party.home),
        "BAHEN_PROJECT_DIR": str(state.project_dir),
        "PREFECT_API_URL": state.prefect_api_url,
        "PREFECT_HOME": str(party.home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def anvil_binary(project_dir: Path) -> Path:
    """The anvil that npm installed (``npm ci``), or one on PATH."""
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(os.uname().machine, os.uname().machine)
    for candidate in (
        project_dir / "node_modules" / "@foundry-rs" / f"anvil-{sys.platform}-{arch}" / "bin" / "anvil",
        project_dir / "node_modules" / ".bin" / "anvil",
    ):
        if candidate.exists():
            return candidate
    found = shutil.which("anvil")
    if not found:
        raise DevnetError(f"anvil is not installed: run `npm ci` in {project_dir} (npm package @foundry-rs/anvil)")
    return Path(found)


def postgres_binaries() -> Path:
    """The folder of the PostgreSQL server's programs: where ``postgres`` on PATH lives, else the newest
    of Debian's ``/usr/lib/postgresql/<version>/bin``."""
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    installed = [p.parent for p in DEBIAN_POSTGRES.glob("*/bin/postgres") if p.parts[-3].isdigit()]
    if not installed:
        raise DevnetError("PostgreSQL is not installed: `apt-get install postgresql` (Debian's package), "
                          "or start the devnet without --postgres to keep the Prefect server on SQLite")
    return max(installed, key=lambda folder: int(folder.parts[-2]))


def postgres_account() -> str | None:
    """The user the PostgreSQL server runs as: this one, or the ``postgres`` system user when this is root
    (the server refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        raise DevnetError(f"PostgreSQL will not run as root and there is no {POSTGRES_USER!r} user to run it as: "
                          "install Debian's postgresql package (it creates one) or start the devnet as another user") from None
    return POSTGRES_USER


def init_postgres(binaries: Path, user: str | None) -> Path:
    """A new PostgreSQL cluster in a folder of its own (only its server's user may read it), with the role
    ``prefect`` trusted on loopback: the devnet's database is as ephemeral as its chain."""
    folder = Path(tempfile.mkdtemp(prefix="bahen-postgres-"))
    if user:
        shutil.chown(folder, user)
    done = subprocess.run(
        [str(binaries / "initdb"), "-D", str(folder / "data"), "-U", POSTGRES_ROLE, "--auth=trust", "-E", "UTF8"],
        user=user, capture_output=True, text=True, timeout=120, check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise DevnetError(f"initdb failed:\n{(done.stdout + done.stderr)[-2000:]}")
    return folder


def postgres_argv(binaries: Path, folder: Path, port: int) -> list[str]:
    """The server of the cluster in ``folder``, on loopback only, its socket in that folder."""
    return [str(binaries / "postgres"), "-D", str(folder / "data"), "-p", str(port), "-k", str(folder),
            "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]


def create_database(binaries: Path, url: str) -> None:
    """The database the Prefect server's URL names, in the cluster that answers there."""
    parts = urlsplit(url)
    done = subprocess.run(
        [str(binaries / "createdb"), "-h", parts.hostname, "-p", str(parts.port), "-U", POSTGRES_ROLE, parts.path.lstrip("/")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if done.returncode != 0:
        raise DevnetError(f"createdb at {url} failed: {done.stderr.strip()}")


def _postgres_ready(url: str) -> bool:
    parts = urlsplit(url)
    probe = [str(postgres_binaries() / "pg_isready"), "-q", "-h", parts.hostname, "-p", str(parts.port)]
    return subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0


def spawn(name: str, kind: str, argv: list[str], env: dict[str, str], home: Path, url: str | None = None,
          user: str | None = None) -> Service:
    """Start a service in its own session (so it outlives this command) with its output in a log;
    as ``user``, if named."""
    log = home / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, user=user)
    return Service(name=name, kind=kind, pid=proc.pid, url=url, log=log)


def log_tail(service: Service, lines: int = 15) -> str:
    try:
        return "\n".join(service.log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def alive(service: Service) -> bool:
    try:
        return psutil.Process(service.pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def answers(service: Service) -> bool:
    """Whether the service answers on its URL (a JSON-RPC chain, a PostgreSQL server or the Prefect API)."""
    try:
        if service.kind == "postgres":
            return _postgres_ready(service.url)
        if service.kind == "anvil":
            body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
            return "result" in requests.post(service.url, json=body, timeout=2).json()
        return requests.get(f"{service.url}/health", timeout=2).ok
    except (requests.RequestException, ValueError):
        return False


def wait_healthy(service: Service, timeout: float) -> None:
    """Wait until ``service`` answers; fail with its log tail when it exits or stays silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(service):
            raise DevnetError(f"{service.name} exited while starting; its log {service.log} ends with:\n{log_tail(service)}")
        if answers(service):
            return
        time.sleep(0.5)
    raise DevnetError(f"{service.name} did not answer at {service.url} within {timeout:.0f} s; see {service.log}:\n{log_tail(service)}")


def stop(service: Service, timeout: float = 20.0) -> None:
    """SIGTERM the service's process group, then SIGKILL what is left after ``timeout``."""
    if not alive(service):
        return
    try:
        procs = [psutil.Process(service.pid), *psutil.Process(service.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, left = psutil.wait_procs(procs, timeout=timeout)
    for proc in left:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(left, timeout=5)


def status(home: Path) -> list[Health]:
    """Every service of the devnet: running, and answering where it has a URL."""
    state = load_state(home)
    report = []
    for service in state.services:
        if not alive(service):
            report.append(Health(name=service.name, healthy=False, detail=f"not running (pid {service.pid}); see {service.log}"))
        elif service.url and not answers(service):
            report.append(Health(name=service.name, healthy=False, detail=f"pid {service.pid} does not answer at {service.url}"))
        else:
            report.append(Health(name=service.name, healthy=True, detail=f"pid {service.pid}" + (f" at {service.url}" if service.url else "")))
    return report


def down(home: Path) -> list[str]:
    """Stop every service ``up`` started, workers before the server before its database before the chain,
    and remove the database's cluster and the chain's cached states."""
    state = load_state(home)
    stopped = []
    for kind in STOP_ORDER:
        for service in (s for s in state.services if s.kind == kind):
            stop(service)
            stopped.append(service.name)
    if state.database_dir:
        shutil.rmtree(state.database_dir, ignore_errors=True)
    shutil.rmtree(anvil_cache(home), ignore_errors=True)
    state_path(home).unlink()
    return stopped


def settings_for(state: DevnetState, settings: Settings) -> Settings:
    """This host's settings pointed at the devnet's chain and store."""
    return settings.model_copy(update={"chain_rpc_url": state.chain_rpc_url, "store_url": state.store_url})
