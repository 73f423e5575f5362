"""The devnet's PostgreSQL server: which programs run it, as whom, and that `down` leaves no cluster behind."""

import pwd

import pytest

from bahen import devnet_services
from bahen.devnet_services import (
    DevnetError, DevnetState, anvil_cache, down, postgres_account, postgres_binaries, save_state, state_path,
)


def _install(root, *versions):
    for version in versions:
        program = root / version / "bin" / "postgres"
        program.parent.mkdir(parents=True)
        program.touch()


def test_the_newest_of_debians_postgresql_versions_runs_the_database(monkeypatch, tmp_path):
    _install(tmp_path, "9", "15", "13", "lib")
    monkeypatch.setattr(devnet_services.shutil, "which", lambda name: None)
    monkeypatch.setattr(devnet_services, "DEBIAN_POSTGRES", tmp_path)
    assert postgres_binaries() == tmp_path / "15" / "bin"


def test_postgres_on_the_path_comes_before_debians_folders(monkeypatch, tmp_path):
    _install(tmp_path / "debian", "15")
    _install(tmp_path / "own", "16")
    monkeypatch.setattr(devnet_services.shutil, "which", lambda name: str(tmp_path / "own" / "16" / "bin" / name))
    monkeypatch.setattr(devnet_services, "DEBIAN_POSTGRES", tmp_path / "debian")
    assert postgres_binaries() == tmp_path / "own" / "16" / "bin"


def test_without_postgresql_the_devnet_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(devnet_services.shutil, "which", lambda name: None)
    monkeypatch.setattr(devnet_services, "DEBIAN_POSTGRES", tmp_path)
    with pytest.raises(DevnetError, match=r"`apt-get install postgresql`.* without --postgres"):
        postgres_binaries()


def test_root_runs_the_server_as_the_postgres_user_and_says_so_when_there_is_none(monkeypatch):
    monkeypatch.setattr(devnet_services.os, "geteuid", lambda: 1000)
    assert postgres_account() is None
    monkeypatch.setattr(devnet_services.os, "geteuid", lambda: 0)
    monkeypatch.setattr(devnet_services.pwd, "getpwnam", lambda name: pwd.struct_passwd((name, "x", 101, 104, "", "/", "/bin/false")))
    assert postgres_account() == "postgres"

    def no_such_user(name):
        raise KeyError(name)

    monkeypatch.setattr(devnet_services.pwd, "getpwnam", no_such_user)
    with pytest.raises(DevnetError, match="will not run as root and there is no 'postgres' user"):
        postgres_account()


def test_down_removes_the_database_cluster_and_the_chains_cached_states_with_the_devnet(tmp_path):
    cluster = tmp_path / "bahen-postgres-x"
    (cluster / "data").mkdir(parents=True)
    home = tmp_path / "home"
    (anvil_cache(home) / "anvil-state-x").mkdir(parents=True)
    save_state(DevnetState(home=home, project_dir=tmp_path, prefect_api_url="http://127.0.0.1:1/api",
                           chain_rpc_url="http://127.0.0.1:2", store_url=str(home / "store"), database_dir=cluster))
    assert down(home) == []
    assert not cluster.exists() and not anvil_cache(home).exists() and not state_path(home).exists()
