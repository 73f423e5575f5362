import math

from proof.checks.base import Check, worst_of


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
