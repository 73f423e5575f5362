"""Fixtures and helpers shared by the contract tests on both backends.

Each conftest imports these; the integration conftest overrides `node` with an anvil connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from contracts.chain import Chain
from contracts.client import Bahen, order_id_of
from contracts.economics import chain_params
from contracts.models import Addresses, ChainParams

ETHER = 10**18
# The deployment's economics with a test-sized clock and stakes.
PARAMS = chain_params().model_copy(
    update={
        "stake_wei_per_gflop": 10**14,
        "min_validator_stake": 10**16,
        "unbonding_delay": 3_600,
        "dispute_window": 100,
        "resolution_period": 100,
        "dispute_bond": ETHER // 10,
        "resolver_fee": ETHER // 50,
    }
)
WINDOW = PARAMS.dispute_window + 1  # seconds after which a verdict is final
GFLOPS = 1_000
WORKER_STAKE = PARAMS.stake_wei_per_gflop * GFLOPS


def account(name: str) -> LocalAccount:
    """A deterministic test account, so failures name the same addresses every run."""
    return Account.from_key(keccak(text=f"bahen test account {name}"))


def b32(label: str) -> bytes:
    return keccak(text=label)


@dataclass
class Parties:
    deployer: LocalAccount
    wasp: LocalAccount
    treasury: LocalAccount
    client: LocalAccount
    stranger: LocalAccount
    workers: list[LocalAccount]
    validators: list[LocalAccount]

    def all(self) -> list[LocalAccount]:
        fixed = [self.deployer, self.wasp, self.treasury, self.client, self.stranger]
        return fixed + self.workers + self.validators


def make_parties(chain: Chain, salt: str = "") -> Parties:
    parties = Parties(
        deployer=account(f"deployer{salt}"),
        wasp=account(f"wasp{salt}"),
        treasury=account(f"treasury{salt}"),
        client=account(f"client{salt}"),
        stranger=account(f"stranger{salt}"),
        workers=[account(f"worker{i}{salt}") for i in range(3)],
        validators=[account(f"validator{i}{salt}") for i in range(2)],
    )
    for acct in parties.all():
        if chain.balance(acct.address) < 20 * ETHER:
            chain.fund(acct.address, 100 * ETHER)
    return parties


def deploy_staked(chain: Chain, parties: Parties, params: ChainParams = PARAMS) -> Bahen:
    """Deploys fresh contracts and registers every worker and validator with enough stake."""
    bahen = Bahen.deploy(
        chain, parties.deployer, wasp=parties.wasp.address, treasury=parties.treasury.address, params=params
    )
    for i, worker in enumerate(parties.workers):
        bahen.register_worker(worker, x25519_public=b32(f"x25519 w{i}"), declared_gflops=GFLOPS, stake=WORKER_STAKE)
    for i, validator in enumerate(parties.validators):
        bahen.register_validator(validator, x25519_public=b32(f"x25519 v{i}"), stake=PARAMS.min_validator_stake)
    return bahen


def order_of(label: str, client: str = "client") -> tuple[bytes, bytes]:
    """The salt ``b32(label)`` and the id of the order the test account ``client`` opens with it."""
    salt = b32(label)
    return salt, order_id_of(account(client).address, salt)


def open_assigned(
    bahen: Bahen,
    parties: Parties,
    salt: bytes,
    *,
    tasks: int = 2,
    validators: int = 1,
    escrow: int = ETHER,
    payment: int = ETHER // 4,
    fee: int = ETHER // 20,
    ttl: int = 3_600,
    commit_window: int = 600,
) -> bytes:
    """Opens an order, adds ``tasks`` tasks and ``validators`` validator slots, has the chain draw them
    and returns the order id. The parties are then renumbered in the order the chain drew them: task
    i's worker is ``parties.workers[i]``, slot j's validator ``parties.validators[j]``, the rest follow."""
    deadline = bahen.chain.now() + ttl
    order_id = bahen.open_order(
        parties.client, salt=salt, spec_hash=b32("spec"), escrow=escrow, deadline=deadline, commit_window=commit_window
    )
    for _ in range(tasks):
        bahen.add_task(parties.client, order_id=order_id, payment=payment)
    for _ in range(validators):
        bahen.add_validator(parties.client, order_id=order_id, fee=fee)
    if tasks or validators:
        drawn = bahen.draw(parties.stranger, order_id=order_id)
        renumber(parties.workers, [drawn.workers[task] for task in range(tasks)])
        renumber(parties.validators, drawn.validators)
    return order_id


def renumber(accounts: list[LocalAccount], first: list[str]) -> None:
    """Reorders ``accounts`` in place: those at the addresses ``first``, in that order, then the rest."""
    by_address = {a.address: a for a in accounts}
    accounts[:] = [by_address[a] for a in first] + [a for a in accounts if a.address not in first]


def commit_all(bahen: Bahen, parties: Parties, order_id: bytes, tasks: int = 2) -> None:
    for task in range(tasks):
        worker = parties.workers[task]
        bahen.commit_proof(worker, order_id=order_id, task=task, root=b32(f"root {task}"))


def report(bahen: Bahen, sender: LocalAccount, signer: LocalAccount, order_id: bytes, task: int, kind: int = 0) -> str:
    digest = b32(f"report {task} {kind} {signer.address}")
    return bahen.submit_report(
        sender, order_id=order_id, task=task, kind=kind, digest=digest,
        signature=bahen.sign_report(signer, order_id=order_id, task=task, kind=kind, digest=digest),
    )


DRAW_TRIES = 64  # BahenMarket's bound on the members one slot's draw may find (a panel's tries each draw one)


def draw_one(weights: dict[str, int], seed: int, qualifies: Callable[[str, int], bool], found: list[str]) -> str | None:
    """One member by the contract's rule, appending to ``found`` every member a try finds: try k (the
    length of ``found``) picks stake-weighted among the members of ``weights`` (in registration order)
    not yet found, by keccak256(abi.encode(seed, k)) modulo their weight; the first that qualifies
    is drawn. None when no weight remains or the tries ran out."""
    while len(found) < DRAW_TRIES:
        rest = [(address, weight) for address, weight in weights.items() if address not in found]
        remaining = sum(weight for _, weight in rest)
        if remaining == 0:
            return None
        r = int.from_bytes(keccak(encode(["uint256", "uint256"], [seed, len(found)])), "big") % remaining
        for address, weight in rest:
            if r < weight:
                break
            r -= weight
        found.append(address)
        if qualifies(address, weight):
            return address
    return None


def _drawing_weights(bahen: Bahen, role: str, parties: set[str]) -> dict[str, int]:
    """Each member's weight in a draw of the order whose ``parties`` it leaves out: its stake while eligible."""
    return {m.address: m.stake if m.eligible else 0 for m in bahen.members(role) if m.address not in parties}


def expected_draw(bahen: Bahen, order_id: bytes, task: int, parties: set[str], disputers: set[str]) -> list[str]:
    """The resolvers of a dispute recomputed from public chain data by the contract's rule: a
    stake-weighted draw without replacement among eligible validators that are no ``parties`` to the
    order nor ``disputers`` of the task (both left out from the start), seeded by the hash of the block
    after the dispute, of `resolver_count` doubled for each earlier dispute of the task, at most 15."""
    d = bahen.dispute(order_id, task)
    count = min(bahen.params().resolver_count << (bahen.order(order_id).tasks[task].disputes - 1), 15)
    block_hash = bahen.chain.block_hash(d.anchor_block + 1)
    seed = int.from_bytes(keccak(encode(["bytes32", "bytes32", "uint256"], [block_hash, order_id, task])), "big")
    weights = _drawing_weights(bahen, "validator", parties | disputers)
    drawn: list[str] = []  # with everyone outside the rule left out, each try draws a resolver
    for _ in range(count):
        if draw_one(weights, seed, lambda *_: True, drawn) is None:
            break
    return drawn


def expected_member(
    bahen: Bahen, order_id: bytes, role: str, index: int, draw_block: int, parties: set[str], payment: int = 0
) -> str:
    """The member drawn for slot ``index`` of ``role``, recomputed from public chain data by the contract's
    rule: stake-weighted among eligible members that are no ``parties`` to the order and whose stake
    covers ``payment``, seeded by keccak256(abi.encode(hash of the block after ``draw_block``, order id,
    role, index)). The parties are left out from the start; a member short of the stake only once a try
    finds it."""
    code = {"worker": 0, "validator": 1}[role]
    block_hash = bahen.chain.block_hash(draw_block + 1)
    seed = int.from_bytes(keccak(encode(["bytes32", "bytes32", "uint8", "uint256"], [block_hash, order_id, code, index])), "big")
    required = -(-payment * bahen.params().stake_coverage_bps // 10_000)
    member = draw_one(_drawing_weights(bahen, role, parties), seed, lambda _, w: w >= required, [])
    assert member is not None, "no member qualifies"
    return member


@pytest.fixture(scope="module")
def node() -> Chain:
    """The chain a module's tests share: the in-process EVM (the integration conftest's is anvil)."""
    return Chain.in_process()


@pytest.fixture(scope="module")
def deployment(node) -> Addresses:
    """The contracts a module's tests share, deployed once, every test account funded and staked."""
    return deploy_staked(node, make_parties(node)).addresses


@pytest.fixture
def chain(node, deployment) -> Iterator[Chain]:
    """The module's chain as :func:`deployment` left it: what a test does is undone after it (a snapshot of
    the node), so each starts from fresh contracts and funded accounts."""
    # after a revert the in-process EVM dates its next block by the wall clock, however far the latest lags:
    # a block now brings the chain's clock up to it, so the test's first move of the clock goes forward
    node.mine(1)
    snapshot = node.w3.provider.make_request("evm_snapshot", [])["result"]
    yield node
    reverted = node.w3.provider.make_request("evm_revert", [snapshot])
    assert "error" not in reverted and reverted["result"] is not False, f"the node did not undo the test: {reverted}"


@pytest.fixture
def slack(chain) -> int:
    """Seconds a chain's clock may run past where a test moved it: none on the in-process EVM, whose clock
    moves only when told; on anvil, whose clock follows the wall clock between blocks, the few a test takes."""
    return 0 if chain.label == "in-process EVM" else 10


@pytest.fixture
def parties(chain) -> Parties:
    return make_parties(chain)


@pytest.fixture
def bahen(chain, deployment) -> Bahen:
    return Bahen.attach(chain, deployment)
