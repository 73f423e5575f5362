"""Replay tolerances: how far an honest re-execution may land from an honest claim, per profile.

Each determinism profile (`training.profiles`) has a :class:`Tolerance` per horizon: how far,
relative to the claimed state and tensor by tensor (`proof.checks.replay.tensor_deviations`), an
honest re-execution may land from an honest claim when it runs on another GPU model or picks
other kernels. One step (the spot check, the logged losses, the run's total deviation in
`proof.checks.steps.run_deviation`) and one segment between checkpoints (the segment replay) need
different figures: training amplifies one step's reduction-order noise 1,600-fold (bfloat16) to
70,000-fold (float32) in 50 steps. Since that growth has no useful bound
over long horizons, an order on a CUDA profile may not space its checkpoints further apart than
the segment the tolerance was measured for (:attr:`Tolerance.segment_steps`).

The figures are four times the largest deviation measured between the two kernel choices of one
GPU (deterministic against autotuned, `bench.pot_noise`), rounded up to 1, 2 or 5 in their decade.
On an NVIDIA H200 with CUDA 13.0 and cuDNN 9.19 (``bench/results/device/pot_noise_h200.md``), for
the CNN on MNIST:

================================  ==========  ==============  ==========  ==============
profile                           one step    (tolerance)     50 steps    (tolerance)
================================  ==========  ==============  ==========  ==============
``cuda-fp32-deterministic``       1.9e-6      1e-5            0.13        1
``cuda-bf16-tolerant``            7.8e-5      5e-4            0.13        1
================================  ==========  ==============  ==========  ==============

The same kernels on the same GPU reproduced every step and segment bitwise under both profiles.
Over 50 steps another kernel choice moves a momentum buffer by 13% of its own size, so the segment
replay across GPU models catches only what moves a tensor about as far as its own update; single
steps, the run's total deviation and the largest-update steps carry the fine-grained checks. A
validator has to run a CUDA profile on CUDA: the same bfloat16 autocast on a CPU moves one step
by 0.06, since the CPU casts other operations.
"""

from dataclasses import dataclass

from training.errors import UnknownProfileError

PROFILE_NAMES: tuple[str, ...] = ("cpu-fp32-exact", "cuda-fp32-deterministic", "cuda-bf16-tolerant")


@dataclass(frozen=True)
class Tolerance:
    """Accepted relative distance between a re-executed state and the claimed one, per horizon."""

    step: float
    """After one step from a revealed state, for the logged loss, and for the run's total deviation."""
    segment: float
    """After a segment replayed from one checkpoint to the next."""
    segment_steps: int | None
    """The longest segment ``segment`` holds for (the order's ``checkpoint_every``); None: any length."""


_TOLERANCE = {
    "cpu-fp32-exact": Tolerance(step=0.0, segment=0.0, segment_steps=None),
    "cuda-fp32-deterministic": Tolerance(step=1e-5, segment=1.0, segment_steps=50),
    "cuda-bf16-tolerant": Tolerance(step=5e-4, segment=1.0, segment_steps=50),
}


def replay_tolerance(name: str) -> Tolerance:
    """Accepted relative L2 distances between re-executed and claimed states under a profile."""
    if name not in _TOLERANCE:
        raise UnknownProfileError(name, PROFILE_NAMES)
    return _TOLERANCE[name]
