"""Determinism profiles: how exactly a verifier can expect to reproduce a worker's training.

The order declares the profile; the worker applies it before training and the proof carries the
resulting :class:`ProfileInfo` (library versions and hardware), so a verifier knows what to expect.

- ``cpu-fp32-exact``: CPU, float32, deterministic algorithms and one intra-op thread (parallel
  reductions sum in an order that depends on the thread count), subnormal floats flushed to zero.
  Bitwise reproducible on the same CPU instruction set and library versions; replay tolerance 0.

Flushing subnormals matters for speed, not only for reproducibility: an x86 core takes a slow
microcode path for every subnormal operand, and whether a run meets them depends on its data
order. Without it the CNN on MNIST trained 2% slower in the committed order than in another
random order, at 10.1 ms a step; with it both orders took 9.8 ms. The setting is the calling
thread's, and :func:`profile_numerics` holds it only around training and loss computations: the
rest of the process (JSON parsing, signatures, statistics) keeps IEEE subnormals.
- ``cuda-fp32-deterministic``: CUDA with deterministic kernels, TF32 off. Bitwise reproducible on
  the same GPU model and CUDA stack.
- ``cuda-bf16-tolerant``: CUDA with bfloat16 autocast and the fastest kernels (cuDNN autotuning).

The replay tolerances of each profile are in `training.tolerance`.
"""

import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from pydantic import BaseModel, Field

from training.errors import ProfileUnavailableError
from training.tolerance import replay_tolerance


class ProfileInfo(BaseModel, frozen=True):
    """The determinism profile in force and the environment it ran in, as recorded in the proof."""

    name: str
    device: str = Field(description="'cpu' or 'cuda'")
    autocast_bf16: bool = Field(description="Whether forward passes run under bfloat16 autocast")
    torch_version: str
    numpy_version: str
    python_version: str
    hardware: str = Field(description="CPU model and instruction set, or the GPU name and CUDA version")
    threads: int = Field(description="Intra-op threads torch uses")
    flush_denormal: bool = Field(default=False, description="Whether subnormal floats are flushed to zero on the CPU")
    replay_tolerance: float = Field(description="Accepted relative L2 distance of a state one replayed step reaches")
    segment_tolerance: float = Field(
        default=0.0, description="Accepted relative L2 distance of the state a replayed segment reaches"
    )


def _cpu_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass  # not Linux: platform.processor() is the best description there is
    return f"{model}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}"


def _gpu_description() -> str:
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return f"{props.name}; CUDA {torch.version.cuda}; cuDNN {torch.backends.cudnn.version()}"


def apply_profile(name: str) -> ProfileInfo:
    """Set torch's determinism flags and thread count for a profile and describe the environment.

    Raises :class:`UnknownProfileError` for a name outside :data:`training.tolerance.PROFILE_NAMES` and
    :class:`ProfileUnavailableError` for a CUDA profile on a machine without CUDA.
    """
    replay_tolerance(name)
    device = "cpu" if name.startswith("cpu") else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise ProfileUnavailableError(name, "no CUDA device is visible; run it on a GPU worker")
    return emulate_profile(name, device)


def emulate_profile(name: str, device: str) -> ProfileInfo:
    """Apply a profile's numerics (precision, autocast, determinism flags) on ``device``, whatever device it names.

    :func:`apply_profile` is this on the profile's own device. On another device it serves to
    measure how far other hardware moves an honest step (``bench.pot_noise``), never to train or
    to verify.
    """
    tolerance = replay_tolerance(name)
    exact = name != "cuda-bf16-tolerant"
    if device == "cuda" and exact:
        # cuBLAS needs a fixed workspace to be deterministic (CUDA docs, "Results reproducibility").
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(exact)
    torch.backends.cudnn.deterministic = exact
    torch.backends.cudnn.benchmark = not exact
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    flush_denormal = False
    if device == "cpu":
        torch.set_num_threads(1)
        flush_denormal = torch.set_flush_denormal(True)  # False where the CPU cannot
        torch.set_flush_denormal(False)  # profile_numerics turns it on where it applies
    return ProfileInfo(
        name=name,
        device=device,
        autocast_bf16=not exact,
        torch_version=torch.__version__,
        numpy_version=np.__version__,
        python_version=sys.version.split()[0],
        hardware=_cpu_description() if device == "cpu" else _gpu_description(),
        threads=torch.get_num_threads(),
        flush_denormal=flush_denormal,
        replay_tolerance=tolerance.step,
        segment_tolerance=tolerance.segment,
    )


@contextmanager
def profile_numerics(profile: ProfileInfo) -> Iterator[None]:
    """Flush subnormal floats to zero in this thread for the block, where ``profile`` says so."""
    if not profile.flush_denormal:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
