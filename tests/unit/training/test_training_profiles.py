"""Determinism profiles and their replay tolerances."""

import pytest
import torch

from training.errors import ProfileUnavailableError, UnknownProfileError
from training.profiles import apply_profile
from training.tolerance import PROFILE_NAMES, replay_tolerance


def test_cpu_exact_profile():
    info = apply_profile("cpu-fp32-exact")
    assert info.device == "cpu" and info.threads == 1 and info.replay_tolerance == info.segment_tolerance == 0.0
    assert not info.autocast_bf16 and torch.are_deterministic_algorithms_enabled()
    assert info.torch_version == torch.__version__ and info.hardware


def test_tolerances_grow_with_freedom_and_with_the_horizon():
    tolerances = [replay_tolerance(name) for name in PROFILE_NAMES]
    assert [t.step for t in tolerances] == sorted(t.step for t in tolerances)
    assert [t.segment for t in tolerances] == sorted(t.segment for t in tolerances)
    assert tolerances[0].step == tolerances[0].segment == 0.0 and tolerances[0].segment_steps is None
    assert all(t.step <= t.segment and t.segment_steps for t in tolerances[1:])


def test_unknown_profile():
    with pytest.raises(UnknownProfileError, match="cpu-fp32-exact"):
        apply_profile("tpu-exact")
    with pytest.raises(UnknownProfileError, match="cpu-fp32-exact"):
        replay_tolerance("tpu-exact")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without CUDA")
def test_cuda_profile_without_cuda():
    with pytest.raises(ProfileUnavailableError, match="no CUDA device"):
        apply_profile("cuda-fp32-deterministic")
