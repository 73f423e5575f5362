"""A hypothesis state machine over random staking, order and payment sequences.

Every rule predicts from a plain Python model whether the contract must accept or revert the
call, so a verdict from anyone but the Wasp role, a double settlement or an early withdrawal
that succeeds fails the test. Funds conservation to the wei is checked after every step; credits
and stakes (nothing paid twice, no stake below zero) after every step that moves money.
Time moves in steps far larger than the deadline and delay margins, so predictions never sit on
a boundary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from contracts.chain import Chain
from contracts.errors import ContractRevert
from tests.unit.contracts.fixtures import ETHER, PARAMS, WORKER_STAKE, b32, deploy_staked, make_parties, sign_digest

TTL = 1_000
STEPS = (2_000, 4_000)


@dataclass
class TaskModel:
    worker: str
    payment: int
    committed: bool = False
    verdict: str = "none"


@dataclass
class OrderModel:
    oid: bytes
    client: object
    escrow: int
    deadline: int
    status: str = "open"
    allocated: int = 0
    tasks: list[TaskModel] = field(default_factory=list)
    validators: dict[str, list] = field(default_factory=dict)  # address -> [fee, reported]


def _expect(ok: bool, call: Callable, name: str):
    """Runs `call`; it must succeed when `ok` and revert otherwise."""
    event(f"{name}: {'accepted' if ok else 'reverted'}")
    if ok:
        return call()
    with pytest.raises(ContractRevert):
        call()
    return None


def make_machine(new_chain: Callable[[], Chain]) -> type[RuleBasedStateMachine]:
    """Builds the machine class over a chain factory (in-process, or a connection to anvil)."""

    class MarketMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.chain = new_chain()
            self.parties = make_parties(self.chain)
            self.bahen = deploy_staked(self.chain, self.parties)
            p = self.parties
            for worker in p.workers:  # headroom, so a partial unbond can leave a worker eligible
                self.bahen.add_stake(worker, amount=WORKER_STAKE)
            self.members = {a.address: a for a in p.workers + p.validators}
            self.stake = {w.address: 2 * WORKER_STAKE for w in p.workers} | {
                v.address: PARAMS.min_validator_stake for v in p.validators
            }
            self.unbonding: Counter = Counter()
            self.unbond_at: dict[str, int] = {}
            self.locks: Counter = Counter()
            self.pending: Counter = Counter()
            self.orders: list[OrderModel] = []
            self.reports: set[tuple] = set()
            self.deposited = sum(self.stake.values())
            self.withdrawn = 0

        def _past(self, order: OrderModel) -> bool:
            return self.chain.now() > order.deadline

        def _open(self, i: int) -> OrderModel:
            """Mostly an open order (where the lifecycle goes on), else any order."""
            candidates = [o for o in self.orders if o.status == "open"] if i % 4 else self.orders
            candidates = candidates or self.orders
            return candidates[i % len(candidates)]

        def _eligible_worker(self, address: str) -> bool:
            return address in {w.address for w in self.parties.workers} and self.stake[address] >= WORKER_STAKE

        @initialize(escrow=st.integers(ETHER // 2, 3 * ETHER), tasks=st.integers(1, 3))
        def start_with_an_assigned_order(self, escrow, tasks):
            """Most interesting states lie past assignment; start there as well as from scratch."""
            self.open_order(escrow, other_client=False)
            for task in range(tasks):
                self.assign_task(len(self.orders) - 1, task, 100 // (tasks + 1), by_client=True)
            self.assign_validator(len(self.orders) - 1, 0, 5)

        @rule(escrow=st.integers(1, 3 * ETHER), other_client=st.booleans())
        def open_order(self, escrow, other_client):
            client = self.parties.stranger if other_client else self.parties.client
            oid = b32(f"stateful order {len(self.orders)}")
            deadline = self.chain.now() + TTL
            self.bahen.open_order(client, order_id=oid, spec_hash=b32("spec"), escrow=escrow, deadline=deadline)
            self.orders.append(OrderModel(oid, client, escrow, deadline))
            self.deposited += escrow

        @precondition(lambda self: self.orders)
        @rule(i=st.integers(0, 50), w=st.integers(0, 2), share=st.integers(0, 100), by_client=st.booleans())
        def assign_task(self, i, w, share, by_client):
            o, worker = self._open(i), self.parties.workers[w].address
            payment = o.escrow * share // 100
            sender = o.client if by_client else self.parties.wasp
            ok = (
                o.status == "open"
                and by_client
                and not self._past(o)
                and self._eligible_worker(worker)
                and o.allocated + payment <= o.escrow
            )
            call = lambda: self.bahen.assign_task(
                sender, order_id=o.oid, task=len(o.tasks), worker=worker, payment=payment
            )
            if _expect(ok, call, "assign_task"):
                o.tasks.append(TaskModel(worker, payment))
                o.allocated += payment
                self.locks[worker] += 1

        @precondition(lambda self: self.orders)
        @rule(i=st.integers(0, 50), v=st.integers(0, 1), share=st.integers(0, 30))
        def assign_validator(self, i, v, share):
            o, validator = self._open(i), self.parties.validators[v].address
            fee = o.escrow * share // 100
            ok = (
                o.status == "open"
                and not self._past(o)
                and validator not in o.validators
                and self.stake[validator] >= PARAMS.min_validator_stake
                and o.allocated + fee <= o.escrow
            )
            call = lambda: self.bahen.assign_validator(o.client, order_id=o.oid, validator=validator, fee=fee)
            if _expect(ok, call, "assign_validator"):
                o.validators[validator] = [fee, False]
                o.allocated += fee
                self.locks[validator] += 1

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
            ok = o.status == "open" and not self._past(o) and not task.committed and task.verdict == "none"
            sender = self.members[task.worker]
            call = lambda: self.bahen.commit_proof(sender, order_id=o.oid, task=index, root=b32(f"r{t}"))
            if _expect(ok, call, "commit"):
                task.committed = True

        @precondition(lambda self: any(t.committed for o in self.orders for t in o.tasks))
        @rule(i=st.integers(0, 50), t=st.integers(0, 50), v=st.integers(0, 1), kind=st.integers(0, 1))
        def report(self, i, t, v, kind):
            o, index = self._pick_task(i, t, lambda task: task.committed)
            signer = self.parties.validators[v]
            digest = b32(f"report {o.oid.hex()} {index} {kind} {signer.address}")
            key = (o.oid, index, kind, signer.address)
            ok = (
                o.status == "open"
                and o.tasks[index].committed
                and signer.address in o.validators
                and key not in self.reports
            )
            call = lambda: self.bahen.submit_report(
                self.parties.stranger,
                order_id=o.oid,
                task=index,
                kind=kind,
                digest=digest,
                signature=sign_digest(signer, digest),
            )
            if _expect(ok, call, "report"):
                self.reports.add(key)
                o.validators[signer.address][1] = True

        @precondition(lambda self: any(o.tasks for o in self.orders))
        @rule(i=st.integers(0, 50), t=st.integers(0, 50), accepted=st.booleans(), as_wasp=st.integers(0, 3))
        def verdict(self, i, t, accepted, as_wasp):
            o, index = self._pick_task(i, t, lambda task: task.verdict == "none")
            task = o.tasks[index]
            sender = self.parties.wasp if as_wasp else o.client  # a quarter of verdicts come from an intruder
            ok = bool(as_wasp) and o.status == "open" and task.verdict == "none" and (task.committed or not accepted)
            call = lambda: self.bahen.record_verdict(
                sender, order_id=o.oid, task=index, accepted=accepted, reasons_digest=b32("why")
            )
            if _expect(ok, call, "verdict"):
                task.verdict = "accepted" if accepted else "rejected"

        @precondition(lambda self: self.orders)
        @rule(i=st.integers(0, 50))
        def settle(self, i):
            o = self._open(i)
            judged = all(t.verdict != "none" for t in o.tasks)
            ok = o.status == "open" and (judged or self._past(o))
            s = _expect(ok, lambda: self.bahen.settle(self.parties.stranger, order_id=o.oid), "settle")
            if s is not None:
                payouts, slashed, to_client, to_treasury = self._settle_model(o)
                assert (s.payouts, s.slashed) == (dict(payouts), dict(slashed))
                assert (s.slash_to_client, s.slash_to_treasury) == (to_client, to_treasury)
            self._check_accounts()

        def _settle_model(self, o: OrderModel):
            o.status = "settled"
            payouts, slashed, to_client, to_treasury = Counter(), Counter(), 0, 0
            for t in o.tasks:
                self.locks[t.worker] -= 1
                if t.verdict == "accepted":
                    payouts[t.worker] += t.payment
                elif t.verdict == "rejected":
                    amount = self.stake[t.worker] * PARAMS.slash_bps // 10_000
                    self.stake[t.worker] -= amount
                    share = amount * PARAMS.treasury_bps // 10_000
                    slashed[t.worker] += amount
                    to_client, to_treasury = to_client + amount - share, to_treasury + share
            for v, (fee, reported) in o.validators.items():
                self.locks[v] -= 1
                if reported:
                    payouts[v] += fee
            self.pending.update(payouts)
            self.pending[o.client.address] += o.escrow - sum(payouts.values()) + to_client
            self.pending[self.parties.treasury.address] += to_treasury
            return payouts, slashed, to_client, to_treasury

        @precondition(lambda self: self.orders)
        @rule(i=st.integers(0, 50))
        def cancel(self, i):
            o = self._open(i)
            commits = any(t.committed for t in o.tasks)
            verdicts = any(t.verdict != "none" for t in o.tasks)
            ok = o.status == "open" and not verdicts and (not commits or self._past(o))
            if _expect(ok, lambda: self.bahen.cancel_order(o.client, order_id=o.oid), "cancel"):
                o.status = "cancelled"
                self.locks.subtract([t.worker for t in o.tasks] + list(o.validators))
                self.pending[o.client.address] += o.escrow
            self._check_accounts()

        @rule(who=st.integers(0, 9))
        def withdraw(self, who):
            owed = [a for a in self.parties.all() if self.pending[a.address]]
            candidates = owed if owed and who % 3 else self.parties.all()
            acct = candidates[who % len(candidates)]
            expected = self.pending[acct.address]
            paid = _expect(expected > 0, lambda: self.bahen.withdraw(acct), "withdraw")
            if paid is not None:
                assert paid == expected
                self.pending[acct.address] = 0
                self.withdrawn += paid
            self._check_accounts()

        @rule(m=st.integers(0, 4), pct=st.integers(1, 60))
        def unbond(self, m, pct):
            acct = (self.parties.workers + self.parties.validators)[m]
            amount = max(1, self.stake[acct.address] * pct // 100)
            ok = self.locks[acct.address] == 0 and amount <= self.stake[acct.address]
            if _expect(ok, lambda: self.bahen.request_unbond(acct, amount=amount), "unbond"):
                self.stake[acct.address] -= amount
                self.unbonding[acct.address] += amount
                self.unbond_at[acct.address] = self.bahen.member(acct.address).unbond_at
            self._check_accounts()

        @precondition(lambda self: any(self.unbonding.values()))
        @rule(m=st.integers(0, 4))
        def withdraw_unbonded(self, m):
            acct = (self.parties.workers + self.parties.validators)[m]
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
            assert market == sum(self.pending.values()) + escrowed
            assert staking == sum(self.stake.values()) + sum(self.unbonding.values())
            assert market + staking + self.withdrawn == self.deposited

        def teardown(self):
            self._check_accounts()

        def _check_accounts(self):
            """Credits and stakes on chain equal the model: nothing paid twice, no stake below zero."""
            for acct in self.parties.all():
                assert self.bahen.pending(acct.address) == self.pending[acct.address]
            for address in self.members:
                member = self.bahen.member(address)
                assert member.stake == self.stake[address] >= 0
                assert (member.unbonding, member.locks) == (self.unbonding[address], self.locks[address])
                floor = WORKER_STAKE if member.role == "worker" else PARAMS.min_validator_stake
                assert member.eligible == (self.stake[address] >= floor)

    return MarketMachine
