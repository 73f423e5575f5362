"""The devnet the tests of this package share, started the way `bahen up --postgres --workers 2 --validators 2`
starts it (anvil, a Prefect server on a free loopback port keeping its database in a PostgreSQL server of
the devnet's own, a home per party, contracts, pools, deployments, one Prefect worker per party), and one
order run on it from the API with the payload the UI's run form sends.

Both are package-scoped: started for the first test that needs them, stopped after the last test of this
package, so the rest of the suite does not run beside the devnet's idle servers and Prefect workers."""

import pytest

from bahen.devnet_services import (
    PROJECT_DIR, DevnetError, anvil_binary, down, free_port, postgres_binaries, save_state, state_path,
)
from bahen.devnet_up import up
from bahen.settings import load_settings
from tests.integration.prefect.devnet import RESOLVE_EVERY_MINUTES, UI_SPEC, submit_order, wait_final


@pytest.fixture(scope="package")
def devnet(tmp_path_factory):
    """A running devnet in a fresh HOME; stopped (workers first) after this package's last test."""
    home = tmp_path_factory.mktemp("devnet-home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BAHEN_HOME", str(home))
        env.setenv("BAHEN_SCRYPT_N", str(2**12))  # keystore cost: tests need no brute-force resistance
        env.setenv("PREFECT_WORKER_QUERY_SECONDS", "1")
        env.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        env.delenv("PREFECT_API_URL", raising=False)
        try:
            anvil_binary(PROJECT_DIR)
            postgres_binaries()
        except DevnetError as exc:
            pytest.skip(str(exc))
        state = up(load_settings(resolve_every_minutes=RESOLVE_EVERY_MINUTES), prefect_port=free_port(),
                   anvil_port=free_port(), workers=2, validators=2, postgres=True)
        try:
            yield state
        finally:
            if state_path(home).is_file():
                save_state(state)  # with the services tests started since (a worker back after a kill)
                down(home)


@pytest.fixture(scope="package")
def finished_order(devnet) -> str:
    """The flow run id of an order submitted through the API and run to completion on the devnet."""
    run = wait_final(devnet, submit_order(devnet, UI_SPEC))
    assert run["state"]["type"] == "COMPLETED", run["state"]
    return run["id"]
