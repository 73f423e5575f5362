"""``bahen dispute``: contest a verdict inside its window, resolve a dispute one was drawn for, follow one.

Each command acts as one identity of this host with its own key (``--as`` where the keystore holds
several) and reads everything else from the chain and the store, so it runs on any party's host: a
validator of the order or the task's worker opens, a validator the chain drew resolves.
"""

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bahen.cli_accounts import AS_OPTION, chain_time, eth, network
from bahen.cli_groups import command_group

console = Console(markup=False)

dispute_app = command_group("Contest a task's verdict, vote on a dispute you were drawn to resolve, or follow one.")
ORDER_ARG = typer.Argument(help="Order id (0x…)")
TASK_OPTION = typer.Option("--task", min=0, help="The order's task, numbered from 0")


@dispute_app.command("open")
def dispute_open(
    order_id: Annotated[str, ORDER_ARG],
    task: Annotated[int, TASK_OPTION] = 0,
    name: Annotated[str | None, AS_OPTION] = None,
    send: Annotated[bool | None, typer.Option(
        "--send/--no-send", help="Start a `resolve` run in each resolver's work queue of the validators pool, which its "
        "host's worker (`bahen validator start`) runs; by default when this home names a Prefect server "
        "(prefect_api_url in config.yaml). Otherwise each resolver runs `bahen dispute resolve`")] = None,
) -> None:
    """Dispute a task's verdict, as a validator of the order or the task's worker, if your re-verification contradicts it.

    Re-runs the verification on the chain's challenge; where it contradicts the verdict, signs the
    counter-report, opens the dispute with the bond and hands the resolvers the chain draws the case
    (the task's keys wrapped to each). Nothing is disputed when it agrees. Run it again after an
    interruption: a dispute you opened is handed over, not opened twice.
    """
    from bahen.accounts import acting_party
    from bahen.errors import BahenError
    from bahen.settings import load_settings
    from tasks.dispute import dispute

    net = network()
    disputer = net.party(acting_party(net.keystore, name))
    console.print(f"{disputer.name} re-verifies task {task} of order {order_id}…")
    case, _ = dispute(order_id, task, disputer, net)
    opened = net.market.dispute(bytes.fromhex(case.upload.order_id[2:]), task)
    claim = "accepted" if opened.claim_accepted else "rejected"
    console.print(f"disputed: the task should be {claim}; bond {eth(opened.bond)} ETH; the case is handed to "
                  f"{len(opened.resolvers)} resolvers ({', '.join(opened.resolvers)}), who vote by "
                  f"{chain_time(opened.resolve_by)} (chain time). Follow it with "
                  f"`bahen dispute show {case.upload.order_id}`")
    settings = load_settings()
    if send is None:
        send = settings.prefect_api_url is not None
    if send:
        if settings.prefect_api_url is None:
            raise BahenError(f"the dispute is open and its case handed over, but {settings.home} names no Prefect server "
                             "to send the resolvers' runs to: set prefect_api_url in config.yaml and run the command "
                             "again, or have each resolver run `bahen dispute resolve`")
        from bahen.runner import prefect_api
        from tasks.dispatch import send_resolvers

        with prefect_api(settings):
            runs = send_resolvers(case.upload.order_id, task, case.counter_digest, opened.resolvers)
        console.print(f"sent a resolve run to each resolver's worker: {', '.join(run.name for run in runs)}")


@dispute_app.command("resolve")
def dispute_resolve(
    order_id: Annotated[str, ORDER_ARG],
    task: Annotated[int, TASK_OPTION] = 0,
    name: Annotated[str | None, AS_OPTION] = None,
) -> None:
    """Re-verify a disputed task as a resolver the chain drew, from the case its disputer handed over, and vote.

    Only the case whose digest the disputer recorded on chain counts. A dispute with none recorded once half
    the resolution period since the draw has passed is voted down (before that, the command says when to try
    again), and so is a recorded case the store does not hold or that does not hold the task's evidence.
    """
    from bahen.accounts import acting_party
    from tasks.dispute import cast_vote

    net = network()
    resolver = net.party(acting_party(net.keystore, name))
    console.print(f"{resolver.name} re-verifies task {task} of order {order_id} from its disputer's case…")
    vote = cast_vote(order_id, task, resolver, net)
    after = net.market.dispute(bytes.fromhex(order_id.removeprefix("0x")), task)
    console.print(f"voted to {'uphold' if vote.uphold else 'dismiss'} ({vote.reason}); the dispute is {after.status}")


@dispute_app.command("pending")
def dispute_pending(name: Annotated[str | None, AS_OPTION] = None) -> None:
    """List the disputes the chain drew you to resolve that still wait for your vote."""
    from bahen.accounts import acting_party

    net = network()
    resolver = net.party(acting_party(net.keystore, name))
    waiting = net.market.disputes_to_resolve(resolver.address)
    if not waiting:
        console.print(f"no dispute waits for a vote of {resolver.name}")
    for order_id, task in waiting:
        console.print(f"order {order_id} task {task}: `bahen dispute resolve {order_id} --task {task}"
                      f"{f' --as {resolver.name}' if name else ''}`")


@dispute_app.command("show")
def dispute_show(order_id: Annotated[str, ORDER_ARG]) -> None:
    """Show each task's verdict and its latest dispute: who disputed, the claim, the case it recorded, the resolvers
    and their votes."""
    from bahen.orders import OrderBook

    net = network()
    oid = bytes.fromhex(OrderBook.check_id(order_id)[2:])
    table = Table("task", "verdict", "dispute", "disputer", "claims", "bond (ETH)", "case", "resolver", "vote", "vote by")
    for task, view in enumerate(net.market.order(oid).tasks):
        latest = net.market.dispute(oid, task)
        if latest.status == "none":
            table.add_row(str(task), view.verdict, "none", *[""] * 7)
            continue
        votes = net.market.dispute_votes(oid, task)
        claim = "accepted" if latest.claim_accepted else "rejected"
        case = "none" if not latest.case_recorded else f"{latest.case_digest[:10]}…"
        first = [str(task), view.verdict, latest.status, latest.disputer, claim, eth(latest.bond), case]
        resolvers = latest.resolvers or [""]
        for i, resolver in enumerate(resolvers):
            vote = {True: "uphold", False: "dismiss", None: ""}[votes.get(resolver)]
            table.add_row(*(first if i == 0 else [""] * len(first)), resolver, vote,
                          chain_time(latest.resolve_by) if i == 0 else "")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``bahen dispute`` to the ``bahen`` app."""
    app.add_typer(dispute_app, name="dispute")
