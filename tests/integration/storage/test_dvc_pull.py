"""Stock DVC pulls an exported workspace byte for byte, and refuses replaced objects."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage.errors import IntegrityError
from storage.export import export_dvc_workspace
from storage.local import LocalStore
from storage.s3 import S3Store
from storage.store import ArtifactStore, object_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DVC = str(Path(sys.executable).with_name("dvc"))


def _dvc(workspace: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    run_env = {**os.environ, **env, "DVC_NO_ANALYTICS": "1",
               "XDG_CACHE_HOME": str(workspace.parent / "xdg-cache")}
    return subprocess.run([DVC, *args], cwd=workspace, env=run_env, capture_output=True,
                          text=True, timeout=120)


def _order_artifacts(store: ArtifactStore) -> tuple[dict, dict[str, bytes]]:
    """Two ciphertext files and a directory of checkpoints, as an order would store them."""
    files = {"dataset/train.enc": os.urandom(3 << 20) + b"train",
             "dataset/holdout.enc": os.urandom(1000)}
    steps = {f"step-{n}.enc": os.urandom(2000 + n) for n in (10, 20)}
    refs = {path: store.put(data, name=f"order 0x01/{path}") for path, data in files.items()}
    step_refs = {path: store.put(data, name=f"order 0x01/{path}") for path, data in steps.items()}
    refs["checkpoints"] = store.put_dir(step_refs, name="order 0x01/checkpoints")
    expected = {**files, **{f"checkpoints/{path}": data for path, data in steps.items()}}
    return refs, expected


def _assert_pulled(workspace: Path, expected: dict[str, bytes]) -> None:
    for path, data in expected.items():
        assert (workspace / path).read_bytes() == data, path


def test_s3_workspace_pulls_exactly_the_committed_bytes(s3_server, tmp_path):
    store = S3Store(s3_server.fresh_url(), endpoint_url=s3_server.endpoint_url, part_size=5 << 20)
    refs, expected = _order_artifacts(store)
    workspace = export_dvc_workspace(store.url, refs, tmp_path / "audit",
                                     endpoint_url=s3_server.endpoint_url,
                                     params={"audit": {"order_id": "0x01"}})
    pulled = _dvc(workspace, s3_server.env, "pull")
    assert pulled.returncode == 0, pulled.stderr
    _assert_pulled(workspace, expected)


def test_a_replaced_object_fails_dvc_pull_and_get(s3_server, tmp_path):
    store = S3Store(s3_server.fresh_url(), endpoint_url=s3_server.endpoint_url)
    honest = os.urandom(5000)
    ref = store.put(honest, name="order 0x01/dataset/train.enc")
    forged = bytes([honest[0] ^ 1]) + honest[1:]
    s3_server.client().put_object(Bucket=store.bucket, Key=store._key(object_key(ref)),
                                  Body=forged)
    workspace = export_dvc_workspace(store.url, {"train.enc": ref}, tmp_path / "audit",
                                     endpoint_url=s3_server.endpoint_url)
    pulled = _dvc(workspace, s3_server.env, "pull")
    assert pulled.returncode != 0 and "train.enc" in pulled.stderr, pulled.stderr
    assert not (workspace / "train.enc").exists()
    # The refusal is DVC's re-hash: without `verify` the forged bytes would be checked out.
    _dvc(workspace, s3_server.env, "remote", "modify", "store", "verify", "false")
    assert _dvc(workspace, s3_server.env, "pull").returncode == 0
    assert (workspace / "train.enc").read_bytes() == forged
    with pytest.raises(IntegrityError, match="order 0x01/dataset/train.enc is tampered"):
        store.get(ref)


def test_local_workspace_pulls_exactly_the_committed_bytes(tmp_path):
    store = LocalStore(str(tmp_path / "remote"))
    refs, expected = _order_artifacts(store)
    workspace = export_dvc_workspace(store.url, refs, tmp_path / "audit")
    pulled = _dvc(workspace, {}, "pull")
    assert pulled.returncode == 0, pulled.stderr
    _assert_pulled(workspace, expected)
