"""An order on the S3 backend, exported for an auditor and pulled byte for byte by stock DVC."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bahen.audit import export_order, pinned_artifacts
from bahen.network import store_of
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from flows.order import order

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

    store = store_of(load_settings())
    pins = pinned_artifacts(record, store)
    assert len(pins) == count > 20
    for path, ref in pins.items():
        assert (workspace / path).read_bytes() == store.get(ref), path
