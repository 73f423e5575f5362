"""Disputes end to end on the embedded chain: a validator of the order re-verifies, disputes with a
bond, and resolvers drawn among the other validators re-execute the challenge and vote."""

from datetime import timedelta

import pytest
from contracts.errors import ContractRevert
from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_API_URL, temporary_settings
from privacy.identity import Identity
from privacy.signing import digest
from storage.errors import StoreUnavailableError
from typer.testing import CliRunner

from bahen import cli_dispute
from bahen.artifacts import get_signed, open_stored_grant, put_grant, put_signed
from bahen.audit import reconstruct
from bahen.cli import app
from bahen.devnet import PARAMS
from bahen.devnet_up import schedule_resolver
from bahen.errors import BahenError
from bahen.parties import party_queue, validator_name, worker_name
from bahen.records import OrderRecord
from bahen.spec import OrderSpec
from flows.resolve import resolve as resolve_flow
from flows.resolve import resolve_pending
from tasks.audit import audit
from tasks.deliver import NotDeliverable, deliver
from tasks.dispatch import send_resolvers
from tasks.dispute import (CaseNotHanded, DisputeCase, DisputeError, EvidenceGap, cast_vote, checked_keys, disputer_keys,
                           hand_over, handed_case, handed_pointer, open_dispute, resolve)
from tasks.encrypt_upload import encrypt_upload
from tasks.reaudit import rechecked
from tasks.report import summary_markdown
from tasks.score import score
from tasks.settle import settle
from tasks.shard import shard
from tasks.train import train
from tasks.verify import REPORT_VERIFICATION, model_key, publish, reexecute, verify

SMALL = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32)


@pytest.fixture
def net(staked_net):
    return staked_net


def _stages(net, salt, *, attack=None):
    upload = encrypt_upload(SMALL, net, salt=salt)
    plan = shard(SMALL, upload, net)
    [assignment] = plan.assignments
    return upload, plan, assignment, train(SMALL, upload, assignment, net, attack=attack)


def _accepted(net, salt):
    """An honest order, verified, scored and accepted by Wasp."""
    upload, plan, assignment, training = _stages(net, salt)
    verify(SMALL, upload, plan, assignment, training, net)
    score(SMALL, upload, plan, training, net)
    assert audit(upload, plan, assignment, training, net).accepted
    return upload, plan, assignment, training


def _lying_verification(net, upload, plan, assignment, training, *, says_passed: bool) -> None:
    """The order's verifier signs the opposite of what its re-execution found and publishes it (attested on chain)."""
    slot = plan.validators[0]
    verifier = net.party_at(slot.address, role="validator")
    report = reexecute(SMALL, upload, training, net,
                       train_key=open_stored_grant(net.store, slot.grants["train"], verifier, order_id=upload.order_id),
                       open_model_key=lambda: model_key(net, training, verifier))
    assert report.passed != says_passed
    checks = [c.model_copy(update={"passed": says_passed}) for c in report.checks]
    lie = report.model_copy(update={"passed": says_passed, "checks": checks})
    publish(net, verifier, lie, kind=REPORT_VERIFICATION, name="lying report")


def _falsely_rejected(net, salt):
    """An honest order whose verifier signs a failed verification: Wasp rejects it."""
    upload, plan, assignment, training = _stages(net, salt)
    _lying_verification(net, upload, plan, assignment, training, says_passed=False)
    score(SMALL, upload, plan, training, net)
    verdict = audit(upload, plan, assignment, training, net)
    assert not verdict.accepted
    return upload, plan, assignment, training, verdict


def _validator(net, address):
    return next(net.party(validator_name(i)) for i in range(6) if net.party(validator_name(i)).address == address)


def _resolve_all(net, order_id, *cases, task=0):
    """Each drawn resolver votes on the signed case it was handed (the cases in turn) until the dispute closes."""
    oid = bytes.fromhex(order_id[2:])
    votes = []
    for i, address in enumerate(net.market.dispute(oid, task).resolvers):
        if net.market.dispute(oid, task).status != "voting":
            break
        votes.append(resolve(order_id, task, cases[i % len(cases)], _validator(net, address), net))
    return votes


def _credits(net, order_id, account):
    return [c.kind for c in net.market.ledger(bytes.fromhex(order_id[2:])).credits if c.account == account]


def test_a_dispute_overturns_a_verifier_that_vouched_for_fabricated_work(net):
    upload, plan, assignment, training = _stages(net, "0x" + "d1" * 32, attack="fabricated-losses")
    _lying_verification(net, upload, plan, assignment, training, says_passed=True)
    score(SMALL, upload, plan, training, net)
    assert audit(upload, plan, assignment, training, net).accepted  # Wasp was fooled

    outsider = next(net.party(validator_name(i)) for i in range(6)
                    if net.party(validator_name(i)).address not in {s.address for s in plan.validators})
    with pytest.raises(DisputeError, match="neither a validator of order"):
        open_dispute(SMALL, upload, plan, training, outsider, net)
    liar = net.party_at(plan.validators[0].address, role="validator")  # it would escape its own slash
    with pytest.raises(DisputeError, match="is the verifier of order .* no dispute of a verifier's own report"):
        open_dispute(SMALL, upload, plan, training, liar, net)
    disputer = net.party_at(plan.validators[1].address, role="validator")
    case = hand_over(open_dispute(SMALL, upload, plan, training, disputer, net), plan, disputer, net)
    assert not net.market.dispute(bytes.fromhex(upload.order_id[2:]), 0).claim_accepted
    drawn = set(get_signed(net.store, case, DisputeCase, expected_signer=disputer.address)[0].grants)
    assert len(drawn) == PARAMS.resolver_count
    assert not drawn & ({s.address for s in plan.validators} | {assignment.address, upload.client})

    votes = _resolve_all(net, upload.order_id, case)
    assert votes and all(v.uphold for v in votes)
    oid = bytes.fromhex(upload.order_id[2:])
    assert net.market.dispute(oid, 0).status == "upheld"
    assert net.market.order(oid).tasks[0].verdict == "rejected"

    settled = settle(upload, net)
    assert settled.payouts_wei.get(assignment.address, 0) == 0
    slashed = {s.member for s in settled.slashes}
    assert slashed == {assignment.address, plan.validators[0].address}
    assert "bounty" in _credits(net, upload.order_id, disputer.address)
    assert "bond returned" in _credits(net, upload.order_id, disputer.address)
    assert _credits(net, upload.order_id, upload.client) == ["refund"]
    with pytest.raises(NotDeliverable):
        deliver(upload, plan, training, net)


def test_an_accomplice_that_disputes_accepted_fraud_first_and_withholds_the_case_leaves_the_validators_theirs(net):
    """The cheat may not dispute its own acceptance (upheld, it would take the bounty of its own slash);
    an accomplice, the other staked worker, disputes first and hands the resolvers no case: they vote
    it down and the verdict stands, the bond held until settlement. The honest validator of the order
    disputes next, in the window the dismissal opened: upheld, the cheat and the lying verifier are
    slashed, and the accomplice's bond goes to the treasury."""
    upload, plan, assignment, training = _stages(net, "0x" + "d5" * 32, attack="fabricated-losses")
    _lying_verification(net, upload, plan, assignment, training, says_passed=True)
    score(SMALL, upload, plan, training, net)
    assert audit(upload, plan, assignment, training, net).accepted  # Wasp was fooled
    oid = bytes.fromhex(upload.order_id[2:])
    bond = net.market.params().dispute_bond
    cheat = net.party_at(assignment.address, role="worker")
    with pytest.raises(DisputeError, match="a worker disputes a rejection of its work, never its acceptance"):
        open_dispute(SMALL, upload, plan, training, cheat, net)
    with pytest.raises(ContractRevert, match="PartyToOrder"):
        net.market.open_dispute(cheat.account, order_id=oid, task=0, counter_digest=bytes(32), bond=bond)
    [accomplice] = [net.party(worker_name(i)) for i in range(2) if net.party(worker_name(i)).address != cheat.address]
    net.market.open_dispute(accomplice.account, order_id=oid, task=0, counter_digest=bytes(32), bond=bond)
    honest = net.party_at(plan.validators[1].address, role="validator")
    with pytest.raises(DisputeError, match="is under dispute by .* within the window the close opens"):
        open_dispute(SMALL, upload, plan, training, honest, net)
    for address in net.market.draw_resolvers(honest.account, order_id=oid, task=0):  # no case ever comes
        if net.market.dispute(oid, 0).status == "voting":
            net.market.vote_dispute(_validator(net, address).account, order_id=oid, task=0, uphold=False,
                                    report_digest=bytes(32))
    assert net.market.dispute(oid, 0).status == "dismissed" and net.market.order(oid).tasks[0].verdict == "accepted"

    case = hand_over(open_dispute(SMALL, upload, plan, training, honest, net), plan, honest, net)
    assert net.market.dispute(oid, 0).disputer == honest.address
    votes = _resolve_all(net, upload.order_id, case)
    assert votes and all(v.uphold for v in votes)
    assert net.market.order(oid).tasks[0].verdict == "rejected"
    settled = settle(upload, net)
    assert {s.member for s in settled.slashes} == {assignment.address, plan.validators[0].address}
    assert settled.payouts_wei.get(assignment.address, 0) == 0
    assert {"bounty", "bond returned"} <= set(_credits(net, upload.order_id, honest.address))
    assert "bond forfeited" not in _credits(net, upload.order_id, cheat.address) + _credits(net, upload.order_id, accomplice.address)


def test_an_honest_worker_overturns_a_false_rejection_and_is_paid(net):
    upload, plan, assignment, training, verdict = _falsely_rejected(net, "0x" + "d4" * 32)

    worker = net.party_at(assignment.address, role="worker")
    opened = open_dispute(SMALL, upload, plan, training, worker, net)
    oid = bytes.fromhex(upload.order_id[2:])
    client = net.party_at(net.market.order(oid).client, role="client")
    drawn = net.market.draw_resolvers(client.account, order_id=oid, task=0)  # anyone may draw, the disputer's turn lost
    case = hand_over(opened, plan, worker, net)
    assert net.market.dispute(oid, 0).claim_accepted
    assert set(get_signed(net.store, case, DisputeCase)[0].grants) == set(drawn)  # the case still reaches them all
    # others hand each resolver another case first: a hollow copy signed by a stranger, by a validator of the
    # order, and by the disputer itself for another dispute. None is the case the chain records: no vote on it
    hollow = get_signed(net.store, case, DisputeCase)[0].model_copy(update={"grants": {}})
    copies = [put_signed(net.store, Identity.generate("stranger"), hollow, name="a hollow case")[0],
              put_signed(net.store, net.party_at(plan.validators[1].address, role="validator"), hollow,
                         name="a hollow case")[0],
              put_signed(net.store, worker, hollow.model_copy(update={"counter_digest": "0x" + "00" * 32}),
                         name="a case of another dispute")[0]]
    for copy in copies:
        for address in net.market.dispute(oid, 0).resolvers:
            with pytest.raises(DisputeError, match=f"is not the one its disputer {worker.address} recorded on chain"):
                resolve(upload.order_id, 0, copy, _validator(net, address), net)
    assert net.market.dispute(oid, 0).votes_dismiss == 0
    votes = _resolve_all(net, upload.order_id, case)
    assert votes and all(v.uphold for v in votes)
    oid = bytes.fromhex(upload.order_id[2:])
    assert net.market.order(oid).tasks[0].verdict == "accepted"

    settled = settle(upload, net)
    assert settled.payouts_wei[assignment.address] == assignment.payment_wei and settled.overturned == [0]
    assert settle(upload, net) == settled  # a run that settled before: read back from the chain, not settled twice
    assert {s.member for s in settled.slashes} == {plan.validators[0].address}
    assert {"task payment", "bounty", "bond returned"} <= set(_credits(net, upload.order_id, worker.address))
    assert deliver(upload, plan, training, net).validator == plan.validators[1].address
    # the client's record shows the verdict that paid, beside Wasp's
    record = OrderRecord(order_id=upload.order_id, spec=SMALL, status="settled", upload=upload, shard=plan,
                         training=training, verdict=verdict, settled=settled)
    assert record.work_verdict == "accepted, overturned by a dispute (Wasp's: rejected)"
    assert "## Work verdict: accepted, overturned by a dispute (Wasp's: rejected)" in summary_markdown(record)
    assert record.model_copy(update={"settled": None}).work_verdict == "rejected"  # until settlement reads the chain


def test_a_resolver_that_published_a_key_nothing_can_be_wrapped_to_cannot_sink_a_dispute(net):
    """A validator registered with a low-order X25519 key (all zeros) and drawn as a resolver: the disputer hands
    the case to the others, who uphold it, instead of failing before the case is recorded and losing its bond."""
    upload, plan, assignment, training, _ = _falsely_rejected(net, "0x" + "d6" * 32)
    hostile = Identity.generate("hostile")
    stake = 1000 * PARAMS.min_validator_stake  # outweighs every other validator: drawn but for a ~1e-7 chance
    net.chain.fund(hostile.address, stake + 10**18)
    net.market.register_validator(hostile.account, x25519_public=bytes(32), stake=stake)
    try:
        worker = net.party_at(assignment.address, role="worker")
        case = hand_over(open_dispute(SMALL, upload, plan, training, worker, net), plan, worker, net)
        oid = bytes.fromhex(upload.order_id[2:])
        resolvers = net.market.dispute(oid, 0).resolvers
        assert hostile.address in resolvers
        assert set(get_signed(net.store, case, DisputeCase)[0].grants) == set(resolvers) - {hostile.address}
        votes = [resolve(upload.order_id, 0, case, _validator(net, r), net) for r in resolvers if r != hostile.address]
        assert all(v.uphold for v in votes) and net.market.order(oid).tasks[0].verdict == "accepted"
        assert "bond returned" in _credits(net, upload.order_id, worker.address)
    finally:
        if net.market.member(hostile.address).locks == 0:
            net.market.request_unbond(hostile.account, amount=stake)  # drawn by no later test


def test_a_dispute_of_honest_work_is_dismissed_and_its_bond_pays_the_worker(net):
    upload, plan, assignment, training = _accepted(net, "0x" + "d2" * 32)

    disputer = net.party_at(plan.validators[1].address, role="validator")
    with pytest.raises(DisputeError, match="agrees with its verdict"):
        open_dispute(SMALL, upload, plan, training, disputer, net)
    # a disputer that contests anyway, and tries to make the honest work fail re-execution
    oid = bytes.fromhex(upload.order_id[2:])
    counter = digest({"claim": "rejected"})
    net.market.open_dispute(disputer.account, order_id=oid, task=0, counter_digest=counter,
                            bond=net.market.params().dispute_bond)
    handed = hand_over(
        DisputeCase(spec=SMALL, upload=upload, training=training, disputer=disputer.address,
                    counter_report=training.bundle, counter_digest="0x" + counter.hex()),
        plan, disputer, net)
    honest_case = get_signed(net.store, handed, DisputeCase, expected_signer=disputer.address)[0]
    resolver = _validator(net, next(iter(honest_case.grants)))
    forged = {
        "a changed spec": honest_case.model_copy(update={"spec": SMALL.model_copy(update={"epochs": 2})}),
        "no challenge response": honest_case.model_copy(update={"training": training.model_copy(update={"response": None})}),
        "another split": honest_case.model_copy(update={"upload": upload.model_copy(update={"train": upload.holdout})}),
        "a wrong model key": honest_case.model_copy(update={"grants": {resolver.address: {
            "train": honest_case.grants[resolver.address]["train"],
            "model": put_grant(net.store, bytes(32), resolver.public(), order_id=upload.order_id, role="model")}}}),
        "a wrong train key": honest_case.model_copy(update={"grants": {resolver.address: {
            "train": put_grant(net.store, bytes(32), resolver.public(), order_id=upload.order_id, role="train"),
            "model": honest_case.grants[resolver.address]["model"]}}}),
        "no keys": honest_case.model_copy(update={"grants": {}}),
    }
    for case in forged.values():
        with pytest.raises(EvidenceGap):
            checked_keys(case, resolver, net)
    assert set(checked_keys(honest_case, resolver, net)) == {"train", "model"}

    # the resolvers re-execute the case the disputer recorded, which holds the task's own evidence: they dismiss
    votes = _resolve_all(net, upload.order_id, handed)
    assert len(votes) == 2 and all(not v.uphold and v.report is not None for v in votes)
    assert net.market.dispute(oid, 0).status == "dismissed"
    assert net.market.order(oid).tasks[0].verdict == "accepted"

    settled = settle(upload, net)
    assert settled.payouts_wei[assignment.address] == assignment.payment_wei
    assert settled.slashes == [] and settled.overturned == []
    assert "bond forfeited" in _credits(net, upload.order_id, assignment.address)
    assert _credits(net, upload.order_id, disputer.address) == ["validator fee"]
    assert deliver(upload, plan, training, net).validator == plan.validators[0].address


def test_settlement_draws_an_undrawn_dispute_and_closes_it_once_its_resolvers_are_out_of_time(net):
    """The disputer never records its case and the resolvers never vote: expired, the dispute is
    dismissed, and its bond pays the accused worker."""
    upload, plan, assignment, training = _accepted(net, "0x" + "d3" * 32)
    oid = bytes.fromhex(upload.order_id[2:])
    disputer = net.party_at(plan.validators[1].address, role="validator")
    net.market.open_dispute(disputer.account, order_id=oid, task=0, counter_digest=bytes(32),
                            bond=net.market.params().dispute_bond)

    settled = settle(upload, net)  # the resolvers are drawn, then never vote

    dispute = net.market.dispute(oid, 0)
    assert dispute.status == "dismissed" and len(dispute.resolvers) == PARAMS.resolver_count
    assert dispute.case_digest == "0x" + "00" * 32 and net.market.dispute_votes(oid, 0) == {}
    assert settled.payouts_wei[assignment.address] == assignment.payment_wei
    assert "bond forfeited" in _credits(net, upload.order_id, assignment.address)
    assert _credits(net, upload.order_id, disputer.address) == ["validator fee"]


def _cli(*args):
    return CliRunner().invoke(app, list(args))


def _flat(output: str) -> str:
    """A table's output with each run of spaces as one."""
    return " ".join(output.split())


def test_the_dispute_commands_carry_a_false_rejection_from_the_worker_to_a_vote_that_overturns_it(net, monkeypatch):
    """Each party acts with its own identity and knows only the order id: the worker disputes, each drawn
    resolver finds the case the chain and the store name and votes, anyone follows the dispute."""
    monkeypatch.setattr(cli_dispute.console, "width", 250)  # the table whole, whatever the terminal
    upload, plan, assignment, training = _stages(net, "0x" + "d7" * 32)
    _lying_verification(net, upload, plan, assignment, training, says_passed=False)
    score(SMALL, upload, plan, training, net)
    order_id, oid = upload.order_id, bytes.fromhex(upload.order_id[2:])
    worker = net.party_at(assignment.address, role="worker")
    unjudged = _cli("dispute", "open", order_id, "--no-send", "--as", worker.name)
    assert isinstance(unjudged.exception, DisputeError) and "has no verdict yet" in str(unjudged.exception)
    assert not audit(upload, plan, assignment, training, net).accepted
    outsider = next(net.party(validator_name(i)) for i in range(6)
                    if net.party(validator_name(i)).address not in {s.address for s in plan.validators})

    refused = _cli("dispute", "open", order_id, "--no-send", "--as", outsider.name)
    assert isinstance(refused.exception, DisputeError) and "neither a validator of order" in str(refused.exception)
    refused = _cli("dispute", "open", order_id, "--task", "1", "--no-send", "--as", worker.name)
    assert isinstance(refused.exception, DisputeError) and "has 1 task(s), numbered from 0" in str(refused.exception)
    assert net.market.dispute(oid, 0).status == "none"

    opened = _cli("dispute", "open", order_id, "--no-send", "--as", worker.name)
    assert opened.exit_code == 0, opened.output
    dispute = net.market.dispute(oid, 0)
    assert dispute.status == "voting" and dispute.disputer == worker.address and dispute.claim_accepted
    assert "disputed: the task should be accepted" in opened.output
    assert all(resolver in opened.output for resolver in dispute.resolvers)

    shown = _cli("dispute", "show", order_id)
    assert shown.exit_code == 0, shown.output
    case = net.market.dispute(oid, 0).case_digest
    assert f"│ 0 │ rejected │ voting │ {worker.address} │ accepted │ 0.100000 │ {case[:10]}… │" in _flat(shown.output)
    for resolver in dispute.resolvers:
        name = _validator(net, resolver).name
        pending = _cli("dispute", "pending", "--as", name)
        assert f"order {order_id} task 0: `bahen dispute resolve {order_id} --task 0 --as {name}`" in pending.output
    scorer = net.party_at(plan.validators[1].address, role="validator")  # a party to the order: never drawn
    assert "no dispute waits for a vote" in _cli("dispute", "pending", "--as", scorer.name).output

    first = _validator(net, dispute.resolvers[0])
    unknown = _cli("dispute", "resolve", "0x" + "ee" * 32, "--as", first.name)
    assert f"order 0x{'ee' * 32} does not exist on market" in str(unknown.exception)
    beyond = _cli("dispute", "resolve", order_id, "--task", "3", "--as", first.name)
    assert "has 1 task(s), numbered from 0: it has no task 3" in str(beyond.exception)
    voted = _cli("dispute", "resolve", order_id, "--as", first.name)
    assert voted.exit_code == 0, voted.output
    assert "voted to uphold (re-verification says accepted, the disputer claims accepted)" in voted.output
    assert net.market.dispute_votes(oid, 0) == {first.address: True}
    assert f"│ {first.address} │ uphold │" in _flat(_cli("dispute", "show", order_id).output)
    assert "no dispute waits for a vote" in _cli("dispute", "pending", "--as", first.name).output
    again = _cli("dispute", "resolve", order_id, "--as", first.name)
    assert isinstance(again.exception, DisputeError) and "has voted on the dispute" in str(again.exception)
    for resolver in dispute.resolvers[1:]:
        if net.market.dispute(oid, 0).status == "voting":
            assert _cli("dispute", "resolve", order_id, "--as", _validator(net, resolver).name).exit_code == 0

    assert net.market.dispute(oid, 0).status == "upheld"
    assert net.market.order(oid).tasks[0].verdict == "accepted"
    [case] = reconstruct(order_id, net.store, net.market)  # an auditor's view: Wasp's case, the verdict overturned
    assert not case.verdict.accepted and rechecked(case, net) == []  # every stage, Wasp's decision reached again
    final = _cli("dispute", "open", order_id, "--no-send", "--as", worker.name)
    assert isinstance(final.exception, DisputeError) and "has already overturned the verdict" in str(final.exception)
    for late in set(dispute.resolvers) - set(net.market.dispute_votes(oid, 0)):
        closed = _cli("dispute", "resolve", order_id, "--as", _validator(net, late).name)
        assert isinstance(closed.exception, DisputeError)
        assert "has no dispute to vote on (its latest: upheld)" in str(closed.exception)
    assert settle(upload, net).payouts_wei[assignment.address] == assignment.payment_wei


@pytest.mark.parametrize("drawn", [False, True], ids=["before the draw", "after the draw"])
def test_a_disputer_interrupted_after_opening_hands_its_case_over_on_the_next_run_and_resolvers_wait_for_it(net, drawn):
    upload, plan, assignment, training, _ = _falsely_rejected(net, "0x" + ("d8" if drawn else "dd") * 32)
    order_id, oid = upload.order_id, bytes.fromhex(upload.order_id[2:])
    worker = net.party_at(assignment.address, role="worker")
    opened = open_dispute(SMALL, upload, plan, training, worker, net)  # the process stops before the hand-over
    if drawn:  # by anyone
        net.market.draw_resolvers(worker.account, order_id=oid, task=0)
        first = _validator(net, net.market.dispute(oid, 0).resolvers[0])
        early = _cli("dispute", "resolve", order_id, "--as", first.name)
        assert isinstance(early.exception, CaseNotHanded)
        assert f"the disputer {worker.address} has not handed over its case" in str(early.exception)
        assert "the chain records no case and a resolver votes to dismiss the dispute" in str(early.exception)
        assert net.market.dispute_votes(oid, 0) == {}
    assert net.market.dispute(oid, 0).status == ("voting" if drawn else "drawing")

    resumed = _cli("dispute", "open", order_id, "--no-send", "--as", worker.name)
    assert resumed.exit_code == 0, resumed.output
    assert net.market.order(oid).tasks[0].disputes == 1  # the same dispute, handed over: not a second one
    assert net.market.dispute(oid, 0).counter_digest == opened.counter_digest
    case = handed_case(order_id, 0, net)
    handed = get_signed(net.store, case, DisputeCase, expected_signer=worker.address)[0]
    assert (handed.counter_report, handed.counter_digest) == (opened.counter_report, opened.counter_digest)
    assert set(handed.grants) == set(net.market.dispute(oid, 0).resolvers)
    assert _cli("dispute", "open", order_id, "--no-send", "--as", worker.name).exit_code == 0
    assert handed_case(order_id, 0, net) == case  # a third run hands over the same case again
    unsent = _cli("dispute", "open", order_id, "--send", "--as", worker.name)
    assert isinstance(unsent.exception, BahenError) and "names no Prefect server to send the resolvers' runs to" in str(
        unsent.exception)
    votes = _resolve_all(net, order_id, case)
    assert votes and all(v.uphold for v in votes)


def test_a_stranger_that_writes_every_name_it_can_know_in_advance_takes_no_disputers_case_away(net, monkeypatch):
    """Where every party writes to the store with one credential, a stranger watching the chain knows the
    counter-report's digest once the dispute opens, and writes under each name it could give the case."""
    upload, plan, assignment, training, _ = _falsely_rejected(net, "0x" + "de" * 32)
    order_id = upload.order_id
    worker = net.party_at(assignment.address, role="worker")
    opened = open_dispute(SMALL, upload, plan, training, worker, net)
    junk, _ = put_signed(net.store, Identity.generate("squatter"), opened, name="a case the worker did not sign")
    for digest_known in (opened.counter_digest, "0x" + opened.counter_report.sha256, "0x" + "00" * 32):
        net.store.put_pointer(worker.address, handed_pointer(order_id, 0, digest_known), junk)
    case = hand_over(opened, plan, worker, net)  # named by its own digest, which nobody knew before it was written
    assert handed_case(order_id, 0, net) == case
    assert net.market.dispute(bytes.fromhex(order_id[2:]), 0).case_digest == "0x" + case.sha256
    # a store that stops answering once the case is read costs the disputer no vote: none is cast
    read = net.store.iter_chunks

    def unanswered(ref, *args, **kwargs):
        if ref != case:
            raise StoreUnavailableError(f"{net.store.url} does not answer")
        return read(ref, *args, **kwargs)

    monkeypatch.setattr(net.store, "iter_chunks", unanswered)
    with pytest.raises(StoreUnavailableError):
        cast_vote(order_id, 0, _validator(net, net.market.dispute(bytes.fromhex(order_id[2:]), 0).resolvers[0]), net)
    assert net.market.dispute_votes(bytes.fromhex(order_id[2:]), 0) == {}
    monkeypatch.undo()
    votes = [cast_vote(order_id, 0, _validator(net, address), net)
             for address in net.market.dispute(bytes.fromhex(order_id[2:]), 0).resolvers[:2]]
    assert all(v.uphold and v.report is not None for v in votes)
    assert net.market.order(bytes.fromhex(order_id[2:])).tasks[0].verdict == "accepted"


def test_a_dispute_whose_recorded_case_is_forged_or_not_in_the_store_is_voted_down_at_once(net):
    upload, plan, assignment, training = _accepted(net, "0x" + "df" * 32)
    order_id, oid = upload.order_id, bytes.fromhex(upload.order_id[2:])
    parties = {s.address for s in plan.validators}
    outside = [v for v in (net.party(validator_name(i)) for i in range(6)) if v.address not in parties]

    def opened(disputer):
        net.market.open_dispute(disputer.account, order_id=oid, task=0, counter_digest=digest({"by": disputer.address}),
                                bond=net.market.dispute_bond(oid, 0))
        return net.market.draw_resolvers(disputer.account, order_id=oid, task=0)

    def recorded(disputer, resolvers, **changes):
        """The case ``disputer`` signs with ``changes`` (the task's keys wrapped to each resolver), stored under
        its name and recorded on chain."""
        case = DisputeCase(spec=SMALL, upload=upload, training=training, disputer=disputer.address,
                           counter_report=training.bundle, counter_digest=net.market.dispute(oid, 0).counter_digest,
                           grants={a: {role: put_grant(net.store, key, _validator(net, a).public(), order_id=order_id,
                                                       role=role) for role, key in keys.items()} for a in resolvers})
        ref, _ = put_signed(net.store, disputer, case.model_copy(update=changes), name="a forged case")
        net.store.put_pointer(disputer.address, handed_pointer(order_id, 0, ref.sha256), ref)
        net.market.hand_over(disputer.account, order_id=oid, task=0, case_digest=bytes.fromhex(ref.sha256))

    def voted_down(resolvers, reason):
        for address in resolvers:
            if net.market.dispute(oid, 0).status == "voting":
                vote = cast_vote(order_id, 0, _validator(net, address), net)
                assert not vote.uphold and vote.report is None and reason in vote.reason, vote
        assert net.market.dispute(oid, 0).status == "dismissed"

    # a validator of the order records a case it signed with the order's spec changed: the evidence fails
    disputer = net.party_at(plan.validators[1].address, role="validator")
    keys = disputer_keys(upload, plan, training, disputer, net)
    resolvers = opened(disputer)
    recorded(disputer, resolvers, spec=SMALL.model_copy(update={"epochs": 2}))
    voted_down(resolvers, "spec hash")

    # a member outside the order records a case it signed for another dispute (another counter-report)
    resolvers = opened(outside[0])
    recorded(outside[0], resolvers, counter_digest="0x" + "00" * 32)
    voted_down(resolvers, "not this dispute's")

    # another records a case digest the store holds under no name of its own, then one a stranger named
    # with junk: each resolver votes it down, without waiting for half the resolution period
    resolvers = opened(outside[1])
    never_stored = digest({"a case": "never stored"})
    net.market.hand_over(outside[1].account, order_id=oid, task=0, case_digest=never_stored)
    first = cast_vote(order_id, 0, _validator(net, resolvers[0]), net)
    assert not first.uphold and "has it under no name of the disputer's" in first.reason
    junk, _ = put_signed(net.store, Identity.generate("stranger"), training, name="junk")
    net.store.put_pointer(outside[1].address, handed_pointer(order_id, 0, "0x" + never_stored.hex()), junk)
    voted_down(resolvers[1:], "names another artifact")

    # a last one records, under its name, the digest of a case a stranger signed
    resolvers = opened(outside[2])
    signed_by_another, _ = put_signed(net.store, Identity.generate("stranger"), training, name="another's case")
    net.store.put_pointer(outside[2].address, handed_pointer(order_id, 0, signed_by_another.sha256), signed_by_another)
    net.market.hand_over(outside[2].account, order_id=oid, task=0, case_digest=bytes.fromhex(signed_by_another.sha256))
    voted_down(resolvers, f"not by the expected {outside[2].address}")
    assert net.market.order(oid).tasks[0].verdict == "accepted"


def test_a_dispute_opened_without_a_stored_counter_report_cannot_be_handed_over_and_says_so(net):
    upload, plan, assignment, training = _accepted(net, "0x" + "d9" * 32)
    disputer = net.party_at(plan.validators[1].address, role="validator")
    net.market.open_dispute(disputer.account, order_id=bytes.fromhex(upload.order_id[2:]), task=0,
                            counter_digest=bytes(32), bond=net.market.params().dispute_bond)
    result = _cli("dispute", "open", upload.order_id, "--no-send", "--as", disputer.name)
    assert isinstance(result.exception, DisputeError)
    assert "names a counter-report (0x" + "00" * 32 + ") it never stored" in str(result.exception)


def test_a_disputer_sends_each_drawn_resolver_a_resolve_run_on_its_own_queue_and_their_runs_overturn_the_verdict(
        net, prefect, monkeypatch):
    """On a network with a Prefect server, ``bahen dispute open`` starts one ``resolve`` run per resolver in
    the resolver's own work queue of the validators pool, once however often it is run; each resolver's
    host worker runs it (here: the flow, in this process, as each resolver's host would)."""
    monkeypatch.setenv("BAHEN_PREFECT_API_URL", PREFECT_API_URL.value())  # the home names the server
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name="validators", type="process"))
        except ObjectAlreadyExists:
            pass
    upload, plan, assignment, training, _ = _falsely_rejected(net, "0x" + "da" * 32)
    order_id, oid = upload.order_id, bytes.fromhex(upload.order_id[2:])
    worker = net.party_at(assignment.address, role="worker")
    undeployed = _cli("dispute", "open", order_id, "--as", worker.name)  # a server without this version's deployments
    assert isinstance(undeployed.exception, BahenError)
    assert "has no resolve/resolve deployment: deploy this version" in str(undeployed.exception)
    assert net.market.dispute(oid, 0).status == "voting"  # open and handed over: the next run only sends
    resolve_flow.to_deployment(name="resolve", work_pool_name="validators").apply()

    def sent():
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("resolve/resolve")
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
        return {run.id: (run.work_queue_name, run.parameters) for run in runs if run.parameters["order_id"] == order_id}

    opened = _cli("dispute", "open", order_id, "--as", worker.name)
    assert opened.exit_code == 0 and "sent a resolve run to each resolver's worker" in opened.output, opened.output
    resolvers = net.market.dispute(oid, 0).resolvers
    runs = sent()
    assert sorted(runs.values(), key=str) == sorted(
        [(r.lower(), {"order_id": order_id, "task": 0, "resolver": r}) for r in resolvers], key=str)
    assert _cli("dispute", "open", order_id, "--as", worker.name).exit_code == 0
    assert sent() == runs  # run again: the same runs, none twice

    for _, parameters in runs.values():
        if net.market.dispute(oid, 0).status == "voting":
            assert resolve_flow(**parameters).uphold
    assert net.market.dispute(oid, 0).status == "upheld"
    assert net.market.order(oid).tasks[0].verdict == "accepted"


def test_a_validator_host_schedules_its_own_resolve_pending_runs_on_its_own_queue(prefect):
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name="validators", type="process"))
        except ObjectAlreadyExists:
            pass
    address = Identity.generate("validator").address
    for every in (10, 3):  # started again with another setting: the one schedule follows it
        schedule_resolver(PREFECT_API_URL.value(), address, every)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"resolve-pending/{address.lower()}")
    assert (deployment.work_pool_name, deployment.work_queue_name) == ("validators", party_queue(address))
    assert deployment.parameters == {"resolver": address} and deployment.entrypoint == "flows.resolve:resolve_pending"
    assert [s.schedule.interval for s in deployment.schedules] == [timedelta(minutes=3)]


def test_a_resolver_votes_down_a_dispute_whose_case_never_came_once_half_the_resolution_period_passed(
        net, prefect, monkeypatch):
    upload, plan, assignment, training = _accepted(net, "0x" + "db" * 32)
    order_id, oid = upload.order_id, bytes.fromhex(upload.order_id[2:])
    disputer = net.party_at(plan.validators[1].address, role="validator")
    net.market.open_dispute(disputer.account, order_id=oid, task=0, counter_digest=bytes(32),
                            bond=net.market.params().dispute_bond)
    resolvers = net.market.draw_resolvers(disputer.account, order_id=oid, task=0)  # and no case is ever handed over
    monkeypatch.setattr(cli_dispute.console, "width", 250)
    assert f"│ voting │ {disputer.address} │ rejected │ 0.100000 │ none │" in _flat(_cli("dispute", "show", order_id).output)
    period = net.market.params().resolution_period
    hand_by = net.market.dispute(oid, 0).resolve_by - period + period // 2
    first = _validator(net, resolvers[0])

    net.chain.increase_time(hand_by - net.chain.now())  # the disputer may still record its case at this time
    assert resolve_pending(resolver=first.address) == []  # its scheduled run leaves it for a later one
    early = _cli("dispute", "resolve", order_id, "--as", first.name)
    assert isinstance(early.exception, CaseNotHanded) and f"After chain time {hand_by}, half the resolution" in str(
        early.exception)
    assert net.market.dispute_votes(oid, 0) == {}

    net.chain.increase_time(1)
    voted = _cli("dispute", "resolve", order_id, "--as", first.name)
    assert voted.exit_code == 0, voted.output
    assert f"voted to dismiss (its disputer handed over no case by chain time {hand_by}" in voted.output
    assert net.market.dispute_votes(oid, 0) == {first.address: False}
    late = DisputeCase(spec=SMALL, upload=upload, training=training, disputer=disputer.address,
                       counter_report=training.bundle, counter_digest="0x" + "00" * 32)
    with pytest.raises(DisputeError, match=f"after chain time {hand_by}, half the resolution period .* no longer records"):
        hand_over(late, plan, disputer, net)  # the chain refuses a case the resolvers may have voted down already
    [second] = resolve_pending(resolver=resolvers[1])  # a validator's scheduled run votes alike
    assert not second.uphold and second.report is None
    assert net.market.dispute(oid, 0).status == "dismissed"
    settled = settle(upload, net)
    assert settled.payouts_wei[assignment.address] == assignment.payment_wei
    assert "bond forfeited" in _credits(net, order_id, assignment.address)


def test_sending_the_resolvers_runs_to_a_prefect_server_that_does_not_answer_says_what_to_do_instead():
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}), pytest.raises(
            BahenError, match=r"does not answer .* run the command again once it does, or have each resolver run "
                              r"`bahen dispute resolve 0xab"):
        send_resolvers("0x" + "ab" * 32, 0, "0x" + "cd" * 32, ["0x" + "11" * 20])
