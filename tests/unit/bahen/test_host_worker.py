"""What a party's Prefect worker takes from the shared server: the environment it lets through to a
run, and the flows it runs."""

import re

import pytest
from prefect import Flow

from bahen.host_worker import ForeignFlow, local_flow, run_env


def test_only_the_runs_heartbeat_and_the_orders_dispatch_settings_pass():
    deployment = {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30", "BAHEN_DISPATCH_MODE": "pools"}, "command": "x"}
    run = {"env": {"BAHEN_DISPATCH_STALE_AFTER_S": 45, "BAHEN_DISPATCH_MODE": "inline", "BAHEN_WORKER_ATTACK": "skip",
                   "BAHEN_ACCEPT_UNSIGNED_ORDERS": "true", "BAHEN_HOME": "/tmp/x", "PATH": "/evil", "LD_PRELOAD": "x.so",
                   "PYTHONPATH": "/evil", "PREFECT_API_URL": "http://evil", "BAHEN_DISPATCH_": None},
           "command": "touch /tmp/x", "working_dir": "/"}
    assert run_env(deployment, run) == {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30", "BAHEN_DISPATCH_MODE": "inline",
                                        "BAHEN_DISPATCH_STALE_AFTER_S": "45"}
    assert run_env(None, {}) == run_env({"env": None}, {"command": "x"}) == {}


@pytest.mark.parametrize("pool, flows", [
    ("control", {"order", "audit"}), ("gpu", {"train", "grant-model"}),
    ("validators", {"verify", "score", "deliver", "resolve", "resolve-pending"}),
    ("wasp", {"wasp", "void-verification"}),
])
def test_each_pool_runs_its_own_flows_from_the_installed_package_and_no_other(pool, flows):
    for name in flows:
        flow = local_flow(pool, name)
        assert isinstance(flow, Flow) and flow.name == name
    for name in {"order", "audit", "train", "grant-model", "verify", "score", "deliver", "resolve-pending", "wasp", "void-verification", "reverify",
                 "stranger"} - flows:
        with pytest.raises(ForeignFlow, match=re.escape(f"a worker of the '{pool}' pool runs only the flows "
                                                        f"{sorted(flows)}, not '{name}'")):
            local_flow(pool, name)
