"""Telemetry: the OS fallback where NVML is absent, and sampling that never fails the run."""

import time

import proof.telemetry as telemetry
from proof.telemetry import TelemetrySampler


def _wait_for(sampler: TelemetrySampler, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(sampler.samples) + sampler.errors < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_os_fallback_without_nvml(monkeypatch):
    monkeypatch.setattr(telemetry, "_nvml_handles", lambda: None)  # what a host without a GPU driver gives
    sampler = TelemetrySampler(interval_s=0.01)
    sampler.start()
    _wait_for(sampler, 3)
    samples = sampler.stop()
    assert len(samples) >= 3 and sampler.source == "os"
    assert all(s.source == "os" and s.power_w is None for s in samples)
    assert all(0 < s.memory_used_bytes <= s.memory_total_bytes for s in samples)
    assert [s.time for s in samples] == sorted(s.time for s in samples)


def test_real_nvml_or_fallback():
    sampler = TelemetrySampler(interval_s=0.01)
    sampler.start()
    _wait_for(sampler, 2)
    samples = sampler.stop()
    assert samples and {s.source for s in samples} == {sampler.source}


def test_failing_readings_never_fail_the_run(monkeypatch):
    def broken():
        raise OSError("no /proc here")

    monkeypatch.setattr(telemetry, "_nvml_handles", lambda: None)
    monkeypatch.setattr(telemetry, "_read_os", broken)
    sampler = TelemetrySampler(interval_s=0.01)
    sampler.start()
    _wait_for(sampler, 3)
    assert sampler.stop() == [] and sampler.errors >= 3


def test_stop_without_start_and_restart():
    sampler = TelemetrySampler(interval_s=0.01, use_nvml=False)
    assert sampler.stop() == []
    sampler.start()
    _wait_for(sampler, 1)
    first = len(sampler.stop())
    sampler.start()
    _wait_for(sampler, first + 1)
    assert len(sampler.stop()) > first
