"""``bahen keys``, ``bahen chain``, ``bahen audit``, ``bahen store`` and ``bahen bench``: identities,
contracts, auditor workspaces, the artifact store and benchmarks."""

import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from bahen.cli_groups import command_group

console = Console(markup=False)
T = TypeVar("T")

keys_app = command_group("Identities: an Ethereum account and an X25519 key per party.")
chain_app = command_group("Contracts on the configured EVM chain.")
audit_app = command_group("Re-check orders from their pinned artifacts; re-execute them as an auditor the order names.")
store_app = command_group("The configured artifact store.")

BENCHMARKS = {
    "crypto": "bench.crypto",
    "storage": "bench.storage",
    "pot-overhead": "bench.pot_overhead",
    "pot": "bench.pot",
    "pot-hiding": "bench.pot_hiding",
    "pot-noise": "bench.pot_noise",
    "gas": "bench.gas",
    "fuzz": "bench.fuzz",
    "reliability": "bench.reliability",
    "load": "bench.load",
    "diloco": "bench.diloco",
    "wasp": "bench.wasp",
}
# Reduced sizes for `bahen bench all`, so the whole set runs in minutes on two cores.
QUICK = {
    "crypto": ["--size", str(256 << 20)],
    "storage": ["--size-mib", "256"],
    "pot-overhead": [],
    "pot": ["--job", "digits", "--honest-runs", "1", "--attack-runs", "1", "--challenges", "3"],
    "pot-hiding": ["--job", "digits", "--challenges", "5"],
    "pot-noise": ["--job", "digits", "--spots", "4", "--segments", "1"],
    "gas": ["--abandoned", "64"],
    "fuzz": ["--inputs", "2000"],
    "reliability": ["--flips", "3"],
    "load": ["--orders", "4", "--workers", "2", "--validators", "2"],
    "diloco": ["--workers", "1", "2", "--rounds", "2", "--inner-steps", "20", "--attacks", "copied", "label-flipped"],
    "wasp": ["all", "--jobs", "digits-mlp", "--honest-seeds", "2", "--attack-seeds", "1", "--intensities", "0.1",
             "--out-dir", str(Path(tempfile.gettempdir()) / "bahen-wasp-quick")],
}


@keys_app.command("new")
def keys_new(name: Annotated[str, typer.Argument(help="Party name, e.g. worker-3")]) -> None:
    """Create an identity in this host's keystore (encrypted under BAHEN_PASSPHRASE)."""
    from bahen.network import keystore_of
    from bahen.settings import load_settings

    identity = keystore_of(load_settings()).create(name)
    console.print(f"{name}: address {identity.address}, x25519 {identity.x25519_public.hex()}")
    console.print(f"a client names it as an auditor with: auditors: ['{identity.address}:{identity.x25519_public.hex()}']",
                  soft_wrap=True, markup=False)


@keys_app.command("list")
def keys_list() -> None:
    """List the identities of this host, one per line: name, address, X25519 public key (no secrets)."""
    from bahen.network import keystore_of
    from bahen.settings import load_settings

    keystore = keystore_of(load_settings())
    for name in keystore.names():
        public = keystore.public(name)
        print(name, public.address, public.x25519_public)


@chain_app.command("deploy")
def chain_deploy() -> None:
    """Deploy the contracts to BAHEN_CHAIN_RPC_URL, fund and stake the local parties, save the addresses."""
    from contracts.chain import Chain

    from bahen import devnet
    from bahen.network import keystore_of, save_addresses
    from bahen.settings import load_settings

    settings = load_settings()
    if settings.chain_rpc_url is None:
        raise typer.BadParameter("set BAHEN_CHAIN_RPC_URL (or chain_rpc_url in config.yaml) to the node to deploy on")
    market = devnet.bootstrap(Chain.connect(settings.chain_rpc_url), keystore_of(settings))
    save_addresses(settings, market.addresses)
    console.print(f"deployed on {settings.chain_rpc_url}: {market.addresses.model_dump()}; saved to {settings.chain_file}")


@chain_app.command("status")
def chain_status(order_id: Annotated[str, typer.Argument(help="Order id (0x…)")]) -> None:
    """Show an order as the contracts record it."""
    from bahen.network import connect
    from bahen.orders import OrderBook
    from bahen.settings import load_settings

    oid = bytes.fromhex(OrderBook.check_id(order_id)[2:])
    view = connect(load_settings()).market.order(oid)
    console.print_json(view.model_dump_json())


@audit_app.command("export")
def audit_export(
    order_id: Annotated[str, typer.Argument(help="Order id (0x…)")],
    directory: Annotated[Path, typer.Argument(help="New or empty directory for the DVC workspace")],
) -> None:
    """Write a DVC workspace pinning every artifact of the order; `dvc pull` there fetches them, verified.

    Once the order has a verdict, the workspace's dvc.yaml is the order's pipeline (`dvc dag`): validate,
    encrypt, train, verify and score each re-check what that stage pinned and committed, then audit
    re-runs Wasp's rules; `dvc repro` stops at the first stage that does not hold. On a host without the
    order's record, the artifacts come from the case Wasp signed with its verdict."""
    from bahen.audit import export_order

    path, count = export_order(order_id, directory)
    console.print(f"pinned {count} artifacts of order {order_id} in {path}; run `dvc pull` there")


@audit_app.command("check")
def audit_check(
    order_id: Annotated[str, typer.Argument(help="Order id (0x…) of an order with a verdict")],
    workspace: Annotated[Path | None, typer.Option(
        help="An exported workspace (`bahen audit export`, then `dvc pull`): re-audit its pulled artifacts, "
        "read from its DVC cache, and write its audit.json (checks/STAGE.json with --stage)")] = None,
    stage: Annotated[str | None, typer.Option(
        help="Re-check one stage only, the artifacts it pinned and the commitments it made: validate, encrypt, "
        "train, verify, score (the record's figures made again from the signed reports) or audit (Wasp's signed "
        "decision reached again by its rules); a workspace's `dvc repro` runs each in turn")] = None,
) -> None:
    """Re-hash every artifact the order pins, recompute every commitment against the chain, re-run Wasp's rules.

    On the client's host from its record; on any other host (no key needed) from the chain and the
    store: the case Wasp signed with each verdict. Exits non-zero, naming each artifact or
    commitment that did not hold, when the re-audit disagrees with the recorded verdict.
    """
    if stage is not None:
        from tasks.reaudit import check_stage

        for checked in _audited(partial(check_stage, stage=stage), order_id, workspace, f"checks/{stage}.json"):
            console.print(f"task {checked.task}: the {stage} stage re-checks: {checked.artifacts} artifacts re-hashed, "
                          "its commitments recomputed against the chain")
        return
    from flows.audit import audit

    for check in _audited(audit, order_id, workspace, "audit.json"):
        console.print(f"task {check.task}: agrees with the recorded verdict "
                      f"({'accepted' if check.accepted else 'rejected'}); every pinned artifact and commitment re-checked")
        for reason in check.reasons:
            console.print(f"  {reason}")


@audit_app.command("verify")
def audit_verify(
    order_id: Annotated[str, typer.Argument(help="Order id (0x…) of a settled order that names you as an auditor")],
    workspace: Annotated[Path | None, typer.Option(
        help="An exported workspace (`bahen audit export`, then `dvc pull`): re-execute on its pulled artifacts, "
        "read from its DVC cache, and write its verify.json")] = None,
) -> None:
    """Re-execute the order's verification as its auditor and compare every check with the validator's report.

    Run on the host of an auditor the order names (its spec's `auditors`), which holds the train
    split's key from the client and, once an accepted task is settled, its model key. Wasp's rules
    then decide on this report in place of the validator's. Exits non-zero, naming each check that
    differs, when the re-execution disagrees with the validator's report or with the verdict.
    """
    from flows.audit import reverify

    for check in _audited(reverify, order_id, workspace, "verify.json"):
        console.print(f"task {check.task}: re-executed by auditor {check.auditor}; "
                      f"{sum(c.passed for c in check.checks)}/{len(check.checks)} checks pass as in the validator's "
                      f"report; Wasp's rules decide {'accepted' if check.accepted else 'rejected'}, as recorded")
        for c in check.checks:
            console.print(f"  {'✓' if c.passed else '✗'} {c.name}: {c.observed:.4g} (validator: {c.recorded_observed:.4g})")


def _audited(check: Callable[..., list[T]], order_id: str, workspace: Path | None, metrics: str) -> list[T]:
    """Run an audit ``check`` (a flow, or one stage's check) on ``order_id`` as this host sees it, or on an
    exported workspace's pulled artifacts, writing its ``metrics`` file (one entry per task) there."""
    import json

    from bahen.audit import workspace_store
    from bahen.runner import quiet_user_error_tracebacks

    quiet_user_error_tracebacks()
    if workspace is None:
        return check(order_id)
    workspace = workspace.resolve()
    workspace_store(workspace)  # no DVC cache: say so before a check runs
    checks = check(order_id, workspace=str(workspace))
    (workspace / metrics).parent.mkdir(exist_ok=True)
    (workspace / metrics).write_text(json.dumps(
        {"order_id": order_id, "tasks": [c.model_dump(mode="json") for c in checks]}, indent=2) + "\n")
    return checks


@store_app.command("share-results")
def store_share_results() -> None:
    """Make the store's `prefect-results/` the Prefect server's default result storage (block bahen-results),
    so a party's run on any host hands its result to the order through the store. Once per network."""
    from bahen.devnet_up import result_storage, share_results
    from bahen.settings import load_settings

    settings = load_settings()
    if not settings.prefect_api_url:
        raise typer.BadParameter("set prefect_api_url in config.yaml (or BAHEN_PREFECT_API_URL) to the network's Prefect server")
    storage = result_storage(settings)
    share_results(settings.prefect_api_url, storage)
    console.print(f"results of every run on {settings.prefect_api_url} now go to {storage.basepath}")


@store_app.command("cleanup-rules")
def store_cleanup_rules(
    days: Annotated[int, typer.Option(min=1, help="Days after which leftovers are reclaimed")] = 1,
) -> None:
    """Add the S3 lifecycle rules that reclaim what interrupted puts leave.

    Staging objects and incomplete multipart uploads under the store's prefix expire after
    --days; the bucket's other rules are kept, and running it again replaces only these.
    """
    from bahen.errors import BahenError
    from bahen.network import store_of
    from bahen.settings import load_settings
    from storage.s3 import S3Store

    store = store_of(load_settings())
    if not isinstance(store, S3Store):
        raise BahenError(f"the store {store.url} is a local directory, which interrupted puts leave clean; "
                         "lifecycle rules are for an s3:// store (set BAHEN_STORE_URL)")
    for rule in store.ensure_cleanup_rules(days):
        console.print(f"{rule['ID']}: objects under {store.bucket}/{rule['Filter']['Prefix']}, after {days} day(s)")


@store_app.command("policy")
def store_policy(
    party: Annotated[str | None, typer.Argument(
        help="Account address of the party whose credentials get the policy")] = None,
    bucket: Annotated[bool, typer.Option(
        "--bucket", help="Print AWS's bucket policy that makes addresses and pointers write-once instead")] = False,
) -> None:
    """Print the S3 policy (JSON) that lets one party write only its own objects in the store.

    For PARTY: an identity policy for its credentials (an IAM user's policy on AWS; `mc admin policy
    create` and `mc admin policy attach` on MinIO). It reads everything, creates objects at their
    content addresses, pointers under pointers/PARTY/ and staging objects under staging/PARTY/
    (set store_party to PARTY on its host), and deletes only those staging objects. With --bucket:
    the bucket policy by which no principal replaces or deletes an address or a pointer.
    """
    import json

    from bahen.errors import BahenError
    from bahen.network import store_of
    from bahen.settings import load_settings
    from storage.policy import bucket_policy, party_policy
    from storage.s3 import S3Store

    store = store_of(load_settings())
    if not isinstance(store, S3Store):
        raise BahenError(f"the store {store.url} is a local directory, whose writers are this host's users; "
                         "policies are for an s3:// store (set BAHEN_STORE_URL)")
    if bucket == (party is not None):
        raise typer.BadParameter("give either a PARTY address or --bucket")
    if party is not None and not re.fullmatch(r"0x[0-9a-fA-F]{40}", party):
        raise typer.BadParameter(f"{party!r} is no account address (0x and 40 hex digits)")
    policy = bucket_policy(store.url) if bucket else party_policy(store.url, party)
    typer.echo(json.dumps(policy, indent=2))


def bench(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help=f"One of {', '.join(BENCHMARKS)}, or all (reduced sizes)")],
) -> None:
    """Run a benchmark; extra arguments go to it (e.g. `bahen bench crypto --size 1073741824`).

    Every figure is a ratio against a baseline measured in the same run; results land as JSON
    (and Markdown where useful) under bench/results/.
    """
    if name == "all":
        runs = [(module, QUICK[key]) for key, module in BENCHMARKS.items()]
    elif name in BENCHMARKS:
        runs = [(BENCHMARKS[name], list(ctx.args))]
    else:
        raise typer.BadParameter(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)} or all")
    for module, args in runs:
        console.rule(module)
        code = subprocess.call([sys.executable, "-m", module, *args])
        if code:
            raise typer.Exit(code)
