"""Proof-of-Train overhead: training cost with the full recorder against a bare PyTorch loop.

Both loops train the same model on the same batches with the same optimizer and determinism
profile (its numerics included), in the same process and under the same allocator setting
(``training.allocator``), alternating bare and recorded runs; the first of each pair alternates
too, so a drift in the machine's speed hits both sides. Each run measures the CPU time of the
whole process (``time.process_time``: every thread, so the recorder's background hashing and
storing count) and the wall time. The overhead is the median over pairs of recorded / bare, for
CPU time and for wall time, and the recorder's cost per step in µs is the median over pairs of
recorded − bare: the ratio depends on how long the platform takes for a bare step, the absolute
cost says what the ratio would be for another step time. The wall ratio comes with its quartiles
(the spread: on a shared machine wall time partly measures the neighbours) and a 95% bootstrap
interval of its median, which says whether a figure near the target is under it or only within the
noise. Under a ``cuda-*`` profile (``--profile``) both loops train on the GPU and wall time is the
measure: kernels do not show in process CPU time. The recorded run hashes and spools every step's
state, stores a checkpoint (and its journal) every k steps through a put that encrypts with
AES-256-GCM and writes to a temporary directory, with telemetry on. Reported: the overheads,
steps/s of each, and the proof's storage relative to the final model. Each run also counts the
page faults of the training thread per step, and the first pair's wall overhead is reported on its
own: the first recorded run of a process is a worker's case (one order per process), and memory it
touches for the first time shows there, not in a median over pairs.

On a host whose speed drifts by several percent from one run to the next, whole alternating runs
cannot resolve a 3% target. The interleaved measurement (``--interleaved`` runs) therefore runs
the bare loop for k steps after every k steps of a recorded run, in the same process and thread,
and takes the median over blocks of recorded / bare, with its 95% bootstrap interval: each pair of
blocks runs within seconds, so the drift cancels. It measures the steady state, each recorded
block holding one checkpoint; the run's start and close are left out (the paired runs count them).
The recorder's threads may still be hashing and storing a block's states and checkpoint while the
bare block after it runs. A worker's loop leaves them a core too, but that work is real: as many
runs again therefore wait, at the end of each recorded block, until the recorder's threads have
done all they were handed (``Recorder.wait_idle``), and count that wait in the block. In
expectation the drained figure is the upper end of the steady-state overhead (the wait also
forgoes the overlap a worker has) and the plain one the lower end.

A probe then separates the cost of the recorder's per-step state copy from the copy itself: the
bare loop again, copying the weights and optimizer state after every step either into new memory
kept for a few batches of steps (as the recorder's copies wait for its state thread) or always
into the same block, each against the bare loop in alternating runs. The copy is the same work in
both; new memory is not in the core's cache, and writing it evicts the training step's own data.
"""

import argparse
import hashlib
import io
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from proof.bundle import build_bundle
from proof.recorder import STATE_BATCH, Recorder
from proof.telemetry import TelemetrySampler
from storage.refs import ArtifactRef
from training.allocator import tune_allocator
from training.datasets import load_dataset, table_to_arrays
from training.hooks import TrainHooks
from training.models import build_model
from training.order import batch_order
from training.profiles import apply_profile, profile_numerics
from training.trainer import TrainSpec, steps_per_epoch, train

DEFAULT_K = 100
PROBE_KEPT = 3 * STATE_BATCH  # copies the probe keeps: three of the recorder's batches of states
RESULTS_DIR = Path(__file__).parent / "results"
CASES = {
    "mlp-digits": dict(model="mlp", dataset="digits", split="all", batch_size=32),
    "cnn-mnist": dict(model="cnn", dataset="mnist", split="train", batch_size=64),
    # the language model of `bahen demo --workload gpt`: 64-byte windows of the plays, AdamW
    "gpt-shakespeare": dict(model="gpt", dataset="shakespeare", split="all", batch_size=32, num_classes=256,
                            optimizer="adamw", lr=3e-3),
}
DEFAULT_CASES = ("mlp-digits", "cnn-mnist")


class EncryptingDirStore:
    """put = AES-256-GCM encrypt, then write to a directory (temp file + rename); counts stored bytes."""

    def __init__(self, directory: Path):
        self.directory, self.key, self.stored_bytes = directory, AESGCM(AESGCM.generate_key(256)), 0

    def put(self, name: str, data: bytes) -> ArtifactRef:
        nonce = os.urandom(12)
        blob = nonce + self.key.encrypt(nonce, data, name.encode())
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(blob)
        os.replace(tmp, self.directory / name)
        self.stored_bytes += len(blob)
        return ArtifactRef(name=name, md5=hashlib.md5(blob).hexdigest(), sha256=hashlib.sha256(blob).hexdigest(),
                           size=len(blob))


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _thread_faults() -> int:
    """Page faults of the calling thread so far (Linux counts them per thread)."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


class _BareLoop:
    """A textbook PyTorch loop over the same batches as the recorded run, steppable in blocks.

    The batches are the committed order's, as index tensors made before any clock starts: both
    loops do the same arithmetic on the same data (how fast a step runs can depend on its data).
    ``after_step`` (the probe's copies) runs after every optimizer step.
    """

    def __init__(self, spec: TrainSpec, X: np.ndarray, y: np.ndarray,
                 after_step: Callable[[torch.nn.Module, torch.optim.Optimizer], None] | None = None):
        self.profile = apply_profile(spec.profile)
        self.device = self.profile.device
        model = build_model(spec.model, input_shape=spec.input_shape, num_classes=spec.num_classes, seed=spec.seed)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=spec.lr, momentum=spec.momentum)
        self.X, self.y = torch.as_tensor(X, device=self.device), torch.as_tensor(y, device=self.device)
        self.batches = [torch.as_tensor(indices, device=self.device) for epoch in range(spec.epochs)
                        for indices in batch_order(spec.seed, spec.task, epoch, len(X), spec.batch_size)]
        self.after_step, self.done = after_step, 0
        _synchronize(self.device)

    def run(self, steps: int) -> None:
        """The next ``steps`` steps (the caller sets the profile's numerics and synchronizes)."""
        for idx in self.batches[self.done:self.done + steps]:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.profile.autocast_bf16):
                loss = torch.nn.functional.cross_entropy(self.model(self.X[idx]), self.y[idx])
            loss.backward()
            self.optimizer.step()
            if self.after_step is not None:
                self.after_step(self.model, self.optimizer)
        self.done += steps


def _bare_loop(spec: TrainSpec, X: np.ndarray, y: np.ndarray,
               after_step: Callable[[torch.nn.Module, torch.optim.Optimizer], None] | None = None,
               ) -> tuple[float, float, int]:
    """The whole bare loop; returns wall and process CPU seconds, and page faults of the training thread."""
    loop = _BareLoop(spec, X, y, after_step)
    with profile_numerics(loop.profile):
        started, cpu, faults = time.perf_counter(), time.process_time(), _thread_faults()
        loop.run(len(loop.batches))
        _synchronize(loop.device)
        return time.perf_counter() - started, time.process_time() - cpu, _thread_faults() - faults


class _Interleaved(TrainHooks):
    """Hooks for a recorded run that run the bare loop for ``block`` steps after every ``block`` recorded steps.

    Each recorded block and the bare block after it run within a few seconds of each other, so a
    drift in the machine's speed, which whole alternating runs feel as noise, cancels out. A
    recorded block is timed from the end of the bare block before it to the ``on_update`` of its
    last step, so it holds the recorder's work for ``block`` steps (records and states are made a
    few steps late, checkpoints every k steps); the run's start and close are not in any block.
    With ``drain`` (a recorder's ``wait_idle``) the block ends when the recorder's threads are idle.
    """

    def __init__(self, bare: _BareLoop, block: int, drain: Callable[[], None] | None = None):
        self.bare, self.block, self.drain = bare, block, drain
        self.recorded: list[float] = []
        self.bare_times: list[float] = []
        self._mark: float | None = None

    def on_batch(self, step, indices, X, y):
        if self._mark is None:
            self._mark = time.perf_counter()
        return X, y

    def on_update(self, step, model, optimizer):
        if (step + 1) % self.block:
            return
        if self.drain is not None:
            self.drain()
        _synchronize(self.bare.device)
        started = time.perf_counter()
        self.recorded.append(started - self._mark)
        self.bare.run(self.block)
        _synchronize(self.bare.device)
        self._mark = time.perf_counter()
        self.bare_times.append(self._mark - started)


class _StateCopies:
    """After each step, one copy of the weights and optimizer state, like the recorder's per-step copy.

    ``fresh``: each copy goes to new memory and is kept until :data:`PROBE_KEPT` newer ones exist
    (the recorder's copies wait for its state thread in batches); otherwise every copy overwrites
    one block, which stays in the core's cache.
    """

    def __init__(self, fresh: bool):
        self.fresh, self.kept, self.block = fresh, [], None

    def __call__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        with torch.no_grad():
            views = [t.reshape(-1).view(torch.uint8) for t in
                     (*model.parameters(), *(v for s in optimizer.state.values() for v in s.values()))]
        if self.fresh:
            self.kept.append(torch.cat(views))
            del self.kept[:-PROBE_KEPT]
        else:
            self.block = torch.cat(views) if self.block is None else torch.cat(views, out=self.block)


def _copy_probe(spec: TrainSpec, X: np.ndarray, y: np.ndarray, repeats: int) -> dict:
    """Wall overhead of the per-step state copy into new memory and into one block, each against the bare loop."""
    runs: dict[str, list[float]] = {"bare": [], "fresh": [], "same": []}
    for i in range(repeats):
        order = ["bare", "fresh", "same"] if i % 2 == 0 else ["same", "fresh", "bare"]
        for kind in order:
            hook = None if kind == "bare" else _StateCopies(fresh=kind == "fresh")
            runs[kind].append(_bare_loop(spec, X, y, after_step=hook)[0])
    return {
        f"copy_{kind}_overhead_wall": round(statistics.median(t / b for t, b in zip(runs[kind], runs["bare"])) - 1, 4)
        for kind in ("fresh", "same")
    }


def _recorded(spec: TrainSpec, X: np.ndarray, y: np.ndarray,
              hooks: Callable[[Recorder], TrainHooks] | None = None) -> tuple[float, float, int, int, int]:
    """Wall and CPU seconds, training-thread faults for train + close with the full recorder; proof and model bytes.

    ``hooks`` makes the run's training hooks from its recorder.
    """
    with tempfile.TemporaryDirectory() as directory:
        store = EncryptingDirStore(Path(directory))
        started, cpu, faults = time.perf_counter(), time.process_time(), _thread_faults()
        recorder = Recorder(put=store.put, telemetry=TelemetrySampler(interval_s=1.0))
        result = train(spec, X, y, recorder=recorder, hooks=hooks(recorder) if hooks is not None else None)
        recorded = recorder.close()
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        faults = _thread_faults() - faults
        recorder.spool.close()
        build_bundle(recorded, order_id="bench", task=0, spec=spec, put=store.put)
        model_bytes = io.BytesIO()
        torch.save(result.final_state, model_bytes)
        return seconds, cpu_seconds, faults, store.stored_bytes, len(model_bytes.getvalue())


def _interleaved(spec: TrainSpec, X: np.ndarray, y: np.ndarray, runs: int, block: int) -> dict:
    """Wall overhead from recorded and bare blocks of ``block`` steps run one after the other inside recorded runs.

    ``runs`` recorded runs of each kind, alternating: plain, and drained (each recorded block ends
    when the recorder's threads are idle).
    """
    ratios: dict[str, list[float]] = {"interleaved": [], "interleaved_drained": []}
    for _ in range(runs):
        for kind, values in ratios.items():
            values += _block_ratios(spec, X, y, block, drained=kind == "interleaved_drained")
    results = {"interleaved_runs": runs, "interleaved_block": block, "interleaved_blocks": len(ratios["interleaved"])}
    for kind, values in ratios.items():
        low, high = _median_interval(values)
        results[f"overhead_wall_{kind}"] = round(statistics.median(values) - 1, 4)
        results[f"overhead_wall_{kind}_ci95"] = [round(low - 1, 4), round(high - 1, 4)]
    return results


def _block_ratios(spec: TrainSpec, X: np.ndarray, y: np.ndarray, block: int, drained: bool) -> list[float]:
    """Recorded / bare time of each pair of blocks of one interleaved recorded run."""
    made: list[_Interleaved] = []

    def hooks(recorder: Recorder) -> _Interleaved:
        made.append(_Interleaved(_BareLoop(spec, X, y), block, recorder.wait_idle if drained else None))
        return made[0]

    _recorded(spec, X, y, hooks)
    return [r / b for r, b in zip(made[0].recorded, made[0].bare_times)]


def _case(name: str, steps: int, k: int, repeats: int, profile: str, probe_repeats: int, interleaved: int) -> dict:
    case = CASES[name]
    X, y, shape = table_to_arrays(load_dataset(case["dataset"], split=case["split"]))
    per_epoch = len(X) // case["batch_size"]
    epochs = max(1, -(-steps // per_epoch))
    if epochs == 1:  # one partial epoch: train on just enough samples for `steps` steps
        X, y = X[:steps * case["batch_size"]], y[:steps * case["batch_size"]]
    spec = TrainSpec(model=case["model"], input_shape=shape, num_classes=case.get("num_classes", 10),
                     optimizer=case.get("optimizer", "sgd"), lr=case.get("lr", 0.05), batch_size=case["batch_size"],
                     epochs=epochs, seed=1, checkpoint_every=k, profile=profile)
    total = steps_per_epoch(spec, len(X)) * epochs
    _bare_loop(spec.model_copy(update={"epochs": 1}), X, y)  # warm-up: allocator, oneDNN kernels
    pairs, stored, model_size = [], 0, 0
    for i in range(repeats):
        if i % 2 == 0:
            bare = _bare_loop(spec, X, y)
            wall, cpu, faults, stored, model_size = _recorded(spec, X, y)
        else:
            wall, cpu, faults, stored, model_size = _recorded(spec, X, y)
            bare = _bare_loop(spec, X, y)
        pairs.append((bare, (wall, cpu, faults)))
    wall_ratios = [r[0] / b[0] for b, r in pairs]
    quartiles = statistics.quantiles(wall_ratios, n=4) if repeats > 1 else [wall_ratios[0]] * 3
    low, high = _median_interval(wall_ratios)
    return {
        "case": name, "steps": total, "checkpoint_every": k, "repeats": repeats,
        "overhead_cpu": round(statistics.median(r[1] / b[1] for b, r in pairs) - 1, 4),
        "overhead_wall": round(statistics.median(wall_ratios) - 1, 4),
        "overhead_wall_quartiles": [round(quartiles[0] - 1, 4), round(quartiles[2] - 1, 4)],
        "overhead_wall_ci95": [round(low - 1, 4), round(high - 1, 4)],
        "overhead_wall_first_pair": round(wall_ratios[0] - 1, 4),  # the process's first recorded run: one sample
        "recorder_wall_us_per_step": round(1e6 * statistics.median(r[0] - b[0] for b, r in pairs) / total, 1),
        "recorder_cpu_us_per_step": round(1e6 * statistics.median(r[1] - b[1] for b, r in pairs) / total, 1),
        "bare_steps_per_s": round(total / statistics.median(b[0] for b, _ in pairs), 2),
        "recorded_steps_per_s": round(total / statistics.median(r[0] for _, r in pairs), 2),
        "bare_cpu_ms_per_step": round(1000 * statistics.median(b[1] for b, _ in pairs) / total, 3),
        "recorded_cpu_ms_per_step": round(1000 * statistics.median(r[1] for _, r in pairs) / total, 3),
        "bare_faults_per_step": round(statistics.median(b[2] for b, _ in pairs) / total, 2),
        "recorded_faults_per_step": round(statistics.median(r[2] for _, r in pairs) / total, 2),
        "recorded_first_run_faults_per_step": round(pairs[0][1][2] / total, 2),
        "proof_bytes": stored, "model_bytes": model_size, "proof_to_model": round(stored / model_size, 2),
        "profile": profile, "hardware": apply_profile(profile).hardware, "threads": torch.get_num_threads(),
        **_interleaved(spec, X, y, interleaved, k),
        "probe_repeats": probe_repeats, **_copy_probe(spec, X, y, probe_repeats),
    }


def _median_interval(values: list[float], resamples: int = 2000) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median of ``values`` (seeded: equal values, equal interval)."""
    medians = np.median(np.random.default_rng(0).choice(values, size=(resamples, len(values))), axis=1)
    return float(np.quantile(medians, 0.025)), float(np.quantile(medians, 0.975))


def run(steps: int = 400, k: int = DEFAULT_K, repeats: int = 5, cases: tuple[str, ...] = DEFAULT_CASES,
        profile: str = "cpu-fp32-exact", out_dir: Path = RESULTS_DIR, probe_repeats: int = 2,
        interleaved: int = 2) -> dict:
    """Measure every case; write the JSON to ``out_dir`` (one file per profile) and return it."""
    allocator_tuned = tune_allocator()  # the trainer sets it too: the bare loop must run under it
    results = {"benchmark": "pot_overhead", "target_overhead_cnn_mnist": 0.03, "allocator_tuned": allocator_tuned,
               "cases": [_case(name, steps, k, repeats, profile, probe_repeats, interleaved) for name in cases]}
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "pot_overhead.json" if profile == "cpu-fp32-exact" else f"pot_overhead-{profile}.json"
    (out_dir / name).write_text(json.dumps(results, indent=2) + "\n")
    return results


def _print_table(results: dict) -> None:
    print(f"{'case':<12} {'steps':>6} {'k':>5} {'bare ms/st':>10} {'PoT ms/st':>10} {'CPU ovh':>8} {'wall ovh':>9} "
          f"{'wall IQR':>16} {'median 95% CI':>16} {'interleaved (95% CI)':>25} "
          f"{'drained (95% CI)':>25} {'PoT us/st':>10} "
          f"{'proof/model':>12} {'1st-run faults/st':>18} {'copy: new mem':>14} {'copy: 1 block':>14}")
    for c in results["cases"]:
        q1, q3 = c["overhead_wall_quartiles"]
        low, high = c["overhead_wall_ci95"]
        print(f"{c['case']:<12} {c['steps']:>6} {c['checkpoint_every']:>5} {c['bare_cpu_ms_per_step']:>10.2f} "
              f"{c['recorded_cpu_ms_per_step']:>10.2f} {c['overhead_cpu']:>7.1%} {c['overhead_wall']:>8.1%} "
              f"{q1:>7.1%}..{q3:<7.1%} {low:>7.1%}..{high:<7.1%} {_with_interval(c, 'interleaved'):>25} "
              f"{_with_interval(c, 'interleaved_drained'):>25} "
              f"{c['recorder_wall_us_per_step']:>10.0f} {c['proof_to_model']:>11.1f}x "
              f"{c['recorded_first_run_faults_per_step']:>18.1f} {c['copy_fresh_overhead_wall']:>13.1%} "
              f"{c['copy_same_overhead_wall']:>13.1%}")


def _with_interval(case: dict, kind: str) -> str:
    low, high = case[f"overhead_wall_{kind}_ci95"]
    return f"{case[f'overhead_wall_{kind}']:.1%} ({low:.1%}..{high:.1%})"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="checkpoint every k steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", default="cpu-fp32-exact", help="determinism profile (a cuda-* one trains on the GPU)")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(DEFAULT_CASES),
                        help="model and data pairs to measure")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--probe-repeats", type=int, default=2, help="alternating runs of the state-copy probe")
    parser.add_argument("--interleaved", type=int, default=2,
                        help="recorded runs with a bare block of k steps after every k recorded steps, "
                             "of each kind (plain, and waiting for the recorder's threads before each bare block)")
    args = parser.parse_args()
    _print_table(run(args.steps, args.k, args.repeats, tuple(args.cases), profile=args.profile, out_dir=args.out_dir,
                     probe_repeats=args.probe_repeats, interleaved=args.interleaved))
