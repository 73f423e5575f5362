"""Telemetry plausibility: weak evidence that the claimed compute was spent, never decisive alone.

Rules, each counted as one violation:

- timestamps strictly increase and span at least half the logged training time;
- the share of utilization samples above the trace's mean is at least ``telemetry_min_share``:
  a real training trace sits on a high plateau with short dips (loading, checkpointing), so many
  samples lie above the mean, while a constant or flat-with-spikes fabricated trace has none or few;
- GPU memory (NVML samples only) ramps up then plateaus: after the first half of the trace it
  varies by at most ``telemetry_memory_spread`` of its peak. OS samples report the whole host's
  memory, shared with other processes, so the rule does not apply to them.

Too few samples make the check inconclusive where the job was short (it passes and says so), and
count as one violation where the training logged since the last resume should have produced more
at ``telemetry_interval_s`` (the trace was withheld).
"""

import math

import numpy as np

from proof.checks.base import Check, CheckContext
from proof.report import CheckResult


def telemetry_violations(samples, train_seconds: float, config) -> list[str]:
    """The plausibility rules a telemetry trace breaks, in words."""
    times = np.array([s.time for s in samples])
    util = np.array([s.utilization_pct for s in samples])
    broken = []
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        broken.append("timestamps are not finite and strictly increasing")
    if times[-1] - times[0] < 0.5 * train_seconds:
        broken.append(f"trace spans {times[-1] - times[0]:.1f}s of {train_seconds:.1f}s of logged training")
    share = float(np.mean(util > util.mean()))
    if share < config.telemetry_min_share:
        broken.append(f"only {share:.0%} of utilization samples lie above the mean")
    gpu = [s for s in samples if s.source == "nvml"]
    if len(gpu) >= config.telemetry_min_samples:
        plateau = np.array([s.memory_used_bytes for s in gpu[len(gpu) // 2 :]], dtype=float)
        spread = (plateau.max() - plateau.min()) / max(plateau.max(), 1.0)
        if spread > config.telemetry_memory_spread:
            broken.append(f"GPU memory varies by {spread:.0%} after the ramp")
    return broken


class TelemetryCheck(Check):
    """Plausibility rules on the telemetry trace (weak evidence)."""

    name = "telemetry"
    metric = "telemetry plausibility rules violated"
    decisive = False

    def run(self, ctx: CheckContext) -> CheckResult:
        if ctx.telemetry is None:
            return self.missing([ctx.bundle.telemetry.name], ctx)
        samples = sorted(ctx.telemetry, key=lambda s: (s.device, s.time))
        samples = [s for s in samples if s.device == samples[0].device] if samples else []
        train_seconds = sum(r.seconds for r in ctx.steps or [])
        if len(samples) < ctx.config.telemetry_min_samples:
            # A resumed worker samples only since its last resume.
            since = max(ctx.bundle.resumes, default=0)
            sampled = sum(r.seconds for r in ctx.steps or [] if r.step >= since)
            owed = sampled / ctx.config.telemetry_interval_s
            owed = math.floor(owed) if math.isfinite(owed) else owed  # finite durations may sum past any float
            if owed >= ctx.config.telemetry_min_samples:
                return self.result(threshold=0.0, observed=1.0, detail=(
                    f"{len(samples)} samples over {sampled:.1f}s of logged training, where one every "
                    f"{ctx.config.telemetry_interval_s:g}s makes {owed}: the trace was withheld"))
            return self.result(threshold=0.0, observed=0.0, detail=f"inconclusive: {len(samples)} samples")
        broken = telemetry_violations(samples, train_seconds, ctx.config)
        detail = "; ".join(broken) or f"{len(samples)} samples look like training"
        return self.result(threshold=0.0, observed=float(len(broken)), detail=detail)
