import hashlib

from hypothesis import given
from hypothesis import strategies as st

from proof.challenge import derive_challenge, sample_indices
from proof.verifier import VerifyConfig


def test_sample_indices_known_answer():
    # First word of SHA-256(domain || seed || "x" || 0^8), reduced mod 10, by hand:
    block = hashlib.sha256(b"bahen.challenge.v1" + b"s" + b"x" + bytes(8)).digest()
    assert sample_indices(b"s", "x", 10, 1) == [int.from_bytes(block[:8], "big") % 10]


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
