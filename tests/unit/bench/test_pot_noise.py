"""The replay-noise benchmark at a toy size: exact profiles re-execute bitwise, and the table says so."""

import json

from bench import pot_noise


def test_a_rerun_is_bitwise_and_every_row_names_its_kinds(tmp_path):
    result = pot_noise.main(["--job", "digits", "--epochs", "2", "--spots", "3", "--segments", "1",
                             "--profiles", "cpu-fp32-exact", "cuda-bf16-tolerant", "--out-dir", str(tmp_path)])
    assert json.loads((tmp_path / "pot_noise.json").read_text()) == result
    exact, tolerant = result["profiles"]
    assert exact["tolerance"] == exact["noise"] == exact["supported"] == {"step": 0.0, "segment": 0.0}
    assert not exact["exceeded"]
    assert 0 < tolerant["tolerance"]["step"] <= tolerant["tolerance"]["segment"]
    for profile in (exact, tolerant):
        assert profile["path_length"] >= profile["displacement"] > 0  # the triangle inequality, step by step
        rows = {(r["source"], r["horizon"]): r for r in profile["rows"]}
        assert set(rows) == {(s, h) for s in pot_noise.sources_for(profile["profile"]) for h in ("step", "segment")}
        assert rows["rerun", "step"]["max"] == rows["rerun", "segment"]["max"] == 0.0
        assert rows["rerun", "step"]["loss_error"] == rows["rerun", "step"]["run_estimate"] == 0.0
        assert rows["rerun", "segment"]["run_estimate"] is None  # the bound reads single steps
        assert rows["threads", "step"]["threads"] == 4 and rows["rerun", "step"]["threads"] == 1
        for row in profile["rows"]:
            assert set(row["kinds"]) == {"weights", "momentum_buffer"}  # SGD with momentum: the weights and one moment
            assert row["samples"] == (3 if row["horizon"] == "step" else 1)
            assert row["steps_each"] == (1 if row["horizon"] == "step" else 50 if profile is tolerant else 10)
    assert "(emulating the profile's numerics)" in tolerant["hardware"]
    assert "| rerun | step (1) | 3 | 0 | 0 | 0 | 0 |  |" in (tmp_path / "pot_noise.md").read_text()


def test_a_cuda_profile_is_emulated_only_where_no_gpu_is_visible(monkeypatch):
    monkeypatch.setattr(pot_noise.torch.cuda, "is_available", lambda: False)
    assert pot_noise.home_device("cuda-bf16-tolerant") == "cpu"
    assert pot_noise.sources_for("cuda-bf16-tolerant") == ["rerun", "threads"]
    monkeypatch.setattr(pot_noise.torch.cuda, "is_available", lambda: True)
    assert pot_noise.home_device("cuda-bf16-tolerant") is None
    assert pot_noise.sources_for("cuda-bf16-tolerant") == ["rerun", "kernels", "cpu"]
    assert pot_noise.home_device("cpu-fp32-exact") is None
    assert pot_noise.sources_for("cpu-fp32-exact") == ["rerun", "threads"]


def test_the_supported_tolerance_is_the_margin_over_the_noise_verifiers_meet_rounded_up():
    rows = [
        {"source": "rerun", "horizon": "step", "max": 0.0, "loss_error": 0.0},
        {"source": "kernels", "horizon": "step", "max": 2.01e-6, "loss_error": 1e-7},
        {"source": "kernels", "horizon": "segment", "max": 0.0422, "loss_error": 0.0},
        {"source": "cpu", "horizon": "step", "max": 0.108, "loss_error": 0.02},  # no validator replays CUDA on a CPU
        {"source": "threads", "horizon": "segment", "max": 0.9, "loss_error": 0.0},
    ]
    assert pot_noise.verifier_noise(rows, "cpu-fp32-exact") == {"step": 2.01e-6, "segment": 0.0422}
    assert pot_noise.supported_tolerance({"step": 2.01e-6, "segment": 0.0422}) == {"step": 1e-5, "segment": 0.2}
    assert pot_noise.verifier_noise([{**rows[1], "loss_error": 3e-6}], "cpu-fp32-exact") == {"step": 3e-6}
    assert pot_noise.supported_tolerance({"step": 0.0}) == {"step": 0.0}
    assert [pot_noise._round_up(v) for v in (1e-5, 1.01e-5, 0.26, 0.5, 3.0)] == [1e-5, 2e-5, 0.5, 0.5, 5.0]


def test_each_profiles_tolerance_is_the_one_its_calibration_supports():
    """The tolerances in force are read off the calibration runs kept in bench/results: the H200 run
    for the CUDA profiles, this host's for the exact CPU profile; a new calibration changes both."""
    from pathlib import Path

    from training.tolerance import PROFILE_NAMES, replay_tolerance

    results = Path(pot_noise.__file__).parent / "results"
    calibrations = {p["profile"]: p for path in ("pot_noise.json", "device/pot_noise_h200.json")
                    for p in json.loads((results / path).read_text())["profiles"]}  # the GPU run wins
    for name in PROFILE_NAMES:
        calibration, tolerance = calibrations[name], replay_tolerance(name)
        supported = pot_noise.supported_tolerance(pot_noise.verifier_noise(calibration["rows"], name))
        assert (tolerance.step, tolerance.segment) == (supported["step"], supported["segment"]), name
        if tolerance.segment_steps is not None:
            assert {r["steps_each"] for r in calibration["rows"] if r["horizon"] == "segment"} == {tolerance.segment_steps}
