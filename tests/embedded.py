"""pytest fixtures: one Prefect test harness and one bahen home (embedded defaults) per session."""

import os

import pytest
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session")
def bahen_home(tmp_path_factory):
    """A fresh state directory (keys, orders, local store) on the embedded defaults."""
    home = tmp_path_factory.mktemp("bahen-home")
    previous = os.environ.get("BAHEN_HOME")
    os.environ["BAHEN_HOME"] = str(home)
    os.environ["BAHEN_SCRYPT_N"] = str(2**12)  # keystore cost: tests need no brute-force resistance
    yield home
    os.environ.pop("BAHEN_SCRYPT_N")
    if previous is None:
        os.environ.pop("BAHEN_HOME")
    else:
        os.environ["BAHEN_HOME"] = previous


@pytest.fixture(scope="session")
def prefect(bahen_home):
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def cheating_worker(monkeypatch):
    """Make this host's workers cheat with the attack named by the test."""
    def configure(attack: str, intensity: float = 1.0) -> None:
        monkeypatch.setenv("BAHEN_WORKER_ATTACK", attack)
        monkeypatch.setenv("BAHEN_WORKER_ATTACK_INTENSITY", str(intensity))

    return configure
