"""Commit, then challenge: what the verifier checks is chosen by a seed the worker could not know.

The seed comes from chain data that did not exist when the worker committed its Merkle root:
``keccak256(abi.encode(hash of the block after the commitment, order id, task))``, computed by
``contracts.client.Bahen.challenge_seed`` from public chain data. Every choice below is a
pure function of that seed and the public bundle, so anyone can recompute the selection; the
steps chosen by their size (:meth:`Challenge.with_largest_steps`) are a function of the committed
step log alone, so a worker cannot make a large update and escape its re-execution by luck.

The PRF is SHA-256 in counter mode: block ``i`` of stream ``label`` is
``SHA-256(b"bahen.challenge.v1" ‖ seed ‖ label ‖ i as 8 bytes big-endian)``; each 32-byte block
yields four 64-bit big-endian words, and a word ``w`` becomes an index below ``n`` by rejection
sampling (``w`` is kept only when ``w < 2**64 - 2**64 % n``), so indices are exactly uniform.
"""

import hashlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from proof.bundle import ProofBundle
    from proof.verifier import VerifyConfig
    from training.steps import StepRecord

_DOMAIN = b"bahen.challenge.v1"


def _words(seed: bytes, label: str) -> Iterator[int]:
    counter = 0
    while True:
        block = hashlib.sha256(_DOMAIN + seed + label.encode() + counter.to_bytes(8, "big")).digest()
        for i in range(0, 32, 8):
            yield int.from_bytes(block[i : i + 8], "big")
        counter += 1


def sample_indices(seed: bytes, label: str, population: int, count: int) -> list[int]:
    """Draw ``min(count, population)`` distinct indices below ``population``, in draw order."""
    count = min(count, population)
    limit = 2**64 - (2**64 % population) if population else 0
    chosen: list[int] = []
    seen: set[int] = set()
    words = _words(seed, label)
    while len(chosen) < count:
        word = next(words)
        if word >= limit:
            continue
        index = word % population
        if index not in seen:
            seen.add(index)
            chosen.append(index)
    return chosen


SIZE_WINDOW = 64  # steps around a step whose claimed update sizes its own is compared with
MEDIAN_BLOCK = 1 << 16  # rows of windows materialised at once: 34 MB for windows of 65 steps


def rolling_median(values: np.ndarray, half: int) -> np.ndarray:
    """The median of the ``2 * half + 1`` values centred on each one, the ends repeated.

    Computed :data:`MEDIAN_BLOCK` windows at a time, so a step log of millions of steps (a worker's
    bytes, up to ``proof.bundle.MAX_TABLE_BYTES``) costs a bounded amount of memory beyond the values.
    """
    padded = np.pad(values, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    out = np.empty(len(values), dtype=np.float64)
    for start in range(0, len(values), MEDIAN_BLOCK):
        out[start:start + MEDIAN_BLOCK] = np.median(windows[start:start + MEDIAN_BLOCK], axis=1)
    return out


def largest_claimed_steps(update_norms: Sequence[float], count: int) -> list[int]:
    """The ``count`` steps whose claimed update is largest against the steps around them, ties to the earlier.

    A step's score is its claimed update norm over the median claimed norm of the
    :data:`SIZE_WINDOW` steps centred on it (a claim that is not a finite, non-negative number
    scores highest). Honest update sizes change slowly over a run (the schedule, the phase of
    training), so a step that moves the model far more than its neighbours stands out wherever it
    lies; comparing with all steps instead would only ever pick the first steps of training.
    """
    norms = np.asarray(update_norms, dtype=np.float64)
    if count <= 0 or not len(norms):
        return []
    valid = np.isfinite(norms) & (norms >= 0)
    medians = rolling_median(np.where(valid, norms, 0.0), SIZE_WINDOW // 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(valid, norms / medians, np.inf)
    scores = np.nan_to_num(scores, nan=0.0, posinf=np.inf)  # 0/0: no update among steps that claim none
    order = sorted(range(len(norms)), key=lambda t: (-scores[t], t))
    return sorted(order[:count])


class Challenge(BaseModel, frozen=True):
    """What one verification checks; recomputable from the seed, the bundle and its step log."""

    seed: str = Field(description="Hex of the challenge seed")
    replay_segments: list[int] = Field(description="Start steps of the randomly chosen segments")
    loss_steps: list[int] = Field(description="Checkpoint steps whose logged step loss is recomputed")
    pev_fraction: float = Field(description="Share of each epoch's data evaluated by PEV")
    spot_steps: list[int] = Field(default_factory=list, description="Steps whose one-step transition is re-executed")
    largest_steps: list[int] = Field(
        default_factory=list, description="The spot steps chosen by their claimed update size, not by the seed")
    suspicious_steps: list[int] = Field(
        default_factory=list, description="The spot steps Wasp's learned model chose from the step log, not the seed")

    def with_largest_steps(self, update_norms: Sequence[float], count: int) -> "Challenge":
        """This challenge with the ``count`` steps of :func:`largest_claimed_steps` spot-checked too.

        ``update_norms`` are the step log's claimed update sizes, one per step. Both the worker
        and the verifier read them from the committed step log, so both derive the same steps.
        """
        largest = largest_claimed_steps(update_norms, count)
        return self.model_copy(update={"largest_steps": largest, "spot_steps": sorted({*self.spot_steps, *largest})})

    def with_suspicious_steps(self, steps: Sequence[int]) -> "Challenge":
        """This challenge with ``steps`` (``proof.localiser.StepModel.suspicious``) spot-checked too."""
        return self.model_copy(update={"suspicious_steps": sorted(steps), "spot_steps": sorted({*self.spot_steps, *steps})})

    @property
    def uniform_steps(self) -> list[int]:
        """The spot steps the seed chose (an unbiased sample of the run), without the targeted ones."""
        targeted = {*self.largest_steps, *self.suspicious_steps}
        return [t for t in self.spot_steps if t not in targeted]

    def pev_sample(self, epoch: int, num_samples: int) -> list[int]:
        """Dataset indices evaluated for ``epoch`` by probabilistic epoch validation."""
        count = max(1, round(self.pev_fraction * num_samples))
        return sorted(sample_indices(bytes.fromhex(self.seed), f"pev/{epoch}", num_samples, count))


def with_targeted_steps(challenge: Challenge, steps: "Sequence[StepRecord]", config: "VerifyConfig") -> Challenge:
    """``challenge`` with the steps the committed step log singles out: those whose claimed update is
    largest against their neighbours', and those Wasp's learned model (``proof.localiser``) scores
    highest when any clears its threshold. The worker and the verifier both call this on the same log."""
    from proof.localiser import packaged_model

    largest = challenge.with_largest_steps([r.update_norm for r in steps], config.largest_steps)
    return largest.with_suspicious_steps(packaged_model().suspicious(steps, config.suspicious_steps))


def derive_challenge(seed: bytes, bundle: "ProofBundle", config: "VerifyConfig") -> Challenge:
    """Choose the random replay segments, the loss steps, the spot-checked steps and the PEV sampling.

    Spot-checked steps are drawn uniformly without replacement from all steps of the task; the
    worker answers by revealing the committed states before and after each (``proof.response``).

    Segments are the intervals between consecutive committed checkpoints, named by their start
    step. The largest-update segments depend on the checkpoints' contents and are chosen by the
    verifier (``proof.checks.replay.largest_update_segments``), equally recomputable.
    """
    starts = sorted(step for step, _ in bundle.checkpoints)[:-1]
    picks = sample_indices(seed, "replay", len(starts), config.replay_segments)
    loss_picks = sample_indices(seed, "loss", len(starts), config.loss_samples)
    total = max((step for step, _ in bundle.checkpoints), default=0)
    return Challenge(
        seed=seed.hex(),
        replay_segments=sorted(starts[i] for i in picks),
        loss_steps=sorted(starts[i] for i in loss_picks),
        pev_fraction=config.pev_fraction,
        spot_steps=sorted(sample_indices(seed, "steps", total, config.spot_steps)),
    )
