import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proof.challenge import derive_challenge, largest_claimed_steps, rolling_median, sample_indices
from proof.verifier import VerifyConfig

from tests.unit.proof.conftest import SEED


def test_sample_indices_known_answer():
    # First word of SHA-256(domain || seed || "x" || 0^8), reduced mod 10, by hand:
    block = hashlib.sha256(b"bahen.challenge.v1" + b"s" + b"x" + bytes(8)).digest()
    assert sample_indices(b"s", "x", 10, 1) == [int.from_bytes(block[:8], "big") % 10]


def _reference_indices(seed: bytes, label: str, population: int, count: int) -> list[int]:
    """The sampler as the module's docstring specifies it, written independently of the module."""
    limit = 2**64 - 2**64 % population
    chosen, block = [], 0
    while len(chosen) < min(count, population):
        digest = hashlib.sha256(b"bahen.challenge.v1" + seed + label.encode() + block.to_bytes(8, "big")).digest()
        for word in (int.from_bytes(digest[i:i + 8], "big") for i in (0, 8, 16, 24)):
            if word < limit and word % population not in chosen and len(chosen) < min(count, population):
                chosen.append(word % population)
        block += 1
    return chosen


@pytest.mark.parametrize("label, population, count", [
    ("steps", 2811, 48), ("replay", 94, 1), ("loss", 94, 2), ("pev/0", 60_000, 1200), ("x", 7, 7),
    # about half, then a quarter, of all words are rejected: the rejection bound is exercised
    ("steps", 2**63 + 1, 12), ("steps", 3 * 2**62, 12),
])
def test_sample_indices_follow_the_specification(label, population, count):
    assert sample_indices(SEED, label, population, count) == _reference_indices(SEED, label, population, count)


def test_an_empty_population_draws_nothing():
    assert sample_indices(SEED, "steps", 0, 5) == []


class _Bundle:
    def __init__(self, steps):
        self.checkpoints = [(step, None) for step in steps]


def test_the_challenge_is_the_specified_draws_over_the_committed_checkpoints():
    config = VerifyConfig(replay_segments=2, loss_samples=5, spot_steps=10)
    challenge = derive_challenge(SEED, _Bundle([*range(0, 1200, 30), 1205]), config)
    starts = list(range(0, 1200, 30))
    assert challenge.replay_segments == sorted(starts[i] for i in _reference_indices(SEED, "replay", 40, 2))
    assert challenge.loss_steps == sorted(starts[i] for i in _reference_indices(SEED, "loss", 40, 5))
    assert challenge.spot_steps == sorted(_reference_indices(SEED, "steps", 1205, 10))
    assert challenge.seed == SEED.hex() and challenge.pev_fraction == config.pev_fraction
    empty = derive_challenge(SEED, _Bundle([]), config)
    assert (empty.replay_segments, empty.loss_steps, empty.spot_steps) == ([], [], [])


@given(st.binary(min_size=1, max_size=32), st.integers(1, 500), st.integers(0, 600))
def test_sample_indices_are_distinct_and_in_range(seed, population, count):
    picks = sample_indices(seed, "p", population, count)
    assert len(picks) == min(count, population) == len(set(picks))
    assert all(0 <= i < population for i in picks)


def test_challenge_is_recomputable_and_seed_dependent(honest):
    config = VerifyConfig(replay_segments=2, loss_samples=3)
    a = derive_challenge(b"a" * 32, honest.bundle, config)
    assert a == derive_challenge(b"a" * 32, honest.bundle, config)
    assert a != derive_challenge(b"b" * 32, honest.bundle, config)
    starts = [s for s, _ in honest.bundle.checkpoints][:-1]
    assert len(a.replay_segments) == 2 and set(a.replay_segments) <= set(starts)
    assert len(a.loss_steps) == 3 and set(a.loss_steps) <= set(starts)


def test_largest_claimed_steps_compare_each_step_with_its_neighbours():
    # updates shrink a hundredfold over the run; one late step claims five times its neighbours
    norms = list(np.geomspace(10.0, 0.1, 400))
    norms[300] *= 5
    assert largest_claimed_steps(norms, 1) == [300]  # not step 0, the largest in absolute terms
    assert largest_claimed_steps(norms, 0) == [] and largest_claimed_steps([], 3) == []


def test_claims_that_are_not_sizes_are_challenged_first():
    norms = [1.0] * 100
    norms[40], norms[70], norms[10] = float("nan"), -1.0, 3.0
    assert largest_claimed_steps(norms, 2) == [40, 70]
    assert largest_claimed_steps(norms, 3) == [10, 40, 70]


def test_ties_go_to_the_earlier_step_and_zero_claims_do_not_break_the_ranking():
    assert largest_claimed_steps([1.0] * 10, 2) == [0, 1]
    assert largest_claimed_steps([0.0] * 10 + [1.0], 1) == [10]


def test_a_plateau_as_wide_as_half_the_window_is_its_own_neighbourhood():
    # A sustained change of update size (a schedule's phase) is no outlier: each step of the plateau
    # is compared with a window centred on it, which the plateau holds the median of.
    assert largest_claimed_steps([1.0] * 100 + [3.0] * 33 + [1.0] * 100, 1) == [0]


def test_a_size_among_claims_that_are_not_sizes_has_no_neighbours_to_hide_behind():
    # Invalid claims count as no update in their neighbours' medians, so a real size surrounded by
    # them scores as high as they do and keeps its place by step order.
    nan = float("nan")
    assert largest_claimed_steps([nan] * 40 + [2.0] + [nan] * 40, 80) == list(range(80))
    assert largest_claimed_steps([2.0, 1.0], 1) == [0] and largest_claimed_steps([1.0], 1) == [0]


def test_largest_steps_join_the_spot_steps(honest):
    config = VerifyConfig(spot_steps=4, largest_steps=2)
    challenge = derive_challenge(SEED, honest.bundle, config)
    norms = [r.update_norm for r in honest.recorded.steps]
    full = challenge.with_largest_steps(norms, config.largest_steps)
    assert full.largest_steps == largest_claimed_steps(norms, 2) and len(full.largest_steps) == 2
    assert full.spot_steps == sorted({*challenge.spot_steps, *full.largest_steps})


def test_every_segment_and_step_is_reachable_and_drawn_evenly_across_seeds():
    from collections import Counter

    config = VerifyConfig(replay_segments=1, loss_samples=2, spot_steps=5)
    bundle = _Bundle([*range(0, 100, 10), 100])  # 10 segments of 10 steps
    drawn = {"replay": Counter(), "loss": Counter(), "steps": Counter()}
    seeds = 400
    for i in range(seeds):
        challenge = derive_challenge(hashlib.sha256(i.to_bytes(4, "big")).digest(), bundle, config)
        drawn["replay"].update(challenge.replay_segments)
        drawn["loss"].update(challenge.loss_steps)
        drawn["steps"].update(challenge.spot_steps)
    assert set(drawn["replay"]) == set(drawn["loss"]) == set(range(0, 100, 10))
    assert set(drawn["steps"]) == set(range(100))
    # Pearson's chi-square against uniform draws stays under its 99.9th percentile (9 and 99 degrees
    # of freedom: 27.9 and 148.2) for this fixed set of seeds.
    for kind, per_draw, cells, bound in (("replay", 1, 10, 27.9), ("loss", 2, 10, 27.9), ("steps", 5, 100, 148.2)):
        expected = seeds * per_draw / cells
        assert sum((n - expected) ** 2 / expected for n in drawn[kind].values()) < bound, kind


def test_the_rolling_median_repeats_the_ends_and_is_the_same_block_by_block(monkeypatch):
    import proof.challenge

    assert rolling_median(np.array([5.0, 1.0, 3.0, 2.0, 9.0]), 1).tolist() == [5.0, 3.0, 2.0, 3.0, 9.0]
    values = np.random.default_rng(2).normal(size=1_000)
    whole = rolling_median(values, 32)
    monkeypatch.setattr(proof.challenge, "MEDIAN_BLOCK", 7)  # windows made 7 at a time: the same medians
    assert np.array_equal(rolling_median(values, 32), whole)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(values, 32, mode="edge"), 65)
    assert np.array_equal(whole, np.median(windows, axis=1))
