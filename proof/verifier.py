"""Checkpoint-sample-verify: check one task's Proof of Train against its commitment and the data.

``verify_proof`` derives the challenge from a seed the worker could not know at commit time,
fetches every artifact of the bundle once (a missing or tampered one becomes a failed check that
names it, never an exception), runs each check of `proof.checks.default_checks` and returns the
report with the verification cost as a fraction of the worker's training compute.
"""

import hashlib
import math
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from pydantic import BaseModel, Field

from proof.bundle import MAX_TABLE_BYTES, ProofBundle, artifacts, read_step_log, read_telemetry
from proof.challenge import derive_challenge, with_targeted_steps
from proof.localiser import packaged_model
from proof.checks import default_checks
from proof.checks.base import CheckContext
from proof.response import Response
from proof.report import CheckResult, VerificationCost, VerificationReport
from storage.refs import ArtifactRef
from training.checkpoint import Checkpoint
from training.trainer import TrainSpec, steps_per_epoch


class VerifyConfig(BaseModel, frozen=True):
    """How much the verifier samples and how strict it is; part of the order, so it is public."""

    replay_segments: int = Field(default=1, ge=0, description="Random segments replayed")
    largest_update_segments: int = Field(default=1, ge=0, description="Largest-update segments replayed")
    spot_steps: int = Field(
        default=48, ge=0,
        description="Steps re-executed one at a time from revealed states; 1 - 0.9^48 > 0.99 catches a 10% cheat",
    )
    largest_steps: int = Field(
        default=8, ge=0,
        description="Steps re-executed because their claimed update is the largest against their neighbours'",
    )
    suspicious_steps: int = Field(
        default=8, ge=0,
        description="Steps re-executed because Wasp's learned model scores them highest, when any clears its threshold",
    )
    loss_samples: int = Field(default=8, ge=0, description="Checkpoints whose logged step loss is recomputed")
    pev_fraction: float = Field(default=0.02, gt=0, le=1, description="Share of each epoch's data PEV evaluates")
    pev_z: float = Field(default=4.0, gt=0, description="PEV sampling allowance in standard errors")
    pev_margin: float = Field(default=0.1, ge=0, description="PEV allowance as a share of the logged epoch mean")
    loss_rtol: float = Field(default=0.0, ge=0, description="Floor of the loss recomputation tolerance")
    telemetry_min_samples: int = Field(default=5, ge=1, description="Fewer samples make telemetry inconclusive")
    telemetry_interval_s: float = Field(
        default=1.0, gt=0, description="Longest interval between a worker's telemetry samples: a trace with fewer "
        "samples than the logged training time allows at this rate is withheld, not short",
    )
    telemetry_min_share: float = Field(default=0.25, ge=0, le=1, description="Least share of utilization above mean")
    telemetry_memory_spread: float = Field(default=0.2, ge=0, description="Most GPU memory variation after the ramp")


def load_evidence(ctx: CheckContext, fetch: Callable[[ArtifactRef], bytes]) -> None:
    """Fetch and parse every artifact of the bundle into ``ctx``; record each failure by name."""
    b = ctx.bundle
    # The step log holds one row per step of the order; a telemetry trace, one per device per sample over
    # however long training took, which the verifier cannot know before it reads it.
    readers = [(b.step_log, "steps", partial(read_step_log, max_rows=ctx.form.total)),
               (b.telemetry, "telemetry", read_telemetry)]
    for ref, attr, reader in readers:
        data = _fetch(ctx, ref, fetch, MAX_TABLE_BYTES)
        if data is not None:
            try:
                setattr(ctx, attr, reader(data))
            except Exception as exc:  # any parse failure of worker-supplied bytes is evidence
                ctx.problems[ref.name] = f"unreadable ({exc})"
    if [step for step, _ in b.checkpoints] != ctx.scheduled_checkpoints:
        # Each is fetched and parsed below, and the checks replay between them: checkpoints at other steps
        # than the order schedules would make the validator pay for each, or replay the whole run in one
        # segment. The integrity check names the schedule.
        ctx.problems["checkpoints"] = (f"the proof lists {len(b.checkpoints):,} checkpoints at other steps than the "
                                       f"{len(ctx.scheduled_checkpoints):,} the order schedules; none was fetched")
        return
    if len(b.checkpoint_sha256) != len(b.checkpoints):
        ctx.problems["checkpoints"] = (f"the proof lists {len(b.checkpoint_sha256):,} plaintext digests for "
                                       f"{len(b.checkpoints):,} checkpoints; none was fetched")
        return
    for (step, ref), listed in zip(b.checkpoints, b.checkpoint_sha256, strict=True):
        data = _fetch(ctx, ref, fetch, ctx.form.max_bytes)
        if data is None:
            continue
        if hashlib.sha256(data).hexdigest() != listed:
            ctx.problems[ref.name] = "its plaintext is not the SHA-256 the proof lists for it"
            continue
        try:
            checkpoint = Checkpoint.from_bytes(data, name=ref.name)
        except Exception as exc:  # see above: a forged checkpoint may break the parser in any way
            ctx.problems[ref.name] = f"unreadable ({exc})"
            continue
        if checkpoint.step != step:
            ctx.problems[ref.name] = f"holds step {checkpoint.step}, committed as step {step}"
            continue
        ctx.checkpoints[step] = checkpoint


def add_targeted_steps(ctx: CheckContext) -> None:
    """Spot-check the steps the step log singles out too (``proof.challenge.with_targeted_steps``).

    Without a readable step log there are no claims to rank, and the spot check fails anyway.
    """
    ctx.challenge = with_targeted_steps(ctx.challenge, ctx.steps or [], ctx.config)


def load_revealed(ctx: CheckContext, fetch: Callable[[ArtifactRef], bytes]) -> None:
    """Fetch the states the worker revealed for this challenge into ``ctx``; record why any is unavailable."""
    from proof.response import revealed_steps

    response = ctx.response
    if response is None:
        ctx.state_problems.update({s: "the worker gave no response" for s in revealed_steps(ctx.challenge)})
        return
    if (response.challenge_seed != ctx.challenge.seed or response.merkle_root != ctx.committed_root
            or (response.order_id, response.task) != (ctx.bundle.order_id, ctx.bundle.task)):
        why = "the response answers another challenge, commitment or order"
        ctx.state_problems.update({s: why for s in revealed_steps(ctx.challenge)})
        return
    for step in revealed_steps(ctx.challenge):
        ref = response.state_ref(step)
        if ref is None:
            ctx.state_problems[step] = "withheld"
            continue
        if ref.size > ctx.form.max_bytes:
            ctx.state_problems[step] = (f"{ref.name} is {ref.size:,} bytes, over the {ctx.form.max_bytes:,} a state "
                                        "of this order takes")
            continue
        try:
            ctx.revealed[step] = fetch(ref)
        except Exception as exc:  # see _fetch
            ctx.state_problems[step] = f"{ref.name} missing or tampered ({type(exc).__name__}: {exc})"


def _fetch(ctx: CheckContext, ref: ArtifactRef, fetch: Callable[[ArtifactRef], bytes], limit: int) -> bytes | None:
    """The bytes of ``ref``, or None with the problem recorded; over ``limit`` bytes it is not fetched."""
    if ref.size > limit:
        ctx.problems[ref.name] = f"is {ref.size:,} bytes, over the {limit:,} it can take"
        return None
    try:
        return fetch(ref)
    except Exception as exc:  # the caller's store decides how a missing or tampered object fails
        ctx.problems[ref.name] = f"missing or tampered ({type(exc).__name__}: {exc})"
        return None


def _timed(check, ctx: CheckContext) -> CheckResult:
    started = time.perf_counter()
    result = check.run(ctx)
    return result.model_copy(update={"seconds": time.perf_counter() - started})


def _cost(checks: list[CheckResult], spec: TrainSpec, num_samples: int, seconds: float) -> VerificationCost:
    replayed = sum(c.cost_steps for c in checks)
    forward = sum(c.forward_samples for c in checks)
    training = 3 * spec.epochs * steps_per_epoch(spec, num_samples) * spec.batch_size
    return VerificationCost(
        replayed_steps=replayed,
        forward_samples=forward,
        seconds=seconds,
        fraction_of_training=(3 * replayed * spec.batch_size + forward) / max(training, 1),
    )


def verify_proof(
    bundle: ProofBundle,
    *,
    committed_root: str,
    challenge_seed: bytes,
    X: np.ndarray,
    y: np.ndarray,
    fetch: Callable[[ArtifactRef], bytes],
    expected_spec: TrainSpec,
    config: VerifyConfig | None = None,
    response: Response | None = None,
    initial: dict[str, torch.Tensor] | None = None,
) -> VerificationReport:
    """Verify ``bundle`` against the root committed on chain and the task's data.

    ``fetch(ref)`` returns an artifact's decrypted plaintext and raises, naming it, when it is
    missing or does not match its commitment. ``expected_spec`` is the order's spec: every check
    reads it, never the spec the bundle names, so a substituted spec fails integrity. ``response``
    is the worker's answer to the challenge (its revealed states); without one every spot-checked
    step fails. ``initial`` holds the client's starting weights of a fine-tuning order, as the
    client uploaded them. The worker's signatures (on the bundle and the response) are the caller's
    to check.
    """
    started = time.perf_counter()
    config = config or VerifyConfig()
    ctx = CheckContext(
        bundle=bundle,
        committed_root=committed_root,
        challenge=derive_challenge(challenge_seed, bundle, config),
        config=config,
        X=X,
        y=y,
        expected_spec=expected_spec,
        initial=initial,
        response=response,
    )
    load_evidence(ctx, fetch)
    add_targeted_steps(ctx)
    load_revealed(ctx, fetch)
    results = [_timed(check, ctx) for check in default_checks()]
    return VerificationReport(
        order_id=bundle.order_id,
        task=bundle.task,
        challenge_seed=challenge_seed.hex(),
        merkle_root=committed_root,
        checks=results,
        passed=all(r.passed for r in results if r.decisive),
        cost=_cost(results, ctx.spec, len(X), time.perf_counter() - started),
        artifacts={ref.name: ref.sha256 for ref in artifacts(bundle)},
        localiser=packaged_model().sha256(), suspicious_steps=ctx.challenge.suspicious_steps,
        claimed_final_loss=ctx.steps[-1].loss if ctx.steps else math.nan,
    )
