import math

import pytest
import torch

from proof.checks.base import Check, flatten_state, worst_of
from proof.checks.pev import PevCheck
from proof.checks.telemetry import TelemetryCheck


class _Probe(Check):
    name = "probe"
    metric = "x"

    def run(self, ctx):
        raise NotImplementedError


def test_nan_and_inf_never_pass():
    probe = _Probe()
    assert not probe.result(threshold=1.0, observed=math.nan, detail="").passed
    assert not probe.result(threshold=math.inf, observed=math.inf, detail="").passed
    assert probe.result(threshold=0.0, observed=0.0, detail="").passed


def test_worst_of_ranks_nan_worst():
    assert worst_of({}) == (0.0, None)
    assert worst_of({1: 0.5, 2: 0.1}) == (0.5, 1)
    value, key = worst_of({1: 0.5, 2: math.nan, 3: 9.0})
    assert math.isnan(value) and key == 2


def test_missing_evidence_names_each_artifact_and_why(context):
    ctx = context()
    ctx.problems = {"steps.enc": "sha256 mismatch"}
    result = _Probe().missing(["steps.enc", "telemetry.enc"], ctx)
    assert not result.passed and math.isnan(result.observed)
    assert result.detail == "cannot check: steps.enc: sha256 mismatch; telemetry.enc: not available"


def test_a_state_without_tensors_flattens_to_an_empty_float64_vector():
    for state in ({}, {"step": 3, "note": "no tensors"}):
        flat = flatten_state(state)
        assert flat.dtype == torch.float64 and flat.shape == (0,)
    assert flatten_state({"b": torch.tensor([2.0]), "a": torch.tensor([[1, 3]]), "n": 4}).tolist() == [1.0, 3.0, 2.0]


@pytest.mark.parametrize("check,evidence,artifact", [
    (PevCheck(), "steps", "step_log"),
    (TelemetryCheck(), "telemetry", "telemetry"),
])
def test_a_check_without_its_evidence_names_the_artifact(context, check, evidence, artifact):
    ctx = context()
    setattr(ctx, evidence, None)
    result = check.run(ctx)
    assert not result.passed and result.detail.startswith(f"cannot check: {getattr(ctx.bundle, artifact).name}: ")
