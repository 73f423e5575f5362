import math

from proof.checks.telemetry import TelemetryCheck, telemetry_violations
from proof.telemetry import TelemetrySample
from proof.verifier import VerifyConfig


PLAUSIBLE = [95, 97, 96, 20, 98, 97, 96, 30, 97, 98]  # a plateau with two dips


def _trace(utils, memory=None, source="nvml"):
    memory = memory or [1000] * len(utils)
    return [
        TelemetrySample(time=float(i), source=source, device=0, utilization_pct=u,
                        memory_used_bytes=m, memory_total_bytes=4000)
        for i, (u, m) in enumerate(zip(utils, memory))
    ]


def test_plateau_with_dips_is_plausible():
    memory = [100, 900, 1000, 1000, 1010, 1000, 1000, 1005, 1000, 1000]
    assert telemetry_violations(_trace(PLAUSIBLE, memory), 8.0, VerifyConfig()) == []


def test_flat_trace_breaks_the_share_rule():
    broken = telemetry_violations(_trace([99.0] * 10), 8.0, VerifyConfig())
    assert broken == ["only 0% of utilization samples lie above the mean"]


def test_short_trace_and_unstable_gpu_memory_are_flagged():
    memory = [1000, 1000, 1000, 1000, 1000, 400, 1000, 300, 1000, 1000]
    broken = telemetry_violations(_trace(PLAUSIBLE, memory), 100.0, VerifyConfig())
    assert len(broken) == 2 and "spans" in broken[0] and "GPU memory" in broken[1]


def test_check_is_weak_and_inconclusive_on_few_samples(context):
    ctx = context()
    ctx.telemetry = _trace([99.0, 99.0])
    result = TelemetryCheck().run(ctx)
    assert result.passed and not result.decisive and "inconclusive" in result.detail


def test_check_flags_a_fabricated_trace(context):
    ctx = context()
    ctx.telemetry = _trace([99.0] * 10)
    result = TelemetryCheck().run(ctx)
    assert not result.passed and not result.decisive


def test_a_trace_withheld_from_a_long_training_is_flagged_not_inconclusive(context):
    ctx = context()
    ctx.telemetry = _trace([99.0, 99.0])
    # one second short of the five samples a sampler taking one a second owes: still a short job
    ctx.steps = [r.model_copy(update={"seconds": 4.99 / len(ctx.steps)}) for r in ctx.steps]
    assert "inconclusive" in TelemetryCheck().run(ctx).detail
    ctx.steps = [r.model_copy(update={"seconds": 5.0 / len(ctx.steps)}) for r in ctx.steps]
    result = TelemetryCheck().run(ctx)
    assert not result.passed and not result.decisive
    assert "2 samples over 5.0s of logged training, where one every 1s makes 5" in result.detail


def test_a_resumed_worker_owes_samples_only_since_its_resume(context):
    ctx = context()
    ctx.telemetry = _trace([99.0, 99.0])
    resumed = ctx.checkpoint_steps[-2]
    ctx.steps = [r.model_copy(update={"seconds": 100.0 if r.step < resumed else 0.0}) for r in ctx.steps]
    ctx.bundle = ctx.bundle.model_copy(update={"resumes": [resumed]})
    assert "inconclusive" in TelemetryCheck().run(ctx).detail


def test_durations_summing_past_any_float_owe_an_infinite_trace_without_raising(context):
    ctx = context()
    ctx.telemetry = []
    ctx.steps = [r.model_copy(update={"seconds": 1e308}) for r in ctx.steps]
    result = TelemetryCheck().run(ctx)
    assert result.observed == 1.0 and "over infs of logged training, where one every 1s makes inf" in result.detail


def _at(times, utils=PLAUSIBLE):
    return [s.model_copy(update={"time": float(t)}) for s, t in zip(_trace(utils), times)]


def test_each_rule_at_its_edge_and_in_its_own_words():
    config = VerifyConfig()
    assert telemetry_violations(_at([100, 101, 102, 102, 104, 105, 106, 107, 108, 109]), 9.0, config) == [
        "timestamps are not finite and strictly increasing"]
    for odd in (math.nan, math.inf):  # a comparison with NaN is false either way: it must not pass for increasing
        assert telemetry_violations(_at([100, 101, 102, odd, 104, 105, 106, 107, 108, 109]), 9.0, config)[0] == \
            "timestamps are not finite and strictly increasing"
    late = _at(range(100, 110))  # spans 9 s
    assert telemetry_violations(late, 18.0, config) == []  # exactly half of the logged training
    assert telemetry_violations(late, 18.2, config) == ["trace spans 9.0s of 18.2s of logged training"]
    two_of_eight = [10, 10, 10, 10, 10, 10, 90, 90]  # exactly the least share above the mean, 25%
    assert config.telemetry_min_share == 0.25
    assert telemetry_violations(_trace(two_of_eight), 7.0, config) == []
    assert telemetry_violations(_trace([10, *two_of_eight]), 8.0, config) == [
        "only 22% of utilization samples lie above the mean"]


def test_gpu_memory_is_judged_after_the_first_half_from_the_least_number_of_samples():
    config = VerifyConfig()
    assert (config.telemetry_min_samples, config.telemetry_memory_spread) == (5, 0.2)
    ramp = [100, 300, 500, 700, 900, 1000, 1000, 1000, 1000, 1000]  # still ramping in the first half
    assert telemetry_violations(_trace(PLAUSIBLE, ramp), 9.0, config) == []
    assert telemetry_violations(_trace(PLAUSIBLE, [*ramp[:5], 1000, 800, 1000, 1000, 1000]), 9.0, config) == []  # 20%
    assert telemetry_violations(_trace(PLAUSIBLE, [*ramp[:5], 1000, 799, 1000, 1000, 1000]), 9.0, config) == [
        "GPU memory varies by 20% after the ramp"]
    five = _trace([95, 20, 96, 97, 30], [1000, 1000, 1000, 1000, 500])
    assert telemetry_violations(five, 4.0, config) == ["GPU memory varies by 50% after the ramp"]
    assert telemetry_violations(_trace([95, 20, 96, 97, 30], [1000, 1000, 1000, 1000, 500], source="os"), 4.0,
                                config) == []  # a host's memory is shared: no plateau rule


def test_the_check_reads_the_first_devices_trace_against_the_logged_training_time(context):
    ctx = context()
    ctx.steps = [r.model_copy(update={"seconds": 9.0 / len(ctx.steps)}) for r in ctx.steps]
    ctx.telemetry = _trace(PLAUSIBLE)
    result = TelemetryCheck().run(ctx)
    assert (result.passed, result.observed, result.detail) == (True, 0.0, "10 samples look like training")
    ctx.telemetry = _trace(PLAUSIBLE[:5])  # the least number of samples still judges: 4 s of 9 s logged
    result = TelemetryCheck().run(ctx)
    assert (result.passed, result.observed) == (False, 1.0)
    assert result.detail == "trace spans 4.0s of 9.0s of logged training"
    ctx.telemetry = _at([0, 0, 1, 2, 3, 4, 5, 6, 7, 8], [99.0] * 10)  # two rules at once, in order
    assert TelemetryCheck().run(ctx).detail == ("timestamps are not finite and strictly increasing; "
                                                "only 0% of utilization samples lie above the mean")
    other = [s.model_copy(update={"device": 1}) for s in _trace(PLAUSIBLE)]
    ctx.telemetry = [_trace([50.0])[0], *other]  # device 0 sampled once: device 1's trace is not its
    result = TelemetryCheck().run(ctx)
    assert (result.passed, result.observed) == (False, 1.0)
    assert result.detail == "1 samples over 9.0s of logged training, where one every 1s makes 9: the trace was withheld"
    ctx.steps = [r.model_copy(update={"seconds": 4.0 / len(ctx.steps)}) for r in ctx.steps]  # a short job
    result = TelemetryCheck().run(ctx)
    assert (result.passed, result.observed, result.threshold, result.detail) == (True, 0.0, 0.0, "inconclusive: 1 samples")


def test_what_a_trace_owes_follows_the_sampling_interval(context):
    ctx = context(config=VerifyConfig(telemetry_interval_s=2.0))
    ctx.telemetry = _trace([99.0, 99.0])
    ctx.steps = [r.model_copy(update={"seconds": 9.9 / len(ctx.steps)}) for r in ctx.steps]
    assert TelemetryCheck().run(ctx).detail == "inconclusive: 2 samples"  # owes 4: a short job
    ctx.steps = [r.model_copy(update={"seconds": 10.0 / len(ctx.steps)}) for r in ctx.steps]
    result = TelemetryCheck().run(ctx)
    assert (result.passed, result.observed) == (False, 1.0)
    assert result.detail == ("2 samples over 10.0s of logged training, where one every 2s makes 5: "
                             "the trace was withheld")
