"""Stateful property tests of the contracts' invariants on the in-process EVM."""

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from contracts.chain import Chain
from tests.unit.contracts.stateful import make_machine


@pytest.mark.slow
def test_invariants_hold_over_random_sequences():
    run_state_machine_as_test(make_machine(Chain.in_process), settings=settings(
        max_examples=15, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow],
        database=None))
