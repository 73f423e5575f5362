"""Where an order's train and score stages run: in the order's own process, or on their work pools.

On the pools, each stage is a ``run_deployment`` of the ``train`` (pool ``gpu``) or ``score``
(pool ``validators``) deployment, keyed by order and task so a repeated call never starts a second
run. The dispatcher waits for the child and checks its final state: a failed or crashed child, or
a running one whose heartbeats stopped (its worker died), is retried under a new key and any worker
of the pool may take it. When the attempts are spent or the stage's time is up, the order ends
cleanly: the child is cancelled and the escrow refunded on chain (:func:`end_order`).
"""

import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar
from uuid import UUID

from contracts.errors import ContractRevert
from prefect import get_client, runtime, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter
from prefect.states import Cancelled, Cancelling, Crashed
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bahen.errors import BahenError
from bahen.network import Network
from bahen.orders import NotCancellableError, OrderBook, cancel_order
from bahen.records import Assignment, Scores, Shard, Training, Upload
from bahen.spec import OrderSpec
from tasks.runtime import network, order_book, recorded
from tasks.score import score_task
from tasks.train import train_task

M = TypeVar("M", bound=BaseModel)
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"


class DispatchConfig(BaseSettings):
    """How the order flow runs its train and score stages (``BAHEN_DISPATCH_*`` variables)."""

    model_config = SettingsConfigDict(env_prefix="BAHEN_DISPATCH_", extra="ignore")

    mode: Literal["auto", "inline", "pools"] = Field(
        "auto", description="inline: in the order's process; pools: on the gpu and validators pools; "
        "auto: pools when the order itself runs from a deployment"
    )
    attempts: int = Field(3, ge=1, le=20, description="Runs of one stage before the order is ended")
    stage_timeout_s: float = Field(6 * 3600, gt=0, description="Most seconds one stage may take, retries included")
    stale_after_s: float = Field(
        0, ge=0, description="A running child silent (no heartbeat) this long is treated as crashed; 0 disables. "
        "Set it above the workers' PREFECT_FLOWS_HEARTBEAT_FREQUENCY (at least 30 s)"
    )
    poll_s: float = Field(2.0, gt=0, description="Seconds between looks at a child's state")


class StageNotDone(BahenError):
    """A dispatched stage failed every attempt or ran out of time; the order was ended."""


class ChildOutcome(BaseModel):
    """How one dispatched child ended."""

    flow_run_id: UUID
    state: str
    stale: bool = False


def use_pools(config: DispatchConfig) -> bool:
    """Whether train and score go to their work pools."""
    if config.mode == "auto":
        return runtime.deployment.id is not None
    return config.mode == "pools"


def _last_sign_of_life(client, run: FlowRun) -> datetime:
    """The later of the run's start and its newest heartbeat event."""
    started = run.start_time or run.state.timestamp
    page = client.read_events(
        filter=EventFilter(
            occurred=EventOccurredFilter(since=started, until=datetime.now(UTC) + timedelta(minutes=1)),
            event=EventNameFilter(name=[HEARTBEAT_EVENT]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run.id}"]),
        ),
        limit=50,
    )
    return max([started, *(e.occurred for e in page.events)])


def wait_for(flow_run_id: UUID, deadline: float, config: DispatchConfig) -> ChildOutcome:
    """Poll a child until it ends, its worker goes silent, or ``deadline`` (monotonic) passes."""
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return ChildOutcome(flow_run_id=run.id, state=run.state.type.value)
            if time.monotonic() >= deadline:
                cancel = Cancelling() if run.state and run.state.is_running() else Cancelled()
                client.set_flow_run_state(run.id, state=cancel, force=True)
                return ChildOutcome(flow_run_id=run.id, state="TIMED_OUT")
            if config.stale_after_s and run.state and run.state.is_running():
                silent = datetime.now(UTC) - _last_sign_of_life(client, run)
                if silent.total_seconds() > config.stale_after_s:
                    message = f"no heartbeat for {silent.total_seconds():.0f} s: its worker is gone"
                    client.set_flow_run_state(run.id, state=Crashed(message=message), force=True)
                    return ChildOutcome(flow_run_id=run.id, state="CRASHED", stale=True)
            time.sleep(config.poll_s)


def dispatch(deployment: str, parameters: dict, *, key: str, result: type[M], config: DispatchConfig) -> M:
    """Run ``deployment`` until one run completes; return its result as ``result``.

    The first run is keyed ``key``; each retry gets ``key-retry<n>`` so Prefect starts a fresh run
    instead of returning the failed one.
    """
    deadline = time.monotonic() + config.stage_timeout_s
    outcomes = []
    for attempt in range(config.attempts):
        run = run_deployment(
            deployment, parameters=parameters, timeout=0, idempotency_key=key if attempt == 0 else f"{key}-retry{attempt}"
        )
        outcome = wait_for(run.id, deadline, config)
        outcomes.append(outcome)
        if outcome.state == "COMPLETED":
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(run.id).state
            return result.model_validate(state.result())
        if outcome.state == "TIMED_OUT":
            break
    tried = ", ".join(f"{o.flow_run_id} {o.state.lower()}" for o in outcomes)
    raise StageNotDone(
        f"{deployment} did not complete for {key} ({tried}): check that workers are polling its work pool "
        f"(`bahen worker start`), then submit the order again"
    )


class Inline:
    """Train and score in the order's own process."""

    def train(self, spec: OrderSpec, upload: Upload, assignment: Assignment) -> Training:
        return train_task(spec, upload, assignment)

    def score(self, spec: OrderSpec, upload: Upload, shard: Shard, training: Training) -> Scores:
        return score_task(spec, upload, shard, training)


class Pools:
    """Train on the ``gpu`` pool and score on the ``validators`` pool through their deployments."""

    def __init__(self, config: DispatchConfig):
        self.config = config

    def train(self, spec: OrderSpec, upload: Upload, assignment: Assignment) -> Training:
        if (done := recorded(upload.order_id, "training")) is not None:
            return done
        params = {"spec": spec, "upload": upload, "assignment": assignment}
        key = f"{upload.order_id}-train-{assignment.task}"
        return dispatch("train/train", params, key=key, result=Training, config=self.config)

    def score(self, spec: OrderSpec, upload: Upload, shard: Shard, training: Training) -> Scores:
        if (done := recorded(upload.order_id, "scores")) is not None:
            return done
        params = {"spec": spec, "upload": upload, "shard": shard, "training": training}
        key = f"{upload.order_id}-score-{training.task}"
        return dispatch("score/score", params, key=key, result=Scores, config=self.config)


def dispatcher(config: DispatchConfig | None = None) -> Inline | Pools:
    """The stage runner this order uses, from ``BAHEN_DISPATCH_*``."""
    config = config or DispatchConfig()
    return Pools(config) if use_pools(config) else Inline()


@contextmanager
def ending_on_failure(upload: Upload):
    """End the order cleanly when a dispatched stage cannot finish: cancel it on chain, refund the escrow."""
    try:
        yield
    except StageNotDone as exc:
        end_order_task(upload.order_id, reason=str(exc))
        raise


def end_order(order_id: str, net: Network, book: OrderBook, *, reason: str) -> str:
    """Cancel the order as its client so the escrow is refunded, and record why; returns the new status.

    When the contract would refuse (a proof is committed and the deadline is ahead, or a verdict is
    recorded), the record says so and when the client can cancel.
    """
    try:
        return cancel_order(order_id, net, book, reason=reason)
    except (NotCancellableError, ContractRevert) as exc:
        status = f"ended without settlement ({exc}); cancel after the deadline to refund: {reason}"
    book.save(book.load(order_id).model_copy(update={"status": status}))
    return status


@task(name="end_order", cache_policy=NO_CACHE)
def end_order_task(order_id: str, *, reason: str) -> str:
    """Prefect task: end an order whose stage could not finish."""
    return end_order(order_id, network(), order_book(), reason=reason)
