"""StakingRegistry through the client: registration, stake rules, unbonding, who may slash."""

import pytest

from contracts.errors import ChainError, ContractRevert, InsufficientFundsError
from tests.unit.contracts.fixtures import GFLOPS, PARAMS, WORKER_STAKE, account, b32, open_assigned


def test_registered_members_are_readable(bahen, parties):
    worker = bahen.member(parties.workers[0].address)
    assert (worker.role, worker.declared_gflops, worker.stake, worker.locks) == ("worker", GFLOPS, WORKER_STAKE, 0)
    assert worker.eligible
    assert worker.x25519_public == "0x" + b32("x25519 w0").hex()
    validator = bahen.member(parties.validators[0].address)
    assert (validator.role, validator.stake, validator.eligible) == ("validator", PARAMS.min_validator_stake, True)
    stranger = bahen.member(parties.stranger.address)
    assert (stranger.role, stranger.eligible) == ("none", False)
    assert bahen.required_stake(GFLOPS) == WORKER_STAKE
    assert bahen.params() == PARAMS


def test_the_registry_lists_each_role_in_registration_order_and_keeps_a_failed_registration_out(bahen, parties):
    assert [m.address for m in bahen.members("worker")] == [w.address for w in parties.workers]
    assert [m.address for m in bahen.members("validator")] == [v.address for v in parties.validators]
    with pytest.raises(ContractRevert, match="InsufficientStake"):
        bahen.register_worker(parties.stranger, x25519_public=b32("k"), declared_gflops=GFLOPS, stake=WORKER_STAKE - 1)
    assert len(bahen.members("worker")) == len(parties.workers)
    bahen.register_worker(parties.stranger, x25519_public=b32("k"), declared_gflops=GFLOPS, stake=WORKER_STAKE)
    workers = bahen.members("worker")
    assert workers[-1].address == parties.stranger.address and workers[-1].eligible
    assert parties.stranger.address not in {m.address for m in bahen.members("validator")}


def test_worker_stake_must_cover_declared_compute(bahen, parties):
    with pytest.raises(ContractRevert) as err:
        bahen.register_worker(parties.stranger, x25519_public=b32("k"), declared_gflops=5_000, stake=WORKER_STAKE)
    assert err.value.error == "InsufficientStake"
    assert err.value.fields == {"required": 5_000 * PARAMS.stake_wei_per_gflop, "sent": WORKER_STAKE}
    assert (
        str(err.value)
        == f"register_worker reverted: InsufficientStake(required={5 * WORKER_STAKE}, sent={WORKER_STAKE})"
    )


def test_registration_reverts(bahen, parties):
    with pytest.raises(ContractRevert, match="ZeroCompute"):
        bahen.register_worker(parties.stranger, x25519_public=b32("k"), declared_gflops=0, stake=WORKER_STAKE)
    with pytest.raises(ContractRevert, match="AlreadyRegistered"):
        bahen.register_validator(parties.workers[0], x25519_public=b32("k"), stake=PARAMS.min_validator_stake)
    with pytest.raises(ContractRevert, match="InsufficientStake"):
        bahen.register_validator(parties.stranger, x25519_public=b32("k"), stake=PARAMS.min_validator_stake - 1)
    with pytest.raises(ChainError, match="x25519_public must be 32 bytes"):
        bahen.register_validator(parties.stranger, x25519_public=b"short", stake=PARAMS.min_validator_stake)


def test_add_stake(bahen, parties):
    bahen.add_stake(parties.workers[0], amount=7)
    assert bahen.stake_of(parties.workers[0].address) == WORKER_STAKE + 7
    with pytest.raises(ContractRevert, match="NotRegistered"):
        bahen.add_stake(parties.stranger, amount=7)
    with pytest.raises(ContractRevert, match="ZeroAmount"):
        bahen.add_stake(parties.workers[0], amount=0)


def test_unbonding_waits_for_the_delay(bahen, chain, parties):
    worker = parties.workers[0]
    bahen.request_unbond(worker, amount=WORKER_STAKE // 4)
    member = bahen.member(worker.address)
    assert (member.stake, member.unbonding) == (WORKER_STAKE - WORKER_STAKE // 4, WORKER_STAKE // 4)
    with pytest.raises(ContractRevert) as err:
        bahen.withdraw_unbonded(worker)
    assert err.value.error == "UnbondingNotDue"
    chain.increase_time(PARAMS.unbonding_delay + 1)
    before = chain.balance(worker.address)
    assert bahen.withdraw_unbonded(worker) == WORKER_STAKE // 4
    assert 0 < chain.balance(worker.address) - before <= WORKER_STAKE // 4
    with pytest.raises(ContractRevert, match="NothingToWithdraw"):
        bahen.withdraw_unbonded(worker)


def test_unbonding_below_the_requirement_makes_a_worker_ineligible(bahen, parties):
    unbonded = parties.workers[0]
    bahen.request_unbond(unbonded, amount=1)
    assert not bahen.member(unbonded.address).eligible
    open_assigned(bahen, parties, b32("order"), tasks=2, validators=0)  # the draw takes the other two
    assert unbonded not in parties.workers[:2]
    with pytest.raises(ContractRevert, match="NoEligibleMember"):
        open_assigned(bahen, parties, b32("three tasks"), tasks=3, validators=0)


def test_unbond_reverts(bahen, parties):
    with pytest.raises(ContractRevert, match="UnbondExceedsStake"):
        bahen.request_unbond(parties.workers[0], amount=WORKER_STAKE + 1)
    with pytest.raises(ContractRevert, match="ZeroAmount"):
        bahen.request_unbond(parties.workers[0], amount=0)
    with pytest.raises(ContractRevert, match="NotRegistered"):
        bahen.request_unbond(parties.stranger, amount=1)


def test_stake_bound_to_an_open_order_cannot_unbond(bahen, parties):
    open_assigned(bahen, parties, b32("order"), tasks=1, validators=1)
    for member in (parties.workers[0], parties.validators[0]):
        with pytest.raises(ContractRevert) as err:
            bahen.request_unbond(member, amount=1)
        assert err.value.fields == {"member": member.address, "locks": 1}


def test_only_the_market_locks_and_slashes(bahen, chain, parties):
    staking = bahen.staking.functions
    for fn in (staking.slash(parties.workers[0].address, 10_000), staking.lock(parties.workers[0].address)):
        with pytest.raises(ContractRevert) as err:
            chain.transact(parties.stranger, fn, "slash")
        assert err.value.fields == {"caller": parties.stranger.address}
    with pytest.raises(ContractRevert, match="MarketAlreadyBound"):
        chain.transact(parties.deployer, staking.bindMarket(parties.stranger.address), "bind_market")
    with pytest.raises(ContractRevert, match="OwnableUnauthorizedAccount"):
        chain.transact(parties.stranger, staking.bindMarket(parties.stranger.address), "bind_market")


def test_a_sender_that_cannot_pay_is_told_to_fund_it(bahen):
    poor = account("never funded")
    with pytest.raises(InsufficientFundsError, match=f"{poor.address} holds 0 wei.*fund the account"):
        bahen.register_validator(poor, x25519_public=b32("k"), stake=PARAMS.min_validator_stake)
