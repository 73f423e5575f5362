"""Disputes of a verdict: bonded, resolved by validators drawn on chain, paid by the losing side."""

from types import SimpleNamespace

import pytest

import tasks.settle as settle_module
from contracts.errors import ChainError, ChallengeNotReady, ContractRevert, NoResolvers
from tasks.settle import wait_for_finality
from tests.unit.contracts.fixtures import (
    ETHER,
    PARAMS,
    WINDOW,
    WORKER_STAKE,
    account,
    b32,
    commit_all,
    deploy_staked,
    expected_draw,
    open_assigned,
    order_of,
    report,
)

SALT, OID = order_of("order disputed")
PAYMENT, FEE = ETHER // 4, ETHER // 20
BOND, RESOLVER_FEE = PARAMS.dispute_bond, PARAMS.resolver_fee
POOL = 5  # validators outside the order, from which resolvers are drawn


@pytest.fixture
def pool(chain):
    """Funded validators that take no part in the order: each is staked once the order's own members
    are drawn (:func:`_opened`), resolver i with (i + 1) × the minimum."""
    accounts = [account(f"resolver {i}") for i in range(POOL)]
    for acct in accounts:
        chain.fund(acct.address, 10 * ETHER)
    return {a.address: a for a in accounts}


def _opened(bahen, parties, pool, tasks: int = 1) -> None:
    """The order with ``tasks`` tasks and one validator, drawn from the parties; then the pool stakes."""
    open_assigned(bahen, parties, SALT, tasks=tasks, validators=1, payment=PAYMENT, fee=FEE)
    for i, acct in enumerate(pool.values()):
        bahen.register_validator(acct, x25519_public=b32(f"x25519 r{i}"), stake=(i + 1) * PARAMS.min_validator_stake)


def _judged(bahen, parties, pool, accepted: bool) -> None:
    """Task 0 of worker 0 committed, verified by validator 0 (the order's only validator), judged."""
    _opened(bahen, parties, pool)
    commit_all(bahen, parties, OID, tasks=1)
    report(bahen, parties.stranger, parties.validators[0], OID, task=0)
    bahen.record_verdict(parties.wasp, order_id=OID, task=0, accepted=accepted, reasons_digest=b32("why"))


def _dispute(bahen, disputer) -> list[str]:
    bond = bahen.dispute_bond(OID, 0)
    bahen.open_dispute(disputer, order_id=OID, task=0, counter_digest=b32("counter report"), bond=bond)
    return bahen.draw_resolvers(disputer, order_id=OID, task=0)


def _expected_resolvers(bahen, parties, disputers: set[str]) -> list[str]:
    """The panel the public rule draws for task 0 of :func:`_judged`'s order, its parties (client, worker 0,
    validator 0) and ``disputers`` left out."""
    order_parties = {parties.client.address, parties.workers[0].address, parties.validators[0].address}
    return expected_draw(bahen, OID, 0, order_parties, disputers)


def _vote(bahen, pool, resolvers, votes) -> None:
    for address, uphold in zip(resolvers, votes):
        bahen.vote_dispute(pool[address], order_id=OID, task=0, uphold=uphold, report_digest=b32(address))


def _revert(call, error: str, **fields) -> None:
    with pytest.raises(ContractRevert) as err:
        call()
    assert err.value.error == error, str(err.value)
    assert {k: err.value.fields[k] for k in fields} == fields, str(err.value)


def _conserved(bahen, chain, parties, pool) -> None:
    """The market holds exactly what it owes: credits, open escrow and dispute bonds."""
    owed = sum(bahen.pending(a) for a in [p.address for p in parties.all()] + list(pool))
    view = bahen.order(OID)
    escrow = view.escrow if view.status == "open" else 0
    bonded = bahen.chain.call(bahen.market.functions.bonded(), "bonded")
    assert chain.balance(bahen.addresses.market) == owed + escrow + bonded


def test_an_upheld_dispute_rejects_accepted_fraud_and_the_disputer_earns_every_bounty(bahen, chain, parties, pool):
    _judged(bahen, parties, pool, accepted=True)
    disputer, worker, verifier = parties.validators[1], parties.workers[0], parties.validators[0]
    resolvers = _dispute(bahen, disputer)
    assert bahen.dispute(OID, 0).status == "voting" and len(resolvers) == 3
    _vote(bahen, pool, resolvers, [True, True])
    _conserved(bahen, chain, parties, pool)

    d, task = bahen.dispute(OID, 0), bahen.order(OID).tasks[0]
    assert (d.status, d.votes_uphold, task.verdict, task.prover) == ("upheld", 2, "rejected", disputer.address)
    assert [bahen.pending(r) for r in resolvers] == [RESOLVER_FEE, RESOLVER_FEE, 0]  # the third never voted
    assert all(bahen.member(r).locks == 0 for r in resolvers)
    # the verifier attested a passing verification the resolvers could not reproduce: slashed now
    assert bahen.order(OID).validators[0].overturned
    verifier_slash = PARAMS.min_validator_stake * PARAMS.slash_bps // 10_000
    verifier_bounty = verifier_slash * PARAMS.bounty_bps // 10_000
    assert bahen.stake_of(verifier.address) == PARAMS.min_validator_stake - verifier_slash
    assert bahen.pending(disputer.address) == BOND - 2 * RESOLVER_FEE + verifier_bounty

    # an upheld dispute makes the verdict final at once: no other dispute, settlement now
    _revert(lambda: _dispute(bahen, parties.workers[1]), "VerdictOverturned", task=0)
    s = bahen.settle(parties.stranger, order_id=OID)
    slashed = WORKER_STAKE * PARAMS.slash_bps // 10_000
    bounty = slashed * PARAMS.bounty_bps // 10_000
    assert s.slashed == {worker.address: slashed} and s.payouts == {}  # no fee for the overturned verifier
    assert bahen.pending(disputer.address) == BOND - 2 * RESOLVER_FEE + verifier_bounty + bounty
    assert bahen.pending(parties.client.address) == ETHER == s.refund  # its escrow back, nothing of the slashes
    assert bahen.pending(worker.address) == 0
    _conserved(bahen, chain, parties, pool)
    ledger = bahen.ledger(OID)
    assert ledger.total("bounty") == bounty + verifier_bounty
    assert ledger.total("treasury") == slashed - bounty + verifier_slash - verifier_bounty
    assert ledger.total("resolver fee") == 2 * RESOLVER_FEE and ledger.total("bond returned") == BOND - 2 * RESOLVER_FEE
    assert [(x.member, x.amount) for x in ledger.slashes] == [(verifier.address, verifier_slash), (worker.address, slashed)]


def test_a_dismissed_dispute_pays_its_bond_to_the_accused_worker_at_settlement(bahen, chain, parties, pool):
    _judged(bahen, parties, pool, accepted=True)
    disputer, worker = parties.validators[1], parties.workers[0]
    resolvers = _dispute(bahen, disputer)
    _vote(bahen, pool, resolvers, [False, True, False])
    d = bahen.dispute(OID, 0)
    assert (d.status, d.votes_uphold, d.votes_dismiss) == ("dismissed", 1, 2)
    assert [bahen.pending(r) for r in resolvers] == [RESOLVER_FEE, 0, RESOLVER_FEE]  # the minority earns nothing
    # the rest of the bond is held until settlement: a later dispute may still show the work was fraud
    assert bahen.pending(disputer.address) == 0 and bahen.pending(worker.address) == 0
    # the verdict stood: another member may dispute it for a window from the close, so settlement waits
    _revert(lambda: bahen.settle(parties.stranger, order_id=OID), "DisputeWindowOpen", task=0,
            finalAt=d.closed_at + PARAMS.dispute_window)
    chain.increase_time(WINDOW)
    _conserved(bahen, chain, parties, pool)
    s = bahen.settle(parties.stranger, order_id=OID)
    assert s.payouts == {worker.address: PAYMENT, parties.validators[0].address: FEE} and s.slashed == {}
    assert bahen.pending(worker.address) == PAYMENT + BOND - 2 * RESOLVER_FEE
    _conserved(bahen, chain, parties, pool)


def test_an_upheld_dispute_of_a_rejection_pays_the_worker_and_slashes_the_verifier(bahen, chain, parties, pool):
    _judged(bahen, parties, pool, accepted=False)
    worker, verifier = parties.workers[0], parties.validators[0]
    resolvers = _dispute(bahen, worker)  # the worker disputes its own rejection
    outsider = parties.validators[1]  # no party to this order: it may be drawn
    _vote(bahen, pool | {outsider.address: outsider}, resolvers, [True, True])
    assert bahen.order(OID).tasks[0].verdict == "accepted"
    assert bahen.order(OID).validators[0].overturned
    slashed = PARAMS.min_validator_stake * PARAMS.slash_bps // 10_000
    bounty = slashed * PARAMS.bounty_bps // 10_000
    assert bahen.stake_of(verifier.address) == PARAMS.min_validator_stake - slashed
    s = bahen.settle(parties.stranger, order_id=OID)
    assert s.payouts == {worker.address: PAYMENT}  # the overturned verifier forfeits its fee
    assert s.slashed == {} and s.refund == ETHER - PAYMENT
    assert bahen.pending(worker.address) == PAYMENT + BOND - 2 * RESOLVER_FEE + bounty
    assert bahen.stake_of(worker.address) == WORKER_STAKE
    _conserved(bahen, chain, parties, pool)


def test_a_dispute_without_a_majority_expires_and_the_verdict_stands(bahen, chain, parties, pool):
    _judged(bahen, parties, pool, accepted=True)
    disputer = parties.validators[1]
    resolvers = _dispute(bahen, disputer)
    bahen.hand_over(disputer, order_id=OID, task=0, case_digest=b32("case"))
    _vote(bahen, pool, resolvers, [True])
    _revert(lambda: bahen.expire_dispute(parties.stranger, order_id=OID, task=0), "VotingOpen")
    _revert(lambda: bahen.settle(parties.stranger, order_id=OID), "DisputeActive", task=0)
    chain.increase_time(PARAMS.resolution_period + 1)
    _revert(lambda: _vote(bahen, pool, resolvers[1:], [True]), "VotingClosed")
    bahen.expire_dispute(parties.stranger, order_id=OID, task=0)
    assert bahen.dispute(OID, 0).status == "expired" and bahen.order(OID).tasks[0].verdict == "accepted"
    assert bahen.pending(resolvers[0]) == RESOLVER_FEE
    assert bahen.pending(disputer.address) == BOND - RESOLVER_FEE
    _revert(lambda: bahen.settle(parties.stranger, order_id=OID), "DisputeWindowOpen", task=0)
    chain.increase_time(WINDOW)
    bahen.settle(parties.stranger, order_id=OID)
    _conserved(bahen, chain, parties, pool)


@pytest.mark.parametrize("accepted", [True, False], ids=["of an acceptance", "of a rejection"])
def test_a_dispute_whose_disputer_never_recorded_its_case_closes_dismissed_when_it_expires(
        bahen, chain, parties, pool, accepted):
    """Withholding the case from resolvers that never vote buys the disputer nothing: the bond goes to the
    side that was right, and a resolver that voted to uphold a dispute with no case is not paid."""
    _judged(bahen, parties, pool, accepted=accepted)
    disputer = parties.validators[1]
    resolvers = _dispute(bahen, disputer)
    _vote(bahen, pool, resolvers, [True])
    chain.increase_time(PARAMS.resolution_period + 1)
    bahen.expire_dispute(parties.stranger, order_id=OID, task=0)
    assert bahen.dispute(OID, 0).status == "dismissed"
    assert bahen.order(OID).tasks[0].verdict == ("accepted" if accepted else "rejected")
    assert bahen.pending(resolvers[0]) == 0 and bahen.pending(disputer.address) == 0
    forfeited = [(c.account, c.amount) for c in bahen.ledger(OID).credits if c.kind == "bond forfeited"]
    assert forfeited == ([] if accepted else [(parties.treasury.address, BOND)])
    chain.increase_time(WINDOW)
    s = bahen.settle(parties.stranger, order_id=OID)
    if accepted:  # held until settlement, then the accused worker's
        held = [(c.account, c.amount) for c in s.credits if c.kind == "bond forfeited"]
        assert held == [(parties.workers[0].address, BOND)]
    _conserved(bahen, chain, parties, pool)


def test_a_dispute_nobody_may_resolve_expires_a_resolution_period_after_the_first_draw_that_found_none(
        bahen, chain, parties):
    """Every staked validator is a party to the order or its disputer, so the draw finds nobody: the
    chain records it, a validator has one resolution period from then to register, and then anyone
    expires the dispute; the verdict stands, the bond returns whole, and the order settles after the
    window the close opened."""
    _judged(bahen, parties, {}, accepted=True)
    disputer, worker = parties.validators[1], parties.workers[0]
    bahen.open_dispute(disputer, order_id=OID, task=0, counter_digest=b32("c"), bond=BOND)
    _revert(lambda: bahen.expire_dispute(parties.stranger, order_id=OID, task=0), "VotingOpen", resolveBy=0)
    with pytest.raises(NoResolvers) as first:
        bahen.draw_resolvers(parties.stranger, order_id=OID, task=0)
    resolve_by = bahen.dispute(OID, 0).resolve_by
    assert resolve_by == chain.w3.eth.get_block("latest")["timestamp"] + PARAMS.resolution_period
    assert str(first.value) == (
        f"no staked validator outside order 0x{OID.hex()} may resolve the dispute of task 0 (every one is a party to "
        f"the order or disputed it): draw again once one registers; past {resolve_by} (unix time) anyone may expire "
        "the dispute, the verdict stands and the disputer's bond returns")
    chain.increase_time(PARAMS.resolution_period // 2)
    with pytest.raises(NoResolvers):  # a later draw that finds nobody moves no deadline
        bahen.draw_resolvers(parties.stranger, order_id=OID, task=0)
    assert bahen.dispute(OID, 0).resolve_by == resolve_by
    _revert(lambda: bahen.expire_dispute(parties.stranger, order_id=OID, task=0), "VotingOpen", resolveBy=resolve_by)
    _revert(lambda: bahen.settle(parties.stranger, order_id=OID), "DisputeActive", task=0)
    chain.increase_time(resolve_by - chain.now() + 1)
    bahen.expire_dispute(parties.stranger, order_id=OID, task=0)
    d = bahen.dispute(OID, 0)
    assert (d.status, d.resolvers, bahen.order(OID).tasks[0].verdict) == ("expired", [], "accepted")
    assert bahen.pending(disputer.address) == BOND  # heard by nobody, it pays nobody
    _revert(lambda: bahen.settle(parties.stranger, order_id=OID), "DisputeWindowOpen", task=0)
    chain.increase_time(WINDOW)
    assert bahen.settle(parties.stranger, order_id=OID).payouts[worker.address] == PAYMENT
    _conserved(bahen, chain, parties, {})


def test_a_draw_made_to_fail_never_lets_a_dispute_of_accepted_fraud_lapse(bahen, chain, parties, pool):
    """The cheat starves the draw of gas (as a registry bloated with validators would): the draw reverts,
    records nothing, and the dispute cannot be expired however long it waits; it is drawn later."""
    _judged(bahen, parties, pool, accepted=True)
    bahen.open_dispute(parties.validators[1], order_id=OID, task=0, counter_digest=b32("c"), bond=BOND)
    chain.mine(2)
    cheat, w3 = parties.workers[0], chain.w3
    tx = bahen.market.functions.drawResolvers(OID, 0).build_transaction({
        "from": cheat.address, "gas": 60_000, "nonce": w3.eth.get_transaction_count(cheat.address),
        "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "chainId": w3.eth.chain_id})
    sent = w3.eth.send_raw_transaction(cheat.sign_transaction(tx).raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(sent)["status"] == 0
    chain.increase_time(10 * PARAMS.resolution_period)
    _revert(lambda: bahen.expire_dispute(cheat, order_id=OID, task=0), "VotingOpen", resolveBy=0)
    assert len(bahen.draw_resolvers(parties.stranger, order_id=OID, task=0)) == PARAMS.resolver_count


def test_a_validator_that_registers_while_a_dispute_is_drawing_resolves_it(bahen, chain, parties, pool):
    _judged(bahen, parties, {}, accepted=True)
    bahen.open_dispute(parties.validators[1], order_id=OID, task=0, counter_digest=b32("c"), bond=BOND)
    with pytest.raises(NoResolvers):
        bahen.draw_resolvers(parties.stranger, order_id=OID, task=0)
    newcomer = next(iter(pool.values()))
    bahen.register_validator(newcomer, x25519_public=b32("x25519 newcomer"), stake=PARAMS.min_validator_stake)
    assert bahen.draw_resolvers(parties.stranger, order_id=OID, task=0) == [newcomer.address]
    d = bahen.dispute(OID, 0)
    assert d.status == "voting" and d.resolve_by == chain.w3.eth.get_block("latest")["timestamp"] + PARAMS.resolution_period
    _vote(bahen, pool, [newcomer.address], [False])
    assert bahen.dispute(OID, 0).status == "dismissed"


def test_dispute_reverts(bahen, chain, parties, pool):
    _opened(bahen, parties, pool)
    commit_all(bahen, parties, OID, tasks=1)
    disputer = parties.validators[1]

    def dispute(sender=disputer, bond=BOND):
        return bahen.open_dispute(sender, order_id=OID, task=0, counter_digest=b32("c"), bond=bond)

    _revert(dispute, "NoVerdict", task=0)
    verifier = parties.validators[0]
    report(bahen, parties.stranger, verifier, OID, task=0)
    bahen.record_verdict(parties.wasp, order_id=OID, task=0, accepted=True, reasons_digest=b32("why"))
    _revert(lambda: dispute(bond=BOND - 1), "WrongBond", required=BOND, sent=BOND - 1)
    _revert(lambda: dispute(sender=parties.client), "PartyToOrder")
    # upheld, the worker would take the bounty of its own slash: it disputes only a rejection of its work
    _revert(lambda: dispute(sender=parties.workers[0]), "PartyToOrder")
    # the one dispute a task has would let the verifier escape the slash of its own overturned report
    _revert(lambda: dispute(sender=verifier), "OwnVerification", verifier=verifier.address, task=0)
    _revert(lambda: dispute(sender=parties.stranger), "NotStaked")
    dispute()
    _revert(dispute, "DisputeActive", task=0)
    _revert(lambda: dispute(sender=parties.workers[1]), "DisputeActive", task=0)
    _revert(lambda: bahen.chain.call(bahen.market.functions.drawResolvers(OID, 0), "draw"), "DrawNotReady")
    resolvers = bahen.draw_resolvers(parties.stranger, order_id=OID, task=0)
    _revert(lambda: bahen.draw_resolvers(parties.stranger, order_id=OID, task=0), "NotDisputing")
    vote = lambda acct: bahen.vote_dispute(acct, order_id=OID, task=0, uphold=True, report_digest=b32("r"))
    _revert(lambda: vote(parties.validators[0]), "NotResolver")
    vote(pool[resolvers[0]])
    _revert(lambda: vote(pool[resolvers[0]]), "AlreadyVoted")


def test_only_the_disputer_records_its_case_once_and_only_in_the_first_half_of_the_resolution_period(
        chain, parties, pool):
    period = PARAMS.resolution_period + 1  # odd: half of it rounds down
    bahen = deploy_staked(chain, parties, PARAMS.model_copy(update={"resolution_period": period}))
    _judged(bahen, parties, pool, accepted=True)
    disputer = parties.validators[1]
    hand = lambda sender=disputer, digest=b32("case"): bahen.hand_over(sender, order_id=OID, task=0, case_digest=digest)
    bahen.open_dispute(disputer, order_id=OID, task=0, counter_digest=b32("c"), bond=bahen.dispute_bond(OID, 0))
    _revert(hand, "NotDisputing", task=0)  # nobody to hand a case to before the draw
    resolvers = bahen.draw_resolvers(parties.stranger, order_id=OID, task=0)
    drawn = bahen.dispute(OID, 0)
    hand_by = bahen.hand_by(drawn)
    assert hand_by == drawn.resolve_by - period + period // 2
    assert drawn.case_digest == "0x" + "00" * 32
    for sender in (parties.stranger, pool[resolvers[0]], parties.workers[0]):
        _revert(lambda: hand(sender=sender), "NotDisputer", caller=sender.address, disputer=disputer.address)
    chain.increase_time(hand_by - chain.now() - 1)
    hand()  # the last second it may (the transaction's block is one second later)
    assert bahen.dispute(OID, 0).case_digest == "0x" + b32("case").hex()
    logs = bahen.market.events.CaseHandedOver().get_logs(from_block=0)
    assert [(bytes(e["args"]["orderId"]), e["args"]["task"], bytes(e["args"]["caseDigest"])) for e in logs] == [
        (OID, 0, b32("case"))]
    _revert(lambda: hand(digest=b32("another case")), "CaseRecorded", task=0)


def test_a_case_handed_over_after_the_first_half_of_the_resolution_period_is_refused(bahen, chain, parties, pool):
    _judged(bahen, parties, pool, accepted=True)
    disputer = parties.validators[1]
    _dispute(bahen, disputer)
    hand_by = bahen.hand_by(bahen.dispute(OID, 0))
    chain.increase_time(hand_by + 1 - chain.now())
    _revert(lambda: bahen.hand_over(disputer, order_id=OID, task=0, case_digest=b32("late")), "HandOverClosed",
            handBy=hand_by)
    assert bahen.dispute(OID, 0).case_digest == "0x" + "00" * 32


def test_a_withheld_case_takes_no_other_members_dispute_away(bahen, chain, parties, pool):
    """Accepted fraud: a cheat's accomplice disputes it first, withholds its case, and the resolvers vote
    it down. The verdict stands, and another member may dispute it for a window from that close (the
    accomplice may not again); the second dispute is upheld and the worker is slashed at settlement."""
    _judged(bahen, parties, pool, accepted=True)
    accomplice, honest, worker = parties.validators[1], parties.workers[1], parties.workers[0]
    chain.increase_time(PARAMS.dispute_window // 2)
    _vote(bahen, pool, _dispute(bahen, accomplice), [False, False])
    first = bahen.dispute(OID, 0)
    assert first.status == "dismissed" and first.closed_at == chain.now()
    assert bahen.pending(worker.address) == 0  # the accomplice's bond is held until settlement
    # past the verdict's own window, within the one the dismissal opened
    chain.increase_time(PARAMS.dispute_window // 2 + 1)
    _revert(lambda: _dispute(bahen, accomplice), "DisputedBefore", account=accomplice.address, task=0)
    resolvers = _dispute(bahen, honest)
    second = bahen.dispute(OID, 0)
    assert (second.disputer, second.status, second.closed_at, second.votes_dismiss) == (honest.address, "voting", 0, 0)
    # no disputer of the task resolves it: the accomplice is left out of the draw
    assert resolvers == _expected_resolvers(bahen, parties, {accomplice.address, honest.address})
    assert len(resolvers) == POOL  # 6 asked, 5 eligible
    _vote(bahen, pool, resolvers, [True, True, True])  # a resolver of the first dispute drawn again votes anew
    assert bahen.order(OID).tasks[0].verdict == "rejected" and bahen.order(OID).tasks[0].prover == honest.address
    s = bahen.settle(parties.stranger, order_id=OID)
    slashed = WORKER_STAKE * PARAMS.slash_bps // 10_000
    assert s.slashed == {worker.address: slashed} and s.payouts == {}
    # the held bond goes to the treasury: the ring paid a bond for the window it bought
    assert bahen.pending(worker.address) == 0
    forfeited = [c for c in s.credits if c.kind == "bond forfeited"]
    assert [(c.account, c.amount) for c in forfeited] == [(parties.treasury.address, BOND - 2 * RESOLVER_FEE)]
    _conserved(bahen, chain, parties, pool)


def test_each_later_dispute_of_a_task_draws_twice_the_resolvers_and_bonds_in_proportion(bahen, chain, parties, pool):
    """A ring of disputers buys no fresh small draws: the second dispute of a verdict faces twice the
    resolvers of the first, the third four times, then 15, each bonding in proportion to its panel
    (the draw capped at the validators eligible)."""
    _judged(bahen, parties, pool, accepted=True)
    for pool_size in range(POOL, POOL + 4):  # more validators outside the order: nine in all
        extra = account(f"resolver {pool_size}")
        chain.fund(extra.address, 10 * ETHER)
        bahen.register_validator(extra, x25519_public=b32(f"x25519 r{pool_size}"), stake=PARAMS.min_validator_stake)
        pool[extra.address] = extra
    fourth = extra  # disputes last: eight left to draw then
    assert bahen.dispute_bond(OID, 0) == BOND
    panels = []
    disputers = [parties.validators[1], parties.workers[1], parties.workers[2], fourth]
    for n, (disputer, multiple) in enumerate(zip(disputers, [1, 2, 4, 5])):  # panels of 3, 6, 12, 15
        bond, earned = BOND * multiple, bahen.pending(disputer.address)  # fees it earned resolving before
        _revert(lambda: bahen.open_dispute(disputer, order_id=OID, task=0, counter_digest=b32("c"), bond=bond - 1),
                "WrongBond", required=bond)
        resolvers = _dispute(bahen, disputer)
        assert bahen.dispute(OID, 0).bond == bond and bahen.order(OID).tasks[0].disputes == n + 1
        assert resolvers == _expected_resolvers(bahen, parties, {d.address for d in disputers[:n + 1]})
        panels.append(len(resolvers))
        _vote(bahen, pool, resolvers, [False] * (len(resolvers) // 2 + 1))  # each dismissed: the verdict stands
        assert bahen.dispute(OID, 0).status == "dismissed" and bahen.pending(disputer.address) == earned
    assert panels == [3, 6, POOL + 4, POOL + 3]  # 12 asked of nine eligible, 15 of eight
    assert bahen.dispute_bond(OID, 0) == 5 * BOND  # the panel stays at 15
    _conserved(bahen, chain, parties, pool)


def test_votes_and_the_disputes_awaiting_a_resolver_are_read_back_for_the_latest_dispute_only(
        bahen, chain, parties, pool, slack):
    _judged(bahen, parties, pool, accepted=True)
    order = ("0x" + OID.hex(), 0)
    assert bahen.dispute_votes(OID, 0) == {} and all(bahen.disputes_to_resolve(a) == [] for a in pool)
    first = _dispute(bahen, parties.validators[1])
    assert [a for a in pool if bahen.disputes_to_resolve(a)] == [a for a in pool if a in first]
    assert all(bahen.disputes_to_resolve(a.lower()) == [order] for a in first)
    _vote(bahen, pool, first[:1], [False])
    assert bahen.dispute_votes(OID, 0) == {first[0]: False} and bahen.disputes_to_resolve(first[0]) == []
    assert bahen.disputes_to_resolve(first[2]) == [order]
    _vote(bahen, pool, first[1:2], [False])  # two of three: dismissed
    assert bahen.dispute(OID, 0).status == "dismissed"
    assert bahen.dispute_votes(OID, 0) == {first[0]: False, first[1]: False}
    assert bahen.disputes_to_resolve(first[2]) == []  # closed: no longer awaits its vote

    second = _dispute(bahen, pool[first[2]])  # the first panel's silent resolver disputes next: never on this panel
    assert first[2] not in second and bahen.disputes_to_resolve(first[2]) == []
    assert bahen.dispute_votes(OID, 0) == {}  # the first dispute's votes are not the second's
    assert all(bahen.disputes_to_resolve(a) == ([order] if a in second else []) for a in pool)
    _vote(bahen, pool, second[:1], [True])
    assert bahen.dispute_votes(OID, 0) == {second[0]: True}
    assert bahen.dispute_votes(b32("no such order"), 0) == {}
    # until the last second of its voting, and no longer, the dispute awaits the resolvers that have not voted
    chain.increase_time(bahen.dispute(OID, 0).resolve_by - chain.now() - slack)
    assert chain.now() <= bahen.dispute(OID, 0).resolve_by
    assert all(bahen.disputes_to_resolve(a) == ([order] if a in second[1:] else []) for a in pool)
    chain.increase_time(slack + 1)
    assert bahen.dispute(OID, 0).status == "voting" and all(bahen.disputes_to_resolve(a) == [] for a in pool)


def test_a_dispute_after_the_window_reverts(bahen, chain, parties, pool):
    _judged(bahen, parties, pool, accepted=True)
    chain.increase_time(WINDOW)
    _revert(lambda: _dispute(bahen, parties.validators[1]), "DisputeWindowClosed", task=0)


def test_a_dispute_after_the_window_a_dismissal_opened_reverts(bahen, chain, parties, pool):
    _judged(bahen, parties, pool, accepted=True)
    _vote(bahen, pool, _dispute(bahen, parties.validators[1]), [False, False])
    closed_at = bahen.dispute(OID, 0).closed_at
    chain.increase_time(WINDOW)
    _revert(lambda: _dispute(bahen, parties.workers[1]), "DisputeWindowClosed", task=0,
            closedAt=closed_at + PARAMS.dispute_window)


def test_resolvers_follow_the_public_rule_and_exclude_every_party(bahen, chain, parties, pool):
    _judged(bahen, parties, pool, accepted=True)
    disputer = parties.validators[1]
    resolvers = _dispute(bahen, disputer)
    assert resolvers == _expected_resolvers(bahen, parties, {disputer.address})
    assert len(set(resolvers)) == 3 and set(resolvers) <= set(pool)
    assert all(bahen.member(r).locks == 1 for r in resolvers)  # they cannot unbond mid-dispute


@pytest.mark.parametrize("mined", [0, 1, 2, 3])
def test_drawing_resolvers_on_a_devnet_mines_the_blocks_its_seed_needs_and_no_more(bahen, chain, parties, pool, mined):
    """The seed is the hash of the block after the dispute's anchor, which a call can read only once the block
    after that exists: the draw mines up to it and no further (every block it mined would age other seeds)."""
    _judged(bahen, parties, pool, accepted=True)
    bahen.open_dispute(parties.validators[1], order_id=OID, task=0, counter_digest=b32("c"), bond=BOND)
    anchor = bahen.dispute(OID, 0).anchor_block
    assert chain.block_number() == anchor
    if mined:
        chain.mine(mined)
    resolvers = bahen.draw_resolvers(parties.stranger, order_id=OID, task=0)
    assert resolvers == _expected_resolvers(bahen, parties, {parties.validators[1].address})
    assert chain.block_number() == max(anchor + mined, anchor + 2) + 1  # the draw's own block after the seed's


def test_a_dispute_whose_seed_block_aged_out_is_drawn_from_a_fresh_one(bahen, chain, parties, pool):
    _judged(bahen, parties, pool, accepted=True)
    bahen.open_dispute(parties.validators[1], order_id=OID, task=0, counter_digest=b32("c"), bond=BOND)
    aged = bahen.dispute(OID, 0).anchor_block
    chain.mine(300)  # the EVM keeps the hashes of the last 256 blocks only

    assert bahen.draw_resolvers(parties.stranger, order_id=OID, task=0) == []

    d = bahen.dispute(OID, 0)
    assert (d.status, d.resolvers) == ("drawing", []) and d.anchor_block == chain.block_number() > aged + 256
    resolvers = bahen.draw_resolvers(parties.stranger, order_id=OID, task=0)
    assert resolvers == _expected_resolvers(bahen, parties, {parties.validators[1].address})
    assert bahen.dispute(OID, 0).resolvers == resolvers and len(resolvers) == PARAMS.resolver_count


def test_on_a_chain_that_cannot_mine_drawing_resolvers_before_their_seed_block_says_which_block_to_wait_for(
        bahen, chain, parties, pool, monkeypatch):
    _judged(bahen, parties, pool, accepted=True)
    bahen.open_dispute(parties.validators[1], order_id=OID, task=0, counter_digest=b32("c"), bond=BOND)
    anchor, mine = bahen.dispute(OID, 0).anchor_block, chain.mine

    def refuse(blocks):
        raise ChainError("this node mines on its own schedule")

    monkeypatch.setattr(chain, "mine", refuse)
    with pytest.raises(ChallengeNotReady) as early:
        bahen.draw_resolvers(parties.stranger, order_id=OID, task=0)
    assert str(early.value) == (f"the resolvers of order 0x{OID.hex()} task 0 derive from block {anchor + 1}: "
                                f"draw again once block {anchor + 2} exists")
    assert bahen.dispute(OID, 0).status == "drawing"
    mine(2)  # the node's own blocks
    assert len(bahen.draw_resolvers(parties.stranger, order_id=OID, task=0)) == PARAMS.resolver_count


def test_the_ledger_finds_a_disputes_credits_after_another_tasks_worker_was_replaced(bahen, chain, parties, pool):
    """A dispute of task 0 pays out, then task 1's worker, which never committed, is replaced: task 1's
    draw block moves past the dispute's credits, and the ledger still finds every one of them."""
    _opened(bahen, parties, pool, tasks=2)  # a commit window of 600 s
    commit_all(bahen, parties, OID, tasks=1)
    report(bahen, parties.stranger, parties.validators[0], OID, task=0)
    bahen.record_verdict(parties.wasp, order_id=OID, task=0, accepted=False, reasons_digest=b32("why"))
    resolvers = _dispute(bahen, parties.validators[1])
    _vote(bahen, pool, resolvers, [False, False])  # the rejection stands: the bond goes to the treasury now
    dispute_block = chain.block_number()
    chain.increase_time(601)
    bahen.replace_stalled(parties.stranger, order_id=OID, task=1)
    assert bahen.order(OID).tasks[1].draw_block > dispute_block

    ledger = bahen.ledger(OID)
    assert ledger.total("resolver fee") == 2 * RESOLVER_FEE and ledger.total("bond forfeited") == BOND - 2 * RESOLVER_FEE
    assert bahen.settlement_of(OID) is None


def _finalised(bahen, client) -> int:
    """The chain time at which the settling client's wait for finality returned; the order settles then."""
    wait_for_finality(bahen, client, OID)
    now = bahen.chain.now()
    bahen.settle(client, order_id=OID)
    return now


def test_the_settling_client_waits_out_the_verdicts_window_and_no_longer(bahen, chain, parties, pool, slack):
    _judged(bahen, parties, pool, accepted=True)
    final = bahen.order(OID).tasks[0].verdict_at + WINDOW
    assert final <= _finalised(bahen, parties.client) <= final + slack


def test_the_settling_client_waits_for_the_latest_verdicts_window_of_the_order(bahen, chain, parties, pool, slack):
    _opened(bahen, parties, pool, tasks=2)
    commit_all(bahen, parties, OID, tasks=2)
    for task in (1, 0):  # task 0 judged last; a task without a verdict does not hold settlement back
        report(bahen, parties.stranger, parties.validators[0], OID, task=task)
        bahen.record_verdict(parties.wasp, order_id=OID, task=task, accepted=True, reasons_digest=b32("why"))
        if task == 1:
            wait_for_finality(bahen, parties.client, OID)
            final = bahen.order(OID).tasks[1].verdict_at + WINDOW
            assert final <= chain.now() <= final + slack
        chain.increase_time(PARAMS.dispute_window // 2)
    final = bahen.order(OID).tasks[0].verdict_at + WINDOW
    assert final <= _finalised(bahen, parties.client) <= final + slack


def test_the_settling_client_draws_and_expires_an_idle_dispute_then_waits_out_the_window_it_opened(
        bahen, chain, parties, pool, slack):
    _judged(bahen, parties, pool, accepted=True)
    bahen.open_dispute(parties.validators[1], order_id=OID, task=0, counter_digest=b32("c"), bond=BOND)
    settled_at = _finalised(bahen, parties.client)
    d = bahen.dispute(OID, 0)  # expired with no case recorded: dismissed
    assert d.status == "dismissed" and len(d.resolvers) == PARAMS.resolver_count and d.closed_at > d.resolve_by
    assert d.closed_at + WINDOW <= settled_at <= d.closed_at + WINDOW + slack


def test_the_settling_client_expires_a_dispute_nobody_may_resolve_then_waits_out_the_window_it_opened(
        bahen, chain, parties, monkeypatch, slack):
    _judged(bahen, parties, {}, accepted=True)
    bahen.open_dispute(parties.validators[1], order_id=OID, task=0, counter_digest=b32("c"), bond=BOND)
    draws, own = [], bahen.draw_resolvers
    monkeypatch.setattr(bahen, "draw_resolvers", lambda acct, **where: draws.append(where) or own(acct, **where))
    settled_at = _finalised(bahen, parties.client)
    d = bahen.dispute(OID, 0)
    assert (d.status, d.resolvers) == ("expired", []) and len(draws) == 2  # found none, waited, found none again
    assert d.resolve_by < d.closed_at <= d.resolve_by + 3 + slack  # the seconds of the last look's draw and expiry
    assert d.closed_at + WINDOW <= settled_at <= d.closed_at + WINDOW + slack


@pytest.mark.parametrize("upheld", [False, True])
def test_the_settling_client_waits_out_a_dismissals_window_and_settles_an_upheld_verdict_at_once(
        bahen, chain, parties, pool, upheld, slack):
    _judged(bahen, parties, pool, accepted=True)
    _vote(bahen, pool, _dispute(bahen, parties.validators[1]), [upheld] * 2)
    d = bahen.dispute(OID, 0)
    assert d.status == ("upheld" if upheld else "dismissed")
    final = d.closed_at if upheld else d.closed_at + WINDOW
    assert final <= _finalised(bahen, parties.client) <= final + slack


@pytest.mark.parametrize("call", ["draw_resolvers", "expire_dispute"])
def test_the_settling_client_goes_on_when_another_party_moves_the_dispute_along_first(
        bahen, chain, parties, pool, monkeypatch, call, slack):
    """The disputer (its bond back the sooner) draws or expires the dispute just before the settling client."""
    _judged(bahen, parties, pool, accepted=True)
    disputer = parties.validators[1]
    bahen.open_dispute(disputer, order_id=OID, task=0, counter_digest=b32("c"), bond=BOND)
    own = getattr(bahen, call)

    def raced(acct, **where):
        own(disputer, **where)
        return own(acct, **where)

    monkeypatch.setattr(bahen, call, raced)
    settled_at = _finalised(bahen, parties.client)
    d = bahen.dispute(OID, 0)  # expired with no case recorded: dismissed
    assert d.status == "dismissed" and d.closed_at + WINDOW <= settled_at <= d.closed_at + WINDOW + slack


@pytest.mark.parametrize("last", ["dispute window", "voting"])
def test_the_settling_client_does_not_act_on_the_last_second_of_a_dispute_window_or_of_the_voting(
        bahen, chain, parties, pool, last, slack):
    """The contract takes a settlement after a dispute window and an expiry after the voting, not on
    their last second: there the client waits one more."""
    _judged(bahen, parties, pool, accepted=True)
    if last == "dispute window":
        chain.increase_time(bahen.order(OID).tasks[0].verdict_at + PARAMS.dispute_window - chain.now())
        final = bahen.order(OID).tasks[0].verdict_at + WINDOW
        assert final <= _finalised(bahen, parties.client) <= final + slack
        return
    _dispute(bahen, parties.validators[1])
    bahen.hand_over(parties.validators[1], order_id=OID, task=0, case_digest=b32("case"))
    chain.increase_time(bahen.dispute(OID, 0).resolve_by - chain.now())
    settled_at = _finalised(bahen, parties.client)
    d = bahen.dispute(OID, 0)
    assert d.status == "expired" and d.closed_at > d.resolve_by
    assert d.closed_at + WINDOW <= settled_at <= d.closed_at + WINDOW + slack


def test_on_a_chain_whose_clock_cannot_be_moved_the_settling_client_sleeps_a_minute_at_a_time(
        bahen, chain, parties, pool, monkeypatch, slack):
    _judged(bahen, parties, pool, accepted=True)
    slept, move = [], chain.increase_time

    def refuse(seconds):
        raise ChainError("this node does not move its clock")

    def sleep(seconds):  # the time passes, on the chain too
        slept.append(seconds)
        move(seconds)

    monkeypatch.setattr(chain, "increase_time", refuse)
    monkeypatch.setattr(settle_module, "time", SimpleNamespace(sleep=sleep))
    final = bahen.order(OID).tasks[0].verdict_at + WINDOW
    assert final <= _finalised(bahen, parties.client) <= final + slack
    assert slept[0] == 60 and all(0 < s <= 60 for s in slept)


def test_a_replaced_verifier_stays_liable_for_the_verifications_it_signed(bahen, chain, parties, pool):
    """The verifier verifies task 0 and stalls on task 1, so the chain replaces it; the acceptance it
    signed is then overturned: it is slashed, though no longer the order's verifier, and its successor
    keeps the fee of the verification it did."""
    _opened(bahen, parties, pool, tasks=2)
    commit_all(bahen, parties, OID, tasks=2)
    stalled = parties.validators[0]
    report(bahen, parties.stranger, stalled, OID, task=0)
    chain.increase_time(601)  # the order's commit window, past task 1's commitment
    bahen.replace_stalled(parties.stranger, order_id=OID, task=1)
    [successor] = bahen.draw(parties.stranger, order_id=OID).validators
    validators = {**pool, parties.validators[1].address: parties.validators[1]}
    report(bahen, parties.stranger, validators[successor], OID, task=1)
    for task in range(2):  # task 0 on the replaced verifier's verification
        bahen.record_verdict(parties.wasp, order_id=OID, task=task, accepted=True, reasons_digest=b32("why"))
    assert bahen.member(stalled.address).locks == 1  # still bound: its verification of task 0 may be disputed

    resolvers = _dispute(bahen, parties.workers[2])
    assert stalled.address not in resolvers and successor not in resolvers  # parties to the order, both
    _vote(bahen, validators, resolvers, [True, True])
    slashed = PARAMS.min_validator_stake * PARAMS.slash_bps // 10_000
    assert bahen.stake_of(stalled.address) == PARAMS.min_validator_stake - slashed
    assert not bahen.order(OID).validators[0].overturned  # the successor's slot: its verification stands
    chain.increase_time(WINDOW)
    s = bahen.settle(parties.stranger, order_id=OID)
    worker_slash = WORKER_STAKE * PARAMS.slash_bps // 10_000
    assert s.payouts == {parties.workers[1].address: PAYMENT, successor: FEE}
    assert s.slashed == {parties.workers[0].address: worker_slash}
    assert bahen.member(stalled.address).locks == 0
    _conserved(bahen, chain, parties, pool)


def test_a_replaced_verifier_is_left_out_of_its_orders_panels(bahen, chain, parties, pool):
    """A panel's draw stops at the first member it may not take, so the order's replaced verifier must be
    left out before it starts: here it holds nearly all validator stake, and a draw that met it would
    find nobody."""
    _opened(bahen, parties, pool)
    stalled = parties.validators[0]
    bahen.add_stake(stalled, amount=50 * ETHER)
    commit_all(bahen, parties, OID, tasks=1)
    chain.increase_time(601)
    bahen.replace_stalled(parties.stranger, order_id=OID, task=0)
    [successor] = bahen.draw(parties.stranger, order_id=OID).validators
    validators = {**pool, parties.validators[1].address: parties.validators[1]}
    report(bahen, parties.stranger, validators[successor], OID, task=0)
    bahen.record_verdict(parties.wasp, order_id=OID, task=0, accepted=True, reasons_digest=b32("why"))
    resolvers = _dispute(bahen, parties.workers[1])
    assert len(resolvers) == PARAMS.resolver_count and not {stalled.address, successor} & set(resolvers)
