"""A hypothesis state machine over random staking, order, dispute and payment sequences.

Every rule predicts from a plain Python model whether the contract must accept or revert the
call, so a verdict from anyone but the Wasp role, a settlement inside a dispute window, a double
settlement or an early withdrawal that succeeds fails the test; every draw's members are predicted
exactly from the model's stakes and the public seed blocks. Funds conservation to the wei
(credits, open escrows and dispute bonds against the market's balance) is checked after every
step; credits and stakes (nothing paid twice, no stake below zero) after every step that moves
money, and every order's credits equal its escrow plus the stake slashed for it plus its dispute
bonds once it is closed. Time moves in steps far larger than the deadline, window and delay
margins, so predictions never sit on a boundary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from eth_abi import encode
from eth_utils import keccak

from contracts.chain import Chain
from contracts.errors import ContractRevert, NoResolvers
from contracts.client import ZERO_ADDRESS
from tests.unit.contracts.fixtures import (
    ETHER,
    PARAMS,
    WORKER_STAKE,
    account,
    b32,
    deploy_staked,
    draw_one,
    expected_draw,
    make_parties,
)

TTL = 1_000
# Which members a draw picks depends on block hashes, which follow the wall clock: a rule whose
# applicability can depend on a draw checks it in its body, so hypothesis draws the same data on replay.
STEPS = (2_000, 4_000)
# Windows longer than a run of transactions can last, shorter than one step of time.
MACHINE_PARAMS = PARAMS.model_copy(update={"dispute_window": 1_500, "resolution_period": 1_500, "unbonding_delay": 3_600})
POOL = 3  # more validators, drawn for orders and disputes alike
COMMIT_WINDOW = 500  # longer than a run of transactions, shorter than one step of time
ACTIVE = ("drawing", "voting")


@dataclass
class DisputeModel:
    disputer: str
    claim_accepted: bool
    bond: int = 0
    status: str = "drawing"
    resolvers: list[str] = field(default_factory=list)
    resolve_by: int = 0
    closed_at: int = 0
    votes: dict[str, bool] = field(default_factory=dict)
    case: bytes = bytes(32)  # the digest its disputer recorded with the hand-over


@dataclass
class TaskModel:
    payment: int
    worker: str | None = None  # None until drawn, and after a replacement
    commit_by: int = 0
    committed: bool = False
    verify_by: int = 0  # past it, committed and unverified, its order's verifier may be replaced; verified, Wasp may void it
    verifier: str | None = None  # the validator whose verification of it is on chain
    verdict: str = "none"
    verdict_at: int = 0
    prover: str | None = None
    dispute: DisputeModel | None = None  # the latest
    disputers: set[str] = field(default_factory=set)  # each member disputes a task once
    held: int = 0  # bonds of dismissed disputes of its acceptance, paid out at settlement


@dataclass
class OrderModel:
    oid: bytes
    client: object
    escrow: int
    deadline: int
    status: str = "open"
    allocated: int = 0
    tasks: list[TaskModel] = field(default_factory=list)
    validators: dict[str, list] = field(default_factory=dict)  # address -> [fee, reported, overturned], in slot order
    undrawn_fees: list[int] = field(default_factory=list)  # validator slots not drawn, in slot order
    first_undrawn: bool = False  # the first slot re-opened by a verifier's replacement, the first of `undrawn_fees`
    drawn: set[str] = field(default_factory=set)  # every member drawn for the order, replaced ones too
    replaced: list[str] = field(default_factory=list)  # its replaced workers and verifiers: bound until it closes
    credited: int = 0  # every credit made for this order
    slashed: int = 0  # stake slashed for this order
    bonds: int = 0  # dispute bonds locked for this order


def _disputable_until(task: TaskModel) -> int:
    """The end of the window in which the task's verdict may be disputed: from the verdict, or from the
    close of the latest dispute when it left the verdict standing."""
    stood = task.dispute is not None and task.dispute.status in ("dismissed", "expired")
    return (task.dispute.closed_at if stood else task.verdict_at) + MACHINE_PARAMS.dispute_window


def _expect(ok: bool, call: Callable, name: str):
    """Runs `call`; it must succeed when `ok` and revert otherwise."""
    event(f"{name}: {'accepted' if ok else 'reverted'}")
    if ok:
        return call()
    with pytest.raises(ContractRevert):
        call()
    return None


def eligible_resolvers(bahen, excluded: set[str]) -> list[str]:
    """The validators a draw may pick: eligible and outside `excluded` (a draw with none records it)."""
    validators = bahen.chain.call(bahen.staking.functions.validators(), "validators")
    return [v for v in validators if v not in excluded and bahen.member(v).eligible]


def make_machine(new_chain: Callable[[], Chain]) -> type[RuleBasedStateMachine]:
    """Builds the machine class over a chain factory (in-process, or a connection to anvil)."""

    class MarketMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.chain = new_chain()
            self.parties = make_parties(self.chain)
            self.bahen = deploy_staked(self.chain, self.parties, MACHINE_PARAMS)
            p = self.parties
            for worker in p.workers:  # headroom, so a partial unbond can leave a worker eligible
                self.bahen.add_stake(worker, amount=WORKER_STAKE)
            self.pool = [account(f"stateful resolver {i}") for i in range(POOL)]
            for i, acct in enumerate(self.pool):
                if self.chain.balance(acct.address) < ETHER:
                    self.chain.fund(acct.address, 10 * ETHER)
                self.bahen.register_validator(acct, x25519_public=b32(f"pool {i}"), stake=(i + 1) * PARAMS.min_validator_stake)
            self.members = {a.address: a for a in p.workers + p.validators + self.pool}
            self.stake = {w.address: 2 * WORKER_STAKE for w in p.workers} | {
                v.address: PARAMS.min_validator_stake for v in p.validators
            } | {a.address: (i + 1) * PARAMS.min_validator_stake for i, a in enumerate(self.pool)}
            self.unbonding: Counter = Counter()
            self.unbond_at: dict[str, int] = {}
            self.locks: Counter = Counter()
            self.pending: Counter = Counter()
            self.orders: list[OrderModel] = []
            self.reports: set[tuple] = set()
            self.deliveries: dict[tuple, bytes] = {}  # (order, task, validator) -> the digest it recorded
            self.deposited = sum(self.stake.values())
            self.withdrawn = 0

        def _past(self, order: OrderModel) -> bool:
            return self.chain.now() > order.deadline

        def _open(self, i: int) -> OrderModel:
            """Mostly an open order (where the lifecycle goes on), else any order."""
            candidates = [o for o in self.orders if o.status == "open"] if i % 4 else self.orders
            candidates = candidates or self.orders
            return candidates[i % len(candidates)]

        def _eligible(self, address: str) -> bool:
            floor = WORKER_STAKE if address in {w.address for w in self.parties.workers} else PARAMS.min_validator_stake
            return self.stake[address] >= floor

        @initialize(escrow=st.integers(ETHER // 2, 3 * ETHER), tasks=st.integers(1, 3))
        def start_with_an_assigned_order(self, escrow, tasks):
            """Most interesting states lie past the draw; start there as well as from scratch."""
            self.open_order(escrow, other_client=False)
            for _ in range(tasks):
                self.add_task(len(self.orders) - 1, 100 // (tasks + 1), by_client=True)
            self.add_validator(len(self.orders) - 1, 5)
            self.draw(len(self.orders) - 1)
            self.commit(i=1, t=0)
            self.verdict(i=1, t=0, accepted=True, as_wasp=1)  # a judged task: disputes can start at once

        @rule(escrow=st.integers(1, 3 * ETHER), other_client=st.booleans())
        def open_order(self, escrow, other_client):
            client = self.parties.stranger if other_client else self.parties.client
            deadline = self.chain.now() + TTL
            oid = self.bahen.open_order(
                client, salt=b32(f"stateful order {len(self.orders)}"), spec_hash=b32("spec"), escrow=escrow,
                deadline=deadline, commit_window=COMMIT_WINDOW,
            )
            self.orders.append(OrderModel(oid, client, escrow, deadline))
            self.deposited += escrow

        @precondition(lambda self: self.orders)
        @rule(i=st.integers(0, 50), share=st.integers(0, 100), by_client=st.booleans())
        def add_task(self, i, share, by_client):
            o = self._open(i)
            payment = o.escrow * share // 100
            sender = o.client if by_client else self.parties.wasp
            ok = o.status == "open" and by_client and self._growing(o) and o.allocated + payment <= o.escrow
            index = _expect(ok, lambda: self.bahen.add_task(sender, order_id=o.oid, payment=payment), "add_task")
            if index is not None:
                assert index == len(o.tasks)
                o.tasks.append(TaskModel(payment))
                o.allocated += payment

        @precondition(lambda self: self.orders)
        @rule(i=st.integers(0, 50), share=st.integers(0, 30))
        def add_validator(self, i, share):
            o = self._open(i)
            fee = o.escrow * share // 100
            ok = o.status == "open" and self._growing(o) and o.allocated + fee <= o.escrow
            if _expect(ok, lambda: self.bahen.add_validator(o.client, order_id=o.oid, fee=fee), "add_validator") is not None:
                o.undrawn_fees.append(fee)
                o.allocated += fee

        def _growing(self, o: OrderModel) -> bool:
            """Whether the order still takes tasks and validator slots: before its deadline and first commitment."""
            return not self._past(o) and not any(t.committed for t in o.tasks)

        def _predicted_draw(self, o: OrderModel) -> list[tuple[str, int, str]] | None:
            """What ``draw`` must assign, from the model's stakes and the public seed blocks: (role,
            index, member) in the contract's order; None when some slot has no eligible member."""
            view = self.bahen.order(o.oid)
            slots = [("worker", t.task, t.draw_block, t.payment) for t in view.tasks if t.worker == ZERO_ADDRESS]
            slots += [("validator", j, v.draw_block, 0) for j, v in enumerate(view.validators) if v.validator == ZERO_ADDRESS]
            self.chain.mine(max(0, max(s[2] for s in slots) + 2 - self.chain.block_number()))
            taken, drawn = {o.client.address, *o.drawn}, []
            for role, index, anchor, payment in slots:
                required = -(-payment * MACHINE_PARAMS.stake_coverage_bps // 10_000)
                listing = {"worker": self.bahen.staking.functions.workers, "validator": self.bahen.staking.functions.validators}
                members = self.chain.call(listing[role](), role)
                weights = {m: self.stake[m] if self._eligible(m) else 0 for m in members if m not in taken}
                code = {"worker": 0, "validator": 1}[role]
                seed = keccak(encode(["bytes32", "bytes32", "uint8", "uint256"], [self.chain.block_hash(anchor + 1), o.oid, code, index]))
                member = draw_one(weights, int.from_bytes(seed, "big"), lambda _, w: w >= required, [])
                if member is None:
                    return None
                taken.add(member)
                drawn.append((role, index, member))
            return drawn

        @precondition(lambda self: self.orders)
        @rule(i=st.integers(0, 50))
        def draw(self, i):
            o = self._open(i)
            undrawn = any(t.worker is None for t in o.tasks) or o.undrawn_fees
            predicted = self._predicted_draw(o) if undrawn and o.status == "open" else None
            ok = o.status == "open" and not self._past(o) and bool(undrawn) and predicted is not None
            result = _expect(ok, lambda: self.bahen.draw(self.parties.stranger, order_id=o.oid), "draw")
            if result is not None:
                assert result.workers == {index: m for role, index, m in predicted if role == "worker"}
                assert result.validators == [m for role, _, m in predicted if role == "validator"]
                view = self.bahen.order(o.oid)
                for index, worker in result.workers.items():
                    o.tasks[index].worker, o.tasks[index].commit_by = worker, view.tasks[index].commit_by
                slots = {validator: [fee, False, False] for validator, fee in zip(result.validators, o.undrawn_fees)}
                if result.validators and (o.first_undrawn or not o.validators):  # a verifier drawn: its window restarts
                    for k, task in enumerate(o.tasks):
                        if task.committed and task.verifier is None:
                            task.verify_by = self._last_block_time() + COMMIT_WINDOW
                            assert view.tasks[k].verify_by == task.verify_by
                if o.first_undrawn:
                    first = next(iter(slots))
                    o.validators = {first: slots.pop(first)} | o.validators
                o.validators |= slots
                o.undrawn_fees, o.first_undrawn = [], False
                o.drawn |= set(result.workers.values()) | set(result.validators)
                self.locks.update(list(result.workers.values()) + result.validators)
            self._check_accounts()

        def _last_block_time(self) -> int:
            return self.chain.w3.eth.get_block("latest")["timestamp"]

        def _first(self, o: OrderModel) -> str | None:
            """The order's verifier: the validator of its first slot, while it has one."""
            return None if o.first_undrawn else next(iter(o.validators), None)

        @rule(i=st.integers(0, 50), t=st.integers(0, 50))
        def replace(self, i, t):
            """Whoever stalls a task: its worker before the commitment, else the order's verifier."""
            if not any(t.worker for o in self.orders for t in o.tasks):
                return
            o, index = self._pick_task(i, t, lambda task: task.worker is not None and task.verdict == "none")
            task = o.tasks[index]
            verifier = self._first(o)
            stalled_worker = not task.committed and self.chain.now() > task.commit_by
            stalled_verifier = (task.committed and task.verifier is None and verifier is not None
                                and self.chain.now() > task.verify_by)
            ok = o.status == "open" and task.worker is not None and task.verdict == "none" and (
                stalled_worker or stalled_verifier)
            call = lambda: self.bahen.replace_stalled(self.parties.stranger, order_id=o.oid, task=index)
            if _expect(ok, call, "replace worker" if stalled_worker else "replace verifier"):
                if stalled_worker:
                    o.replaced.append(task.worker)
                    task.worker, task.commit_by = None, 0
                else:
                    o.replaced.append(verifier)
                    o.undrawn_fees.insert(0, o.validators.pop(verifier)[0])
                    o.first_undrawn = True
            self._check_accounts()

        @precondition(lambda self: any(o.tasks for o in self.orders))
        @rule(i=st.integers(0, 50), t=st.integers(0, 50))
        def verifier_stalls(self, i, t):
            """A task committed and left unverified past its window, the one who stalls replaced and the
            next drawn, in one step: random sequences then often reach a replaced verifier, and what follows."""
            self.commit(i, t)
            self.chain.increase_time(COMMIT_WINDOW + 1)
            self.replace(i, t)
            self.draw(i)

        def _pick_task(self, i: int, t: int, prefer: Callable[[TaskModel], bool]) -> tuple[OrderModel, int]:
            """An (order, task) pair: mostly one of an open order where `prefer` holds, else any."""
            every = [(o, k) for o in self.orders for k in range(len(o.tasks))]
            wanted = [(o, k) for o, k in every if o.status == "open" and prefer(o.tasks[k])]
            pool = wanted if wanted and i % 4 else every
            return pool[t % len(pool)]

        @precondition(lambda self: any(o.tasks for o in self.orders))
        @rule(i=st.integers(0, 50), t=st.integers(0, 50))
        def commit(self, i, t):
            o, index = self._pick_task(i, t, lambda task: not task.committed and task.verdict == "none")
            task = o.tasks[index]
            ok = (
                o.status == "open"
                and not self._past(o)
                and task.worker is not None
                and not task.committed
                and task.verdict == "none"
            )
            sender = self.members[task.worker] if task.worker else self.parties.stranger
            call = lambda: self.bahen.commit_proof(sender, order_id=o.oid, task=index, root=b32(f"r{t}"))
            if _expect(ok, call, "commit"):
                task.committed = True
                task.verify_by = self._last_block_time() + COMMIT_WINDOW
                assert self.bahen.order(o.oid).tasks[index].verify_by == task.verify_by

        @rule(i=st.integers(0, 50), t=st.integers(0, 50), v=st.integers(0, 6), kind=st.integers(0, 1))
        def report(self, i, t, v, kind):
            if not any(t.committed for o in self.orders for t in o.tasks):
                return
            o, index = self._pick_task(i, t, lambda task: task.committed)
            signers = [self.members[a] for a in o.validators] + self.parties.validators + self.pool
            self._report(o, index, signers[v % len(signers)], kind)

        def _report(self, o: OrderModel, index: int, signer, kind: int) -> None:
            digest = b32(f"report {o.oid.hex()} {index} {kind} {signer.address}")
            key = (o.oid, index, kind, signer.address)
            ok = (
                o.status == "open"
                and o.tasks[index].committed
                and signer.address in o.validators
                # a verification: the first slot's alone, before the verdict
                and (kind == 1 or (signer.address == self._first(o) and o.tasks[index].verdict == "none"))
                and key not in self.reports
            )
            call = lambda: self.bahen.submit_report(
                self.parties.stranger,
                order_id=o.oid,
                task=index,
                kind=kind,
                digest=digest,
                signature=self.bahen.sign_report(signer, order_id=o.oid, task=index, kind=kind, digest=digest),
            )
            if _expect(ok, call, "report"):
                self.reports.add(key)
                o.validators[signer.address][1] = True
                if kind == 0:  # its scoring window, past which Wasp may void it
                    o.tasks[index].verifier = signer.address
                    o.tasks[index].verify_by = self._last_block_time() + COMMIT_WINDOW
            view = self.bahen.order(o.oid).tasks[index]
            assert (view.verifier, view.verify_by) == (o.tasks[index].verifier or ZERO_ADDRESS, o.tasks[index].verify_by)

        @precondition(lambda self: any(o.tasks for o in self.orders))
        @rule(i=st.integers(0, 50), t=st.integers(0, 50), as_wasp=st.integers(0, 3))
        def void(self, i, t, as_wasp):
            """Wasp voids a verification past its scoring window: the task unverified again, a verifier still in
            the first slot replaced as a stalled one is; a quarter of the calls come from an intruder."""
            o, index = self._pick_task(i, t, lambda task: task.verifier is not None and task.verdict == "none")
            self._void(o, index, as_wasp=bool(as_wasp))

        def _void(self, o: OrderModel, index: int, *, as_wasp: bool) -> None:
            task = o.tasks[index]
            sender = self.parties.wasp if as_wasp else o.client
            ok = (as_wasp and o.status == "open" and task.verifier is not None and task.verdict == "none"
                  and self.chain.now() > task.verify_by)
            if _expect(ok, lambda: self.bahen.void_verification(sender, order_id=o.oid, task=index), "void"):
                if self._first(o) == task.verifier:
                    o.replaced.append(task.verifier)
                    o.undrawn_fees.insert(0, o.validators.pop(task.verifier)[0])
                    o.first_undrawn = True
                task.verifier, task.verify_by = None, self._last_block_time() + COMMIT_WINDOW
            view = self.bahen.order(o.oid).tasks[index]
            assert (view.verifier, view.verify_by) == (task.verifier or ZERO_ADDRESS, task.verify_by)
            self._check_accounts()

        @precondition(lambda self: any(o.tasks for o in self.orders))
        @rule(i=st.integers(0, 50), t=st.integers(0, 50))
        def verification_voided(self, i, t):
            """A task committed, verified by the order's verifier and voided by Wasp past its scoring window, the
            next verifier drawn, in one step: random sequences then often reach a voided verification."""
            self.commit(i, t)
            o, index = self._pick_task(i, t, lambda task: task.committed and task.verifier is None)
            if (first := self._first(o)) is not None:
                self._report(o, index, self.members[first], 0)
            self.chain.increase_time(COMMIT_WINDOW + 1)
            self._void(o, index, as_wasp=True)
            self.draw(i)

        @precondition(lambda self: any(o.tasks for o in self.orders))
        @rule(i=st.integers(0, 50), t=st.integers(0, 50), accepted=st.booleans(), as_wasp=st.integers(0, 3))
        def verdict(self, i, t, accepted, as_wasp):
            o, index = self._pick_task(i, t, lambda task: task.verdict == "none")
            task = o.tasks[index]
            sender = self.parties.wasp if as_wasp else o.client  # a quarter of verdicts come from an intruder
            ok = (
                bool(as_wasp)
                and o.status == "open"
                and task.worker is not None
                and task.verdict == "none"
                and (task.committed or not accepted)
            )
            call = lambda: self.bahen.record_verdict(
                sender, order_id=o.oid, task=index, accepted=accepted, reasons_digest=b32("why")
            )
            if _expect(ok, call, "verdict"):
                task.verdict = "accepted" if accepted else "rejected"
                task.verdict_at = self.bahen.order(o.oid).tasks[index].verdict_at

        def _disputed(self, t: int, *statuses: str) -> tuple[OrderModel, int] | None:
            found = [(o, k) for o in self.orders for k, task in enumerate(o.tasks) if task.dispute and task.dispute.status in statuses]
            return found[t % len(found)] if found else None

        @rule(i=st.integers(0, 50), t=st.integers(0, 50), who=st.integers(0, 6), exact=st.integers(0, 4))
        def open_dispute(self, i, t, who, exact):
            if not any(t.verdict != "none" for o in self.orders for t in o.tasks):
                return
            o, index = self._pick_task(i, t, lambda task: task.verdict != "none")
            task = o.tasks[index]
            p = self.parties
            disputer = (p.workers + p.validators + [p.client, p.stranger])[who]
            # in proportion to its panel, doubled for each dispute of the task before (every dispute's
            # disputer is in `disputers`), at most 15
            panel = min(MACHINE_PARAMS.resolver_count << len(task.disputers), 15)
            bond = MACHINE_PARAMS.dispute_bond * panel // MACHINE_PARAMS.resolver_count + (0 if exact else 1)
            staked = disputer.address in self.stake and self.stake[disputer.address] >= (
                WORKER_STAKE if disputer in p.workers else PARAMS.min_validator_stake
            )
            ok = (
                o.status == "open"
                and task.verdict != "none"
                and (task.dispute is None or task.dispute.status in ("dismissed", "expired"))
                and self.chain.now() <= _disputable_until(task)
                and disputer.address not in task.disputers
                and bool(exact)
                and disputer.address != o.client.address
                and not (disputer.address == task.worker and task.verdict == "accepted")  # not its own acceptance
                and disputer.address != task.verifier  # not the verifier of the task, against its own report
                and staked
            )
            call = lambda: self.bahen.open_dispute(disputer, order_id=o.oid, task=index, counter_digest=b32(f"c{t}"), bond=bond)
            if _expect(ok, call, "open_dispute" if task.dispute is None else "open_dispute after another"):
                task.dispute = DisputeModel(disputer.address, claim_accepted=task.verdict == "rejected", bond=bond)
                task.disputers.add(disputer.address)
                o.bonds += bond
                self.deposited += bond

        @rule(t=st.integers(0, 50))
        def draw_resolvers(self, t):
            if not self._disputed(0, "drawing"):
                return
            o, index = self._disputed(t, "drawing")
            d = o.tasks[index].dispute
            excluded = {o.client.address, *o.tasks[index].disputers, *o.drawn}
            candidates = eligible_resolvers(self.bahen, excluded)
            call = lambda: self.bahen.draw_resolvers(self.parties.stranger, order_id=o.oid, task=index)
            if not candidates:  # recorded: a resolution period from the first such draw, then it may expire
                event("draw_resolvers: nobody to draw")
                with pytest.raises(NoResolvers):
                    call()
                if d.resolve_by == 0:
                    d.resolve_by = self.chain.w3.eth.get_block("latest")["timestamp"] + MACHINE_PARAMS.resolution_period
                assert self.bahen.dispute(o.oid, index).resolve_by == d.resolve_by
                return
            event("draw_resolvers: drawn")
            drawn = call()
            if drawn:
                assert drawn == expected_draw(self.bahen, o.oid, index, {o.client.address, *o.drawn},
                                              set(o.tasks[index].disputers))
                jury = MACHINE_PARAMS.resolver_count << (len(o.tasks[index].disputers) - 1)
                assert len(drawn) == min(jury, 15, len(candidates))
                d.status, d.resolvers = "voting", drawn
                d.resolve_by = self.bahen.dispute(o.oid, index).resolve_by
                self.locks.update(drawn)
            self._check_accounts()

        @rule(t=st.integers(0, 50), who=st.integers(0, 2), case=st.integers(0, 3))
        def hand_over(self, t, who, case):
            """The disputer records its case's digest once, between the draw and half the resolution period."""
            if not self._disputed(0, *ACTIVE, "upheld", "dismissed", "expired"):
                return
            o, index = self._disputed(t, *ACTIVE, "upheld", "dismissed", "expired")
            d = o.tasks[index].dispute
            sender = self.members.get(d.disputer, self.parties.stranger) if who == 0 else (
                self.parties.stranger if who == 1 else self.members[(d.resolvers or [self.pool[0].address])[0]])
            hand_by = d.resolve_by - MACHINE_PARAMS.resolution_period + MACHINE_PARAMS.resolution_period // 2
            ok = (d.status == "voting" and sender.address == d.disputer and d.case == bytes(32)
                  and self.chain.now() <= hand_by)
            digest = b32(f"case {case}")
            call = lambda: self.bahen.hand_over(sender, order_id=o.oid, task=index, case_digest=digest)
            if _expect(ok, call, "hand_over"):
                d.case = digest
            assert self.bahen.dispute(o.oid, index).case_digest == "0x" + d.case.hex()

        @rule(t=st.integers(0, 50), r=st.integers(0, POOL), uphold=st.booleans())
        def vote(self, t, r, uphold):
            if not self._disputed(0, "voting"):
                return
            o, index = self._disputed(t, "voting")
            d = o.tasks[index].dispute
            # by position among the drawn (then an undrawn pool member), so that which votes count
            # does not depend on the block hash that drew them
            voters = [*d.resolvers, *(a.address for a in self.pool if a.address not in d.resolvers)]
            resolver = self.members[voters[r % len(voters)]]
            ok = self.chain.now() <= d.resolve_by and resolver.address in d.resolvers and resolver.address not in d.votes
            call = lambda: self.bahen.vote_dispute(resolver, order_id=o.oid, task=index, uphold=uphold, report_digest=b32("v"))
            if _expect(ok, call, "vote"):
                d.votes[resolver.address] = uphold
                majority = len(d.resolvers) // 2 + 1
                for side, outcome in ((True, "upheld"), (False, "dismissed")):
                    if sum(v == side for v in d.votes.values()) >= majority:
                        self._close(o, index, outcome)
            self._check_accounts()

        @rule(i=st.integers(0, 50), t=st.integers(0, 50), who=st.integers(0, 6), uphold=st.booleans())
        def dispute_to_its_close(self, i, t, who, uphold):
            """A dispute opened, drawn and voted on until it closes, in one step: random sequences then
            often reach a closed dispute, and the dispute after one that left the verdict standing."""
            self.open_dispute(i, t, who, exact=1)
            for r in range(POOL + 1):
                self.draw_resolvers(t)
                self.vote(t, r, uphold)

        @rule(t=st.integers(0, 50))
        def expire(self, t):
            """A dispute past its ``resolve_by``: voting without a majority, or drawing and finding no
            resolver a resolution period after the first draw that found none; dismissed instead when
            drawn and its disputer recorded no case."""
            if not self._disputed(0, *ACTIVE):
                return
            o, index = self._disputed(t, *ACTIVE)
            d = o.tasks[index].dispute
            ok = d.resolve_by != 0 and self.chain.now() > d.resolve_by
            if _expect(ok, lambda: self.bahen.expire_dispute(self.parties.stranger, order_id=o.oid, task=index), "expire"):
                # drawn, and its disputer never recorded a case: dismissed, withholding buys nothing
                self._close(o, index, "dismissed" if d.status == "voting" and d.case == bytes(32) else "expired")
            self._check_accounts()

        def _close(self, o: OrderModel, index: int, outcome: str) -> None:
            task = o.tasks[index]
            d = task.dispute
            d.status = outcome
            d.closed_at = self.bahen.dispute(o.oid, index).closed_at
            rest = d.bond
            for r in d.resolvers:
                self.locks[r] -= 1
                paid = r in d.votes if outcome == "expired" else d.votes.get(r) == (outcome == "upheld")
                if paid:
                    self._credit(o, r, MACHINE_PARAMS.resolver_fee)
                    rest -= MACHINE_PARAMS.resolver_fee
            if outcome == "dismissed" and task.verdict == "accepted":
                task.held += rest
            elif outcome == "dismissed":
                self._credit(o, self.parties.treasury.address, rest)
            else:
                self._credit(o, d.disputer, rest)
            if outcome == "upheld":
                task.prover = d.disputer
                task.verdict = "accepted" if d.claim_accepted else "rejected"
                verifier = task.verifier
                if verifier:
                    if verifier in o.validators:  # still the order's verifier: it forfeits its fee
                        o.validators[verifier][2] = True
                    self._slash(o, verifier, d.disputer)
            assert self.bahen.order(o.oid).tasks[index].verdict == task.verdict

        @precondition(lambda self: self.orders)
        @rule(i=st.integers(0, 50))
        def settle(self, i):
            o = self._open(i)
            judged = all(t.verdict != "none" for t in o.tasks)
            final = all(
                t.verdict == "none"
                or (t.dispute is not None and t.dispute.status == "upheld")
                or ((t.dispute is None or t.dispute.status not in ACTIVE) and self.chain.now() > _disputable_until(t))
                for t in o.tasks
            )
            ok = o.status == "open" and (judged or self._past(o)) and final
            s = _expect(ok, lambda: self.bahen.settle(self.parties.stranger, order_id=o.oid), "settle")
            if s is not None:
                payouts, slashed = self._settle_model(o)
                assert (s.payouts, s.slashed) == (dict(payouts), dict(slashed))
                assert not any(c.account == o.client.address and c.kind != "refund" for c in s.credits)
                # closed: every wei the order took in (escrow, slashed stake, bonds) went out as a credit
                assert o.credited == o.escrow + o.slashed + o.bonds
                for index in range(len(o.tasks)):  # every task's delivery, from the order's first validator
                    self._deliver(o, index, self.members[next(iter(o.validators))] if o.validators else self.parties.stranger)
            self._check_accounts()

        @precondition(lambda self: any(o.tasks for o in self.orders))
        @rule(i=st.integers(0, 50), t=st.integers(0, 50), v=st.integers(0, 6))
        def deliver(self, i, t, v):
            """A validator (or a member no party to the order) records a delivery: only the order's own, once each,
            for an accepted task of a settled order; it moves no funds."""
            settled = [(o, k) for o in self.orders for k in range(len(o.tasks)) if o.status == "settled"]
            o, index = settled[t % len(settled)] if settled and i % 4 else self._pick_task(i, t, lambda task: True)
            senders = [self.members[a] for a in o.validators] + self.parties.validators + self.pool
            self._deliver(o, index, senders[v % len(senders)])

        def _deliver(self, o: OrderModel, index: int, sender) -> None:
            key = (o.oid, index, sender.address)
            digest = b32(f"delivery {o.oid.hex()} {index} {sender.address}")
            ok = (o.status == "settled" and o.tasks[index].verdict == "accepted" and sender.address in o.validators
                  and key not in self.deliveries)
            if _expect(ok, lambda: self.bahen.record_delivery(sender, order_id=o.oid, task=index, digest=digest),
                       "deliver"):
                self.deliveries[key] = digest
            assert self.bahen.delivery_of(o.oid, index, sender.address) == self.deliveries.get(key, bytes(32))
            self._check_accounts()  # the chain's credits and stakes are still the model's

        def _credit(self, o: OrderModel, address: str, amount: int) -> None:
            self.pending[address] += amount
            o.credited += amount

        def _slash(self, o: OrderModel, member: str, prover: str | None) -> int:
            amount = self.stake[member] * PARAMS.slash_bps // 10_000
            self.stake[member] -= amount
            o.slashed += amount
            bounty = amount * PARAMS.bounty_bps // 10_000 if prover else 0
            if prover:
                self._credit(o, prover, bounty)
            self._credit(o, self.parties.treasury.address, amount - bounty)
            return amount

        def _settle_model(self, o: OrderModel):
            o.status = "settled"
            payouts, slashed = Counter(), Counter()
            for t in o.tasks:
                if t.worker is None:  # never drawn: its payment returns to the client
                    continue
                self.locks[t.worker] -= 1
                if t.held:
                    self._credit(o, t.worker if t.verdict == "accepted" else self.parties.treasury.address, t.held)
                if t.verdict == "accepted":
                    payouts[t.worker] += t.payment
                elif t.verdict == "rejected":
                    slashed[t.worker] += self._slash(o, t.worker, t.prover or t.verifier)
            self.locks.subtract(o.replaced)
            for v, (fee, reported, overturned) in o.validators.items():
                self.locks[v] -= 1
                if reported and not overturned:
                    payouts[v] += fee
            for address, amount in payouts.items():
                self._credit(o, address, amount)
            self._credit(o, o.client.address, o.escrow - sum(payouts.values()))
            return payouts, slashed

        @precondition(lambda self: self.orders)
        @rule(i=st.integers(0, 50))
        def cancel(self, i):
            o = self._open(i)
            commits = any(t.committed for t in o.tasks)
            verdicts = any(t.verdict != "none" for t in o.tasks)
            ok = o.status == "open" and not verdicts and (not commits or self._past(o))
            if _expect(ok, lambda: self.bahen.cancel_order(o.client, order_id=o.oid), "cancel"):
                o.status = "cancelled"
                self.locks.subtract([t.worker for t in o.tasks if t.worker] + list(o.validators) + o.replaced)
                self._credit(o, o.client.address, o.escrow)
            self._check_accounts()

        @rule(who=st.integers(0, 9))
        def withdraw(self, who):
            everyone = self.parties.all() + self.pool
            owed = [a for a in everyone if self.pending[a.address]]
            candidates = owed if owed and who % 3 else everyone
            acct = candidates[who % len(candidates)]
            expected = self.pending[acct.address]
            paid = _expect(expected > 0, lambda: self.bahen.withdraw(acct), "withdraw")
            if paid is not None:
                assert paid == expected
                self.pending[acct.address] = 0
                self.withdrawn += paid
            self._check_accounts()

        @rule(m=st.integers(0, 7), pct=st.integers(1, 60))
        def unbond(self, m, pct):
            acct = list(self.members.values())[m]
            amount = max(1, self.stake[acct.address] * pct // 100)
            ok = self.locks[acct.address] == 0 and amount <= self.stake[acct.address]
            if _expect(ok, lambda: self.bahen.request_unbond(acct, amount=amount), "unbond"):
                self.stake[acct.address] -= amount
                self.unbonding[acct.address] += amount
                self.unbond_at[acct.address] = self.bahen.member(acct.address).unbond_at
            self._check_accounts()

        @rule(m=st.integers(0, 7))
        def withdraw_unbonded(self, m):
            if not any(self.unbonding.values()):
                return
            acct = list(self.members.values())[m]
            due = self.unbonding[acct.address] > 0 and self.chain.now() >= self.unbond_at.get(acct.address, 0)
            paid = _expect(due, lambda: self.bahen.withdraw_unbonded(acct), "withdraw_unbonded")
            if paid is not None:
                assert paid == self.unbonding[acct.address]
                self.unbonding[acct.address] = 0
                self.withdrawn += paid
            self._check_accounts()

        @rule(seconds=st.sampled_from(STEPS))
        def advance_time(self, seconds):
            self.chain.increase_time(seconds)

        @invariant()
        def funds_are_conserved(self):
            market = self.chain.balance(self.bahen.addresses.market)
            staking = self.chain.balance(self.bahen.addresses.staking)
            escrowed = sum(o.escrow for o in self.orders if o.status == "open")
            bonds = sum(
                t.dispute.bond for o in self.orders for t in o.tasks if t.dispute and t.dispute.status in ACTIVE
            ) + sum(t.held for o in self.orders if o.status == "open" for t in o.tasks)
            assert market == sum(self.pending.values()) + escrowed + bonds
            assert staking == sum(self.stake.values()) + sum(self.unbonding.values())
            assert market + staking + self.withdrawn == self.deposited

        def teardown(self):
            self._check_accounts()
            for o in self.orders:  # each order's events, found from its own first block, are every wei it moved
                ledger = self.bahen.ledger(o.oid)
                assert (sum(c.amount for c in ledger.credits), sum(s.amount for s in ledger.slashes)) == (o.credited, o.slashed)
                assert (self.bahen.settlement_of(o.oid) is not None) == (o.status == "settled")

        def _check_accounts(self):
            """Credits and stakes on chain equal the model: nothing paid twice, no stake below zero."""
            for acct in self.parties.all() + self.pool:
                assert self.bahen.pending(acct.address) == self.pending[acct.address]
            for address in self.members:
                member = self.bahen.member(address)
                assert member.stake == self.stake[address] >= 0
                assert (member.unbonding, member.locks) == (self.unbonding[address], self.locks[address])
                floor = WORKER_STAKE if member.role == "worker" else PARAMS.min_validator_stake
                assert member.eligible == (self.stake[address] >= floor)

    return MarketMachine
