"""The economic parameters: loaded from contracts/economics.yaml, and the stake coverage the
Proof-of-Train benchmark demands."""

import json
from pathlib import Path

import pytest
import yaml

from contracts.economics import ECONOMICS, chain_params, required_coverage_bps

POT = Path(__file__).parents[3] / "bench" / "results" / "pot.json"


def test_every_parameter_says_where_its_number_comes_from():
    table = yaml.safe_load(ECONOMICS.read_text())
    for profile in table.values():
        for name, entry in profile.items():
            assert set(entry) == {"value", "source"} and entry["source"].strip(), name
    assert set(table["deployment"]) == set(chain_params().model_fields)


def test_devnet_overrides_only_what_it_names():
    deployment, devnet = chain_params(), chain_params("devnet")
    assert devnet.dispute_window == 600 < deployment.dispute_window
    assert devnet.slash_bps == deployment.slash_bps and devnet.stake_coverage_bps == deployment.stake_coverage_bps


def test_the_stake_coverage_makes_the_weakest_measured_attack_unprofitable():
    params = chain_params()
    required, attack = required_coverage_bps(json.loads(POT.read_text()), params.slash_bps)
    assert (required, attack) == (507, "skipped-steps")
    assert params.stake_coverage_bps >= required


def _row(attack, rate, spot=None, evidence="decisive", intensity=0.01):
    return {"attack": attack, "evidence": evidence, "intensity": intensity, "rate": rate, "spot_check_probability": spot}


def test_required_coverage_known_answers():
    pot = {"attacks": [
        _row("a", 0.5),  # 0.01 / (0.5 × 0.5) = 0.04
        _row("b", 0.2, spot=0.25),  # the larger of rate and spot P: 0.01 / (0.25 × 0.5) = 0.08
        _row("weak", 0.0, evidence="weak"),  # weak evidence never slashes: ignored
        _row("c", 0.1, intensity=0.1),  # other intensities: ignored
    ]}
    assert required_coverage_bps(pot, 5_000) == (800, "b")
    assert required_coverage_bps(pot, 10_000) == (400, "b")
    with pytest.raises(ValueError, match="never detected"):
        required_coverage_bps({"attacks": [_row("d", 0.0)]}, 5_000)
