"""shard — price the order, open it on chain with its escrow, have the chain draw its workers and validators, grant keys.

The fee follows the work: forward FLOPs per sample from the model registry, times three for the
backward pass, times samples and epochs. The client only says how many workers and validators it
pays for; the market draws them (stake-weighted among eligible members that are no party to the
order, seeded by a block that did not exist when the slot was added), and each gets the keys it
needs wrapped to the X25519 key it published in the registry: workers the train key, validators the
train and holdout keys. The model key is the worker's own
(``tasks.train``): the client holds no key to the model before the work verdict is final.
"""

import time
from collections.abc import Callable

from contracts.client import ZERO_ADDRESS, UnknownOrderError
from contracts.errors import ChallengeNotReady, ContractRevert
from contracts.models import MemberView, OrderView, TaskView
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from privacy.grants import accepts_grants
from privacy.identity import PublicIdentity
from pydantic import BaseModel
from training.models import GPTConfig, flops_per_sample

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


def architecture(spec: OrderSpec) -> GPTConfig | None:
    """The size of the order's model where the order sets it (a gpt order), else None: the registry's."""
    return GPTConfig(layers=spec.gpt_layers, heads=spec.gpt_heads, embed=spec.gpt_embed) if spec.model == "gpt" else None


def estimate(spec: OrderSpec, upload: Upload, pricing: Pricing) -> tuple[float, int, int]:
    """Training GFLOPs, the training fee and each validator's fee, all in wei."""
    per_sample = flops_per_sample(spec.model, input_shape=tuple(upload.input_shape), num_classes=upload.num_classes,
                                  config=architecture(spec))
    gflops = 3 * per_sample * upload.train_rows * spec.epochs / 1e9
    fee = max(pricing.min_fee_wei, int(gflops * pricing.wei_per_gflop))
    return gflops, fee, max(pricing.min_validator_fee_wei, fee * pricing.validator_fee_bps // 10_000)


def check_capacity(net: Network, wanted: int, role: str, *, client: str, payment: int = 0) -> None:
    """Refuse, before any escrow moves, an order the chain could not draw: fewer than ``wanted`` members of
    ``role`` it may take (eligible, not the client and, for a worker, with a stake that covers the task's
    ``payment`` at the market's stake coverage, as the draw requires)."""
    required = -(-payment * net.market.params().stake_coverage_bps // 10_000) if payment else 0
    members = [m for m in net.market.members(role) if m.eligible and m.address.lower() != client.lower()]
    found = sum(m.stake >= required for m in members)
    if found < wanted:
        short = f" ({len(members) - found} more hold less stake than the {required / 1e18:.6f} ETH a task of this price " \
                "needs)" if found < len(members) else ""
        raise NoCapacityError(
            f"the order needs {wanted} staked {role}(s), the network has {found} it may draw{short}: "
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
        check_capacity(net, spec.workers, "worker", client=client.address, payment=fee)
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
    keys = _client_keys(net, upload, tuple(upload.client_grants))
    workers, validators = net.market.members("worker"), net.market.members("validator")  # the registry, read once
    assignments = []
    for t in view.tasks:
        name, public = _member(workers, "worker", t.worker)
        grants = _granted(net, keys, public, order_id, WORKER_KEYS)
        assignments.append(Assignment(task=t.task, worker=name, address=public.address, payment_wei=t.payment, grants=grants))
    slots = []
    for v in view.validators:
        name, public = _member(validators, "validator", v.validator)
        grants = _granted(net, keys, public, order_id, VALIDATOR_KEYS)
        slots.append(ValidatorSlot(name=name, address=public.address, fee_wei=v.fee, grants=grants))
    return Shard(
        order_id=order_id, train_gflops=gflops, fee_wei=fee, escrow_wei=view.escrow, deadline=view.deadline,
        assignments=assignments, validators=slots,
    )


def drawn(net: Network, oid: bytes, *, poll_s: float = 2.0) -> OrderView:
    """The order once the chain has drawn a member for each of its tasks and validator slots. Waits for
    the seed blocks on a chain that mines on its own; a slot whose seed block aged out before the draw
    is drawn again from a fresh one."""
    client = net.party(CLIENT)
    while _undrawn(view := net.market.order(oid)):
        try:
            net.market.draw(client.account, order_id=oid)
        except ChallengeNotReady:
            time.sleep(poll_s)
        except ContractRevert as exc:
            if exc.error != "NoEligibleMember":
                raise
            raise NoCapacityError(
                f"the chain found no eligible {('worker', 'validator')[exc.fields['role']]} for order 0x{oid.hex()}: "
                f"members left or were slashed since it opened; `bahen order cancel 0x{oid.hex()}` takes the escrow "
                "back, or retry once more are staked"
            ) from None
    return view


class NotReplaceable(BahenError):
    """Nobody stalls the task on chain (its worker committed, its verifier verified it), or the window for the
    stalled party did not pass in time."""


def _replaced_on_chain(net: Network, oid: bytes, task: int, stalled: str, *, holds: Callable[[OrderView], str],
                       window: Callable[[TaskView], int], until: float, poll_s: float) -> OrderView:
    """As the client: once ``stalled`` (still ``holds`` its place in the order) may be replaced on chain, past
    ``window`` of the task (which raises :class:`NotReplaceable` when it never will be), replace it and have the
    chain draw the next member; returns the order as drawn. Waits until ``until`` (``time.monotonic()``).
    Resumable: a replacement already on chain is not made twice."""
    client = net.party(CLIENT)
    while holds(view := net.market.order(oid)).lower() == stalled.lower():
        by = window(view.tasks[task])
        if net.chain.now() > by:
            net.market.replace_stalled(client.account, order_id=oid, task=task)
            continue
        if time.monotonic() >= until:
            raise NotReplaceable(f"{stalled} may do its part of task {task} until {by} (unix time) and the stage ran "
                                 "out of time first")
        net.chain.pause(poll_s)
    return drawn(net, oid)


def _client_keys(net: Network, upload: Upload, roles: tuple[str, ...]) -> dict[str, bytes]:
    """The order's keys of ``roles``, opened from their grants to the client."""
    client = net.party(CLIENT)
    return {role: open_stored_grant(net.store, upload.client_grants[role], client, order_id=upload.order_id)
            for role in roles}


def replace_worker(upload: Upload, shard: Shard, task: int, net: Network, *, until: float, poll_s: float = 2.0) -> Shard:
    """As the client: once the task's worker may be replaced on chain (its commit window passed with no
    commitment), replace it, have the chain draw the next worker and grant it the task's keys. Returns
    the shard with the task's new assignment. Waits for the window until ``until`` (``time.monotonic()``)."""
    stalled = next(a for a in shard.assignments if a.task == task)

    def window(t: TaskView) -> int:
        if t.commit_block:
            raise NotReplaceable(f"{stalled.worker} ({stalled.address}) committed task {task}'s proof: only its own host "
                                 "can answer the challenge; `bahen worker start` there")
        return t.commit_by

    view = _replaced_on_chain(net, bytes.fromhex(upload.order_id[2:]), task, stalled.address,
                              holds=lambda v: v.tasks[task].worker, window=window, until=until, poll_s=poll_s)
    name, public = _member(net.market.members("worker"), "worker", view.tasks[task].worker)
    grants = _granted(net, _client_keys(net, upload, WORKER_KEYS), public, upload.order_id, WORKER_KEYS)
    successor = Assignment(task=task, worker=name, address=public.address, payment_wei=stalled.payment_wei, grants=grants)
    return shard.model_copy(update={"assignments": [successor if a.task == task else a for a in shard.assignments]})


def replace_verifier(upload: Upload, shard: Shard, task: int, net: Network, *, until: float, poll_s: float = 2.0) -> Shard:
    """As the client: once the order's verifier may be replaced on chain (the committed task has no
    verification on chain past its window), replace it, have the chain draw the next validator into the
    first slot and grant it the validators' keys. Returns the shard with the new verifier first. Waits
    for the window until ``until`` (``time.monotonic()``)."""
    stalled = shard.validators[0]

    def window(t: TaskView) -> int:
        if int(t.verifier, 16) or t.verdict != "none":
            raise NotReplaceable(f"{stalled.name} ({stalled.address}) verified task {task} on chain: Wasp's audit is "
                                 "next, not another verifier")
        return t.verify_by

    view = _replaced_on_chain(net, bytes.fromhex(upload.order_id[2:]), task, stalled.address,
                              holds=lambda v: v.validators[0].validator, window=window, until=until, poll_s=poll_s)
    name, public = _member(net.market.members("validator"), "validator", view.validators[0].validator)
    grants = _granted(net, _client_keys(net, upload, VALIDATOR_KEYS), public, upload.order_id, VALIDATOR_KEYS)
    successor = ValidatorSlot(name=name, address=public.address, fee_wei=stalled.fee_wei, grants=grants)
    return shard.model_copy(update={"validators": [successor, *shard.validators[1:]]})


@task(name="replace_worker", cache_policy=NO_CACHE)
def replace_worker_task(upload: Upload, shard: Shard, task: int, *, until: float, poll_s: float) -> Shard:
    """Prefect task: replace a stalled worker as the client and record the order's new shard."""
    replaced = replace_worker(upload, shard, task, network(), until=until, poll_s=poll_s)
    order_book().update(upload.order_id, shard=replaced)
    new = next(a for a in replaced.assignments if a.task == task)
    get_run_logger().warning("task %d of order %s: the stalled worker was replaced; the chain drew %s (%s)",
                             task, upload.order_id, new.worker, new.address)
    return replaced


@task(name="replace_verifier", cache_policy=NO_CACHE)
def replace_verifier_task(upload: Upload, shard: Shard, task: int, *, until: float, poll_s: float) -> Shard:
    """Prefect task: replace a stalled verifier as the client and record the order's new shard."""
    replaced = replace_verifier(upload, shard, task, network(), until=until, poll_s=poll_s)
    order_book().update(upload.order_id, shard=replaced)
    new = replaced.validators[0]
    get_run_logger().warning("task %d of order %s: the stalled verifier was replaced; the chain drew %s (%s)",
                             task, upload.order_id, new.name, new.address)
    return replaced


def _granted(net: Network, keys: dict[str, bytes], member: PublicIdentity, order_id: str, roles: tuple[str, ...]) -> dict:
    """The order's keys of ``roles`` wrapped to a drawn member's published X25519 key, stored; none to a member
    whose key nothing can be wrapped to (``privacy.grants.accepts_grants``): it cannot take part, and is
    replaced as a member that stalls is, while the order goes on."""
    if not accepts_grants(member):
        return {}
    return {role: put_grant(net.store, keys[role], member, order_id=order_id, role=role) for role in roles}


def _undrawn(view: OrderView) -> bool:
    return any(t.worker == ZERO_ADDRESS for t in view.tasks) or any(v.validator == ZERO_ADDRESS for v in view.validators)


def _member(members: list[MemberView], role: str, address: str) -> tuple[str, PublicIdentity]:
    """A drawn member's label (``<role>-<registration index>``) and the keys it published on chain."""
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
