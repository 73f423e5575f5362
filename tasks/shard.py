"""shard — price the order, open it on chain with its escrow, assign workers and validators, grant keys.

The fee follows the work: forward FLOPs per sample from the model registry, times three for the
backward pass, times samples and epochs. Workers and validators are matched among the parties
staked on chain (read from the registry, never from the client's keystore), and each gets the keys it needs wrapped to the X25519 key it published there:
workers the train key, validators the train and holdout keys. The model key is the worker's own
(``tasks.train``): the client holds no key to the model before the work verdict is final.
"""

from prefect import task
from prefect.cache_policies import NO_CACHE
from privacy.identity import PublicIdentity
from pydantic import BaseModel
from training.models import flops_per_sample

from bahen.artifacts import open_stored_grant, put_grant
from bahen.errors import BahenError
from bahen.network import Network
from bahen.parties import CLIENT
from bahen.records import Assignment, Shard, Upload, ValidatorSlot
from bahen.spec import OrderSpec
from tasks.runtime import network, order_book, recorded, timed

WORKER_KEYS = ("train",)
VALIDATOR_KEYS = ("train", "holdout")


class Pricing(BaseModel):
    """The devnet's price list (wei)."""

    wei_per_gflop: int = 10**14
    min_fee_wei: int = 10**16
    validator_fee_bps: int = 1_000  # each validator earns 10% of the training fee
    min_validator_fee_wei: int = 10**15


class BudgetError(BahenError):
    pass


class NoCapacityError(BahenError):
    pass


def estimate(spec: OrderSpec, upload: Upload, pricing: Pricing) -> tuple[float, int, int]:
    """Training GFLOPs, the training fee and each validator's fee, all in wei."""
    per_sample = flops_per_sample(spec.model, input_shape=tuple(upload.input_shape), num_classes=upload.num_classes)
    gflops = 3 * per_sample * upload.train_rows * spec.epochs / 1e9
    fee = max(pricing.min_fee_wei, int(gflops * pricing.wei_per_gflop))
    return gflops, fee, max(pricing.min_validator_fee_wei, fee * pricing.validator_fee_bps // 10_000)


def matched(net: Network, wanted: int, role: str, *, excluded: set[str]) -> list[tuple[str, PublicIdentity]]:
    """The first ``wanted`` members the chain would accept as ``role`` now, in registration order.

    Read from the registry, never from this host's keystore: a member slashed below its required
    stake is skipped until it stakes again, and no address in ``excluded`` (the client, the order's
    other parties) is taken. Each is labelled ``<role>-<registration index>``.
    """
    chosen = []
    for index, member in enumerate(net.market.members(role)):
        if member.eligible and member.address.lower() not in excluded:
            label = f"{role}-{index}"
            chosen.append((label, PublicIdentity(name=label, address=member.address, x25519_public=member.x25519_public)))
        if len(chosen) == wanted:
            return chosen
    raise NoCapacityError(
        f"the order needs {wanted} staked {role}(s), the network has {len(chosen)} it may take: "
        f"ask fewer in the order or stake more (`bahen {role} start` on a {role} host)"
    )


def shard(spec: OrderSpec, upload: Upload, net: Network, *, pricing: Pricing = Pricing()) -> Shard:
    """Open the order on chain with the payment in escrow and hand out its tasks and keys."""
    client = net.party(CLIENT)
    order_id = upload.order_id
    gflops, fee, validator_fee = estimate(spec, upload, pricing)
    escrow = fee * spec.workers + validator_fee * spec.validators
    if escrow > spec.budget_wei:
        raise BudgetError(
            f"the order costs {escrow / 1e18:.6f} ETH ({gflops:.1f} GFLOP of training plus validation), "
            f"over its budget of {spec.budget_eth} ETH: raise budget_eth or shrink the job"
        )
    keys = {role: open_stored_grant(net.store, ref, client, order_id=order_id) for role, ref in upload.client_grants.items()}
    excluded = {client.address.lower()}
    workers = matched(net, spec.workers, "worker", excluded=excluded)
    validators = matched(net, spec.validators, "validator", excluded=excluded | {p.address.lower() for _, p in workers})
    oid = bytes.fromhex(order_id[2:])
    deadline = net.chain.now() + spec.deadline_hours * 3600
    net.market.open_order(client.account, order_id=oid, spec_hash=bytes.fromhex(upload.spec_hash[2:]), escrow=escrow, deadline=deadline)
    assignments = []
    for task, (name, public) in enumerate(workers):
        net.market.assign_task(client.account, order_id=oid, task=task, worker=public.address, payment=fee)
        grants = {role: put_grant(net.store, keys[role], public, order_id=order_id, role=role) for role in WORKER_KEYS}
        assignments.append(Assignment(task=task, worker=name, address=public.address, payment_wei=fee, grants=grants))
    slots = []
    for name, public in validators:
        net.market.assign_validator(client.account, order_id=oid, validator=public.address, fee=validator_fee)
        grants = {role: put_grant(net.store, keys[role], public, order_id=order_id, role=role) for role in VALIDATOR_KEYS}
        slots.append(ValidatorSlot(name=name, address=public.address, fee_wei=validator_fee, grants=grants))
    return Shard(
        order_id=order_id, train_gflops=gflops, fee_wei=fee, escrow_wei=escrow, deadline=deadline,
        assignments=assignments, validators=slots,
    )


@task(name="shard", cache_policy=NO_CACHE)
def shard_task(spec: OrderSpec, upload: Upload) -> Shard:
    """Prefect task: run the stage as the client."""
    if (done := recorded(upload.order_id, "shard")) is not None:
        return done
    result, seconds = timed(shard, spec, upload, network())
    order_book().record_stage(upload.order_id, "shard", seconds, "open", shard=result)
    return result
