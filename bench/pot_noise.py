"""Honest replay noise per determinism profile: the measurements each replay tolerance rests on.

A verifier re-executes a worker's steps and accepts a state within the profile's tolerance of the
claimed one, tensor by tensor (`proof.checks.replay.tensor_deviations`). This measures how far an
honest re-execution lands from an honest claim when only the hardware or the kernels differ:

- ``rerun``: the same device, flags and process: a verifier on the worker's hardware;
- ``kernels``: the same GPU with the other kernel choice: nondeterministic kernels and autotuned
  algorithms under a deterministic profile, deterministic ones under a tolerant profile, as
  another GPU model or library build makes;
- ``threads`` (where no GPU is visible): four intra-op threads instead of one: another reduction
  order, the CPU's stand-in for another kernel choice;
- ``cpu`` (CUDA profiles): the profile's numerics on the CPU: other hardware altogether.

For steps sampled across an honest training it re-executes one step (the spot check's horizon)
and one segment (the segment replay's; as long as the profile lets an order space its
checkpoints, `training.tolerance.Tolerance.segment_steps`, else ``checkpoint_every``) from the
claimed state, and
records per kind of tensor (the weights, each optimizer moment) the largest deviation, which
tensor it was, and the relative loss error. It also reports the honest run's path length (the
sum of its steps' update sizes) against its displacement: a worker that bends every step by a
share ``s`` in one direction moves the model ``s`` times the path, which the spot check's bound
on the run's total deviation (`proof.checks.steps.run_deviation`) holds to the tolerance times
the displacement. The tolerance a profile can afford is the largest
deviation of the sources its verifiers may meet, with a margin: the table shows, per horizon, the
tolerance in force and the one this measurement supports (:func:`supported_tolerance`), and the
run fails loudly where honest noise exceeds the tolerance in force. What a tolerance admits beyond
the noise is room an attacker has.

Writes ``bench/results/pot_noise.json`` and ``pot_noise.md``.
Reduced run: ``python -m bench.pot_noise --job digits --spots 4 --segments 1``.
"""

import argparse
import json
import math
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from bench.pot import JOBS, RESULTS, job_data
from proof.checks.base import flatten_weights
from proof.checks.replay import tensor_deviations
from proof.checks.steps import total_deviation, weight_distance
from training.checkpoint import Checkpoint
from training.state import decode_state
from training.tolerance import replay_tolerance
from training.trainer import Stepper, TrainSpec, steps_per_epoch


@contextmanager
def _other_kernels() -> Iterator[None]:
    """The other kernel choice: nondeterministic kernels with cuDNN autotuning where the profile asks
    for deterministic ones, deterministic ones (warning where an operation has none) where it does not."""
    saved = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(not saved[0], warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = not saved[1], not saved[2]
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1], saved[2]


@contextmanager
def _threads(count: int) -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextmanager
def _unchanged() -> Iterator[None]:
    yield


# source -> (device to step on, or None for the profile's; the settings it runs under)
SOURCES: dict[str, tuple[str | None, Callable[[], object]]] = {
    "rerun": (None, _unchanged),
    "kernels": (None, _other_kernels),
    "threads": (None, lambda: _threads(4)),
    "cpu": ("cpu", _unchanged),
}


def home_device(profile: str) -> str | None:
    """Where ``profile``'s honest training runs here: its own device (None), or the CPU emulating its numerics."""
    return None if profile.startswith("cpu") or torch.cuda.is_available() else "cpu"


def sources_for(profile: str) -> list[str]:
    """The sources a verifier of ``profile`` may meet that this machine can produce."""
    return ["rerun", "threads"] if home_device(profile) or profile.startswith("cpu") else ["rerun", "kernels", "cpu"]


# the sources a profile's verifiers meet: the CPU profile pins its threads, a CUDA profile needs CUDA
VERIFIER_SOURCES = {"rerun", "kernels"}
MARGIN = 4


def verifier_noise(rows: list[dict], profile: str) -> dict[str, float]:
    """Per horizon, the largest deviation (loss error included) of the sources a verifier of
    ``profile`` meets; where a CUDA profile is emulated on the CPU, the thread count stands in for
    the kernel choice."""
    sources = VERIFIER_SOURCES | ({"threads"} if home_device(profile) else set())
    worst: dict[str, float] = {}
    for row in rows:
        if row["source"] in sources:
            worst[row["horizon"]] = max(worst.get(row["horizon"], 0.0), row["max"], row["loss_error"])
    return worst


def supported_tolerance(noise: dict[str, float]) -> dict[str, float]:
    """Per horizon, :data:`MARGIN` times the verifiers' noise, rounded up to 1, 2 or 5 in its decade."""
    return {horizon: _round_up(MARGIN * value) for horizon, value in noise.items()}


def _round_up(value: float) -> float:
    if value <= 0:
        return 0.0
    decade = 10.0 ** math.floor(math.log10(value))
    return next(float(f"{m * decade:.0e}") for m in (1, 2, 5, 10) if m * decade >= value * (1 - 1e-9))


def _kind(key: str) -> str:
    return "weights" if key.startswith("weights.") else key.split(".", 1)[0]


def _advance(stepper: Stepper, start: Checkpoint, steps: int) -> tuple[Checkpoint, list[float]]:
    """The state ``steps`` steps after ``start`` and the steps' losses."""
    state, losses = start, []
    for _ in range(steps):
        encoded, loss = stepper.step(state)
        state = decode_state(encoded.to_bytes())
        losses.append(loss)
    return state, losses


def honest_run(stepper: Stepper, stop: int, keep: set[int]) -> tuple[dict[int, Checkpoint], list[float], float, float]:
    """The honest states after each step in ``keep`` (0 is the initial one), every step's loss, the
    run's path length and its displacement.

    The path length is the sum of every step's update size (the distance its trainable weights
    moved), the displacement the distance from the initial weights to those after ``stop`` steps.
    """
    names = stepper.form.trainable
    initial = decode_state(stepper.initial().to_bytes())
    state, states, losses, path = initial, {0: initial}, [], 0.0
    for _ in range(stop):
        encoded, loss = stepper.step(state)
        after = decode_state(encoded.to_bytes())
        path += weight_distance(state.model_state, after.model_state, names)
        state = after
        losses.append(loss)
        if state.step in keep:
            states[state.step] = state
    return states, losses, path, weight_distance(initial.model_state, state.model_state, names)


def measure(spec: TrainSpec, X: np.ndarray, y: np.ndarray, spots: int, segments: int) -> dict:
    """Noise of every source this machine can produce for ``spec``'s profile, at both horizons."""
    total = steps_per_epoch(spec, len(X)) * spec.epochs
    tolerance = replay_tolerance(spec.profile)
    every = tolerance.segment_steps or spec.checkpoint_every
    spot_steps = sorted({int(t) for t in np.linspace(0, total - 2, spots)})
    segment_starts = sorted({int(t) // every * every for t in np.linspace(0, total - every - 1, segments)})
    horizons = {"step": [(t, 1) for t in spot_steps], "segment": [(a, every) for a in segment_starts]}
    needed = {t for pairs in horizons.values() for a, n in pairs for t in (a, a + n)}
    home = home_device(spec.profile)
    reference = Stepper(spec, X, y, device=home)
    states, claimed_loss, path, displacement = honest_run(reference, total, needed)
    names = reference.form.trainable
    rows = []
    for source in sources_for(spec.profile):
        device, settings = SOURCES[source]
        stepper = Stepper(spec, X, y, device=device or home)
        for horizon, pairs in horizons.items():
            worst: dict[str, tuple[float, str, int]] = {}
            loss_error, threads, deviations = 0.0, 0, []
            started = time.perf_counter()
            for a, n in pairs:
                with settings():
                    reached, losses = _advance(stepper, states[a], n)
                    threads = torch.get_num_threads()
                for key, value in tensor_deviations(states[a], states[a + n], reached).items():
                    kind = _kind(key)
                    if value > worst.get(kind, (-1.0,))[0]:
                        worst[kind] = (value, key, a)
                loss_error = max(loss_error, abs(losses[0] - claimed_loss[a]) / max(abs(claimed_loss[a]), 1e-12))
                deviations.append(flatten_weights(states[a + n].model_state, names) - flatten_weights(reached.model_state, names))
            # the spot check's estimate of the run's total deviation (run_deviation), from these steps
            run_estimate = total_deviation(deviations, len(pairs), total, displacement) if horizon == "step" else None
            rows.append({
                "source": source, "horizon": horizon, "samples": len(pairs), "steps_each": pairs[0][1],
                "threads": threads,
                "kinds": {k: {"max": v, "tensor": key, "at_step": a} for k, (v, key, a) in sorted(worst.items())},
                "max": max((v for v, _, _ in worst.values()), default=0.0),
                "loss_error": loss_error, "run_estimate": run_estimate,
                "seconds": time.perf_counter() - started,
            })
            print(f"[pot-noise] {spec.profile} {source} {horizon}: max {rows[-1]['max']:.3g} (loss {loss_error:.3g}"
                  + ("" if run_estimate is None else f", run total {run_estimate:.3g}") + ")", flush=True)
    hardware = reference.profile.hardware + (" (emulating the profile's numerics)" if home else "")
    in_force = {"step": tolerance.step, "segment": tolerance.segment}
    noise = verifier_noise(rows, spec.profile)
    exceeded = [h for h in in_force if noise[h] > in_force[h]]
    if exceeded:
        print(f"[pot-noise] {spec.profile}: honest noise exceeds the tolerance in force at the {' and '.join(exceeded)} "
              f"horizon: honest workers would be rejected", flush=True)
    return {"profile": spec.profile, "hardware": hardware, "steps": total,
            "path_length": path, "displacement": displacement,
            "tolerance": in_force, "noise": noise, "supported": supported_tolerance(noise), "exceeded": exceeded,
            "rows": rows}


def markdown(result: dict) -> str:
    lines = [f"### Honest replay noise: {result['job']} ({result['model']}, {result['samples']} samples)", ""]
    for profile in result["profiles"]:
        lines += [f"- {profile['profile']} on {profile['hardware']}: {profile['steps']} steps in the training, whose "
                  f"path is {profile['path_length'] / profile['displacement']:.1f}x its displacement; tolerance "
                  + ", ".join(f"{h} {profile['tolerance'][h]:g} (the noise supports {profile['supported'][h]:g})"
                              for h in profile["tolerance"])
                  + ("; **honest noise exceeds it**" if profile["exceeded"] else ""), ""]
        kinds = sorted({k for row in profile["rows"] for k in row["kinds"]})
        lines += ["| source | horizon | samples | " + " | ".join(kinds) + " | loss | run total | worst tensor |",
                  "| --- | --- | ---: | " + " | ".join("---:" for _ in kinds) + " | ---: | ---: | --- |"]
        for row in profile["rows"]:
            cells = [f"{row['kinds'][k]['max']:.3g}" if k in row["kinds"] else "" for k in kinds]
            worst = max(row["kinds"].values(), key=lambda v: v["max"]) if row["kinds"] else None
            where = f"{worst['tensor']} (step {worst['at_step']})" if worst and worst["max"] > 0 else ""
            run = "" if row["run_estimate"] is None else f"{row['run_estimate']:.3g}"
            lines.append(f"| {row['source']} | {row['horizon']} ({row['steps_each']}) | {row['samples']} | "
                         + " | ".join(cells) + f" | {row['loss_error']:.3g} | {run} | {where} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", choices=sorted(JOBS), default="mnist")
    parser.add_argument("--profiles", nargs="+", default=["cpu-fp32-exact"], help="determinism profiles to measure")
    parser.add_argument("--spots", type=int, default=24, help="single steps re-executed per source")
    parser.add_argument("--segments", type=int, default=4, help="segments re-executed per source")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    profiles = []
    for profile in args.profiles:
        spec, X, y = job_data(args.job, args.epochs, args.samples, profile)
        profiles.append(measure(spec, X, y, args.spots, args.segments))
    result = {"benchmark": "pot_noise", "job": args.job, "model": spec.model, "samples": len(X),
              "torch": torch.__version__, "python": platform.python_version(), "profiles": profiles,
              "seconds": time.perf_counter() - started}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "pot_noise.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    (args.out_dir / "pot_noise.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
