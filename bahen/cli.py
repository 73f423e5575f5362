"""The ``bahen`` command: run orders, inspect them, fetch the trained model.

Expected failures (a bad order, a tampered artifact, an unreachable server…) print one message that
says what to do and exit with status 1; nothing is left half-written.
"""

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from bahen.cli_accounts import register as register_accounts
from bahen.cli_admin import audit_app, bench, chain_app, keys_app, store_app
from bahen.cli_devnet import register as register_devnet
from bahen.cli_dispute import register as register_dispute
from bahen.cli_groups import command_group
from bahen.errors import user_errors

# Prefect's ephemeral API: quiet analytics, patience on slow machines. Set before prefect imports.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

console = Console(markup=False)  # what the CLI prints holds other parties' words: never read as markup
err = Console(stderr=True, markup=False)

app = command_group(
    help="bahen: verifiable outsourced training. Clients pay only for training that was provably done, "
    "on data only the parties they chose can read.",
    pretty_exceptions_enable=False,
    add_completion=False,
)
order_app = command_group("Submit and inspect training orders.")
model_app = command_group("Fetch trained models.")
app.add_typer(order_app, name="order")
app.add_typer(model_app, name="model")
app.add_typer(keys_app, name="keys")
app.add_typer(chain_app, name="chain")
app.add_typer(audit_app, name="audit")
app.add_typer(store_app, name="store")
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(bench)
register_devnet(app)
register_accounts(app, order_app)
register_dispute(app)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"bahen {version('bahen')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print bahen's version and exit")] = False,
) -> None:
    """bahen: verifiable outsourced training."""


def _print_warnings(caught: list) -> None:
    for warning in caught:
        err.print(Text.assemble(("warning:", "yellow"), f" {warning.message}"), highlight=False)


def run() -> None:
    """Entry point: turn expected failures into one readable message."""
    try:
        app()
    except user_errors() as exc:
        err.print(Text.assemble(("error:", "bold red"), f" {exc}"), highlight=False)
        sys.exit(1)


DEMO_WORKLOADS = {
    "classification": None,
    "gpt": {"dataset": "shakespeare", "model": "gpt", "optimizer": "adamw", "lr": 3e-3, "epochs": 1, "context": 64},
}


@app.command()
def demo(
    workload: Annotated[str, typer.Option(
        help="classification: --model on the --dataset images; gpt: a byte-level transformer learning the next "
        "byte of Shakespeare's plays (AdamW, 64-byte context, one epoch unless --epochs)")] = "classification",
    dataset: Annotated[str, typer.Option(help="Sample dataset: digits or mnist")] = "digits",
    model: Annotated[str, typer.Option(help="Registry model: mlp, cnn or resnet20")] = "mlp",
    epochs: Annotated[int | None, typer.Option(min=1, help="Training epochs (2 by default, 1 for gpt)")] = None,
    attack: Annotated[str | None, typer.Option(help="Make the worker cheat with this attack (see `bahen attacks`)")] = None,
    intensity: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of the work the attack fakes")] = 1.0,
    verbose: Annotated[bool, typer.Option(help="Show Prefect's logs")] = False,
) -> None:
    """Run one order end to end on the embedded defaults (no services needed) and show its summary."""
    from bahen.client import Client
    from bahen.settings import host_settings
    from bahen.summary import print_summary

    if workload not in DEMO_WORKLOADS:
        raise typer.BadParameter(f"{workload!r} is not one of {', '.join(DEMO_WORKLOADS)}", param_hint="--workload")
    spec = DEMO_WORKLOADS[workload] or {"dataset": dataset, "model": model, "epochs": 2}
    spec = {**spec, "epochs": epochs or spec["epochs"]}
    worker = {"worker_attack": attack, "worker_attack_intensity": intensity} if attack else {}
    with host_settings(**worker):  # the worker's stages run in this process
        order = Client(verbose=verbose).submit(spec).wait(progress=True, console=console)
    print_summary(order.record, console)


@order_app.command("submit")
def order_submit(
    spec_file: Annotated[Path, typer.Argument(help="Order spec (YAML); fields as in `bahen order schema`")],
    verbose: Annotated[bool, typer.Option(help="Show Prefect's logs")] = False,
) -> None:
    """Run the order described by SPEC_FILE through every stage, from encrypt_upload to deliver.

    With a Prefect server configured (prefect_api_url, as in a `bahen up` party home), the order runs
    through its `order` deployment and each stage on its party's host; otherwise all in this process.
    Waits for the end and prints the final status.
    """
    from bahen.client import Client
    from bahen.summary import print_summary

    order = Client(verbose=verbose).submit(spec_file).wait(progress=True, console=console)
    print_summary(order.record, console)


@order_app.command("schema")
def order_schema() -> None:
    """Print the order spec's fields, bounds and descriptions as JSON Schema."""
    import json

    from bahen.spec import OrderSpec

    console.print_json(json.dumps(OrderSpec.model_json_schema()))


@order_app.command("show")
def order_show(order_id: Annotated[str, typer.Argument(help="Order id (0x…)")]) -> None:
    """Show an order's stages, verdict, payments and artifact hashes, reconciled with the chain.

    On a host that holds no record of the order (a worker's, a validator's, an auditor's: only the
    client keeps one), shows what the chain holds: client, escrow, drawn members, commitments,
    verdicts, credits and slashes.
    """
    import warnings

    from bahen.client import Client, StaleRecordWarning
    from bahen.orders import OrderBook, UnknownOrderError
    from bahen.summary import print_chain_order, print_summary

    client = Client()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StaleRecordWarning)
            order = client.order(order_id)
    except UnknownOrderError:
        settings = client.settings()
        if settings.chain_rpc_url is None:
            raise  # the in-process chain lives as long as its process: no other host can know the order
        from bahen.network import connect

        market = connect(settings).market
        oid = bytes.fromhex(OrderBook.check_id(order_id)[2:])
        view = market.order(oid)
        err.print(f"{settings.home} holds no record of this order (only its client's home does): what the chain holds")
        print_chain_order(view, market.ledger(oid), console)
        return
    _print_warnings(caught)
    print_summary(order.record, console)


@order_app.command("list")
def order_list() -> None:
    """List known orders, newest first, reconciled with the chain."""
    import warnings

    from rich.table import Table

    from bahen.client import Client, StaleRecordWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StaleRecordWarning)
        orders = Client().orders()
    _print_warnings(caught)
    table = Table("status", "dataset", "model", "order")
    table.columns[-1].overflow = "fold"
    for order in orders:
        table.add_row(order.status, order.record.spec.data_name, order.record.spec.model, order.order_id)
    console.print(table)


@model_app.command("get")
def model_get(
    order_id: Annotated[str, typer.Argument(help="Order id (0x…)")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the model's state_dict: safetensors for a .safetensors name (what a fine-tuning order starts from), torch.save otherwise")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists")] = False,
) -> None:
    """Decrypt an order's final model with the key a validator delivered to the client, and write its weights to OUT.

    The key is delivered only once the order is settled and its work verdict accepted.
    """
    from bahen.client import Client

    path = Client().order(order_id).model(out, overwrite=force)
    console.print(f"wrote the final model of order {order_id} to {path}")


if __name__ == "__main__":  # pragma: no cover
    run()
