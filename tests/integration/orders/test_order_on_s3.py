"""An order on the S3 backend, exported for an auditor and pulled byte for byte by stock DVC, and one
that goes on through an S3 outage at every stage."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import yaml
from typer.testing import CliRunner
from privacy.signing import digest

from bahen.audit import (
    AUDIT_STAGES,
    case_path,
    case_pointer,
    delivery_path,
    delivery_pointer,
    export_order,
    pinned_artifacts,
    staged_artifacts,
)
from bahen.cli import app
from bahen.network import connect
from bahen.runner import STAGES
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from flows.order import order
from tasks.reaudit import ReauditDisagreesError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DVC = str(Path(sys.executable).with_name("dvc"))


def test_s3_order_is_pulled_by_stock_dvc_with_verify(prefect, s3_server, tmp_path, monkeypatch):
    monkeypatch.setenv("BAHEN_HOME", str(tmp_path / "home"))  # its own order book, whatever ran before
    monkeypatch.setenv("BAHEN_STORE_URL", s3_server.fresh_url())
    monkeypatch.setenv("BAHEN_S3_ENDPOINT_URL", s3_server.endpoint_url)
    record = order(OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=16))
    assert record.verdict.accepted

    workspace, count = export_order(record.order_id, tmp_path / "audit")
    assert "verify = true" in (workspace / ".dvc" / "config").read_text()
    env = {**os.environ, **s3_server.env, "DVC_NO_ANALYTICS": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    pulled = subprocess.run([DVC, "pull"], cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
    assert pulled.returncode == 0, pulled.stderr

    net = connect(load_settings())
    store, wasp = net.store, net.wasp().address
    delivery = delivery_pointer(record.order_id, 0, "0x" + digest(record.delivery).hex())
    pins = pinned_artifacts(record, store) | {
        case_path(0): store.get_pointer(wasp, case_pointer(record.order_id, 0, record.verdict.digest)),
        delivery_path(0): store.get_pointer(record.delivery.validator, delivery)}
    assert len(pins) == count > 20
    for path, ref in pins.items():
        assert (workspace / path).read_bytes() == store.get(ref), path
    # its pipeline is the order's: each stage re-checks what it pinned after the stage before; audit, the whole
    stages = yaml.safe_load((workspace / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(AUDIT_STAGES)
    staged = staged_artifacts(record, store)
    for before, stage in zip(AUDIT_STAGES, AUDIT_STAGES[1:-1], strict=False):
        assert stages[stage]["deps"] == [*sorted([case_path(0), *staged[stage]]), f"checks/{before}.json"]
    assert stages["audit"]["deps"] == [*sorted(pins), "checks/score.json"]
    dag = subprocess.run([DVC, "dag", "--dot"], cwd=workspace, env=env, capture_output=True, text=True, timeout=120)
    assert dag.returncode == 0, dag.stderr
    assert all(f'"{a}" -> "{b}"' in dag.stdout for a, b in zip(AUDIT_STAGES, AUDIT_STAGES[1:], strict=False)), dag.stdout
    for stage in AUDIT_STAGES[:-1]:  # as `dvc repro` runs them, on the pulled copies read from DVC's cache
        result = CliRunner().invoke(app, ["audit", "check", record.order_id, "--workspace", str(workspace), "--stage", stage])
        assert result.exit_code == 0, result.output
        [task] = json.loads((workspace / "checks" / f"{stage}.json").read_text())["tasks"]
        assert (task["stage"], task["artifacts"]) == (stage, len(staged[stage]))

    result = CliRunner().invoke(app, ["audit", "check", record.order_id, "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    assert "task 0: agrees with the recorded verdict (accepted)" in result.output
    [task] = json.loads((workspace / "audit.json").read_text())["tasks"]
    assert task["agrees"] and task["problems"] == []

    # a pulled object altered afterwards makes the workspace's audit disagree, naming it
    ref = pins["reports/task0-verification.json"]
    cached = workspace / ".dvc" / "cache" / "files" / "md5" / ref.md5[:2] / ref.md5[2:]
    cached.chmod(0o644)
    cached.write_bytes(cached.read_bytes().replace(b'"passed":true', b'"passed":fals', 1))
    result = CliRunner().invoke(app, ["audit", "check", record.order_id, "--workspace", str(workspace)])
    assert isinstance(result.exception, ReauditDisagreesError), result.output
    assert "reports/task0-verification.json" in str(result.exception)
    for stage, named in (("score", False), ("verify", True)):  # the pipeline stops at the stage that pinned it
        args = ["audit", "check", record.order_id, "--workspace", str(workspace), "--stage", stage]
        result = CliRunner().invoke(app, args)
        assert (result.exit_code != 0) is named and ("reports/task0-verification.json" in str(result.exception)) is named


def test_an_order_goes_on_through_an_s3_outage_at_every_stage_and_leaves_no_staging(
        prefect, s3_server, tmp_path, monkeypatch):
    from prefect.context import TaskRunContext

    monkeypatch.setenv("BAHEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BAHEN_STORE_URL", s3_server.fresh_url())
    monkeypatch.setenv("BAHEN_S3_ENDPOINT_URL", s3_server.endpoint_url)
    store = connect(load_settings()).store  # the store every stage of this process's order uses
    struck, timers, lock = [], [], threading.Lock()

    def outage(**_) -> None:
        """The endpoint goes away for 3 s as each stage sends its first request to the store."""
        context = TaskRunContext.get()
        with lock:
            if context is None or context.task.name in struck:
                return
            struck.append(context.task.name)
            s3_server.stop()
            timers.append(s3_server.restart_after(3.0))

    store.client.meta.events.register("before-call.s3", outage)
    try:
        record = order(OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=16))
    finally:
        store.client.meta.events.unregister("before-call.s3", outage)
        for timer in timers:
            timer.join()
        s3_server.start()
    assert {"encrypt_upload", "train", "verify", "score", "audit", "deliver"} <= set(struck), struck
    assert record.status == "settled (accepted), model delivered"
    assert [t.stage for t in record.timings] == list(STAGES)  # each stage ran once
    listed = s3_server.client().list_objects_v2(Bucket=store.bucket, Prefix=f"{store.prefix}/staging/")
    assert listed["KeyCount"] == 0
