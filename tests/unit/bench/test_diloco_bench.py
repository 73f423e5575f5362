"""The DiLoCo benchmark's arithmetic, and a reduced run that writes its figures."""

import json

import pytest

from bench.diloco import bytes_per_worker, main, time_to_loss


def test_bytes_compare_one_pseudo_gradient_a_round_with_a_ring_all_reduce_every_step():
    # 1,000 float32 parameters, 4 workers, 10 rounds of 75 steps: DiLoCo sends 4,000 bytes a round;
    # a ring all-reduce sends 2 (W-1)/W = 1.5 models a step
    assert bytes_per_worker(1000, 4, 10, 75) == {"diloco": 40_000, "data_parallel": 4_500_000, "ratio": 112.5}
    assert bytes_per_worker(1000, 1, 10, 75) == {"diloco": 0, "data_parallel": 0, "ratio": None}


def test_time_to_loss_is_the_first_time_at_or_under_the_target():
    curve = [(0.0, 2.0), (1.0, 1.2), (2.0, 0.9), (3.0, 1.0), (4.0, 0.8)]
    assert time_to_loss(curve, 1.0) == 2.0
    assert time_to_loss(curve, 0.8) == 4.0
    assert time_to_loss(curve, 0.5) is None


@pytest.mark.slow
def test_a_reduced_run_writes_its_figures_and_excludes_the_attacker(tmp_path):
    assert main(["--out-dir", str(tmp_path), "--workers", "2", "--rounds", "1", "--inner-steps", "5", "--attacks", "copied",
                 "--attack-rounds", "1", "--holdout", "200"]) == 0
    result = json.loads((tmp_path / "diloco_mnist.json").read_text())
    assert result["attacks"]["copied"]["rules"] == ["copy"]
    assert result["honest"]["rejected"] == 0
    assert (tmp_path / "diloco_mnist.png").stat().st_size > 0
