"""Orders from the UI's API on a real devnet: a Prefect server, process workers on the gpu, validators
and control pools, anvil and a shared store. Then a gpu worker dies mid-training."""

import time

import psutil
import pytest
from contracts.errors import ContractRevert

from bahen.devnet_services import service_env, settings_for, spawn, stop
from bahen.devnet_up import worker_argv
from bahen.network import connect
from bahen.orders import OrderBook
from bahen.parties import CLIENT
from bahen.runner import STAGES
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from tests.integration.prefect.devnet import api, runs_of, submit_order, wait_events, wait_final

pytestmark = pytest.mark.integration

# long enough that the worker is still training when it is killed
LONG_SPEC = OrderSpec(dataset="digits", model="mlp", epochs=12, batch_size=16, checkpoint_every=60, validators=2)


def _market(devnet):
    return connect(settings_for(devnet, load_settings(home=devnet.home))).market


def test_order_from_the_ui_runs_on_the_pools_and_settles_once(devnet, finished_order):
    [record] = [r for r in OrderBook(devnet.home / "orders").list() if r.settled]
    assert record.status == "settled (accepted), model delivered"
    assert [t.stage for t in record.timings] == list(STAGES)
    worker = record.shard.assignments[0]
    assert record.settled.payouts_wei[worker.address] == worker.payment_wei
    [train] = runs_of(devnet, "train/train")
    [score] = runs_of(devnet, "score/score")
    assert train["state"]["type"] == score["state"]["type"] == "COMPLETED"
    assert train["parent_task_run_id"] is not None  # a child of the order, keyed by order and task
    stages = {f"bahen.order.{s}" for s in STAGES}
    assert wait_events(devnet, stages) >= stages
    artifacts = {a["type"] for a in api(devnet, "POST", "/artifacts/filter")}
    assert {"markdown", "table", "progress"} <= artifacts

    market = _market(devnet)
    with pytest.raises(ContractRevert, match="AlreadySettled"):
        market.settle(connect(settings_for(devnet, load_settings(home=devnet.home))).party(CLIENT).account,
                      order_id=bytes.fromhex(record.order_id[2:]))


def _kill_host(devnet, name: str) -> None:
    """SIGKILL a worker and the flow runs it started, as if its host lost power."""
    service = next(s for s in devnet.services if s.name == name)
    root = psutil.Process(service.pid)
    procs = [root, *root.children(recursive=True)]
    for proc in procs:
        proc.kill()
    psutil.wait_procs(procs, timeout=10)


def test_a_worker_killed_mid_training_is_replaced_and_the_order_paid_once(devnet):
    market = _market(devnet)
    before = {r.order_id for r in OrderBook(devnet.home / "orders").list()}
    flow_run = submit_order(devnet, LONG_SPEC, env={"BAHEN_DISPATCH_MODE": "pools", "BAHEN_DISPATCH_STALE_AFTER_S": "45"})
    deadline = time.monotonic() + 120
    while not any(r["state"]["type"] == "RUNNING" for r in runs_of(devnet, "train/train")):
        assert time.monotonic() < deadline, "the train run never started"
        time.sleep(0.5)
    _kill_host(devnet, "worker-gpu")
    replacement = spawn("worker-gpu-2", "worker", worker_argv("gpu", "gpu-2", None), service_env(devnet), devnet.home)
    devnet.services.append(replacement)
    try:
        run = wait_final(devnet, flow_run, timeout=300)
    finally:
        stop(replacement)
    assert run["state"]["type"] == "COMPLETED", run["state"]

    [record] = [r for r in OrderBook(devnet.home / "orders").list() if r.order_id not in before]
    trains = [r for r in runs_of(devnet, "train/train") if record.order_id in r["name"]]
    assert [r["state"]["type"] for r in trains] == ["CRASHED", "COMPLETED"]
    assert record.status == "settled (accepted), model delivered"
    worker = record.shard.assignments[0]
    assert record.settled.payouts_wei == {worker.address: worker.payment_wei, **{s.address: s.fee_wei for s in record.shard.validators}}
    view = market.order(bytes.fromhex(record.order_id[2:]))
    assert view.status == "settled"
