"""The overhead benchmark at a toy size: both loops run, and the figures it writes hang together."""

import json

import pytest

from bench import pot_overhead


def test_median_interval_brackets_the_median_and_is_reproducible():
    values = [1.00, 1.01, 1.02, 1.03, 1.10, 0.99, 1.02, 1.04]
    low, high = pot_overhead._median_interval(values)
    assert min(values) <= low <= 1.02 <= high <= max(values)
    assert pot_overhead._median_interval(values) == (low, high)
    assert pot_overhead._median_interval([1.05] * 5) == (1.05, 1.05)


@pytest.mark.slow
def test_a_small_run_writes_consistent_results(tmp_path):
    results = pot_overhead.run(steps=40, k=10, repeats=2, cases=("mlp-digits",), out_dir=tmp_path)
    assert json.loads((tmp_path / "pot_overhead.json").read_text()) == results
    case = results["cases"][0]
    assert case["steps"] == 40 and case["repeats"] == 2
    low, high = case["overhead_wall_ci95"]
    q1, q3 = case["overhead_wall_quartiles"]
    assert low <= case["overhead_wall"] <= high and q1 <= case["overhead_wall"] <= q3
    assert case["proof_bytes"] > case["model_bytes"] > 0  # 5 checkpoints, journals and the bundle
