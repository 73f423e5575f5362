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


@pytest.fixture
def staked_net(bahen_home):
    """The embedded network with three more validators staked (six in all, so the chain can draw an order's
    validators and, apart from them, its resolvers or a stalled verifier's successor); every member is
    restaked afterwards."""
    from bahen.devnet import PARAMS
    from bahen.network import connect
    from bahen.parties import validator_name, worker_name
    from bahen.settings import load_settings

    net = connect(load_settings())
    for i in range(3, 6):
        validator = net.party(validator_name(i))
        if net.market.member(validator.address).role == "none":
            net.chain.fund(validator.address, 10 * 10**18)
            net.market.register_validator(validator.account, x25519_public=validator.x25519_public,
                                          stake=PARAMS.min_validator_stake)
    yield net
    for name in [worker_name(i) for i in range(2)] + [validator_name(i) for i in range(6)]:
        party = net.party(name)
        member = net.market.member(party.address)
        floor = (net.market.required_stake(member.declared_gflops) if member.role == "worker"
                 else PARAMS.min_validator_stake)
        if member.role != "none" and member.stake < floor:
            net.market.add_stake(party.account, amount=floor - member.stake)
