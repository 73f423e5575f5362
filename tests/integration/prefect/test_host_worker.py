"""A party's Prefect worker on the devnet runs its host's own code: whatever a stranger writes to the
shared Prefect server (a run's job variables, a deployment's entrypoint and pull steps), no command of
theirs runs on the host and no setting of the host changes."""

import uuid

import pytest

from bahen.parties import CLIENT, worker_name
from bahen.spec import OrderSpec
from tests.integration.prefect.devnet import UI_SPEC, api, party, submit_order, wait_final

pytestmark = pytest.mark.integration


def _deployment(devnet, flow: str, pool: str, queue: str, pull_steps: list) -> str:
    """A deployment anyone may create on the server: ``flow``'s, in ``pool``, with its own pull steps."""
    flow_id = api(devnet, "GET", f"/flows/name/{flow}")["id"]
    return api(devnet, "POST", "/deployments/", name=f"stranger-{uuid.uuid4().hex[:8]}", flow_id=flow_id,
               work_pool_name=pool, work_queue_name=queue, entrypoint="stranger.py:flow", pull_steps=pull_steps)["id"]


def _run(devnet, deployment: str, queue: str, parameters: dict) -> dict:
    body = {"parameters": parameters, "work_queue_name": queue, "idempotency_key": str(uuid.uuid4())}
    return wait_final(devnet, api(devnet, "POST", f"/deployments/{deployment}/create_flow_run", **body)["id"])


def _touch(path) -> list[dict]:
    return [{"prefect.deployments.steps.run_shell_script": {"script": f"touch {path}"}}]


def test_a_runs_job_variables_set_neither_the_hosts_command_nor_its_settings(devnet, tmp_path):
    injected, private = tmp_path / "injected", tmp_path / "private.csv"
    private.write_text("x,label\n1,0\n")
    # refused by the client's host either way; the reason says whether the stranger's setting took hold
    spec = UI_SPEC.model_copy(update={"dataset_path": str(private)})
    run = wait_final(devnet, submit_order(devnet, spec, command=f"touch {injected}",
                                          env={"BAHEN_ACCEPT_UNSIGNED_ORDERS": "false"}))
    assert run["state"]["type"] == "FAILED"
    assert f"names dataset_path '{private}'" in run["state"]["message"], run["state"]["message"]
    assert not injected.exists()


def test_a_strangers_deployment_runs_no_pull_step_and_no_flow_outside_the_workers_pool(devnet, tmp_path):
    pulled = tmp_path / "pulled"
    worker = party(devnet, worker_name(0))
    order_on_gpu = _deployment(devnet, "order", "gpu", worker.queue, _touch(pulled))
    run = _run(devnet, order_on_gpu, worker.queue, {"spec": OrderSpec().model_dump(mode="json")})
    assert run["state"]["type"] == "FAILED"
    assert "a worker of the 'gpu' pool runs only the flows ['grant-model', 'train'], not 'order'" in run["state"]["message"]

    client = party(devnet, CLIENT)
    audit_with_pull = _deployment(devnet, "audit", "control", client.queue, _touch(pulled))
    run = _run(devnet, audit_with_pull, client.queue, {"order_id": "0x" + "00" * 32})
    assert run["state"]["type"] == "FAILED" and "0x" + "00" * 32 in run["state"]["message"], run["state"]
    assert not pulled.exists()
