from proof.checks.telemetry import TelemetryCheck, telemetry_violations
from proof.telemetry import TelemetrySample
from proof.verifier import VerifyConfig


def _trace(utils, memory=None, source="nvml"):
    memory = memory or [1000] * len(utils)
    return [
        TelemetrySample(time=float(i), source=source, device=0, utilization_pct=u,
                        memory_used_bytes=m, memory_total_bytes=4000)
        for i, (u, m) in enumerate(zip(utils, memory))
    ]


def test_plateau_with_dips_is_plausible():
    utils = [95, 97, 96, 20, 98, 97, 96, 30, 97, 98]
    memory = [100, 900, 1000, 1000, 1010, 1000, 1000, 1005, 1000, 1000]
    assert telemetry_violations(_trace(utils, memory), 8.0, VerifyConfig()) == []


def test_flat_trace_breaks_the_share_rule():
    broken = telemetry_violations(_trace([99.0] * 10), 8.0, VerifyConfig())
    assert broken == ["only 0% of utilization samples lie above the mean"]


def test_short_trace_and_unstable_gpu_memory_are_flagged():
    utils = [95, 97, 96, 20, 98, 97, 96, 30, 97, 98]
    memory = [1000, 1000, 1000, 1000, 1000, 400, 1000, 300, 1000, 1000]
    broken = telemetry_violations(_trace(utils, memory), 100.0, VerifyConfig())
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
