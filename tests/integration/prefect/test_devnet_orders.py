"""Orders on a real devnet of separate parties: a Prefect server, anvil, a shared store, and one home and
one Prefect worker per party (client, two workers, two validators, Wasp). An order from the UI's API
runs each stage on its signer's worker; the client submits from its own home with the CLI; a
worker's host dies mid-training."""

import json
from collections.abc import Callable
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest
import yaml
from contracts.client import UnknownOrderError
from contracts.errors import ContractRevert
from privacy.identity import Identity
from privacy.signing import sign_digest

from bahen.audit import AUDIT_STAGES
from bahen.client import Client, Order, _NetworkRun
from bahen.devnet_services import postgres_binaries, save_state, settings_for, spawn, stop, wait_healthy
from bahen.devnet_up import party_worker
from bahen.network import connect, keystore_of
from bahen.orders import OrderBook, order_id_for, salt_of_run
from bahen.records import OrderRecord
from bahen.parties import CLIENT, OPERATOR, WASP, party_queue
from bahen.runner import STAGES
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from bahen.submission import check_submission, submission_digest
from tests.integration.prefect.devnet import (
    ORDER_TIMEOUT_S, RESOLVE_EVERY_MINUTES, UI_SPEC, api, party, runs_of, submit_order, wait_events, wait_final,
)

DVC = str(Path(sys.executable).with_name("dvc"))

pytestmark = pytest.mark.integration

# a small order whose parties stall: anyone may replace one a minute after its part was due
STALLED_SPEC = OrderSpec(dataset="digits", model="mlp", epochs=1, batch_size=32, checkpoint_every=8, commit_minutes=1,
                         deadline_hours=1)
# long enough that the worker is still training when it is killed
LONG_SPEC = OrderSpec(dataset="digits", model="mlp", epochs=12, batch_size=16, checkpoint_every=60, validators=2)


def _market(devnet):
    return connect(settings_for(devnet, load_settings(home=devnet.home))).market


def _client_book(devnet) -> OrderBook:
    return OrderBook(party(devnet, CLIENT).home / "orders")


def test_every_party_home_holds_exactly_its_own_identity(devnet):
    for host in devnet.parties:
        assert keystore_of(load_settings(home=host.home)).names() == [host.name], host.home
    assert keystore_of(load_settings(home=devnet.home)).names() == [OPERATOR]


def test_each_validator_looks_for_disputes_that_drew_it_on_a_schedule_of_its_own_queue(devnet):
    validators = [host for host in devnet.parties if host.pool == "validators"]
    assert validators
    for host in validators:
        deployment = api(devnet, "GET", f"/deployments/name/resolve-pending/{host.address.lower()}")
        assert (deployment["work_queue_name"], deployment["parameters"]) == (host.queue, {"resolver": host.address})
        assert [s["schedule"]["interval"] for s in deployment["schedules"]] == [RESOLVE_EVERY_MINUTES * 60.0]


def test_order_from_the_ui_runs_each_stage_on_its_signers_worker_and_settles_once(devnet, finished_order):
    [record] = [r for r in _client_book(devnet).list() if r.settled]
    assert record.status == "settled (accepted), model delivered"
    assert [t.stage for t in record.timings] == list(STAGES)
    worker = record.shard.assignments[0]
    assert record.settled.payouts_wei[worker.address] == worker.payment_wei
    [train] = runs_of(devnet, "train/train")
    [verify] = runs_of(devnet, "verify/verify")
    scores = runs_of(devnet, "score/score")
    [wasp] = runs_of(devnet, "wasp/wasp")
    [deliver] = runs_of(devnet, "deliver/deliver")
    runs = [train, verify, *scores, wasp, deliver]
    assert [r["state"]["type"] for r in runs] == ["COMPLETED"] * 6
    assert all(r["parent_task_run_id"] is not None for r in runs)  # children of the order, keyed by order and party
    assert train["work_queue_name"] == party_queue(worker.address)
    assert verify["work_queue_name"] == party_queue(record.shard.validators[0].address)
    assert {r["work_queue_name"] for r in scores} == {party_queue(v.address) for v in record.shard.validators}
    # the validators score at once: each score run was created before either ended
    created, ended = ([datetime.fromisoformat(r[field]) for r in scores] for field in ("created", "end_time"))
    assert max(created) < min(ended)
    # the runs' results travel through the store, each party's in its own folder
    results = Path(devnet.store_url) / "prefect-results"
    signers = {worker.address, record.shard.validators[0].address, party(devnet, WASP).address}
    assert {folder.name for folder in results.iterdir()} >= {a.lower() for a in signers}
    assert sum(1 for f in results.rglob("*") if f.is_file()) >= len(runs)
    assert not (devnet.home / "prefect" / "results").exists()
    for host in devnet.parties:  # only the client keeps the order's record
        assert OrderBook(host.home / "orders").list() == ([] if host.name != CLIENT else _client_book(devnet).list())
    stages = {f"bahen.order.{s}" for s in STAGES}
    assert wait_events(devnet, stages) >= stages
    artifacts = api(devnet, "POST", "/artifacts/filter")
    assert {"markdown", "progress"} <= {a["type"] for a in artifacts}
    assert {f"order-{record.order_id[2:14]}", f"checks-{record.order_id[2:14]}"} <= {a["key"] for a in artifacts}

    client = connect(load_settings(home=party(devnet, CLIENT).home)).party(CLIENT)
    with pytest.raises(ContractRevert, match="AlreadySettled"):
        _market(devnet).settle(client.account, order_id=bytes.fromhex(record.order_id[2:]))


def test_orders_the_client_submits_at_once_from_its_own_home_settle_once_and_the_worker_withdraws_its_pay(
        devnet, finished_order):
    """Two orders from the client's home at once, one with the CLI, one with the SDK, each signed by the
    client: the client's worker runs them side by side, each party signs for both, and the server keeps
    every run in its PostgreSQL database. Then the worker withdraws its pay from its own home, and an
    outside auditor named in the CLI's order re-audits it from a home that never saw it."""
    client, env = party(devnet, CLIENT), party_worker(devnet, party(devnet, CLIENT))[1]
    # an outside auditor on a host of its own: it makes its identity, and the client names it in the order
    auditor = devnet.home / "auditor"
    auditor.mkdir()
    # where the chain and the store are, and the market's address; the store credentials it holds are its own
    config = yaml.safe_load((client.home / "config.yaml").read_text())
    config.pop("store_party")
    (auditor / "config.yaml").write_text(yaml.safe_dump(config))
    (auditor / "chain.json").write_text((client.home / "chain.json").read_text())
    as_auditor = env | {"BAHEN_HOME": str(auditor), "COLUMNS": "240", "DVC_NO_ANALYTICS": "1",
                        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    made = subprocess.run([sys.executable, "-m", "bahen.cli", "keys", "new", "auditor"], env=as_auditor,
                          capture_output=True, text=True, timeout=60, check=False)
    assert made.returncode == 0, made.stdout + made.stderr
    named = made.stdout.split("auditors: ")[1].strip()
    spec = client.home / "order.yaml"
    spec.write_text("dataset: digits\nmodel: mlp\nepochs: 1\nbatch_size: 32\ncheckpoint_every: 8\nvalidators: 2\n"
                    f"auditors: {named}\n")
    with subprocess.Popen([sys.executable, "-m", "bahen.cli", "order", "submit", str(spec)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as submitted:
        by_sdk = Client(home=client.home).submit(UI_SPEC)
        by_sdk.wait(timeout=3 * ORDER_TIMEOUT_S)
        out, err = submitted.communicate(timeout=3 * ORDER_TIMEOUT_S)
    assert submitted.returncode == 0, out[-3000:] + err[-3000:]
    assert "settled (accepted), model delivered" in out

    market = _market(devnet)
    [record] = [r for r in _client_book(devnet).list() if r.spec.auditors]
    orders = {by_sdk.order_id: by_sdk.flow_run_id}
    for run in runs_of(devnet, "order/order"):
        if order_id_for(client.address, run["parameters"].get("salt") or salt_of_run(run["id"])) == record.order_id:
            orders[record.order_id] = run["id"]
    assert len(orders) == 2
    for order_id, flow_run_id in orders.items():
        sent = api(devnet, "GET", f"/flow_runs/{flow_run_id}")["parameters"]
        assert order_id_for(client.address, sent["salt"]) == order_id
        check_submission(OrderSpec.model_validate(sent["spec"]), sent["salt"], sent["signature"], client.address,
                         accept_unsigned=False)
        assert _client_book(devnet).load(order_id).status == "settled (accepted), model delivered"
        assert market.settlement_of(bytes.fromhex(order_id[2:])) is not None
        assert market.order(bytes.fromhex(order_id[2:])).status == "settled"
    children = api(devnet, "POST", "/flow_runs/filter", flow_runs={"parent_flow_run_id": {"any_": list(orders.values())}},
                   limit=200)
    stages = sorted(r["name"].split("-")[0] for r in children)
    assert stages == sorted(["train", "verify", "score", "score", "wasp", "deliver"] * 2)
    runs = [*children, *(api(devnet, "GET", f"/flow_runs/{i}") for i in orders.values())]
    assert {r["state"]["type"] for r in runs} == {"COMPLETED"}
    [database] = [s for s in devnet.services if s.kind == "postgres"]
    rows = subprocess.run([str(postgres_binaries() / "psql"), database.url, "-tAc", "select count(*) from flow_run"],
                          capture_output=True, text=True, check=True).stdout
    assert int(rows) == api(devnet, "POST", "/flow_runs/count")

    address = record.shard.assignments[0].address
    [worker] = [p for p in devnet.parties if keystore_of(load_settings(home=p.home)).public(p.name).address == address]
    owed = sum(r.settled.payouts_wei.get(address, 0) for r in _client_book(devnet).list() if r.settled)
    assert owed > 0 and market.pending(address) == owed
    paid = subprocess.run([sys.executable, "-m", "bahen.cli", "withdraw"], env=party_worker(devnet, worker)[1],
                          capture_output=True, text=True, timeout=120, check=False)
    assert paid.returncode == 0, paid.stdout + paid.stderr
    assert f"{worker.name} ({address}) withdrew {owed / 1e18:.6f} ETH of credit" in " ".join(paid.stdout.split())
    assert market.pending(address) == 0

    # the worker's home keeps no record of the order; it is shown what the chain holds
    shown = subprocess.run([sys.executable, "-m", "bahen.cli", "order", "show", record.order_id],
                           env=party_worker(devnet, worker)[1] | {"COLUMNS": "240"}, capture_output=True, text=True,
                           timeout=120, check=False)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "holds no record of this order" in shown.stderr
    assert "status settled (on chain)" in shown.stdout and address in shown.stdout and "task payment" in shown.stdout

    # the auditor's home never saw the order: it exports it from the chain and the store alone, and stock DVC
    # there pulls every object, verified, and reproduces the order's pipeline: each stage re-checks what it
    # pinned, the auditor re-executes the verification with the keys the client and the delivering validator
    # granted it, and Wasp's rules decide again
    workspace = auditor / "workspace"
    for argv, cwd in (([sys.executable, "-m", "bahen.cli", "audit", "export", record.order_id, str(workspace)], auditor),
                      ([DVC, "pull"], workspace), ([DVC, "repro"], workspace)):
        done = subprocess.run(argv, cwd=cwd, env=as_auditor, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, " ".join(argv) + done.stdout[-2000:] + done.stderr[-2000:]
    assert list(yaml.safe_load((workspace / "dvc.yaml").read_text())["stages"]) == [
        *AUDIT_STAGES[:-1], "reexecute", "audit"]
    assert "task 0: agrees with the recorded verdict (accepted)" in done.stdout
    assert "task 0: re-executed by auditor" in done.stdout and "Wasp's rules decide accepted, as recorded" in done.stdout
    for stage in AUDIT_STAGES[:-1]:
        [task] = json.loads((workspace / "checks" / f"{stage}.json").read_text())["tasks"]
        assert task["stage"] == stage and task["artifacts"] >= 1
    [task] = json.loads((workspace / "audit.json").read_text())["tasks"]
    assert task["agrees"] and task["accepted"] and task["problems"] == []
    [task] = json.loads((workspace / "verify.json").read_text())["tasks"]
    assert task["agrees"] and task["passed"] and task["accepted"] and task["problems"] == []
    assert keystore_of(load_settings(home=auditor)).names() == ["auditor"] and not (auditor / "orders").exists()


def _host_of_queue(devnet, queue: str):
    """The party whose work queue is ``queue`` (named by its address)."""
    return next(p for p in devnet.parties if p.queue == queue)


def _kill_host(devnet, name: str) -> None:
    """SIGKILL a worker and the flow runs it started, as if its host lost power."""
    service = next(s for s in devnet.services if s.name == name)
    root = psutil.Process(service.pid)
    procs = [root, *root.children(recursive=True)]
    for proc in procs:
        proc.kill()
    psutil.wait_procs(procs, timeout=10)


def test_an_order_run_from_a_queue_other_than_the_clients_own_is_refused_before_anything_is_paid(devnet):
    # the control pool's default queue, which every client's worker also polls (the UI's re-audits go there)
    run = wait_final(devnet, submit_order(devnet, UI_SPEC, queue="default"))
    assert run["state"]["type"] == "FAILED" and run["work_queue_name"] == "default"
    client = party(devnet, CLIENT)
    assert f"not client {client.address}'s own ({client.queue})" in run["state"]["message"]
    order_id = order_id_for(client.address, salt_of_run(run["id"]))
    with pytest.raises(UnknownOrderError):
        _market(devnet).order(bytes.fromhex(order_id[2:]))
    assert order_id not in {r.order_id for r in _client_book(devnet).list()}


def test_an_order_run_its_client_did_not_sign_or_another_run_placed_is_refused_before_anything_is_paid(
        devnet, finished_order, tmp_path):
    client = party(devnet, CLIENT)
    salt = "0x" + "77" * 32
    # anyone who reaches the Prefect server can put a run in the client's own queue, signed in its name
    forged = "0x" + sign_digest(Identity.generate("stranger"), submission_digest(UI_SPEC, salt, client.address)).hex()
    # the devnet's client takes unsigned runs from the UI, but not on a file of its host a stranger names
    private = tmp_path / "private.csv"
    private.write_text("x,label\n1,0\n")
    copied = submit_order(devnet, UI_SPEC, parameters={"salt": salt_of_run(finished_order)})
    runs = {
        "signature is not client": submit_order(devnet, UI_SPEC, parameters={"salt": salt, "signature": forged}),
        f"names dataset_path '{private}' on the client's host": submit_order(
            devnet, UI_SPEC.model_copy(update={"dataset_path": str(private)})),
        # the parameters of a run the client's host took, copied into a new run: the same order again
        f"already placed by flow run {finished_order}": copied,
    }
    for reason, flow_run in runs.items():
        run = wait_final(devnet, flow_run)
        assert run["state"]["type"] == "FAILED" and run["work_queue_name"] == client.queue
        assert reason in run["state"]["message"] and "nothing was opened or paid" in run["state"]["message"].lower()
        order_id = order_id_for(client.address, run["parameters"].get("salt") or salt_of_run(run["id"]))
        if flow_run != copied:
            with pytest.raises(UnknownOrderError):
                _market(devnet).order(bytes.fromhex(order_id[2:]))
            assert order_id not in {r.order_id for r in _client_book(devnet).list()}
    copy_of = order_id_for(client.address, salt_of_run(finished_order))
    assert _client_book(devnet).load(copy_of).status == "settled (accepted), model delivered"
    assert _market(devnet).settlement_of(bytes.fromhex(copy_of[2:])) is not None
    # a client following the copy (its own run, had a stranger's copy of it won the race) follows the run that won
    sdk = Client(home=client.home)
    followed = Order(sdk, copy_of, run=_NetworkRun(sdk.settings(), copied)).wait(timeout=60)
    assert followed.flow_run_id == finished_order and followed.status == "settled (accepted), model delivered"


def test_a_worker_killed_mid_training_is_replaced_and_the_order_paid_once(devnet):
    market = _market(devnet)
    before = {r.order_id for r in _client_book(devnet).list()}
    flow_run = submit_order(devnet, LONG_SPEC, env={"BAHEN_DISPATCH_MODE": "pools", "BAHEN_DISPATCH_STALE_AFTER_S": "45"})
    deadline = time.monotonic() + 120
    while not (running := [r for r in runs_of(devnet, "train/train") if r["state"]["type"] == "RUNNING"]):
        assert time.monotonic() < deadline, "the train run never started"
        time.sleep(0.5)
    drawn = _host_of_queue(devnet, running[0]["work_queue_name"])  # the worker the chain drew
    _kill_host(devnet, drawn.name)
    replacement = spawn(f"{drawn.name}-again", "worker", *party_worker(devnet, drawn), devnet.home)
    devnet.services.append(replacement)
    try:
        run = wait_final(devnet, flow_run, timeout=300)
    finally:
        stop(replacement)
    assert run["state"]["type"] == "COMPLETED", run["state"]

    [record] = [r for r in _client_book(devnet).list() if r.order_id not in before]
    trains = [r for r in runs_of(devnet, "train/train") if record.order_id in r["name"]]
    assert [r["state"]["type"] for r in trains] == ["CRASHED", "COMPLETED"]
    assert record.status == "settled (accepted), model delivered"
    worker = record.shard.assignments[0]
    assert record.settled.payouts_wei == {worker.address: worker.payment_wei, **{s.address: s.fee_wei for s in record.shard.validators}}
    view = market.order(bytes.fromhex(record.order_id[2:]))
    assert view.status == "settled"


def _locks(devnet, market) -> dict[str, int]:
    """How many unsettled orders and disputes bind each party's stake."""
    return {p.address: market.member(p.address).locks for p in devnet.parties if p.pool in ("gpu", "validators")}


def _stop_hosts(devnet, hosts) -> None:
    """Stop the Prefect worker of each of ``hosts``, whichever of its services runs it now (the first, or one
    an earlier test started again)."""
    for host in hosts:
        for service in devnet.services:
            if service.kind == "worker" and (service.name == host.name or service.name.startswith(f"{host.name}-")):
                stop(service)


def _start_hosts(devnet, hosts) -> None:
    """Start each of ``hosts``' Prefect worker again, the devnet as it was for whatever runs next."""
    for host in hosts:
        devnet.services.append(spawn(f"{host.name}-again", "worker", *party_worker(devnet, host), devnet.home))


def _drawn_while_down(devnet, book: OrderBook, hosts, spec: OrderSpec) -> tuple[str, set[str], OrderRecord]:
    """Stop ``hosts``' Prefect workers, submit ``spec`` to run on the pools, and wait for the chain to draw its
    parties: the order's flow run, the client's orders before it, and its record once drawn."""
    _stop_hosts(devnet, hosts)
    before = {r.order_id for r in book.list()}
    flow_run = submit_order(devnet, spec, env={"BAHEN_DISPATCH_MODE": "pools", "BAHEN_DISPATCH_START_TIMEOUT_S": "45"})
    return flow_run, before, _record_once(book, before, lambda r: r.shard is not None, "drawn")


def test_a_drawn_worker_and_verifier_that_never_start_are_each_replaced_by_the_next_draw_and_the_worker_paid(devnet):
    """No worker and no validator polls when the order (one validator) opens; once the chain has drawn them,
    only the worker and the validator it did not draw come back. The drawn worker's run is never started,
    its commit window passes, the client replaces it on chain and the next draw (the only eligible worker
    left) trains. Then the verifier's run is never started, the task's window passes with no verification on
    chain, the client replaces the verifier, the worker wraps its model key to the next draw (the other
    validator), which verifies, scores and delivers. The worker is paid; the stalled worker and verifier are
    released unslashed and unpaid.

    A run no worker starts within 45 s is the stalled party's: a party that polls starts a run in a few
    seconds, and in about 20 while the whole suite loads the machine."""
    market, book = _market(devnet), _client_book(devnet)
    locks = _locks(devnet, market)
    hosts = [p for p in devnet.parties if p.pool in ("gpu", "validators")]
    spec = STALLED_SPEC.model_copy(update={"validators": 1})
    flow_run, before, opened = _drawn_while_down(devnet, book, hosts, spec)
    stalled = [next(p for p in hosts if p.queue == party_queue(address))
               for address in (opened.shard.assignments[0].address, opened.shard.validators[0].address)]
    successors = {p.pool: p for p in hosts if p not in stalled}
    # anvil keeps wall-clock time: move it past each window rather than wait the minute out
    market.chain.increase_time(spec.commit_minutes * 60)  # the drawn worker's, from the draw
    back = [spawn(f"{p.name}-back", "worker", *party_worker(devnet, p), devnet.home) for p in successors.values()]
    try:
        _record_once(book, before, lambda r: r.training is not None, "trained")
        market.chain.increase_time(spec.commit_minutes * 60)  # the task's verify window, from its commitment
        run = wait_final(devnet, flow_run, timeout=400)
    finally:
        for service in back:
            stop(service)
        _start_hosts(devnet, hosts)
    assert run["state"]["type"] == "COMPLETED", run["state"]

    record = book.load(opened.order_id)
    worker, verifier = successors["gpu"].queue, successors["validators"].queue
    assert record.status == "settled (accepted), model delivered"
    assert record.shard.assignments[0].address.lower() == worker
    assert [s.address.lower() for s in record.shard.validators] == [verifier]
    for deployment, stalled_queue, queue in (("train/train", stalled[0].queue, worker),
                                              ("verify/verify", stalled[1].queue, verifier)):
        runs = [r for r in runs_of(devnet, deployment) if r["parameters"]["upload"]["order_id"] == record.order_id]
        assert [(r["work_queue_name"], r["state"]["type"]) for r in runs] == [(stalled_queue, "CANCELLED"),
                                                                             (queue, "COMPLETED")]
    [grant] = [r for r in runs_of(devnet, "grant-model/grant-model")
               if r["parameters"]["upload"]["order_id"] == record.order_id]
    assert (grant["work_queue_name"], grant["state"]["type"]) == (worker, "COMPLETED")
    view = market.order(bytes.fromhex(record.order_id[2:]))
    assert view.status == "settled" and (view.tasks[0].worker.lower(), view.tasks[0].verifier.lower()) == (worker, verifier)
    paid = record.shard.assignments[0], record.shard.validators[0]
    assert record.settled.payouts_wei == {paid[0].address: paid[0].payment_wei, paid[1].address: paid[1].fee_wei}
    assert record.settled.slashed_wei == {}
    for host in stalled:
        address = keystore_of(load_settings(home=host.home)).public(host.name).address
        assert address not in record.settled.payouts_wei
        assert market.member(address).locks == locks[address]  # bound until the order closed, no longer


def test_a_validator_that_never_scores_leaves_the_order_to_wait_out_its_scoring_window_and_the_worker_paid(devnet):
    """No validator polls when the order (two validators: Wasp judges once both scored) opens; once the chain
    has drawn them, only the verifier comes back. It verifies and scores; the other's score run is never
    started, so the score stage waits for the task's scoring window (the commit window after the
    verification) to close on chain, and Wasp judges with the one score there is. The worker is paid, the
    silent validator earns no fee and is not slashed."""
    market, book = _market(devnet), _client_book(devnet)
    validators = [p for p in devnet.parties if p.pool == "validators"]
    spec = STALLED_SPEC.model_copy(update={"validators": 2})
    flow_run, before, opened = _drawn_while_down(devnet, book, validators, spec)
    verifier, silent = (next(p for p in validators if p.queue == party_queue(s.address)) for s in opened.shard.validators)
    back = spawn(f"{verifier.name}-back", "worker", *party_worker(devnet, verifier), devnet.home)
    try:
        _record_once(book, before, lambda r: r.verification is not None, "verified")
        market.chain.increase_time(spec.commit_minutes * 60)  # anvil keeps wall-clock time: past the scoring window
        run = wait_final(devnet, flow_run, timeout=400)
    finally:
        stop(back)
        _start_hosts(devnet, validators)
    assert run["state"]["type"] == "COMPLETED", run["state"]

    record = book.load(opened.order_id)
    assert record.status == "settled (accepted), model delivered"
    scores = [r for r in runs_of(devnet, "score/score") if r["parameters"]["upload"]["order_id"] == record.order_id]
    assert sorted((r["work_queue_name"], r["state"]["type"]) for r in scores) == sorted(
        [(verifier.queue, "COMPLETED"), (silent.queue, "CANCELLED")])
    [quorum] = [f for f in record.verdict.model_report.findings if f.rule == "score-quorum"]
    assert (quorum.passed, quorum.detail) == (False, "1 attested scores, quorum 2 of 2")
    worker, paid = record.shard.assignments[0], record.shard.validators[0]
    assert paid.address.lower() == verifier.queue
    assert record.settled.payouts_wei == {worker.address: worker.payment_wei, paid.address: paid.fee_wei}
    assert record.settled.slashed_wei == {}


def _record_once(book: OrderBook, before: set[str], reached: Callable[[OrderRecord], bool], what: str) -> OrderRecord:
    """The record of the order placed since ``before`` once it has ``reached`` a stage."""
    deadline = time.monotonic() + 300
    while not (found := [r for r in book.list() if r.order_id not in before and reached(r)]):
        assert time.monotonic() < deadline, f"the order was never {what}"
        time.sleep(0.5)
    return found[0]


def test_an_order_goes_on_through_a_restart_of_the_prefect_server_and_settles_once(devnet):
    """The server stops while the worker trains and comes back 15 s later, on the same port and
    PostgreSQL database: every party's process (the order, the train run, the Prefect workers) waits
    for it, and the order settles with one run of each stage."""
    before = {r.order_id for r in _client_book(devnet).list()}
    spec = OrderSpec(dataset="digits", model="mlp", epochs=6, batch_size=16, checkpoint_every=60, validators=2)
    flow_run = submit_order(devnet, spec)
    deadline = time.monotonic() + 120
    while not [r for r in runs_of(devnet, "train/train") if r["state"]["type"] == "RUNNING"]:
        assert time.monotonic() < deadline, "the train run never started"
        time.sleep(0.5)
    i, server = next((i, s) for i, s in enumerate(devnet.services) if s.kind == "prefect")
    process = psutil.Process(server.pid)
    argv, env = process.cmdline(), process.environ()
    stop(server)
    time.sleep(15)
    devnet.services[i] = spawn(server.name, server.kind, argv, env, devnet.home, url=server.url)
    save_state(devnet)
    wait_healthy(devnet.services[i], timeout=120)
    run = wait_final(devnet, flow_run)
    assert run["state"]["type"] == "COMPLETED", run["state"]

    [record] = [r for r in _client_book(devnet).list() if r.order_id not in before]
    assert record.status == "settled (accepted), model delivered"
    children = api(devnet, "POST", "/flow_runs/filter", flow_runs={"parent_flow_run_id": {"any_": [flow_run]}}, limit=50)
    assert sorted((r["name"].split("-")[0], r["state"]["type"]) for r in children) == sorted(
        (stage, "COMPLETED") for stage in ("train", "verify", "score", "score", "wasp", "deliver"))
    assert _market(devnet).order(bytes.fromhex(record.order_id[2:])).status == "settled"


def test_each_validators_schedule_fires_in_its_own_queue_and_its_own_worker_runs_the_look(devnet):
    """Minutes after the devnet came up (the package's other tests ran meanwhile), the server has started each
    validator's `resolve-pending` from its schedule, in that validator's own queue, which only its host's
    worker polls, and the look completed: it voted on every dispute that drew it (none on this devnet)."""
    for host in (h for h in devnet.parties if h.pool == "validators"):
        deployment = f"resolve-pending/{host.address.lower()}"
        deadline = time.monotonic() + RESOLVE_EVERY_MINUTES * 60 + 240  # the first is due one interval after `up`
        while not (done := [r for r in runs_of(devnet, deployment) if r["state"]["type"] == "COMPLETED"]):
            assert time.monotonic() < deadline, f"no scheduled look of {host.name} completed"
            time.sleep(5)
        assert {(r["auto_scheduled"], r["work_queue_name"], r["parameters"]["resolver"]) for r in done} == {
            (True, host.queue, host.address)}
        assert [r["name"] for r in runs_of(devnet, deployment) if r["state"]["type"] == "FAILED"] == []
