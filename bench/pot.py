"""Proof-of-Train benchmark: detection of dishonest workers, false positives, verification cost.

For a job (MLP on digits, CNN on MNIST) it trains honest workers and every catalogued attack at
each intensity through `proof.attacks.run_worker`, verifies each proof under several challenge
seeds with `proof.verifier.verify_proof`, and reports per attack and intensity the detection
rate, plus the honest false-positive rate, the verification cost as a fraction of training
compute, the proof storage overhead, and the stake that makes a 1%-intensity attack unprofitable:

    stake >= gain / p_detect,  gain = intensity x fee   (the share of the work not done)

so ``stake / fee >= intensity / p_detect``. Each challenge spot-checks ``m`` uniformly drawn steps,
so a cheat on a share ``f`` of the steps escapes with probability about ``(1 - f)^m``.

Work is shared where sound: every training is verified under several challenge seeds (each with
the worker's own response), and attacks that train honestly and only rewrite the proof reuse the
first honest training. Honest runs after the first and attack cells run in ``--workers`` extra processes;
``--profile`` picks the determinism profile (a ``cuda-*`` one trains and verifies on the GPU).

Writes ``bench/results/pot.json``, ``pot.md`` and ``pot_detection.png``/``pot_sampling.png``.
Reduced run: ``python -m bench.pot --job digits --honest-runs 1 --challenges 2 --epochs 2``.
"""

import argparse
import hashlib
import io
import json
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from proof.attacks import ATTACKS, Attack, Job, WorkerRun, reuse_training, run_worker
from proof.bundle import artifacts, build_bundle
from proof.recorder import Recorder
from proof.response import replay_regenerator
from proof.telemetry import TelemetrySampler
from proof.verifier import VerifyConfig, verify_proof
from storage.refs import ArtifactRef
from training.datasets import load_dataset, table_to_arrays
from training.hooks import TrainHooks
from training.trainer import TrainSpec, train

RESULTS = Path(__file__).parent / "results"
JOBS = {
    "digits": dict(dataset="digits", model="mlp", optimizer="sgd", lr=0.05, batch_size=32, epochs=10, checkpoint_every=10),
    "mnist": dict(dataset="mnist", model="cnn", optimizer="sgd", lr=0.05, batch_size=64, epochs=3, checkpoint_every=30),
    # the language model of `bahen demo --workload gpt`
    "shakespeare": dict(dataset="shakespeare", model="gpt", optimizer="adamw", lr=3e-3, batch_size=32, epochs=1,
                        checkpoint_every=10, num_classes=256),
}
INTENSITIES = (1.0, 0.1, 0.01)


class MemoryStore:
    """Plaintext content-addressed store standing in for encrypt + upload (sizes are plaintext)."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.named: dict[str, ArtifactRef] = {}

    def put(self, name: str, data: bytes) -> ArtifactRef:
        sha = hashlib.sha256(data).hexdigest()
        self.objects[sha] = data
        self.named[name] = ArtifactRef(name=name, md5=hashlib.md5(data).hexdigest(), sha256=sha, size=len(data))
        return self.named[name]

    def fetch(self, ref: ArtifactRef) -> bytes:
        if ref.sha256 not in self.objects:
            raise LookupError(f"{ref.name} is not stored")
        return self.objects[ref.sha256]


class _Crash(TrainHooks):
    def __init__(self, at: int):
        self.at = at

    def on_batch(self, step, indices, X, y):
        if step == self.at:
            raise InterruptedError(f"worker stopped at step {step}")
        return X, y


def honest_resumed(spec: TrainSpec, X, y) -> tuple[WorkerRun, MemoryStore]:
    """An honest worker that stops mid-task and resumes from its last stored journal.

    The resumed process has lost the first process's spool, so it regenerates challenged states
    before its resume point by replaying from its checkpoints (``regenerate`` of each answer).
    """
    store = MemoryStore()
    total = spec.epochs * (len(X) // spec.batch_size)
    first = Recorder(put=store.put)
    try:
        train(spec, X, y, recorder=first, hooks=_Crash(total // 2 + 1))
    except InterruptedError:
        first.close()
        first.spool.close()
    last = store.named[max(n for n in store.named if n.startswith("journal-"))]
    recorder, checkpoint = Recorder.resume(last, get=store.fetch, put=store.put, telemetry=TelemetrySampler())
    result = train(spec, X, y, recorder=recorder, resume_from=checkpoint)
    recorded = recorder.close()
    bundle = build_bundle(recorded, order_id="resumed", task=0, spec=spec, put=store.put)
    job = Job(spec=spec, X=X, y=y, put=store.put, order_id="resumed")
    run = WorkerRun(bundle=bundle, committed_root=bundle.merkle_root, recorded=recorded, result=result,
                    spool=recorder.spool, attack=Attack(), job=job)
    return run, store


def _verdicts(run: WorkerRun, X, y, store, challenges: int, config: VerifyConfig, tag: str, regenerate=None) -> list:
    reports = []
    for c in range(challenges):
        seed = hashlib.sha256(f"{tag}/{c}".encode()).digest()
        response = run.answer(seed, config, regenerate=regenerate)
        reports.append(verify_proof(run.bundle, committed_root=run.committed_root, challenge_seed=seed, X=X, y=y,
                                    fetch=store.fetch, config=config, expected_spec=run.job.spec, response=response))
    return reports


def _model_bytes(state: dict) -> int:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell()


def _honest_run(args: tuple) -> dict:
    """One independent honest training (seed ``spec.seed + r``) verified under ``challenges`` seeds."""
    job, epochs, samples, profile, r, challenges = args
    spec, X, y = job_data(job, epochs, samples, profile)
    store = MemoryStore()
    run, seconds = _train_honest(spec, X, y, r, store)
    reports = _verdicts(run, X, y, store, challenges, VerifyConfig(), f"honest-{r}")
    run.spool.close()
    return {"reports": reports, "train_seconds": seconds, "storage_overhead": _storage_overhead(run)}


def _train_honest(spec: TrainSpec, X, y, r: int, store: MemoryStore) -> tuple[WorkerRun, float]:
    started = time.perf_counter()
    run = run_worker(None, spec.model_copy(update={"seed": spec.seed + r}), X, y, store.put, order_id=f"honest-{r}")
    seconds = time.perf_counter() - started
    print(f"[pot] honest run {r}: trained in {seconds:.0f} s", file=sys.stderr, flush=True)
    return run, seconds


def _storage_overhead(run: WorkerRun) -> float:
    return sum(ref.size for ref in artifacts(run.bundle)) / _model_bytes(run.result.final_state)


def _honest(spec, X, y, challenges: int, config: VerifyConfig, keep: MemoryStore, others: list) -> tuple[dict, WorkerRun]:
    """The first honest training, the ``others`` (futures of :func:`_honest_run`) and a resumed one.

    The first run stays open (its spool too) so that attacks which only tamper with the proof can
    reuse its training; its artifacts live in ``keep``.
    """
    first, seconds = _train_honest(spec, X, y, 0, keep)
    reports = _verdicts(first, X, y, keep, challenges, config, "honest-0")
    train_s, overheads = [seconds], [_storage_overhead(first)]
    resumed, resumed_store = honest_resumed(spec, X, y)
    regenerate = replay_regenerator(spec, X, y, resumed.bundle.checkpoints, resumed_store.fetch)
    reports += _verdicts(resumed, X, y, resumed_store, challenges, config, "resumed", regenerate)
    resumed.spool.close()
    for future in others:
        done = future.result()
        reports += done["reports"]
        train_s.append(done["train_seconds"])
        overheads.append(done["storage_overhead"])
    decisive = [c for r in reports for c in r.checks if c.decisive and math.isfinite(c.observed)]
    summary = {
        "runs": len(train_s) + 1,
        "verifications": len(reports),
        "false_positive_rate": sum(not r.passed for r in reports) / len(reports),
        "failed_checks": sorted({c.name for r in reports for c in r.failed_checks}),
        "flag_rate": sum(r.flagged for r in reports) / len(reports),
        # Calibration: the largest value each decisive check measured on honest work, beside its threshold.
        "max_observed": {name: {"observed": max(c.observed for c in decisive if c.name == name),
                                "threshold": min(c.threshold for c in decisive if c.name == name)}
                         for name in sorted({c.name for c in decisive})},
        "cost_fraction": max(r.cost.fraction_of_training for r in reports),
        "verify_seconds": sum(r.cost.seconds for r in reports) / len(reports),
        "train_seconds": sum(train_s) / len(train_s),
        "storage_overhead": sum(overheads) / len(overheads),
    }
    return summary, first


def _tamper_only(name: str) -> bool:
    """Attacks that train honestly and only rewrite the proof: they can reuse an honest training."""
    cls = ATTACKS[name]
    return cls.hooks is Attack.hooks and cls.trained_spec is Attack.trained_spec


def _attack(name, intensity, spec, X, y, runs: int, challenges: int, config: VerifyConfig,
            shared: tuple[WorkerRun, MemoryStore] | None = None) -> dict:
    """Detection of one attack at one intensity, counted over the runs that did cheat.

    Stochastic rounding makes some low-intensity runs cheat on nothing (1% of 21 checkpoints is
    0.21 checkpoints); such runs are honest, so they are reported apart and not counted as misses.
    """
    hits, total, analytic, idle = 0, 0, [], 0
    weak = ATTACKS[name].weak_evidence
    steps = spec.epochs * (len(X) // spec.batch_size)
    for r in range(runs):
        if shared is not None:
            store = shared[1]
            run = reuse_training(name, shared[0], intensity, seed=r)
        else:
            store = MemoryStore()
            run = run_worker(name, spec, X, y, store.put, intensity, order_id=f"{name}-{r}", seed=r)
        if run.attack.cheated == 0:
            idle += 1
        else:
            for report in _verdicts(run, X, y, store, challenges, config, f"{name}-{r}"):
                hits += report.flagged if weak else not report.passed
                total += 1
            cheated = getattr(run.attack, "cheated_steps", None)
            if cheated is not None and shared is None:  # a block of trained steps, every one of them dishonest
                analytic.append(spot_detection(steps, len(cheated), config.spot_steps))
        if shared is None:
            run.spool.close()
    print(f"[pot] {name} at {intensity:.0%}: {hits}/{total} ({idle} runs cheated on nothing)", file=sys.stderr, flush=True)
    row = {"attack": name, "intensity": intensity, "detected": hits, "trials": total,
           "rate": hits / total if total else None, "runs_without_cheating": idle,
           "evidence": "weak" if weak else "decisive", "shared_training": shared is not None}
    if analytic:
        row["spot_check_probability"] = sum(analytic) / len(analytic)
    return row


def spot_detection(steps: int, cheated: int, samples: int) -> float:
    """Probability that ``samples`` distinct uniform steps out of ``steps`` hit one of ``cheated`` steps."""
    return 1.0 - math.comb(steps - cheated, samples) / math.comb(steps, samples) if samples <= steps else float(cheated > 0)


def _stake(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        if row["intensity"] == 0.01:
            if row["rate"] is None:
                out.append({"attack": row["attack"], "p_detect": None, "stake_per_fee": None})
                continue
            p = max(row.get("spot_check_probability", 0.0), row["rate"])
            out.append({"attack": row["attack"], "p_detect": p,
                        "stake_per_fee": (0.01 / p) if p > 0 else None})
    return out


def _sampling(spec: TrainSpec, num_samples: int, config: VerifyConfig) -> dict:
    total = spec.epochs * (num_samples // spec.batch_size)
    segments = -(-total // spec.checkpoint_every)
    m = config.spot_steps
    return {"steps": total, "segments": segments, "spot_steps": m,
            "replayed_segments": config.replay_segments + config.largest_update_segments,
            "analytic_spot_detection": {str(f): 1 - (1 - f) ** m for f in INTENSITIES}}


def _cell(args: tuple) -> dict:
    name, intensity, job, epochs, samples, profile, runs, challenges = args
    spec, X, y = job_data(job, epochs, samples, profile)
    return _attack(name, intensity, spec, X, y, runs, challenges, VerifyConfig())


def job_data(job: str, epochs: int | None = None, samples: int | None = None, profile: str = "cpu-fp32-exact"):
    """The job's spec and data (``samples`` keeps the first rows, ``epochs`` overrides the epochs)."""
    cfg = dict(JOBS[job])
    X, y, shape = table_to_arrays(load_dataset(cfg.pop("dataset"), "train" if job == "mnist" else "all"))
    X, y = (X[:samples], y[:samples]) if samples else (X, y)
    spec = TrainSpec(input_shape=shape, seed=1, profile=profile,
                     **{"num_classes": 10, **cfg, "epochs": epochs or cfg["epochs"]})
    return spec, X, y


def run(job: str = "mnist", honest_runs: int = 2, attack_runs: int = 1, challenges: int = 5,
        attacks: list[str] | None = None, intensities: tuple[float, ...] = INTENSITIES,
        epochs: int | None = None, samples: int | None = None, workers: int = 1, honest_challenges: int = 10,
        attack_samples: int | None = None, out_dir: Path = RESULTS, profile: str = "cpu-fp32-exact") -> dict:
    """Run the benchmark for ``job``; ``workers`` extra processes train in parallel.

    ``honest_runs`` independent honest trainings (distinct seeds; all but the first in the extra
    processes) plus one resumed training are verified under ``honest_challenges`` seeds each,
    attack trainings under ``challenges``. ``attacks=[]`` runs the honest side alone.
    ``attack_samples`` trains the attacks that change training on the first rows only (a shorter
    job, for machines where the full catalogue does not fit in time).
    """
    spec, X, y = job_data(job, epochs, samples, profile)
    config = VerifyConfig()
    started = time.perf_counter()
    names = sorted(ATTACKS) if attacks is None else attacks
    cells = [(n, i) for n in names for i in (intensities if ATTACKS[n].uses_intensity else (1.0,))]
    trained = [c for c in cells if not _tamper_only(c[0])]
    # Spawned, not forked: a CUDA profile initialises CUDA in this process, which a fork cannot inherit.
    # One intra-op thread per process (cpu-fp32-exact sets it anyway): processes, not threads, share the cores.
    torch.set_num_threads(1)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        others = [pool.submit(_honest_run, (job, epochs, samples, profile, r, honest_challenges))
                  for r in range(1, honest_runs)]
        futures = {c: pool.submit(_cell, (*c, job, epochs, attack_samples or samples, profile, attack_runs, challenges))
                   for c in trained}
        keep = MemoryStore()
        honest, first = _honest(spec, X, y, honest_challenges, config, keep, others)
        rows = {c: _attack(*c, spec, X, y, attack_runs, challenges, config, shared=(first, keep))
                for c in cells if _tamper_only(c[0])}
        first.spool.close()
        rows.update({c: f.result() for c, f in futures.items()})
    result = {"job": job, "spec": spec.model_dump(mode="json"), "samples": len(X), "verify_config": config.model_dump(),
              "honest_trainings": honest_runs, "attack_runs": attack_runs, "challenges_per_run": challenges,
              "honest_challenges_per_run": honest_challenges, "attack_samples": attack_samples or len(X),
              "honest": honest, "attacks": [rows[c] for c in cells], "stake_at_1pct": _stake(list(rows.values())),
              "sampling": _sampling(spec, len(X), config), "seconds": time.perf_counter() - started}
    write(result, Path(out_dir))
    return result


def markdown(result: dict) -> str:
    """The benchmark's table as Markdown, with the configuration that produced it."""
    h, sp, cfg = result["honest"], result["spec"], result["verify_config"]
    sampling = result["sampling"]
    lines = [f"### PoT benchmark: {result['job']} ({sp['model']}, {result['samples']} samples, {sp['epochs']} epochs, "
             f"batch {sp['batch_size']}, {sampling['steps']} steps, checkpoint every {sp['checkpoint_every']})", "",
             f"- determinism profile {sp['profile']}",
             f"- verifier: {cfg['spot_steps']} spot-checked steps, {cfg['replay_segments']} random + "
             f"{cfg['largest_update_segments']} largest-update segments, {cfg['loss_samples']} loss samples, "
             f"PEV {cfg['pev_fraction']:.0%} of each epoch",
             f"- honest: {h['runs']} trainings ({result['honest_trainings']} seeds + 1 resumed), "
             f"{h['verifications']} verifications: false-positive rate {h['false_positive_rate']:.3f} "
             f"(weak-evidence flags {h['flag_rate']:.3f})"]
    if result["attacks"]:
        lines.append(f"- attacks: {result['attack_runs']} training(s) per attack and intensity on "
                     f"{result['attack_samples']} samples (proof-only attacks reuse the first honest training), "
                     f"{result['challenges_per_run']} challenges each")
    lines += [f"- verification cost {h['cost_fraction']:.2%} of training compute (max over verifications); "
              f"{h['verify_seconds']:.1f} s per verification against {h['train_seconds']:.0f} s per training",
              f"- proof storage {h['storage_overhead']:.1f}x the final model; whole benchmark {result['seconds'] / 60:.0f} min"]
    if result["attacks"]:
        lines += ["", "`spot P` is the exact probability that the spot check samples one of the steps the run cheated on "
                  "(1 - C(T-F, m)/C(T, m)), averaged over runs.", "",
                  "| attack | evidence | intensity | detected | rate | spot P |", "| --- | --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['attack']} | {r['evidence']} | {r['intensity']:.0%} | {r['detected']}/{r['trials']} | "
                  f"{'no run cheated' if r['rate'] is None else format(r['rate'], '.2f')} | "
                  f"{format(r['spot_check_probability'], '.4f') if 'spot_check_probability' in r else '-'} |"
                  for r in result["attacks"]]
    lines += ["", "Largest value each decisive check measured on honest work (it passes while observed <= threshold)", "",
              "| check | max observed | threshold |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {v['observed']:.3g} | {v['threshold']:.3g} |" for name, v in h["max_observed"].items()]
    if result["stake_at_1pct"]:
        lines += ["", "Stake making a 1%-intensity attack unprofitable: stake >= gain / p_detect = 0.01 x fee / p_detect "
                  "(p_detect: the larger of the measured rate and spot P)", "",
                  "| attack | p_detect | stake / fee |", "| --- | ---: | ---: |"]
        lines += [f"| {s['attack']} | {'-' if s['p_detect'] is None else format(s['p_detect'], '.2f')} | "
                  f"{_stake_text(s)} |" for s in result["stake_at_1pct"]]
    return "\n".join(lines) + "\n"


def _stake_text(row: dict) -> str:
    if row["p_detect"] is None:
        return "no run cheated at 1%"
    return "unbounded" if row["stake_per_fee"] is None else format(row["stake_per_fee"], ".3f")


def write(result: dict, out_dir: Path) -> None:
    """Write JSON, Markdown and plots under ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "pot.json").write_text(json.dumps(result, indent=2))
    (out_dir / "pot.md").write_text(markdown(result))
    fig, ax = plt.subplots(figsize=(9, 4))
    names = sorted({r["attack"] for r in result["attacks"]})
    for k, intensity in enumerate(INTENSITIES):
        rates = [next((r["rate"] or 0 for r in result["attacks"] if r["attack"] == n and r["intensity"] == intensity), 0)
                 for n in names]
        ax.bar([i + 0.27 * (k - 1) for i in range(len(names))], rates, width=0.27, label=f"{intensity:.0%}")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("detection rate")
    ax.legend(title="intensity")
    fig.tight_layout()
    fig.savefig(out_dir / "pot_detection.png", dpi=120)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for f in (0.01, 0.02, 0.05, 0.1):
        ms = list(range(1, 101))
        ax.plot(ms, [1 - (1 - f) ** m for m in ms], label=f"f = {f:.0%}")
    ax.axvline(result["verify_config"]["spot_steps"], color="grey", linestyle=":")
    ax.set_xlabel("spot-checked steps m")
    ax.set_ylabel("P(detect) = 1 - (1 - f)^m")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "pot_sampling.png", dpi=120)
    plt.close("all")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", choices=sorted(JOBS), default="mnist")
    parser.add_argument("--honest-runs", type=int, default=2, help="honest trainings (distinct seeds), plus one resumed")
    parser.add_argument("--attack-runs", type=int, default=1, help="trainings per attack and intensity")
    parser.add_argument("--challenges", type=int, default=5, help="challenge seeds per attack training")
    parser.add_argument("--honest-challenges", type=int, default=10, help="challenge seeds per honest training")
    parser.add_argument("--attacks", nargs="*", default=None, help="attack names (default: all; none given: honest runs only)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1, help="processes training honest runs and attack cells beside the main one")
    parser.add_argument("--profile", default="cpu-fp32-exact", help="determinism profile of every training")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where the JSON, Markdown and plots go")
    parser.add_argument("--attack-samples", type=int, default=None, help="rows the training-changing attacks use")
    args = parser.parse_args()
    out = run(args.job, args.honest_runs, args.attack_runs, args.challenges, args.attacks,
              epochs=args.epochs, samples=args.samples, workers=args.workers, honest_challenges=args.honest_challenges,
              attack_samples=args.attack_samples, out_dir=args.out_dir, profile=args.profile)
    print(markdown(out))
