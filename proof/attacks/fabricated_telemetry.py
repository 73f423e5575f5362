"""Fabricated telemetry: a block of the trace is replaced by a flat synthetic reading (99%
utilization, constant memory), as a worker writes when it has no real trace to show. A trace
shorter than eight samples is first stretched to eight readings over the logged training time."""

from proof.attacks.base import Attack, Job
from proof.telemetry import TelemetrySample

MIN_SAMPLES = 8


def _stretched(samples: list[TelemetrySample], seconds: float) -> list[TelemetrySample]:
    template = samples[0] if samples else None
    start = template.time if template else 0.0
    span = max(seconds, float(MIN_SAMPLES))
    base = template or TelemetrySample(
        time=0.0, source="os", device=0, utilization_pct=0.0, memory_used_bytes=0, memory_total_bytes=1
    )
    return [base.model_copy(update={"time": start + i * span / (MIN_SAMPLES - 1)}) for i in range(MIN_SAMPLES)]


class FabricatedTelemetry(Attack):
    name = "fabricated-telemetry"
    summary = "replaces a block of the telemetry trace with flat synthetic readings"
    weak_evidence = True

    def tamper(self, recorded, job: Job):
        samples = list(recorded.telemetry)
        if len(samples) < MIN_SAMPLES:
            samples = _stretched(samples, sum(r.seconds for r in recorded.steps))
        memory = samples[0].memory_used_bytes
        block = self.block(len(samples))
        fake = [
            s.model_copy(update={"utilization_pct": 99.0, "memory_used_bytes": memory}) if i in block else s
            for i, s in enumerate(samples)
        ]
        return recorded.model_copy(update={"telemetry": fake})
