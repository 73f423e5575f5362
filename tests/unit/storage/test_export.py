import configparser

import pytest
import yaml

from storage.export import ExportError, export_dvc_workspace, pinned_ref
from storage.refs import ArtifactRef

FILE = ArtifactRef(name="order 0x01/train", md5="a" * 32, sha256="b" * 64, size=7)
DIR = ArtifactRef(name="order 0x01/checkpoints", md5="c" * 32, sha256="d" * 64, size=90,
                  is_dir=True)


def test_workspace_pins_every_artifact(tmp_path):
    workspace = export_dvc_workspace(
        "s3://bucket/prefix", {"data/train.enc": FILE, "checkpoints": DIR}, tmp_path / "ws",
        endpoint_url="http://127.0.0.1:9000", params={"audit": {"order_id": "0x01"}})
    config = configparser.ConfigParser()
    config.read(workspace / ".dvc" / "config")
    assert config["core"]["remote"] == "store"
    remote = config['\'remote "store"\'']
    assert (remote["url"], remote["verify"], remote["endpointurl"]) == (
        "s3://bucket/prefix", "true", "http://127.0.0.1:9000")
    train = yaml.safe_load((workspace / "data" / "train.enc.dvc").read_text())
    assert train["outs"] == [{"md5": "a" * 32, "size": 7, "hash": "md5", "path": "train.enc"}]
    assert train["meta"] == {"name": "order 0x01/train", "sha256": "b" * 64}
    checkpoints = yaml.safe_load((workspace / "checkpoints.dvc").read_text())
    assert checkpoints["outs"] == [{"md5": "c" * 32 + ".dir", "hash": "md5", "path": "checkpoints"}]
    assert yaml.safe_load((workspace / "params.yaml").read_text()) == {"audit": {"order_id": "0x01"}}


def test_local_store_urls_become_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    workspace = export_dvc_workspace("remote", {"x": FILE}, tmp_path / "ws")
    text = (workspace / ".dvc" / "config").read_text()
    assert f"url = {tmp_path / 'remote'}\n" in text and "endpointurl" not in text


def test_refuses_a_non_empty_directory_and_bad_paths(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an empty directory"):
        export_dvc_workspace("s3://b/p", {"x": FILE}, tmp_path / "used")
    with pytest.raises(ValueError, match="relative POSIX path"):
        export_dvc_workspace("s3://b/p", {"../x": FILE}, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["used"]


def test_an_empty_directory_is_filled(tmp_path):
    (tmp_path / "ws").mkdir()
    workspace = export_dvc_workspace("s3://b/p", {"x": FILE}, tmp_path / "ws")
    assert sorted(p.name for p in workspace.iterdir()) == [".dvc", "params.yaml", "x.dvc"]


def test_a_pinned_file_reads_back_as_its_ref_and_a_broken_one_is_named(tmp_path):
    workspace = export_dvc_workspace("s3://bucket/prefix", {"data/train.enc": FILE}, tmp_path / "ws",
                                     stages={"audit": {"cmd": "true", "deps": ["data/train.enc"]}})
    assert pinned_ref(workspace / "data" / "train.enc.dvc") == FILE
    assert yaml.safe_load((workspace / "dvc.yaml").read_text()) == {"stages": {"audit": {"cmd": "true", "deps": ["data/train.enc"]}}}
    with pytest.raises(ExportError, match="missing.dvc does not exist"):
        pinned_ref(workspace / "missing.dvc")
    (workspace / "bad.dvc").write_text("outs: []\n")
    with pytest.raises(ExportError, match="bad.dvc is not a .dvc file pinning one artifact"):
        pinned_ref(workspace / "bad.dvc")
