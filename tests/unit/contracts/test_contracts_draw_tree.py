"""The registry's drawing tree: each pick equals a stake-weighted scan of the members in registration
order, whatever sequence of registrations, stake changes and slashes built it and whichever members
a draw leaves out; and a draw's gas does not grow with members that registered and left."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.abi import load_artifact
from contracts.chain import Chain
from contracts.errors import ContractRevert
from contracts.client import ZERO_ADDRESS
from tests.unit.contracts.fixtures import ETHER, GFLOPS, PARAMS, account, b32

WORKER, VALIDATOR = 1, 2
ACCOUNTS = [account(f"tree member {i}") for i in range(10)]

op = st.one_of(
    st.tuples(st.just("worker"), st.integers(0, 9), st.integers(1, 4), st.integers(0, 3)),  # gflops, extra stake
    st.tuples(st.just("validator"), st.integers(0, 9), st.integers(1, 5), st.just(0)),  # stake in minimum stakes
    st.tuples(st.just("add"), st.integers(0, 9), st.integers(1, 3), st.just(0)),
    st.tuples(st.just("unbond"), st.integers(0, 9), st.integers(1, 4), st.just(0)),  # quarters of the stake
    st.tuples(st.just("slash"), st.integers(0, 9), st.integers(1, 10_000), st.just(0)),
)


class Tree:
    """A registry bound to a probe that acts as its market, and the model of every member's stake."""

    def __init__(self):
        self.chain = Chain.in_process()
        deployer = account("tree deployer")
        self.chain.fund(deployer.address, 10 * ETHER)
        for acct in ACCOUNTS:
            self.chain.fund(acct.address, 100 * ETHER)
        reg, probe = load_artifact("StakingRegistry"), load_artifact("DrawProbe")
        address = self.chain.deploy(deployer, reg.abi, reg.bytecode, [PARAMS.stake_wei_per_gflop, PARAMS.min_validator_stake,
                                                                     PARAMS.unbonding_delay, deployer.address], "deploy")
        self.registry = self.chain.w3.eth.contract(address=address, abi=reg.abi)
        probe_address = self.chain.deploy(deployer, probe.abi, probe.bytecode, [address], "deploy probe")
        self.probe = self.chain.w3.eth.contract(address=probe_address, abi=probe.abi)
        self.chain.transact(deployer, self.registry.functions.bindMarket(probe_address), "bind")
        self.deployer = deployer
        self.role: dict[str, int] = {}
        self.floor: dict[str, int] = {}
        self.stake: dict[str, int] = {}
        self.order: dict[int, list[str]] = {WORKER: [], VALIDATOR: []}

    def apply(self, kind: str, i: int, a: int, b: int) -> None:
        acct = ACCOUNTS[i]
        who, f = acct.address, self.registry.functions
        if kind in ("worker", "validator") and who not in self.role:
            if kind == "worker":
                floor, stake = a * GFLOPS * PARAMS.stake_wei_per_gflop, (a + b) * GFLOPS * PARAMS.stake_wei_per_gflop
                self.chain.transact(acct, f.registerWorker(b32(f"k{i}"), a * GFLOPS), "register", value=stake)
            else:
                floor, stake = PARAMS.min_validator_stake, a * PARAMS.min_validator_stake
                self.chain.transact(acct, f.registerValidator(b32(f"k{i}")), "register", value=stake)
            self.role[who] = WORKER if kind == "worker" else VALIDATOR
            self.floor[who], self.stake[who] = floor, stake
            self.order[self.role[who]].append(who)
        elif kind == "add" and who in self.role:
            self.chain.transact(acct, f.addStake(), "add", value=a * PARAMS.min_validator_stake)
            self.stake[who] += a * PARAMS.min_validator_stake
        elif kind == "unbond" and who in self.role and self.stake[who] * a // 4:
            self.chain.transact(acct, f.requestUnbond(self.stake[who] * a // 4), "unbond")
            self.stake[who] -= self.stake[who] * a // 4
        elif kind == "slash" and who in self.role:
            self.chain.transact(self.deployer, self.probe.functions.slash(who, a), "slash")
            self.stake[who] -= self.stake[who] * a // 10_000

    def weight(self, who: str) -> int:
        s = self.stake[who]
        return s if s >= self.floor[who] and s > 0 else 0

    def expected(self, role: int, left_out: set[str], seed: int) -> tuple[str, int]:
        rest = [(m, self.weight(m)) for m in self.order[role] if m not in left_out]
        remaining = sum(w for _, w in rest)
        if remaining == 0:
            return "0x" + "0" * 40, 0
        r = seed % remaining
        for m, w in rest:
            if r < w:
                return m, w
            r -= w
        raise AssertionError("unreachable")

    def pick(self, role: int, left_out: list[str], readmitted: list[str], seed: int) -> tuple[str, int]:
        return tuple(self.chain.call(self.probe.functions.pick(role, left_out, readmitted, seed), "pick"))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=24), seeds=st.lists(st.integers(0, 2**256 - 1), min_size=1, max_size=4),
       out=st.lists(st.integers(0, 9), max_size=6, unique=True), back=st.lists(st.integers(0, 9), max_size=3))
def test_every_pick_equals_a_stake_weighted_scan_in_registration_order(ops, seeds, out, back):
    tree = Tree()
    for step in ops:
        tree.apply(*step)
    for role in (WORKER, VALIDATOR):
        total = sum(tree.weight(m) for m in tree.order[role])
        assert tree.chain.call(tree.registry.functions.totalWeight(role), "total") == total
        left_out = [ACCOUNTS[i].address for i in out]
        readmitted = [ACCOUNTS[i].address for i in back]
        # a member of the other role, or one left out twice, changes nothing; a readmitted one counts again
        effective = set(left_out) - set(readmitted)
        # and on every boundary: a seed equal to the stake of the first k members draws the next one
        weights = [tree.weight(m) for m in tree.order[role] if m not in effective]
        boundaries = [sum(weights[:k]) for k in range(1, len(weights))]
        for seed in seeds + boundaries:
            assert tree.pick(role, left_out + left_out[:1], readmitted, seed) == tree.expected(role, effective, seed)


def test_only_the_bound_market_may_start_a_draw_or_leave_members_out():
    tree = Tree()
    tree.apply("validator", 0, 2, 0)
    stranger = ACCOUNTS[1]
    for fn in (tree.registry.functions.beginDraw(), tree.registry.functions.leaveOut(VALIDATOR, ACCOUNTS[0].address),
               tree.registry.functions.readmit(VALIDATOR, ACCOUNTS[0].address)):
        with pytest.raises(ContractRevert, match="NotMarket"):
            tree.chain.transact(stranger, fn, "as a stranger")


@pytest.mark.parametrize("role", ["worker", "validator"])
def test_a_draw_costs_about_the_same_gas_however_many_members_registered_and_left(bahen, chain, parties, role):
    """Members that registered with the least stake and unbonded it at once weigh nothing in the tree: an
    order's draw with 128 of them costs within 25% of the draw without (a scan of the registry cost
    about 13,000 gas a member, so 128 would have multiplied it)."""

    def draw_gas(salt: str) -> int:
        oid = bahen.open_order(parties.client, salt=b32(salt), spec_hash=b32("spec"), escrow=ETHER,
                               deadline=chain.now() + 3_600, commit_window=600)
        bahen.add_task(parties.client, order_id=oid, payment=ETHER // 4)
        bahen.add_validator(parties.client, order_id=oid, fee=ETHER // 20)
        chain.mine(2)
        receipt = chain.transact(parties.stranger, bahen.market.functions.draw(oid), "draw")
        view = bahen.order(oid)
        assert view.tasks[0].worker != ZERO_ADDRESS and view.validators[0].validator != ZERO_ADDRESS
        return receipt["gasUsed"]

    before = draw_gas("before the sybils")
    for i in range(128):
        sybil = account(f"{role} sybil {i}")
        chain.fund(sybil.address, ETHER)
        if role == "worker":
            bahen.register_worker(sybil, x25519_public=b32(f"s{i}"), declared_gflops=1, stake=PARAMS.stake_wei_per_gflop)
        else:
            bahen.register_validator(sybil, x25519_public=b32(f"s{i}"), stake=PARAMS.min_validator_stake)
        bahen.request_unbond(sybil, amount=bahen.stake_of(sybil.address))
    after = draw_gas("after the sybils")
    assert after < before * 1.25, (before, after)


def test_a_draw_spends_a_bounded_number_of_tries_and_leaves_the_slots_it_did_not_reach_for_the_next_call(
        bahen, chain, parties):
    """64 workers each just short of the stake a 2-ether task needs (as are the three staked ones): every
    slot's draw finds 64 members short and re-anchors. One call spends at most 256 tries (four slots' worth,
    within the in-process EVM's 10 million gas) and leaves the other slots as they were; the next call
    takes them."""
    required = -(-2 * ETHER * PARAMS.stake_coverage_bps // 10_000)
    for i in range(64):
        sybil = account(f"short worker {i}")
        chain.fund(sybil.address, ETHER)
        bahen.register_worker(sybil, x25519_public=b32(f"short {i}"), declared_gflops=1, stake=required - 1)
    chain.fund(parties.client.address, 20 * ETHER)
    oid = bahen.open_order(parties.client, salt=b32("short of stake"), spec_hash=b32("spec"), escrow=16 * ETHER,
                           deadline=chain.now() + 3_600, commit_window=600)
    for _ in range(8):
        bahen.add_task(parties.client, order_id=oid, payment=2 * ETHER)
    anchors = [t.draw_block for t in bahen.order(oid).tasks]

    first = bahen.draw(parties.stranger, order_id=oid)

    after = [t.draw_block for t in bahen.order(oid).tasks]
    assert (first.workers, first.reanchored) == ({}, 4)
    assert all(a > b for a, b in zip(after[:4], anchors[:4])) and after[4:] == anchors[4:]
    second = bahen.draw(parties.stranger, order_id=oid)
    assert (second.workers, second.reanchored) == ({}, 4)
    assert all(a > b for a, b in zip([t.draw_block for t in bahen.order(oid).tasks][4:], anchors[4:]))
