"""The dispatcher's choices and the clean end of an order, on the in-process chain (no servers)."""

import logging
from contextlib import nullcontext
from types import SimpleNamespace

import httpx
import pytest
from prefect.exceptions import PrefectHTTPStatusError
from proof.scoring import PerformanceReport
from storage.refs import ArtifactRef

from bahen.network import connect
from bahen.orders import OrderBook, salt_of_run
from bahen.parties import CLIENT, party_queue
from bahen.records import OrderRecord, Verification, VoidedVerification
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from tasks import dispatch
from tasks.dispatch import (START_TRIES, DispatchConfig, RunRefused, Stages, StageNotDone, end_order, start_run,
                            use_pools)
from tasks.score import SignedScore
from tasks.shard import NotReplaceable
from tasks.verify import UnusableVerification

ESCROW = 10**17


@pytest.mark.parametrize(("mode", "pools"), [("inline", False), ("pools", True), ("auto", False)])
def test_mode_picks_the_stage_runner_and_auto_stays_inline_outside_a_deployment(mode, pools):
    config = DispatchConfig(mode=mode)
    assert use_pools(config) is pools
    assert Stages(config).pools is pools


def test_a_partys_runs_go_to_the_queue_named_by_its_address():
    assert party_queue("0xAbCdEf0123456789aBcDeF0123456789AbCdEf01") == "0xabcdef0123456789abcdef0123456789abcdef01"


def test_dispatch_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("BAHEN_DISPATCH_MODE", "pools")
    monkeypatch.setenv("BAHEN_DISPATCH_STALE_AFTER_S", "45")
    config = DispatchConfig()
    assert (config.mode, config.stale_after_s, config.attempts) == ("pools", 45, 3)


def _refusal(status: int, detail: str = "Data integrity conflict.") -> PrefectHTTPStatusError:
    request = httpx.Request("POST", "http://127.0.0.1:4200/api/deployments/d/create_flow_run")
    response = httpx.Response(status, request=request, json={"detail": detail})
    return PrefectHTTPStatusError.from_httpx_error(httpx.HTTPStatusError(str(status), request=request, response=response))


def _server(monkeypatch, refusals: list[int], detail: str = "Data integrity conflict.") -> list[dict]:
    """``run_deployment`` answering each request with the next of ``refusals``, then with a run."""
    requests = []

    def run_deployment(deployment, **request):
        requests.append(request)
        if len(requests) <= len(refusals):
            raise _refusal(refusals[len(requests) - 1], detail)
        return f"the run of {deployment}"

    monkeypatch.setattr(dispatch, "run_deployment", run_deployment)
    return requests


def test_a_run_whose_work_queue_other_orders_create_at_that_moment_is_asked_for_again_under_its_key(monkeypatch):
    requests = _server(monkeypatch, [409, 409])
    assert start_run("train/train", {"x": 1}, key="order-0x1-task0", queue="0xabc") == "the run of train/train"
    assert requests == [{"parameters": {"x": 1}, "timeout": 0, "work_queue_name": "0xabc", "idempotency_key": "order-0x1-task0"}] * 3


def test_starting_a_run_gives_up_on_other_refusals_at_once_and_on_conflicts_after_its_tries(monkeypatch):
    requests = _server(monkeypatch, [404])
    with pytest.raises(PrefectHTTPStatusError, match="404"):
        start_run("train/train", {}, key="k", queue=None)
    assert len(requests) == 1
    requests = _server(monkeypatch, [409] * START_TRIES)
    with pytest.raises(PrefectHTTPStatusError, match="409"):
        start_run("train/train", {}, key="k", queue=None)
    assert len(requests) == START_TRIES
    schema = "Error creating flow run: Validation failed for field 'training.final_loss'. Failure reason: None is not of type 'number'"
    requests = _server(monkeypatch, [409], detail=schema)
    with pytest.raises(RunRefused) as refused:
        start_run("train/train", {}, key="k", queue=None)
    assert len(requests) == 1 and str(refused.value) == (
        f"the Prefect server refused a run of train/train ({schema}): a record handed to the run is not one this bahen "
        "makes, or the deployment's parameter schema is another version's: deploy the project again from this version "
        "(`prefect deploy --all`)")


def test_a_completed_run_whose_result_is_not_the_stages_record_is_a_stage_not_done(monkeypatch):
    """Another party's run returns what it likes: a result that does not validate ends the attempt as any
    unfinished stage does (replaced, or the order ended), not as a crash of the client's flow."""
    from uuid import uuid4

    run_id = uuid4()
    result = SimpleNamespace(result=lambda: {"verifier": "0x1", "checks": "not a list"})
    client = SimpleNamespace(read_flow_run=lambda flow_run_id: SimpleNamespace(state=result))
    monkeypatch.setattr(dispatch, "start_run", lambda deployment, parameters, key, queue: SimpleNamespace(id=run_id))
    monkeypatch.setattr(dispatch, "wait_for", lambda flow_run_id, deadline, config: dispatch.ChildOutcome(
        flow_run_id=flow_run_id, state="COMPLETED"))
    monkeypatch.setattr(dispatch, "get_client", lambda sync_client: nullcontext(client))
    with pytest.raises(StageNotDone, match=f"^verify/verify completed for k \\({run_id}\\), but its result is no "
                                           "Verification: "):
        dispatch.dispatch("verify/verify", {}, key="k", result=Verification, config=DispatchConfig(mode="pools"))


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return connect(load_settings(home=tmp_path_factory.mktemp("dispatch-home"), scrypt_n=2**12))


def test_ending_an_order_before_any_commitment_refunds_its_escrow_once(net):
    book = OrderBook(net.settings.orders_dir)
    client = net.party(CLIENT)
    salt = salt_of_run(None)
    oid = net.market.open_order(client.account, salt=bytes.fromhex(salt[2:]), spec_hash=b"\x01" * 32, escrow=ESCROW,
                                deadline=net.chain.now() + 3600, commit_window=1800)
    order_id = "0x" + oid.hex()
    book.save(OrderRecord(order_id=order_id, spec=OrderSpec(), status="open"))
    pending = net.market.pending(client.address)

    status = end_order(order_id, net, book, reason="train did not complete")

    assert status.startswith("cancelled, escrow refunded: train did not complete")
    assert book.load(order_id).status == status
    assert net.market.order(oid).status == "cancelled"
    assert net.market.pending(client.address) == pending + ESCROW

    again = end_order(order_id, net, book, reason="a second end")
    assert again.startswith("ended without settlement")
    assert net.market.pending(client.address) == pending + ESCROW


def test_an_order_run_is_the_clients_only_from_its_own_queue():
    client = "0x" + "Ab" * 20
    dispatch.check_own_queue(party_queue(client), client)
    dispatch.check_own_queue(None, client)  # run in this process: this host's own order
    for queue in ("default", party_queue("0x" + "cd" * 20), client):  # the queue is the lowercased address
        with pytest.raises(dispatch.ForeignOrderRun, match=f"work queue '{queue}' of the control pool, not client"):
            dispatch.check_own_queue(queue, client)


def test_the_score_stage_goes_on_without_silent_validators_with_a_majority_or_once_the_scoring_window_closed(
        monkeypatch, caplog):
    slots = [SimpleNamespace(name=f"validator-{i}", address=f"0x{i + 1:040x}") for i in range(3)]
    upload, shard, training = SimpleNamespace(order_id="0x" + "ab" * 32), SimpleNamespace(validators=slots), \
        SimpleNamespace(task=0)
    stages = Stages(DispatchConfig(mode="pools"))
    silent, started = set(), []
    monkeypatch.setattr(dispatch, "recorded", lambda *args: None)
    monkeypatch.setattr(dispatch, "start_run", lambda deployment, params, key, queue: started.append(queue))
    monkeypatch.setattr(dispatch, "get_run_logger", lambda: logging.getLogger("order"))
    monkeypatch.setattr(stages, "_record", lambda *args, **kwargs: None)

    def dispatched(deployment, params, key, result, queue):
        if queue in silent:
            raise StageNotDone(f"no worker of work queue {queue} started it")
        return SimpleNamespace(validator="[/] what the run returns, which the record does not take")

    def on_chain(upload, task, slot):
        if party_queue(slot.address) in silent - attested_anyway or slot.address in unattested:
            return None
        return SignedScore(validator=slot.name, ref=ArtifactRef(name="score", md5="0" * 32, sha256="0" * 64, size=1),
                           report=PerformanceReport(order_id=upload.order_id, task=0, validator=slot.address,
                                                    model_sha256="aa", holdout_sha256="bb", samples=100, accuracy=0.9,
                                                    loss=0.3))

    unattested, attested_anyway = set(), set()
    monkeypatch.setattr(stages, "_dispatch", dispatched)
    monkeypatch.setattr(dispatch, "attested_score_task", on_chain)
    silent.add(party_queue(slots[1].address))
    scores = stages.score(None, upload, shard, training)
    assert set(scores.reports) == {"validator-0", "validator-2"} and scores.median_accuracy == 0.9
    assert started == [party_queue(s.address) for s in slots]  # every validator was asked at once
    # a run that failed after its validator attested its score has scored; one that completed with none has not
    attested_anyway.add(party_queue(slots[1].address))
    unattested.add(slots[2].address)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="order"):
        assert set(stages.score(None, upload, shard, training).reports) == {"validator-0", "validator-1"}
    assert [r.getMessage() for r in caplog.records] == [
        f"task 0 of order {upload.order_id} goes on with the scores of a majority, without validator-2 "
        f"({slots[2].address}): its score run completed with no score on chain"]
    attested_anyway.clear()
    unattested.clear()
    # fewer than a majority: the stage waits for the task's scoring window to close on chain, then goes on
    silent.add(party_queue(slots[2].address))
    closes: list[int | None] = [1_000, None]
    monkeypatch.setattr(dispatch, "wait_for_scoring_task", lambda upload, task, until, poll_s: closes.pop(0))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="order"):
        assert set(stages.score(None, upload, shard, training).reports) == {"validator-0"}
    assert [r.getMessage() for r in caplog.records] == [
        f"task 0 of order {upload.order_id}: 1 of 3 validators scored, and Wasp judges once 2 have; waiting for its "
        "scoring window (the order's commit window after the verification) to close on chain, when Wasp judges with "
        "those there are",
        f"task 0 of order {upload.order_id} goes on with 1 of 3 scores, its scoring window closed at chain time 1000, "
        f"without validator-1 ({slots[1].address}): no worker of work queue {party_queue(slots[1].address)} started it; "
        f"validator-2 ({slots[2].address}): no worker of work queue {party_queue(slots[2].address)} started it"]
    with pytest.raises(StageNotDone, match="1 of the order's 3 validators scored task 0, and Wasp judges once 2 have, "
                                           "or once the task's scoring window closed on chain, which the stage ran out "
                                           f"of time before; validator-1 \\({slots[1].address}\\): no worker"):
        stages.score(None, upload, shard, training)


def _found(outcome):
    """What the chain holds of a verification, as the stage reads it: a record, none, or an unusable one."""
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def test_the_verify_stage_records_the_verification_attested_on_chain_whatever_the_verifiers_run_returned(monkeypatch):
    order_id = "0x" + "cd" * 32
    verifier, scorer, successor = (SimpleNamespace(name=f"validator-{i}", address=f"0x{i + 1:040x}") for i in range(3))
    upload, training, assignment = SimpleNamespace(order_id=order_id), SimpleNamespace(task=0), SimpleNamespace(
        task=0, address="0x" + "ee" * 20)
    stages = Stages(DispatchConfig(mode="pools", replacements=1))
    monkeypatch.setattr(dispatch, "recorded", lambda *args: None)
    monkeypatch.setattr(dispatch, "create_markdown_artifact", lambda **kwargs: None)
    monkeypatch.setattr(dispatch, "order_book", lambda: SimpleNamespace(update=lambda *args, **kwargs: None))
    monkeypatch.setattr(stages, "_record", lambda *args, **kwargs: None)
    attested = SimpleNamespace(verifier=verifier.address, checks=[])
    on_chain, runs = [], []
    monkeypatch.setattr(dispatch, "attested_verification_task", lambda upload, task: _found(on_chain.pop(0)))
    monkeypatch.setattr(dispatch, "replace_verifier_task", lambda upload, shard, task, until, poll_s: SimpleNamespace(
        validators=[successor, *shard.validators[1:]]))

    def dispatched(deployment, params, key, result, queue=None):
        runs.append(deployment)
        if deployment == "verify/verify" and len(runs) == 1:
            raise StageNotDone("verify/verify completed, but its result is no Verification: checks.0.name missing")
        return training if deployment == "grant-model/grant-model" else SimpleNamespace(checks=[{"name": "x"}])

    monkeypatch.setattr(stages, "_dispatch", dispatched)
    on_chain[:] = [attested]  # its run returned junk, after it attested its verification: the order goes on with it
    assert stages.verify(None, upload, SimpleNamespace(validators=[verifier, scorer]), assignment, training)[2] is attested
    assert runs == ["verify/verify"]
    runs.clear()
    on_chain[:] = [None, SimpleNamespace(verifier=successor.address, checks=[])]  # nothing attested: replaced
    shard, _, verification = stages.verify(None, upload, SimpleNamespace(validators=[verifier, scorer]), assignment,
                                           training)
    assert verification.verifier == successor.address and shard.validators == [successor, scorer]
    assert runs == ["verify/verify", "grant-model/grant-model", "verify/verify"]


def test_the_verify_stage_has_wasp_void_a_verification_nobody_can_judge_with_and_the_next_verifier_verify(
        monkeypatch, caplog):
    order_id = "0x" + "cd" * 32
    withholding, scorer, successor = (SimpleNamespace(name=f"validator-{i}", address=f"0x{i + 1:040x}") for i in range(3))
    upload, training, assignment = SimpleNamespace(order_id=order_id), SimpleNamespace(task=0), SimpleNamespace(
        task=0, address="0x" + "ee" * 20)
    stages = Stages(DispatchConfig(mode="pools", replacements=1))
    runs, on_chain, closes = [], [], []
    monkeypatch.setattr(dispatch, "recorded", lambda *args: None)
    monkeypatch.setattr(dispatch, "get_run_logger", lambda: logging.getLogger("order"))
    monkeypatch.setattr(dispatch, "create_markdown_artifact", lambda **kwargs: None)
    monkeypatch.setattr(dispatch, "order_book", lambda: SimpleNamespace(update=lambda *args, **kwargs: None))
    monkeypatch.setattr(stages, "_record", lambda *args, **kwargs: None)
    monkeypatch.setattr(dispatch, "attested_verification_task", lambda upload, task: _found(on_chain.pop(0)))
    monkeypatch.setattr(dispatch, "wait_for_scoring_task", lambda upload, task, until, poll_s: closes.pop(0))
    monkeypatch.setattr(dispatch, "replace_verifier_task", lambda upload, shard, task, until, poll_s: SimpleNamespace(
        validators=[successor, *shard.validators[1:]]))

    def dispatched(deployment, params, key, result, queue=None):
        runs.append((deployment, key))
        if deployment == "verify/verify":
            return SimpleNamespace(verifier="what the run returns, which the record does not take", checks=[{}])
        if deployment == "void-verification/void-verification":
            return VoidedVerification(order_id=order_id, task=0, verifier=withholding.address, reason="withheld",
                                      tx_hash="0x" + "12" * 32)
        return training  # the worker's grant of its model key to the successor

    monkeypatch.setattr(stages, "_dispatch", dispatched)
    why = f"the verification report that {withholding.address} attested for task 0 cannot be read"
    on_chain[:], closes[:] = [UnusableVerification(why), SimpleNamespace(verifier=successor.address, checks=[])], [1_000]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="order"):
        shard, _, verification = stages.verify(None, upload, SimpleNamespace(validators=[withholding, scorer]),
                                               assignment, training)
    assert verification.verifier == successor.address and shard.validators == [successor, scorer]
    assert runs == [("verify/verify", f"{order_id}-verify-0-{withholding.address}"),
                    ("void-verification/void-verification", f"{order_id}-void-verification-0-{withholding.address}"),
                    ("grant-model/grant-model", f"{order_id}-grant-model-0-{successor.address}"),
                    ("verify/verify", f"{order_id}-verify-0-{successor.address}")]
    assert [r.getMessage() for r in caplog.records] == [
        f"task 0 of order {order_id}: {why}; waiting for its scoring window (the order's commit window after the "
        "verification) to close on chain, when Wasp voids it and the next verifier drawn verifies",
        f"task 0 of order {order_id}: Wasp voided the verification of {withholding.address} on chain (0x{'12' * 32})"]
    # the window not closed in the stage's time: nobody is voided or replaced, and the order's end says why
    runs.clear()
    on_chain[:], closes[:] = [UnusableVerification(why)], [None]

    def verified(*args, **kwargs):
        raise NotReplaceable(f"{withholding.address} verified task 0 on chain")

    monkeypatch.setattr(dispatch, "replace_verifier_task", verified)
    with pytest.raises(StageNotDone, match=f"^{why}; its scoring window did not close before the stage ran out of "
                                           f"time; {withholding.address} verified task 0 on chain$"):
        stages.verify(None, upload, SimpleNamespace(validators=[withholding, scorer]), assignment, training)
    assert runs == [("verify/verify", f"{order_id}-verify-0-{withholding.address}")]
