"""``bahen up``, ``bahen down``, ``bahen status`` and ``bahen worker|validator start``: a local devnet of
real services, and hosts joining it."""

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()

worker_app = typer.Typer(help="Run a GPU worker host on the devnet's gpu pool.", no_args_is_help=True)
validator_app = typer.Typer(help="Run a validator host on the devnet's validators pool.", no_args_is_help=True)


def up(
    prefect_port: Annotated[int, typer.Option(help="Port of the Prefect server (UI and API)")] = 4200,
    anvil_port: Annotated[int, typer.Option(help="Port of the anvil chain")] = 8545,
    project_dir: Annotated[Path | None, typer.Option(help="The bahen checkout holding prefect.yaml")] = None,
    workers: Annotated[bool, typer.Option(help="Also start one process worker per pool (control, gpu, validators)")] = True,
) -> None:
    """Start anvil and a Prefect server, deploy the contracts, create the pools, apply the deployments."""
    from bahen.devnet_services import PROJECT_DIR
    from bahen.devnet_up import up as start
    from bahen.settings import load_settings

    with console.status("starting the devnet (chain, Prefect server, contracts, deployments)…"):
        state = start(load_settings(), prefect_port=prefect_port, anvil_port=anvil_port,
                      project_dir=project_dir or PROJECT_DIR, workers=workers)
    console.print(f"[bold green]devnet up[/] from {state.home}")
    console.print(f"  Prefect UI   {state.ui_url}  (submit an order: Deployments → order → Run → Custom run)")
    console.print(f"  chain        {state.chain_rpc_url}")
    console.print(f"  store        {state.store_url}")
    console.print(f"  in a shell:  export PREFECT_API_URL={state.prefect_api_url} BAHEN_CHAIN_RPC_URL={state.chain_rpc_url}")


def down() -> None:
    """Stop every service `bahen up` started: workers, then the Prefect server, then the chain."""
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
        table.add_row(health.name, "yes" if health.healthy else "[red]no[/]", health.detail)
    console.print(table)
    if not all(h.healthy for h in report):
        raise typer.Exit(1)


def _run_worker(pool: str, name: str | None, limit: int | None) -> None:
    from bahen.devnet_up import join
    from bahen.settings import load_settings

    argv, env, address = join(load_settings(), pool, name=name, limit=limit)
    console.print(f"{name or 'default party'} ({address}) is staked; polling pool {pool!r}")
    os.execve(argv[0], argv, env)


@worker_app.command("start")
def worker_start(
    pool: Annotated[str, typer.Option(help="Work pool to poll")] = "gpu",
    name: Annotated[str | None, typer.Option(help="Worker identity in this host's keystore, e.g. worker-2")] = None,
    limit: Annotated[int | None, typer.Option(help="Most flow runs at once: the number of GPUs of this host")] = None,
) -> None:
    """Register and stake this worker on chain (if it is not yet), then run a Prefect worker on the pool."""
    _run_worker(pool, name, limit)


@validator_app.command("start")
def validator_start(
    name: Annotated[str | None, typer.Option(help="Validator identity in this host's keystore, e.g. validator-3")] = None,
    limit: Annotated[int | None, typer.Option(help="Most scoring runs at once")] = None,
) -> None:
    """Register and stake this validator on chain (if it is not yet), then run a Prefect worker on `validators`."""
    _run_worker("validators", name, limit)


def register(app: typer.Typer) -> None:
    """Add the devnet commands to the ``bahen`` app."""
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
    app.add_typer(worker_app, name="worker")
    app.add_typer(validator_app, name="validator")
