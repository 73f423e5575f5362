"""The Python SDK (`bahen.client`) on the embedded defaults: submit, wait, status, summary, report, model, orders."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
import torch
from rich.console import Console

import bahen
from bahen import Client
from bahen.errors import BahenError
from bahen.network import keystore_of
from bahen.orders import NotCancellableError, UnknownOrderError, order_id_for
from bahen.parties import CLIENT
from bahen.spec import SpecError
from training.errors import TrainingError

SMALL = {"dataset": "digits", "model": "mlp", "epochs": 1, "checkpoint_every": 8, "batch_size": 32}


def test_an_order_placed_through_the_sdk_runs_to_its_report_and_model(prefect, bahen_home, tmp_path):
    client = Client(home=bahen_home)
    order = client.submit(SMALL)
    out = io.StringIO()
    assert order.wait(progress=True, console=Console(file=out, width=100)) is order
    # not a terminal: one plain line per stage, in the order they ran
    lines = out.getvalue().splitlines()
    assert [line.split(": ")[1].split()[0] for line in lines] == [t.stage for t in order.record.timings]
    assert lines[-1].endswith("(8/8 stages)") and all(line.startswith(f"order {order.order_id}: ") for line in lines)

    record = order.record
    assert record.order_id == order.order_id
    assert order.status == "settled (accepted), model delivered"
    assert repr(order) == f"Order({order.order_id}, status='settled (accepted), model delivered')"

    report = order.report()
    assert list(report.columns) == ["section", "name", "passed", "decisive", "observed", "threshold", "detail"]
    checks = report[report.section == "proof check"]
    assert list(checks.name) == [c["name"] for c in record.verification.checks]
    assert checks[checks.decisive].passed.all() and "spot-steps" in set(checks.name)
    findings = report[report.section == "model report"]
    assert list(findings.name) == [f.rule for f in record.verdict.model_report.findings]

    summary = order.summary()
    assert order.order_id in summary and "work verdict: accepted" in summary

    path = order.model(tmp_path / "model.pt")
    state = torch.load(path)
    assert state and all(torch.is_tensor(v) for v in state.values())
    with pytest.raises(BahenError, match="exists; pass --force"):
        order.model(path)
    assert order.model(path, overwrite=True) == path

    with pytest.raises(NotCancellableError, match=f"order {order.order_id} is already settled on chain"):
        order.cancel()
    assert order.order_id in [o.order_id for o in client.orders()]
    assert client.order(order.order_id).status == order.status
    assert client.order(order.order_id, reconcile=False).record == record
    # a run in this process and an order looked up have no flow run of a network's order deployment
    assert order.flow_run_id is None and client.order(order.order_id).flow_run_id is None


def test_the_order_id_is_fixed_before_the_run_starts(prefect, bahen_home, monkeypatch):
    # The market derives it from the client's address and the salt the SDK chose.
    from bahen import client as sdk

    salts = []
    monkeypatch.setattr(sdk, "salt_of_run", lambda run_id: salts.append("0x" + "5a" * 32) or salts[-1])
    client = Client(home=bahen_home)
    order = client.submit(SMALL)
    address = keystore_of(client.settings()).public(CLIENT).address
    assert order.order_id == order_id_for(address, salts[0])
    assert order.wait().record.order_id == order.order_id


def test_a_run_that_fails_raises_its_error_from_wait(prefect, bahen_home, tmp_path):
    X = np.random.default_rng(0).random((40, 3))
    X[5, 1] = np.nan  # fails the dataset's expectations before anything is uploaded
    path = tmp_path / "bad.csv"
    pa_csv.write_csv(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "label": np.arange(40) % 2}), path)
    order = Client(home=bahen_home).submit({"dataset_path": str(path), "model": "mlp", "epochs": 1})
    with pytest.raises(TrainingError, match="expectation"):
        order.wait()
    assert order.done and order.record is None


def test_a_spec_the_order_cannot_take_is_refused_at_submit(tmp_path):
    client = Client(home=tmp_path)
    with pytest.raises(SpecError, match="epochs"):
        client.submit({"dataset": "digits", "epochs": 0})
    with pytest.raises(SpecError, match="does not exist"):
        client.submit(tmp_path / "missing.yaml")
    assert client.orders() == [] and not (tmp_path / "orders").exists()


def test_an_order_the_home_does_not_hold_is_named(tmp_path):
    client = Client(home=tmp_path)
    with pytest.raises(UnknownOrderError, match="bahen order list"):
        client.order("0x" + "00" * 32)
    with pytest.raises(BahenError, match="is not an order id"):
        client.order("0x12")


def test_the_sdk_is_what_bahen_exports():
    assert bahen.Client is Client and bahen.Order.__name__ == "Order"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        bahen.Nope  # noqa: B018


def test_a_timeout_that_has_passed_says_the_run_goes_on():
    from bahen.client import _bounded

    assert _bounded(0.25, None) == 0.25
    with pytest.raises(BahenError, match="still running after the timeout"):
        _bounded(0.25, 0.0)
