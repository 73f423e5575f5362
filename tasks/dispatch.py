"""Where the other parties' stages of an order run, and the client's record of what each returned.

The order flow, in the client's process, runs encrypt_upload, shard and settle itself. Every other
stage is signed by another party: train by the assigned worker, verify, score and deliver by the
order's validators, the audit by Wasp. Inline, they run in the order's own process (the embedded
devnet, whose home holds every party's keystore). On the pools, each is a ``run_deployment`` on its
role's pool: ``gpu`` for training, ``validators`` for verifying, scoring and delivering, ``wasp``
for the audit. A worker's or validator's run goes to the work queue named by its address, so only
that party's Prefect worker, on its own host with its own key, takes it; runs are keyed by order,
task and party so a repeated call never starts a second one.

The dispatcher waits for the child and checks its final state: a failed or crashed child, or a
running one whose heartbeats stopped (its worker died), is retried under a new key; a child no
worker starts in time is not retried on that party. A train run that does not finish has its worker
replaced on chain by the next draw once the worker's commit window passed without a commitment,
and the successor trains; a verify run that does not finish has the order's verifier replaced the
same way once the committed task's window passed without a verification on chain, and the successor
verifies; so does the successor of a verifier whose verification nobody can judge with (its report
withheld, or another task's), which Wasp voids on chain once the task's scoring window closed
(``replacements`` times at most, each). When the attempts are spent or the
stage's time is up, the order ends cleanly: the child is cancelled and the
escrow refunded on chain (:func:`end_order`). Either way the client records each result in its own
order book, and a retried order passes through the stages its record holds.
"""

import json
import random
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Literal, TypeVar
from uuid import UUID

import httpx
from contracts.errors import ContractRevert
from prefect import get_client, get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.states import Cancelled, Cancelling, Crashed
from privacy.errors import PrivacyError
from proof.wasp import score_quorum
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import to_json
from pydantic_settings import BaseSettings, SettingsConfigDict
from storage.errors import ArtifactError

from bahen.errors import BahenError
from bahen.network import Network, connect
from bahen.orders import NotCancellableError, OrderBook, cancel_order, order_id_for
from bahen.parties import CLIENT, party_queue
from bahen.records import Assignment, Delivery, Scores, Shard, Training, Upload, Verdict, Verification, VoidedVerification
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from bahen.submission import check_submission
from tasks.audit import attested_verification_task, audit_task, wait_for_scoring_task
from tasks.deliver import NotDeliverable, deliver_task, deliverer
from tasks.report import checks_markdown
from tasks.runtime import network, order_book, recorded
from tasks.score import SignedScore, attested_score_task, gathered, score_task
from tasks.shard import NotReplaceable, replace_verifier_task, replace_worker_task
from tasks.train import train_task
from tasks.verify import UnusableVerification, verify_task

M = TypeVar("M", bound=BaseModel)
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
START_TRIES = 5  # requests to start one child run while other orders' runs create its work queue


class DispatchConfig(BaseSettings):
    """How the order flow runs its train and score stages (``BAHEN_DISPATCH_*`` variables)."""

    model_config = SettingsConfigDict(env_prefix="BAHEN_DISPATCH_", extra="ignore")

    mode: Literal["auto", "inline", "pools"] = Field(
        "auto", description="inline: in the order's process; pools: on the gpu and validators pools; "
        "auto: pools when the order itself runs from a deployment"
    )
    attempts: int = Field(3, ge=1, le=20, description="Runs of one stage before the order is ended")
    stage_timeout_s: float = Field(6 * 3600, gt=0, description="Most seconds one stage may take, retries included")
    start_timeout_s: float = Field(
        600, gt=0, description="A child no worker has started after this many seconds is not retried on that party: "
        "its host is not polling. A worker that does not start is replaced by the chain's next draw"
    )
    replacements: int = Field(
        2, ge=0, le=10, description="Times a task's worker that does not finish training (once its commit window "
        "passed without a commitment), and the order's verifier that does not verify it (once the window passed again "
        "without a verification on chain), is replaced by the chain's next draw before the order is ended"
    )
    stale_after_s: float = Field(
        0, ge=0, description="A running child silent (no heartbeat) this long is treated as crashed; 0 disables. "
        "Set it above the workers' PREFECT_FLOWS_HEARTBEAT_FREQUENCY (at least 30 s)"
    )
    poll_s: float = Field(2.0, gt=0, description="Seconds between looks at a child's state")


class RunRefused(BahenError):
    """The Prefect server refused to create a stage's run: its parameters fail the deployment's schema."""


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
    """Poll a child until it ends, no worker starts it in time, its worker goes silent, or ``deadline``
    (monotonic) passes."""
    start_by = time.monotonic() + config.start_timeout_s
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return ChildOutcome(flow_run_id=run.id, state=run.state.type.value)
            if run.state and run.state.type.value in ("SCHEDULED", "PENDING") and time.monotonic() >= start_by:
                client.set_flow_run_state(run.id, state=Cancelled(message="no worker started it"), force=True)
                return ChildOutcome(flow_run_id=run.id, state="NOT_STARTED")
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


def start_run(deployment: str, parameters: dict, *, key: str, queue: str | None) -> FlowRun:
    """A run of ``deployment`` keyed ``key``, in work queue ``queue`` of its pool if named.

    The server creates a party's work queue with the first run sent to it; when runs of several orders
    for one party create it at once, all but one get a conflict (409) and ask again, after a short
    random pause, up to ``START_TRIES`` times: the key makes a repeated request return the run the
    first one created, never a second.

    The parameters travel as JSON: a float that is not finite (a diverged step's loss, a score no
    validator could compute) goes as ``"NaN"`` or ``"Infinity"``, which the run's validation reads
    back, not as the ``null`` it would refuse.
    """
    request = partial(run_deployment, deployment, parameters=json.loads(to_json(parameters, inf_nan_mode="strings")),
                      timeout=0, work_queue_name=queue, idempotency_key=key)
    for attempt in range(1, START_TRIES):
        try:
            return request()
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != httpx.codes.CONFLICT:
                raise
            if "Validation failed" in exc.response.text:  # a conflict with the deployment's schema: never passes
                raise RunRefused(f"the Prefect server refused a run of {deployment} ({exc.response.json()['detail']}): "
                                 "a record handed to the run is not one this bahen makes, or the deployment's parameter "
                                 "schema is another version's: deploy the project again from this version "
                                 "(`prefect deploy --all`)") from None
        time.sleep(random.uniform(0, 0.2 * attempt))
    return request()


def dispatch(deployment: str, parameters: dict, *, key: str, result: type[M], config: DispatchConfig,
             queue: str | None = None) -> M:
    """Run ``deployment`` (in work queue ``queue`` of its pool, if named) until one run completes; return
    its result as ``result``.

    The first run is keyed ``key``; each retry gets ``key-retry<n>`` so Prefect starts a fresh run
    instead of returning the failed one.
    """
    deadline = time.monotonic() + config.stage_timeout_s
    outcomes = []
    for attempt in range(config.attempts):
        run = start_run(deployment, parameters, key=key if attempt == 0 else f"{key}-retry{attempt}", queue=queue)
        outcome = wait_for(run.id, deadline, config)
        outcomes.append(outcome)
        if outcome.state == "COMPLETED":
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(run.id).state
            try:
                return result.model_validate(state.result())
            except ValidationError as exc:  # another party's run: what it returns is its word, and may be anything
                raise StageNotDone(f"{deployment} completed for {key} ({run.id}), but its result is no "
                                   f"{result.__name__}: {str(exc)[:300]}") from None
        if outcome.state in ("TIMED_OUT", "NOT_STARTED"):
            break
    tried = ", ".join(f"{o.flow_run_id} {o.state.lower()}" for o in outcomes)
    raise StageNotDone(
        f"{deployment} did not complete for {key} ({tried}): check that workers are polling its work pool "
        f"(`bahen worker start`), then submit the order again"
    )


def send_resolvers(order_id: str, task: int, counter_digest: str, resolvers: list[str]) -> list[FlowRun]:
    """A ``resolve`` run in each drawn resolver's own work queue of the ``validators`` pool, so its host's
    worker re-verifies the disputed task and votes without anyone telling it. Keyed by the dispute (its
    counter-report) and the resolver: sending again starts none twice."""
    try:
        return [start_run("resolve/resolve", {"order_id": order_id, "task": task, "resolver": resolver},
                          key=f"resolve-{order_id}-{task}-{counter_digest}-{resolver.lower()}", queue=party_queue(resolver))
                for resolver in resolvers]
    except ObjectNotFound:
        raise BahenError("the Prefect server has no resolve/resolve deployment: deploy this version of the project "
                         "there (`prefect deploy --all`) and run the command again, or have each resolver run "
                         f"`bahen dispute resolve {order_id} --task {task}`") from None
    except httpx.HTTPError as exc:
        raise BahenError(f"the Prefect server does not answer ({exc}): run the command again once it does, or have "
                         f"each resolver run `bahen dispute resolve {order_id} --task {task}`") from None


class Stages:
    """Runs the other parties' stages of one order, inline or on their pools, and records each result."""

    def __init__(self, config: DispatchConfig | None = None):
        self.config = config or DispatchConfig()
        self.pools = use_pools(self.config)

    def _dispatch(self, deployment: str, parameters: dict, key: str, result: type[M], queue: str | None = None) -> M:
        return dispatch(deployment, parameters, key=key, result=result, config=self.config, queue=queue)

    @staticmethod
    def _record(order_id: str, stage: str, started: float, status: str, **result) -> None:
        order_book().record_stage(order_id, stage, time.perf_counter() - started, status, **result)

    def train(self, spec: OrderSpec, upload: Upload, shard: Shard, assignment: Assignment) -> tuple[Shard, Assignment, Training]:
        """The drawn worker trains, commits and answers the challenge. On the pools, a worker that does
        not finish is replaced by the chain's next draw once its commit window passed without a
        commitment, and the successor trains; returns the order's shard and the task's assignment as
        they stand, with the training."""
        if (done := recorded(upload.order_id, "training")) is not None:
            shard = order_book().load(upload.order_id).shard
            return shard, next(a for a in shard.assignments if a.task == done.task), done
        started = time.perf_counter()
        if self.pools:
            shard, assignment, training = self._train_on_pools(spec, upload, shard, assignment)
        else:
            training = train_task(spec, upload, assignment)
        self._record(upload.order_id, "train", started, "committed", training=training)
        return shard, assignment, training

    def _replacing(self, shard: Shard, attempt: Callable[[Shard], M], replace: Callable[..., Shard]) -> tuple[Shard, M]:
        """``attempt`` the stage with the shard as it stands; when the party it runs on does not finish,
        ``replace`` it on chain by the next draw and attempt again with the successor, up to
        ``replacements`` times. Returns the shard as it stands and the stage's result."""
        replaced = 0
        while True:
            try:
                return shard, attempt(shard)
            except StageNotDone as exc:
                if replaced == self.config.replacements:
                    raise
                failed = exc
            replaced += 1
            try:
                shard = replace(shard, until=time.monotonic() + self.config.stage_timeout_s, poll_s=self.config.poll_s)
            except NotReplaceable as exc:
                raise StageNotDone(f"{failed}; {exc}") from None

    def _train_on_pools(self, spec: OrderSpec, upload: Upload, shard: Shard, assignment: Assignment
                        ) -> tuple[Shard, Assignment, Training]:
        """Train on the drawn worker's queue; replace a worker that does not finish, up to ``replacements`` times."""
        task = assignment.task

        def attempt(shard: Shard) -> Training:
            drawn = next(a for a in shard.assignments if a.task == task)
            return self._dispatch("train/train", {"spec": spec, "upload": upload, "assignment": drawn},
                                  f"{upload.order_id}-train-{task}-{drawn.address.lower()}", Training, party_queue(drawn.address))

        shard, training = self._replacing(shard, attempt, partial(replace_worker_task, upload, task=task))
        return shard, next(a for a in shard.assignments if a.task == task), training

    def _verify_on_pools(self, spec: OrderSpec, upload: Upload, shard: Shard, assignment: Assignment, training: Training
                         ) -> tuple[Shard, Training, Verification]:
        """Verify on the verifier's queue; replace a verifier that does not finish, up to ``replacements``
        times, each successor granted the model key by the worker on its own queue."""
        task = assignment.task

        def attempt(shard: Shard) -> Verification:
            verifier = shard.validators[0].address
            params = {"spec": spec, "upload": upload, "shard": shard, "assignment": assignment, "training": training}
            try:
                self._dispatch("verify/verify", params, f"{upload.order_id}-verify-{task}-{verifier.lower()}",
                               Verification, party_queue(verifier))
                unfinished = None
            except StageNotDone as exc:
                unfinished = exc
            try:  # what the run returned is the verifier's word; the record takes what it attested on chain
                verification = attested_verification_task(upload, task)
            except UnusableVerification as exc:
                self._void(upload, task, verifier, str(exc))
            if verification is None:
                raise unfinished or StageNotDone(f"{verifier}'s verify run completed with no verification of task "
                                                 f"{task} on chain")
            return verification

        def replace(shard: Shard, **waiting) -> Shard:
            nonlocal training
            shard = replace_verifier_task(upload, shard, task=task, **waiting)
            successor = shard.validators[0].address
            training = self._dispatch("grant-model/grant-model", {"upload": upload, "training": training},
                                      f"{upload.order_id}-grant-model-{task}-{successor.lower()}", Training,
                                      party_queue(assignment.address))
            order_book().update(upload.order_id, training=training)  # a retried order goes on with the successor's grant
            return shard

        shard, verification = self._replacing(shard, attempt, replace)
        return shard, training, verification

    def _void(self, upload: Upload, task: int, verifier: str, unusable: str) -> None:
        """Have Wasp void the verification ``verifier`` attested of ``task``, which nobody can judge with
        (``unusable`` says why), once the task's scoring window closed on chain; raises :class:`StageNotDone`
        either way: the verifier is replaced, or the stage ran out of time first."""
        logger = get_run_logger()
        logger.warning("task %d of order %s: %s; waiting for its scoring window (the order's commit window after the "
                       "verification) to close on chain, when Wasp voids it and the next verifier drawn verifies",
                       task, upload.order_id, unusable)
        if wait_for_scoring_task(upload, task, until=time.monotonic() + self.config.stage_timeout_s,
                                 poll_s=self.config.poll_s) is None:
            raise StageNotDone(f"{unusable}; its scoring window did not close before the stage ran out of time")
        voided = self._dispatch("void-verification/void-verification", {"upload": upload, "task": task},
                                f"{upload.order_id}-void-verification-{task}-{verifier.lower()}", VoidedVerification)
        logger.warning("task %d of order %s: Wasp voided the verification of %s on chain (%s)", task, upload.order_id,
                       verifier, voided.tx_hash)
        raise StageNotDone(f"Wasp voided {verifier}'s verification of task {task}: {voided.reason}")

    def verify(self, spec: OrderSpec, upload: Upload, shard: Shard, assignment: Assignment, training: Training
               ) -> tuple[Shard, Training, Verification]:
        """The order's verifier, its first validator, checks the proof; the checks are published as a
        Markdown table. On the pools, a verifier that does not finish is replaced by the chain's next
        draw once the task's verify window passed with no verification on chain, and so is one whose
        verification nobody can judge with once Wasp voided it past the scoring window; the worker wraps
        its model key to the successor, and the successor verifies. Returns the order's shard and the
        task's training as they stand (the successor's grant in it), with the verification."""
        if (done := recorded(upload.order_id, "verification")) is not None:
            record = order_book().load(upload.order_id)
            return record.shard, record.training, done
        started = time.perf_counter()
        if self.pools:
            shard, training, verification = self._verify_on_pools(spec, upload, shard, assignment, training)
        else:
            verification = verify_task(spec, upload, shard, assignment, training)
        self._record(upload.order_id, "verify", started, "verified", verification=verification, training=training)
        create_markdown_artifact(
            key=f"checks-{upload.order_id[2:14]}",
            markdown=checks_markdown(verification.checks, order_id=upload.order_id, task=assignment.task),
            description=f"Proof-of-Train checks of order {upload.order_id}, task {assignment.task}",
        )
        return shard, training, verification

    def score(self, spec: OrderSpec, upload: Upload, shard: Shard, training: Training) -> Scores:
        """Each validator of the order scores the final model in its own run; the scores are aggregated.

        On the pools every validator's first run starts before the dispatcher waits on any: they score
        at once, each on its own host (a run's key makes the dispatcher's own start of it return that run).
        A validator whose run does not finish is left out (it reported nothing: no fee). When the others
        make no majority (``proof.wasp.score_quorum``), the stage waits for the task's scoring window to
        close on chain (``tasks.audit.scoring_closes``), after which Wasp judges with the scores there are.
        """
        if (done := recorded(upload.order_id, "scores")) is not None:
            return done
        started = time.perf_counter()
        if self.pools:
            runs = [({"spec": spec, "upload": upload, "training": training, "slot": slot},
                     f"{upload.order_id}-score-{training.task}-{slot.address.lower()}", party_queue(slot.address))
                    for slot in shard.validators]
            for params, key, queue in runs:
                start_run("score/score", params, key=key, queue=queue)
            scored, silent = [], []
            for (params, key, queue), slot in zip(runs, shard.validators, strict=True):
                try:
                    self._dispatch("score/score", params, key, SignedScore, queue)
                    unfinished = "its score run completed with no score on chain"
                except StageNotDone as exc:
                    unfinished = str(exc)
                try:  # what the run returned is the validator's word; the record takes what it attested on chain
                    found = attested_score_task(upload, training.task, slot)
                except (PrivacyError, ArtifactError, ValueError) as exc:
                    found, unfinished = None, f"the score it attested on chain cannot be read ({exc})"
                if found is None:
                    silent.append(f"{slot.name} ({slot.address}): {unfinished}")
                else:
                    scored.append(found)
            if len(scored) < (quorum := score_quorum(len(shard.validators))):
                get_run_logger().warning("task %d of order %s: %d of %d validators scored, and Wasp judges once %d have; "
                                         "waiting for its scoring window (the order's commit window after the "
                                         "verification) to close on chain, when Wasp judges with those there are",
                                         training.task, upload.order_id, len(scored), len(shard.validators), quorum)
                closed = wait_for_scoring_task(upload, training.task, until=time.monotonic() + self.config.stage_timeout_s,
                                               poll_s=self.config.poll_s)
                if closed is None:
                    raise StageNotDone(f"{len(scored)} of the order's {len(shard.validators)} validators scored task "
                                       f"{training.task}, and Wasp judges once {quorum} have, or once the task's scoring "
                                       "window closed on chain, which the stage ran out of time before; " + "; ".join(silent))
                get_run_logger().warning("task %d of order %s goes on with %d of %d scores, its scoring window closed at "
                                         "chain time %d, without %s", training.task, upload.order_id, len(scored),
                                         len(shard.validators), closed, "; ".join(silent))
            elif silent:
                get_run_logger().warning("task %d of order %s goes on with the scores of a majority, without %s",
                                         training.task, upload.order_id, "; ".join(silent))
        else:
            scored = [score_task(spec, upload, training, slot) for slot in shard.validators]
        scores = gathered(upload.order_id, scored)
        self._record(upload.order_id, "score", started, "scored", scores=scores)
        return scores

    def audit(self, upload: Upload, shard: Shard, assignment: Assignment, training: Training) -> Verdict:
        """Wasp weighs the reports the validators attested and records the work verdict."""
        if (done := recorded(upload.order_id, "verdict")) is not None:
            return done
        started = time.perf_counter()
        if self.pools:
            params = {"upload": upload, "shard": shard, "assignment": assignment, "training": training}
            verdict = self._dispatch("wasp/wasp", params, f"{upload.order_id}-wasp-{assignment.task}", Verdict)
        else:
            verdict = audit_task(upload, shard, assignment, training)
        self._record(upload.order_id, "audit", started, "accepted" if verdict.accepted else "rejected", verdict=verdict)
        return verdict

    def deliver(self, upload: Upload, shard: Shard, training: Training) -> Delivery | None:
        """A validator of the order releases the model key to the client, or the record says why none does."""
        if (done := recorded(upload.order_id, "delivery")) is not None:
            return done
        status = order_book().load(upload.order_id).status
        started = time.perf_counter()
        try:
            slot = deliverer(upload, shard, training, network())
        except NotDeliverable as exc:
            get_run_logger().warning("%s", exc)
            self._record(upload.order_id, "deliver", started, f"{status}, no model delivered")
            return None
        if self.pools:
            params = {"upload": upload, "shard": shard, "training": training}
            delivery = self._dispatch("deliver/deliver", params, f"{upload.order_id}-deliver-{training.task}",
                                      Delivery, party_queue(slot.address))
        else:
            delivery = deliver_task(upload, shard, training)
        self._record(upload.order_id, "deliver", started, f"{status}, model delivered", delivery=delivery)
        return delivery


@contextmanager
def ending_on_failure(upload: Upload):
    """End the order cleanly when a dispatched stage cannot finish or its run cannot be created: cancel it on
    chain, refund the escrow."""
    try:
        yield
    except (StageNotDone, RunRefused) as exc:
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
    book.update(order_id, status=status)
    return status


class ForeignOrderRun(BahenError):
    """An order run that reached this client's worker from a work queue other than the client's own."""


def check_own_queue(queue: str | None, client: str) -> None:
    """Refuse an order run that came from work queue ``queue`` of the control pool unless it is ``client``'s
    own: a run in a queue other clients' workers poll may be another client's order, which this client
    would open and pay for with its own key."""
    if queue is not None and queue != party_queue(client):
        raise ForeignOrderRun(
            f"this order run came from work queue {queue!r} of the control pool, not client {client}'s own "
            f"({party_queue(client)}), so it may be another client's order: nothing was opened or paid. Submit it "
            "to the client's own queue (`bahen order submit` does; in the UI's custom run, pick that work queue)")


@task(name="claim_order", cache_policy=NO_CACHE)
def claim_order_task(spec: OrderSpec, salt: str, signature: str) -> None:
    """Prefect task: refuse, before anything is stored or paid, an order run from another queue than this
    client's own (:func:`check_own_queue`), one this client did not sign (``check_submission``: unsigned
    runs only where the host's ``accept_unsigned_orders`` allows them) or a second run of an order another
    run placed (``OrderBook.claim``); a run in this process (the embedded defaults) is this host's."""
    if runtime.deployment.id is None:
        return
    with get_client(sync_client=True) as client:
        queue = client.read_flow_run(runtime.flow_run.id).work_queue_name
    settings = load_settings()
    address = connect(settings).party(CLIENT).address
    check_own_queue(queue, address)
    check_submission(spec, salt, signature, address, accept_unsigned=settings.accept_unsigned_orders)
    OrderBook(settings.orders_dir).claim(order_id_for(address, salt), runtime.flow_run.id)
    if not signature:
        get_run_logger().warning("this order run carries no signature of client %s: taken because this host's "
                                 "accept_unsigned_orders allows it", address)


@task(name="end_order", cache_policy=NO_CACHE)
def end_order_task(order_id: str, *, reason: str) -> str:
    """Prefect task: end an order whose stage could not finish."""
    return end_order(order_id, network(), order_book(), reason=reason)
