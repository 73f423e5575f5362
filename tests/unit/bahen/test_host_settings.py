"""A host's settings held for a block: read by the stages of this process, inherited by no other."""

import os

import pytest

from bahen.settings import SettingsError, host_settings, load_settings


def test_host_settings_hold_for_the_block_and_never_reach_the_environment():
    assert load_settings().worker_attack is None
    with host_settings(worker_attack="wrong-lr", worker_attack_intensity=0.5) as held:
        assert held.worker_attack == "wrong-lr"
        settings = load_settings()
        assert (settings.worker_attack, settings.worker_attack_intensity) == ("wrong-lr", 0.5)
        assert load_settings(worker_attack="skipped-steps").worker_attack == "skipped-steps"  # explicit wins
        with host_settings(worker_attack_intensity=0.25):
            assert (load_settings().worker_attack, load_settings().worker_attack_intensity) == ("wrong-lr", 0.25)
        assert load_settings().worker_attack_intensity == 0.5
        assert not any(k.startswith("BAHEN_WORKER") for k in os.environ)
    assert load_settings().worker_attack is None


def test_a_bad_host_setting_fails_before_the_block_runs():
    with pytest.raises(SettingsError, match="worker_attack_intensity"):
        with host_settings(worker_attack="wrong-lr", worker_attack_intensity=0.0):
            pytest.fail("the block must not run")
