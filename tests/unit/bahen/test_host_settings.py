"""A host's settings held for a block: read by the stages of this process, inherited by no other."""

import os

import pytest

from bahen.settings import SettingsError, host_settings, load_settings


def test_host_settings_hold_for_the_block_and_never_reach_the_environment():
    assert load_settings().worker_attack is None
    with host_settings(worker_attack="wrong-lr", worker_attack_intensity=0.5) as held:
        assert held.worker_attack == "wrong-lr"
        settings = load_settings()
        assert (settings.worker_attack, settings.worker_attack_intensity) == ("wrong-lr", 0.5)
        assert load_settings(worker_attack="skipped-steps").worker_attack == "skipped-steps"  # explicit wins
        with host_settings(worker_attack_intensity=0.25):
            assert (load_settings().worker_attack, load_settings().worker_attack_intensity) == ("wrong-lr", 0.25)
        assert load_settings().worker_attack_intensity == 0.5
        assert not any(k.startswith("BAHEN_WORKER") for k in os.environ)
    assert load_settings().worker_attack is None


def test_a_bad_host_setting_fails_before_the_block_runs():
    with pytest.raises(SettingsError, match="worker_attack_intensity"):
        with host_settings(worker_attack="wrong-lr", worker_attack_intensity=0.0):
            pytest.fail("the block must not run")


def test_a_home_set_up_for_a_running_chain_never_falls_back_to_an_in_process_one(tmp_path):
    from contracts.errors import ChainError

    from bahen.network import connect

    (tmp_path / "chain.json").write_text("{}")
    with pytest.raises(ChainError, match="holds the contract addresses of a running chain .* names no chain_rpc_url"):
        connect(load_settings(home=tmp_path, scrypt_n=2**10))
    assert not (tmp_path / "keys").exists()


def test_the_config_file_read_is_the_named_homes_own(tmp_path, monkeypatch):
    party, other = tmp_path / "party", tmp_path / "other"
    for home, url in ((party, "http://party:8545"), (other, "http://other:8545")):
        home.mkdir()
        (home / "config.yaml").write_text(f"chain_rpc_url: {url}\nprefect_api_url: {url}/api\n")
    monkeypatch.setenv("BAHEN_HOME", str(other))
    assert load_settings(home=party).chain_rpc_url == "http://party:8545"
    assert load_settings().prefect_api_url == "http://other:8545/api"


def test_results_travel_beside_the_stores_objects_never_on_a_hosts_own_disk(tmp_path):
    from prefect.filesystems import LocalFileSystem, RemoteFileSystem

    from bahen.devnet_up import result_storage

    local = result_storage(load_settings(home=tmp_path, store_url=str(tmp_path / "store")))
    assert isinstance(local, LocalFileSystem) and local.basepath == str(tmp_path / "store" / "prefect-results")
    s3 = result_storage(load_settings(home=tmp_path, store_url="s3://bucket/net/", s3_endpoint_url="http://127.0.0.1:9000",
                                      s3_region="eu-west-1"))
    assert isinstance(s3, RemoteFileSystem) and s3.basepath == "s3://bucket/net/prefect-results"
    assert s3.settings == {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-1"}}
    party = "0x" + "Ab" * 20  # a host that names its store party writes in its own folder
    own = result_storage(load_settings(home=tmp_path, store_url="s3://bucket/net", store_party=party))
    assert own.basepath == f"s3://bucket/net/prefect-results/{party.lower()}"
