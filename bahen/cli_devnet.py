"""``bahen up``, ``bahen down``, ``bahen status`` and ``bahen worker|validator join|start``, ``bahen wasp
start``: a local devnet of real services, and hosts joining a network."""

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text
from rich.table import Table

from bahen.cli_groups import command_group

console = Console(markup=False)

worker_app = command_group("Run a GPU worker host on the network's gpu pool.")
validator_app = command_group("Run a validator host on the network's validators pool.")
wasp_app = command_group("Run Wasp, the auditor that records work verdicts, on the wasp pool.")
client_app = command_group("Run a client host's orders on the network's control pool.")


def up(
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker parties, each with its own home and Prefect worker")] = 2,
    validators: Annotated[int, typer.Option(min=1, max=64, help="Validator parties, each with its own home and Prefect worker")] = 3,
    prefect_port: Annotated[int, typer.Option(help="Port of the Prefect server (UI and API)")] = 4200,
    anvil_port: Annotated[int, typer.Option(help="Port of the anvil chain")] = 8545,
    project_dir: Annotated[Path | None, typer.Option(help="The bahen checkout holding prefect.yaml")] = None,
    start_workers: Annotated[bool, typer.Option(help="Start each party's Prefect worker")] = True,
    postgres: Annotated[bool, typer.Option(help="Keep the Prefect server's database in a PostgreSQL server of the devnet's "
                                                "own (Debian's postgresql package), as a production deployment does, "
                                                "instead of SQLite; it goes with `bahen down`")] = False,
) -> None:
    """Start anvil and a Prefect server, give every party (client, workers, validators, Wasp) its own home
    under $BAHEN_HOME/parties, deploy the contracts, stake, create the pools, apply the deployments."""
    from bahen.devnet_services import PROJECT_DIR
    from bahen.devnet_up import up as start
    from bahen.settings import load_settings

    with console.status("starting the devnet (chain, Prefect server, party homes, contracts, deployments)…"):
        state = start(load_settings(), prefect_port=prefect_port, anvil_port=anvil_port,
                      project_dir=project_dir or PROJECT_DIR, workers=workers, validators=validators,
                      start_workers=start_workers, postgres=postgres)
    console.print(Text.assemble(("devnet up", "bold green"), f" from {state.home}"))
    console.print(f"  Prefect UI   {state.ui_url}  (submit an order: Deployments → order → Run → Custom run)")
    console.print(f"  chain        {state.chain_rpc_url}")
    console.print(f"  store        {state.store_url}")
    if postgres:
        console.print(f"  database     {next(s.url for s in state.services if s.kind == 'postgres')}")
    console.print(f"  parties      {', '.join(p.name for p in state.parties)}: one home each under {state.home / 'parties'}")
    console.print(f"  submit:      BAHEN_HOME={state.home / 'parties' / 'client'} bahen order submit order.yaml")


def down() -> None:
    """Stop every service `bahen up` started: workers, then the Prefect server, its database, then the chain."""
    from bahen.devnet_services import down as stop_all
    from bahen.settings import load_settings

    stopped = stop_all(load_settings().home)
    console.print(f"stopped {', '.join(stopped) or 'nothing'}")


def status() -> None:
    """Show whether each devnet service runs and answers; exit 1 when one does not."""
    from bahen.devnet_services import status as check
    from bahen.settings import load_settings

    table = Table("service", "healthy", "detail")
    report = check(load_settings().home)
    for health in report:
        table.add_row(health.name, "yes" if health.healthy else Text("no", style="red"), health.detail)
    console.print(table)
    if not all(h.healthy for h in report):
        raise typer.Exit(1)


def _start(role: str, name: str | None, limit: int | None) -> None:
    from bahen.devnet_up import join, schedule_resolver, start_command
    from bahen.settings import load_settings

    settings = load_settings()
    identity, _ = join(settings, role, name=name)
    argv, env = start_command(settings, identity, role, limit)
    if role == "validator":
        schedule_resolver(env["PREFECT_API_URL"], identity.address, settings.resolve_every_minutes)
    console.print(f"{identity.name} ({identity.address}) is ready; polling {' '.join(argv[argv.index('--pool'):])}")
    os.execve(argv[0], argv, env)


def _join(role: str, name: str | None) -> None:
    from bahen.accounts import balance_of
    from bahen.devnet_up import join
    from bahen.settings import load_settings

    identity, net = join(load_settings(), role, name=name)
    stake = balance_of(net, identity.name).stake_wei
    console.print(f"{identity.name} ({identity.address}) is a staked {role} with {stake / 1e18:.6f} ETH")


NAME_HELP = "Identity in this host's keystore (created if missing); default: its only identity, or {role}-0"
LIMIT_HELP = "Most flow runs at once: the number of GPUs of this host"


@worker_app.command("join")
def worker_join(name: Annotated[str | None, typer.Option(help=NAME_HELP.format(role="worker"))] = None) -> None:
    """Register and stake this host's worker on the configured chain, unless it is already."""
    _join("worker", name)


@worker_app.command("start")
def worker_start(
    name: Annotated[str | None, typer.Option(help=NAME_HELP.format(role="worker"))] = None,
    limit: Annotated[int | None, typer.Option(help=LIMIT_HELP)] = None,
) -> None:
    """Join as a worker if needed, then run a Prefect worker taking this worker's runs from the gpu pool."""
    _start("worker", name, limit)


@validator_app.command("join")
def validator_join(name: Annotated[str | None, typer.Option(help=NAME_HELP.format(role="validator"))] = None) -> None:
    """Register and stake this host's validator on the configured chain, unless it is already."""
    _join("validator", name)


@validator_app.command("start")
def validator_start(
    name: Annotated[str | None, typer.Option(help=NAME_HELP.format(role="validator"))] = None,
    limit: Annotated[int | None, typer.Option(help="Most runs at once (verifying, scoring, delivering)")] = None,
) -> None:
    """Join as a validator if needed, then run a Prefect worker taking this validator's runs from the validators pool.

    Also schedules, on this validator's own queue, a `resolve-pending` run every resolve_every_minutes (10 by
    default): the worker then votes on every dispute the chain drew this validator to resolve, whether or not
    its disputer sends it a run.
    """
    _start("validator", name, limit)


@wasp_app.command("start")
def wasp_start(name: Annotated[str | None, typer.Option(help="Identity holding the market's Wasp role; default: this home's only one")] = None) -> None:
    """Run a Prefect worker taking Wasp's audits from the wasp pool (this home must hold the Wasp-role key)."""
    _start("wasp", name, None)


@client_app.command("start")
def client_start(limit: Annotated[int | None, typer.Option(help="Most orders at once")] = None) -> None:
    """Run a Prefect worker taking this client's orders from its own work queue of the control pool.

    The queue is the address of the home's `client` identity (created if missing): `bahen order submit`
    and the SDK send orders there, signed with its key; from the UI, pick that work queue in the order's
    custom run (taken only with `accept_unsigned_orders: true` in config.yaml, on sample datasets).
    Like every party's, the worker runs only its pool's flows from the installed bahen, never a command
    or setting written to the Prefect server.
    """
    from bahen.parties import CLIENT

    _start("client", CLIENT, limit)


def register(app: typer.Typer) -> None:
    """Add the devnet commands to the ``bahen`` app."""
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
    app.add_typer(worker_app, name="worker")
    app.add_typer(validator_app, name="validator")
    app.add_typer(wasp_app, name="wasp")
    app.add_typer(client_app, name="client")
