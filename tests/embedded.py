"""pytest fixtures: one Prefect test harness and one bahen home (embedded defaults) per session."""

import os
from contextlib import ExitStack

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
def cheating_worker():
    """Make this process's workers cheat with the attack named by the test, as ``bahen demo --attack`` does."""
    from bahen.settings import host_settings

    with ExitStack() as held:
        def configure(attack: str, intensity: float = 1.0) -> None:
            held.enter_context(host_settings(worker_attack=attack, worker_attack_intensity=intensity))

        yield configure
