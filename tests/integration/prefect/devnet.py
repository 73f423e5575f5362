"""Helpers for the tests on a devnet (``conftest.py`` of this package starts it): calls to its Prefect REST API
as the UI makes them, an order submitted with the payload the UI's run form sends, and waits on runs."""

import time
import uuid

import pytest
import requests

from bahen.devnet_services import DevnetState, PartyHost
from bahen.parties import CLIENT
from bahen.spec import OrderSpec

UI_SPEC = OrderSpec(dataset="digits", model="mlp", epochs=1, batch_size=32, checkpoint_every=8, validators=2)
ORDER_TIMEOUT_S = 360
# How often each validator's worker looks for disputes: short enough that the schedule fires while the package runs.
RESOLVE_EVERY_MINUTES = 5
API_TRIES = 5


def api(state: DevnetState, method: str, path: str, **body):
    """One call to the devnet's Prefect REST API, as the UI makes it; a busy server (503) is asked again."""
    for _ in range(API_TRIES):
        response = requests.request(method, f"{state.prefect_api_url}{path}", json=body or None, timeout=30)
        if response.status_code != 503:
            break
        time.sleep(2)
    response.raise_for_status()
    return response.json()


def submit_order(state: DevnetState, spec: OrderSpec, queue: str | None = None, parameters: dict | None = None,
                 **job_variables) -> str:
    """Create a run of the ``order`` deployment with the UI's payload (every field of the form filled, no
    signature), in the client's own work queue unless ``queue`` names another; ``parameters`` adds the
    order flow's others (salt, signature)."""
    deployment = api(state, "GET", "/deployments/name/order/order")
    client = next(p for p in state.parties if p.name == CLIENT)
    # the key makes a retried request return the run the first one created
    body = {"parameters": {"spec": spec.model_dump(mode="json"), **(parameters or {})}, "idempotency_key": str(uuid.uuid4()),
            "work_queue_name": queue or client.queue}
    if job_variables:
        body["job_variables"] = job_variables
    return api(state, "POST", f"/deployments/{deployment['id']}/create_flow_run", **body)["id"]


def wait_final(state: DevnetState, flow_run_id: str, timeout: float = ORDER_TIMEOUT_S) -> dict:
    """The flow run once it is in a final state; fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api(state, "GET", f"/flow_runs/{flow_run_id}")
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        time.sleep(1)
    pytest.fail(f"flow run {flow_run_id} not final after {timeout:.0f} s (state {run['state']['type']})")


def wait_events(state: DevnetState, names: set[str], timeout: float = 30) -> set[str]:
    """The ``bahen.order.*`` events the server has stored, once ``names`` are among them (or at ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        events = api(state, "POST", "/events/filter", filter={"event": {"prefix": ["bahen.order."]}}, limit=50)["events"]
        seen = {e["event"] for e in events}
        if names <= seen or time.monotonic() > deadline:
            return seen
        time.sleep(1)


def runs_of(state: DevnetState, deployment: str) -> list[dict]:
    """Every flow run of ``deployment`` (flow/deployment), oldest first."""
    dep = api(state, "GET", f"/deployments/name/{deployment}")
    runs = api(state, "POST", "/flow_runs/filter", deployments={"id": {"any_": [dep["id"]]}}, sort="EXPECTED_START_TIME_ASC")
    return runs


def party(state: DevnetState, name: str) -> PartyHost:
    return next(p for p in state.parties if p.name == name)
