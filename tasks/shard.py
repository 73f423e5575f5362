"""shard — price the order, open it on chain with its escrow, have the chain draw its workers and validators, grant keys.

The fee follows the work: forward FLOPs per sample from the model registry, times three for the
backward pass, times samples and epochs. The client only says how many workers and validators it
pays for; the market draws them (stake-weighted among eligible members that are no party to the
order, seeded by a block that did not exist when the slot was added), and each gets the keys it
needs wrapped to the X25519 key it published in the registry: workers the train key, validators the
train and holdout keys. The model key is the worker's own
(``tasks.train``): the client holds no key to the model before the work verdict is final.
"""

from contracts.client import ZERO_ADDRESS, UnknownOrderError
from contracts.errors import ContractRevert
from contracts.models import OrderView
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


def check_capacity(net: Network, wanted: int, role: str, *, client: str) -> None:
    """Refuse, before any escrow moves, an order the chain could not draw: fewer than ``wanted`` members of
    ``role`` it may take (eligible, and not the client)."""
    found = sum(m.eligible and m.address.lower() != client.lower() for m in net.market.members(role))
    if found < wanted:
        raise NoCapacityError(
            f"the order needs {wanted} staked {role}(s), the network has {found} it may draw: "
            f"ask fewer in the order or stake more (`bahen {role} start` on a {role} host)"
        )


def shard(spec: OrderSpec, upload: Upload, net: Network, *, pricing: Pricing = Pricing()) -> Shard:
    """Open the order on chain with the payment in escrow, have the chain draw its workers and
    validators, and grant each the keys it needs.

    Resumable: a run that died part way finds the order, its tasks and slots on chain and goes on.
    """
    client = net.party(CLIENT)
    order_id = upload.order_id
    gflops, fee, validator_fee = estimate(spec, upload, pricing)
    escrow = fee * spec.workers + validator_fee * spec.validators
    if escrow > spec.budget_wei:
        raise BudgetError(
            f"the order costs {escrow / 1e18:.6f} ETH ({gflops:.1f} GFLOP of training plus validation), "
            f"over its budget of {spec.budget_eth} ETH: raise budget_eth or shrink the job"
        )
    oid = bytes.fromhex(order_id[2:])
    try:
        view = net.market.order(oid)
    except UnknownOrderError:
        check_capacity(net, spec.workers, "worker", client=client.address)
        check_capacity(net, spec.validators, "validator", client=client.address)
        deadline = net.chain.now() + spec.deadline_hours * 3600
        net.market.open_order(
            client.account, salt=bytes.fromhex(upload.salt[2:]), spec_hash=bytes.fromhex(upload.spec_hash[2:]),
            escrow=escrow, deadline=deadline, commit_window=spec.commit_minutes * 60,
        )
        view = net.market.order(oid)
    for _ in range(len(view.tasks), spec.workers):
        net.market.add_task(client.account, order_id=oid, payment=fee)
    for _ in range(len(view.validators), spec.validators):
        net.market.add_validator(client.account, order_id=oid, fee=validator_fee)
    view = drawn(net, oid)
    keys = {role: open_stored_grant(net.store, ref, client, order_id=order_id) for role, ref in upload.client_grants.items()}
    assignments = []
    for t in view.tasks:
        name, public = _member(net, "worker", t.worker)
        grants = {role: put_grant(net.store, keys[role], public, order_id=order_id, role=role) for role in WORKER_KEYS}
        assignments.append(Assignment(task=t.task, worker=name, address=public.address, payment_wei=t.payment, grants=grants))
    slots = []
    for v in view.validators:
        name, public = _member(net, "validator", v.validator)
        grants = {role: put_grant(net.store, keys[role], public, order_id=order_id, role=role) for role in VALIDATOR_KEYS}
        slots.append(ValidatorSlot(name=name, address=public.address, fee_wei=v.fee, grants=grants))
    return Shard(
        order_id=order_id, train_gflops=gflops, fee_wei=fee, escrow_wei=view.escrow, deadline=view.deadline,
        assignments=assignments, validators=slots,
    )


def drawn(net: Network, oid: bytes) -> OrderView:
    """The order once the chain has drawn a member for each of its tasks and validator slots. A slot
    whose seed block aged out before the draw is drawn again from a fresh one."""
    client = net.party(CLIENT)
    while _undrawn(view := net.market.order(oid)):
        try:
            net.market.draw(client.account, order_id=oid)
        except ContractRevert as exc:
            if exc.error != "NoEligibleMember":
                raise
            raise NoCapacityError(
                f"the chain found no eligible {('worker', 'validator')[exc.fields['role']]} for order 0x{oid.hex()}: "
                f"members left or were slashed since it opened; `bahen order cancel 0x{oid.hex()}` takes the escrow "
                "back, or retry once more are staked"
            ) from None
    return view


def _undrawn(view: OrderView) -> bool:
    return any(t.worker == ZERO_ADDRESS for t in view.tasks) or any(v.validator == ZERO_ADDRESS for v in view.validators)


def _member(net: Network, role: str, address: str) -> tuple[str, PublicIdentity]:
    """A drawn member's label (``<role>-<registration index>``) and the keys it published on chain."""
    members = net.market.members(role)
    index = next(i for i, m in enumerate(members) if m.address == address)
    label = f"{role}-{index}"
    return label, PublicIdentity(name=label, address=address, x25519_public=members[index].x25519_public)


@task(name="shard", cache_policy=NO_CACHE)
def shard_task(spec: OrderSpec, upload: Upload) -> Shard:
    """Prefect task: run the stage as the client."""
    if (done := recorded(upload.order_id, "shard")) is not None:
        return done
    result, seconds = timed(shard, spec, upload, network())
    order_book().record_stage(upload.order_id, "shard", seconds, "open", shard=result)
    return result
