"""``bahen balance``, ``bahen withdraw``, ``bahen unbond`` and ``bahen order cancel``: a party's money on
chain, moved with its own key."""

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text
from rich.table import Table

console = Console(markup=False)
err = Console(stderr=True, markup=False)

AS_OPTION = typer.Option("--as", help="Identity in this host's keystore to act as (needed when it holds several)")
EPHEMERAL = ("the in-process chain lives only as long as this command: balances start afresh every time. "
             "Point BAHEN_CHAIN_RPC_URL at a running chain (`bahen up`) to see lasting ones")


def eth(wei: int) -> str:
    """``wei`` in ETH, to six places."""
    return f"{Decimal(wei) / 10**18:.6f}"


def _wei(amount: str) -> int:
    try:
        wei = Decimal(amount) * 10**18
    except InvalidOperation:
        raise typer.BadParameter(f"{amount!r} is not an amount of ETH, e.g. 0.5") from None
    if wei != wei.to_integral_value() or wei <= 0:
        raise typer.BadParameter(f"{amount} ETH is not a positive whole number of wei")
    return int(wei)


def chain_time(seconds: int) -> str:
    """A chain timestamp (unix seconds) as ISO 8601 UTC; empty for 0 (never)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds") if seconds else ""


def network():
    """The network this host's settings name, with a note when it is an in-process chain that ends with the command."""
    from bahen.network import connect
    from bahen.settings import load_settings

    settings = load_settings()
    if settings.chain_rpc_url is None:
        err.print(Text.assemble(("note:", "yellow"), f" {EPHEMERAL}"), highlight=False)
    return connect(settings)


def balance(name: Annotated[str | None, AS_OPTION] = None) -> None:
    """Show what each identity of this host holds on chain (ETH): wallet, credit to withdraw, stake, unbonding."""
    from bahen.accounts import acting_party, balance_of

    net = network()
    names = [acting_party(net.keystore, name)] if name else net.keystore.names()
    table = Table("name", "role", "wallet", "to withdraw", "stake", "unbonding", "unbonds at", "locks", "address")
    table.columns[-1].overflow = "fold"
    for party in names:
        b = balance_of(net, party)
        table.add_row(b.name, b.role, eth(b.wallet_wei), eth(b.credited_wei), eth(b.stake_wei),
                      eth(b.unbonding_wei), chain_time(b.unbond_at), str(b.locks), b.address)
    console.print(table)


def withdraw(name: Annotated[str | None, AS_OPTION] = None) -> None:
    """Pay out this party's credit from the market (payments, fees, refunds) and its unbonded stake once due."""
    from bahen.accounts import acting_party, collect

    net = network()
    party = net.party(acting_party(net.keystore, name))
    paid = collect(net, party)
    console.print(f"{party.name} ({party.address}) withdrew {eth(paid.credited_wei)} ETH of credit and "
                  f"{eth(paid.unbonded_wei)} ETH of unbonded stake")


def unbond(
    amount: Annotated[str, typer.Argument(help="ETH of stake to unbond, e.g. 0.5")],
    name: Annotated[str | None, AS_OPTION] = None,
) -> None:
    """Start unbonding AMOUNT of this party's stake; `bahen withdraw` pays it out once the registry's delay is over."""
    from bahen.accounts import acting_party, unbond as start_unbonding

    wei = _wei(amount)
    net = network()
    party = net.party(acting_party(net.keystore, name))
    due = start_unbonding(net, party, wei)
    console.print(f"{party.name} is unbonding {amount} ETH; `bahen withdraw --as {party.name}` pays it out from "
                  f"{chain_time(due)} (chain time)")


def order_cancel(
    order_id: Annotated[str, typer.Argument(help="Order id (0x…)")],
    reason: Annotated[str, typer.Option(help="Why, kept in the order's record")] = "cancelled by its client",
) -> None:
    """Cancel an order as its client (this host must hold the client's key) and credit the escrow back.

    Allowed before any proof is committed, or after the deadline while no verdict is recorded.
    `bahen withdraw` then pays the refund out.
    """
    from bahen.orders import OrderBook, cancel_order

    net = network()
    status = cancel_order(order_id, net, OrderBook(net.settings.orders_dir), reason=reason)
    console.print(f"order {order_id}: {status}")


def register(app: typer.Typer, order_app: typer.Typer) -> None:
    """Add the money commands to the ``bahen`` app and ``cancel`` to ``bahen order``."""
    app.command("balance")(balance)
    app.command("withdraw")(withdraw)
    app.command("unbond")(unbond)
    order_app.command("cancel")(order_cancel)
