"""Hardware telemetry sampled while training: evidence that the claimed compute was spent.

A background thread reads NVML (utilization, memory, power, temperature, SM clock) for every GPU
at a fixed interval. Where NVML is absent (no driver, no GPU) it records CPU utilisation and
memory from the OS through psutil instead, marking ``source="os"``. Sampling never fails the run:
a reading that raises is counted in ``errors`` and skipped.
"""

import threading
import time
from typing import Literal

import psutil
from pydantic import BaseModel, ConfigDict, Field


class TelemetrySample(BaseModel):
    """One reading of one device. GPU fields are None for OS samples and the reverse."""

    model_config = ConfigDict(ser_json_inf_nan="strings")  # whatever a reading held, signed and read back the same

    time: float = Field(description="Unix time of the reading, seconds")
    source: Literal["nvml", "os"]
    device: int = Field(ge=-2**63, lt=2**63, description="GPU index for NVML, 0 for the host")
    utilization_pct: float = Field(description="GPU utilisation (NVML) or CPU utilisation (OS)")
    memory_used_bytes: int = Field(ge=-2**63, lt=2**63, description="Bytes in use: an int64, as the proof's Parquet stores it")
    memory_total_bytes: int = Field(ge=-2**63, lt=2**63, description="Bytes in all: an int64, as the proof's Parquet stores it")
    power_w: float | None = None
    temperature_c: float | None = None
    sm_clock_mhz: float | None = None


def _nvml_handles() -> tuple[object, list] | None:
    """NVML module and device handles, or None where NVML cannot start."""
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        return pynvml, [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    except Exception:  # no library, no driver or no device: the OS fallback takes over
        return None


def _read_nvml(pynvml, index: int, handle) -> TelemetrySample:
    util = pynvml.nvmlDeviceGetUtilizationRates(handle)
    mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
    return TelemetrySample(
        time=time.time(),
        source="nvml",
        device=index,
        utilization_pct=float(util.gpu),
        memory_used_bytes=int(mem.used),
        memory_total_bytes=int(mem.total),
        power_w=pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
        temperature_c=float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
        sm_clock_mhz=float(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)),
    )


def _read_os() -> TelemetrySample:
    mem = psutil.virtual_memory()
    return TelemetrySample(
        time=time.time(),
        source="os",
        device=0,
        utilization_pct=psutil.cpu_percent(interval=None),
        memory_used_bytes=int(mem.total - mem.available),
        memory_total_bytes=int(mem.total),
    )


class TelemetrySampler:
    """Samples telemetry every ``interval_s`` seconds on a daemon thread between start() and stop().

    ``use_nvml=False`` forces the OS fallback (for hosts whose GPU is not the training device).
    """

    def __init__(self, interval_s: float = 1.0, *, use_nvml: bool = True):
        self.interval_s = interval_s
        self.samples: list[TelemetrySample] = []
        self.errors = 0
        self.source: Literal["nvml", "os"] = "os"
        self._use_nvml = use_nvml
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start sampling; the first reading is taken immediately."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="bahen-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> list[TelemetrySample]:
        """Stop sampling, take a last reading and return every sample so far."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        return self.samples

    def _loop(self) -> None:
        nvml = _nvml_handles() if self._use_nvml else None
        if nvml is not None and not nvml[1]:
            nvml = None  # NVML works but sees no GPU: the host is all there is to observe
        self.source = "nvml" if nvml else "os"
        psutil.cpu_percent(interval=None)  # primes the counter; the first real reading follows
        while True:
            self._sample(nvml)
            if self._stop.wait(self.interval_s):
                self._sample(nvml)
                break
        if nvml:
            self._shutdown(nvml[0])

    def _sample(self, nvml) -> None:
        try:
            if nvml:
                pynvml, handles = nvml
                self.samples.extend(_read_nvml(pynvml, i, h) for i, h in enumerate(handles))
            else:
                self.samples.append(_read_os())
        except Exception:  # a failed reading is evidence lost, never a reason to stop training
            self.errors += 1

    @staticmethod
    def _shutdown(pynvml) -> None:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # shutdown failures leave nothing to clean up
            pass
