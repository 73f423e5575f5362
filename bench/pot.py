"""Proof-of-Train benchmark: detection of dishonest workers, false positives, verification cost.

For a job (MLP on digits, CNN on MNIST) it trains honest workers and every catalogued attack at
each intensity through `proof.attacks.run_worker`, verifies each proof under several challenge
seeds with `proof.verifier.verify_proof`, and reports per attack and intensity the detection
rate, plus the honest false-positive rate, the verification cost as a fraction of training
compute, the proof storage overhead, and the stake that makes a 1%-intensity attack unprofitable:

    stake >= gain / p_detect,  gain = intensity x fee   (the share of the work not done)

so ``stake / fee >= intensity / p_detect``. The analytic detection of replay sampling is
``1 - (1 - f)^m`` for a share ``f`` of forged segments and ``m`` replayed segments.

Writes ``bench/results/pot.json``, ``pot.md`` and ``pot_detection.png``/``pot_sampling.png``.
Reduced run: ``python bench/pot.py --job digits --honest-runs 3 --attack-runs 1 --challenges 2 --epochs 2``.
"""

import argparse
import hashlib
import io
import json
import time
from pathlib import Path

import torch

from proof.attacks import ATTACKS, run_worker
from proof.bundle import ProofBundle, artifacts, build_bundle
from proof.recorder import Recorder
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


def honest_resumed(spec: TrainSpec, X, y) -> tuple[ProofBundle, MemoryStore]:
    """An honest worker that stops mid-task and resumes from its last stored journal."""
    store = MemoryStore()
    total = spec.epochs * (len(X) // spec.batch_size)
    first = Recorder(put=store.put)
    try:
        train(spec, X, y, recorder=first, hooks=_Crash(total // 2 + 1))
    except InterruptedError:
        first.close()
    last = store.named[max(n for n in store.named if n.startswith("journal-"))]
    recorder, checkpoint = Recorder.resume(last, get=store.fetch, put=store.put, telemetry=TelemetrySampler())
    train(spec, X, y, recorder=recorder, resume_from=checkpoint)
    return build_bundle(recorder.close(), order_id="resumed", task=0, spec=spec, put=store.put), store


def _verdicts(bundle, root, X, y, store, challenges: int, config: VerifyConfig, tag: str) -> list:
    seeds = [hashlib.sha256(f"{tag}/{c}".encode()).digest() for c in range(challenges)]
    return [verify_proof(bundle, committed_root=root, challenge_seed=s, X=X, y=y, fetch=store.fetch, config=config)
            for s in seeds]


def _model_bytes(state: dict) -> int:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell()


def _honest(spec, X, y, runs: int, challenges: int, config: VerifyConfig) -> dict:
    store, reports, overheads, train_s = MemoryStore(), [], [], []
    for r in range(runs):
        run_spec = spec.model_copy(update={"seed": spec.seed + r})
        started = time.perf_counter()
        run = run_worker(None, run_spec, X, y, store.put, order_id=f"honest-{r}")
        train_s.append(time.perf_counter() - started)
        reports += _verdicts(run.bundle, run.committed_root, X, y, store, challenges, config, f"honest-{r}")
        proof_bytes = sum(ref.size for ref in artifacts(run.bundle))
        overheads.append(proof_bytes / _model_bytes(run.result.final_state))
    resumed, resumed_store = honest_resumed(spec, X, y)
    reports += _verdicts(resumed, resumed.merkle_root, X, y, resumed_store, challenges, config, "resumed")
    return {
        "runs": runs + 1,
        "verifications": len(reports),
        "false_positive_rate": sum(not r.passed for r in reports) / len(reports),
        "flag_rate": sum(r.flagged for r in reports) / len(reports),
        "cost_fraction": max(r.cost.fraction_of_training for r in reports),
        "verify_seconds": sum(r.cost.seconds for r in reports) / len(reports),
        "train_seconds": sum(train_s) / len(train_s),
        "storage_overhead": sum(overheads) / len(overheads),
    }


def _attack(name, intensity, spec, X, y, runs: int, challenges: int, config: VerifyConfig) -> dict:
    store, hits, total = MemoryStore(), 0, 0
    weak = ATTACKS[name].weak_evidence
    for r in range(runs):
        run = run_worker(name, spec, X, y, store.put, intensity, order_id=f"{name}-{r}", seed=r)
        for report in _verdicts(run.bundle, run.committed_root, X, y, store, challenges, config, f"{name}-{r}"):
            hits += report.flagged if weak else not report.passed
            total += 1
    return {"attack": name, "intensity": intensity, "detected": hits, "trials": total, "rate": hits / total,
            "evidence": "weak" if weak else "decisive"}


def _stake(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        if row["intensity"] == 0.01:
            p = row["rate"]
            out.append({"attack": row["attack"], "p_detect": p,
                        "stake_per_fee": (0.01 / p) if p > 0 else None})
    return out


def _sampling(spec: TrainSpec, num_samples: int, config: VerifyConfig) -> dict:
    total = spec.epochs * (num_samples // spec.batch_size)
    segments = -(-total // spec.checkpoint_every)
    m = config.replay_segments
    forged = {i: max(1, round(i * segments)) / segments for i in INTENSITIES}
    return {"segments": segments, "replayed": m + config.largest_update_segments,
            "analytic_random_detection": {str(i): 1 - (1 - f) ** m for i, f in forged.items()}}


def run(job: str = "mnist", honest_runs: int = 30, attack_runs: int = 4, challenges: int = 5,
        attacks: list[str] | None = None, intensities: tuple[float, ...] = INTENSITIES,
        epochs: int | None = None, samples: int | None = None, out_dir: Path = RESULTS) -> dict:
    """Run the benchmark for ``job``; defaults are the full configuration."""
    cfg = dict(JOBS[job])
    X, y, shape = table_to_arrays(load_dataset(cfg.pop("dataset"), "train" if job == "mnist" else "all"))
    X, y = (X[:samples], y[:samples]) if samples else (X, y)
    spec = TrainSpec(input_shape=shape, num_classes=10, seed=1, **{**cfg, "epochs": epochs or cfg["epochs"]})
    config = VerifyConfig()
    started = time.perf_counter()
    honest = _honest(spec, X, y, honest_runs, challenges, config)
    rows = []
    for name in attacks or sorted(ATTACKS):
        for intensity in (intensities if ATTACKS[name].uses_intensity else (1.0,)):
            rows.append(_attack(name, intensity, spec, X, y, attack_runs, challenges, config))
    result = {"job": job, "spec": spec.model_dump(mode="json"), "samples": len(X), "verify_config": config.model_dump(),
              "honest": honest, "attacks": rows, "stake_at_1pct": _stake(rows),
              "sampling": _sampling(spec, len(X), config), "seconds": time.perf_counter() - started}
    write(result, Path(out_dir))
    return result


def markdown(result: dict) -> str:
    """The benchmark's table as Markdown."""
    h = result["honest"]
    lines = [f"### PoT benchmark: {result['job']} ({result['spec']['model']}, {result['samples']} samples, "
             f"{result['sampling']['segments']} segments)", "",
             f"- honest runs {h['runs']}, verifications {h['verifications']}: false-positive rate "
             f"{h['false_positive_rate']:.3f} (weak-evidence flags {h['flag_rate']:.3f})",
             f"- verification cost {h['cost_fraction']:.2%} of training compute (max over verifications)",
             f"- proof storage {h['storage_overhead']:.1f}x the final model", "",
             "| attack | evidence | intensity | detected | rate |", "| --- | --- | ---: | ---: | ---: |"]
    lines += [f"| {r['attack']} | {r['evidence']} | {r['intensity']:.0%} | {r['detected']}/{r['trials']} | {r['rate']:.2f} |"
              for r in result["attacks"]]
    lines += ["", "Stake making a 1%-intensity attack unprofitable: stake >= gain / p_detect = 0.01 x fee / p_detect", "",
              "| attack | p_detect | stake / fee |", "| --- | ---: | ---: |"]
    lines += [f"| {s['attack']} | {s['p_detect']:.2f} | "
              f"{'unbounded' if s['stake_per_fee'] is None else format(s['stake_per_fee'], '.3f')} |"
              for s in result["stake_at_1pct"]]
    return "\n".join(lines) + "\n"


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
        rates = [next((r["rate"] for r in result["attacks"] if r["attack"] == n and r["intensity"] == intensity), 0)
                 for n in names]
        ax.bar([i + 0.27 * (k - 1) for i in range(len(names))], rates, width=0.27, label=f"{intensity:.0%}")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("detection rate")
    ax.legend(title="intensity")
    fig.tight_layout()
    fig.savefig(out_dir / "pot_detection.png", dpi=120)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for f in (0.01, 0.02, 0.05, 0.1):
        ms = list(range(1, 41))
        ax.plot(ms, [1 - (1 - f) ** m for m in ms], label=f"f = {f:.0%}")
    ax.set_xlabel("replayed segments m")
    ax.set_ylabel("P(detect) = 1 - (1 - f)^m")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "pot_sampling.png", dpi=120)
    plt.close("all")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", choices=sorted(JOBS), default="mnist")
    parser.add_argument("--honest-runs", type=int, default=30)
    parser.add_argument("--attack-runs", type=int, default=4)
    parser.add_argument("--challenges", type=int, default=5)
    parser.add_argument("--attacks", nargs="*", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None)
    args = parser.parse_args()
    out = run(args.job, args.honest_runs, args.attack_runs, args.challenges, args.attacks,
              epochs=args.epochs, samples=args.samples)
    print(markdown(out))
