"""A devnet's clock moves by exactly what a caller asks, whatever anvil's wall clock did meanwhile: tests and
the settling client wait for a window's last second, and a second that ticked between two blocks would
put them past it."""

import threading

import pytest

pytestmark = pytest.mark.integration


def test_the_clock_moves_by_exactly_the_span_asked_though_the_wall_clock_ticked(chain):
    for span in (1, 100, 3600):
        before = chain.now()
        threading.Event().wait(1.2)  # anvil's own clock moves on a second or more
        chain.increase_time(span)
        assert chain.now() == before + span
