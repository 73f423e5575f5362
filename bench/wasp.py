"""Wasp's learned model of honest training: its traces, its training and its evaluation.

Three DVC stages (``dvc repro wasp-evaluate`` runs all three), one command each:

- ``traces``: honest runs across seeds, models and optimizers and the step-level attacks of the
  catalogue at low intensity, each through ``proof.attacks.run_worker``; every step of every run is
  labelled dishonest when the verifier's spot check at that step fails (``StepSpotCheck.fault_at``:
  its revealed states do not hash to the committed ones, lie further apart than the step log
  claims, or one honest step from the state before does not reach the state after with the logged
  loss). Writes the step features (``proof.localiser.step_features``) and labels.
- ``train``: gradient-boosted trees (scikit-learn) on every trace, classes weighted equally; the
  model's threshold is the highest step score of any honest run plus a margin (log-odds). Writes
  ``proof/wasp_model.json``, the model every verifier of this version uses.
- ``evaluate``: leave one attack family out: a model trained without the family (and without the
  held-out honest seeds) scores the family's runs and the held-out honest ones. Reports the run-level
  AUROC at each intensity (a run's score is its highest step score), the share of honest runs whose
  score clears the threshold (each costs ``suspicious_steps`` more spot steps, never a rejection),
  and the detection of each attack by the uniform spot check alone, with the learned model's steps,
  and by a uniform spot check given the same average number of extra steps. Detection is exact from
  the labels: a spot check at a dishonest step fails, so a challenge catches a run when it samples
  one of its dishonest steps (``bench.pot.spot_detection`` for the uniform steps).

Reduced run, everything under one folder: ``python -m bench.wasp all --jobs digits-mlp --honest-seeds 2
--attack-seeds 1 --out-dir /tmp/wasp``.
"""

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.pot import RESULTS, MemoryStore, spot_detection
from proof.attacks import run_worker
from proof.challenge import Challenge
from proof.checks.base import CheckContext
from proof.checks.steps import StepSpotCheck
from proof.localiser import FEATURES, MODEL_PATH, StepModel, Tree, read_model, step_features
from proof.verifier import VerifyConfig
from training.datasets import load_dataset, table_to_arrays
from training.trainer import Stepper, TrainSpec

TRACES = RESULTS / "wasp" / "traces.parquet"
# Attacks whose dishonest steps a spot check can catch, by family (the unit a held-out evaluation leaves out).
FAMILIES = {
    "skipping": ("skipped-steps", "mimicking-skipper", "switching-free-rider", "sandbagging"),
    "hyperparameters": ("wrong-lr", "wrong-weight-decay", "carried-settings", "rescaled-updates"),
    "direction": ("oversized-steps", "sub-tolerance-drift"),
    "data": ("half-batches", "substituted-data", "omitted-data"),
    "logging": ("fabricated-losses",),
}
FAMILY_OF = {attack: family for family, attacks in FAMILIES.items() for attack in attacks}
JOBS = {
    "digits-mlp": dict(dataset="digits", model="mlp", optimizer="sgd", lr=0.05, batch_size=32, epochs=8),
    "digits-cnn": dict(dataset="digits", model="cnn", optimizer="adamw", lr=2e-3, batch_size=32, epochs=4),
    "mnist-cnn": dict(dataset="mnist", model="cnn", optimizer="sgd", lr=0.05, batch_size=64, epochs=1, samples=12_800),
}


def _job(name: str, seed: int) -> tuple[TrainSpec, np.ndarray, np.ndarray]:
    cfg = dict(JOBS[name])
    dataset, samples = cfg.pop("dataset"), cfg.pop("samples", None)
    X, y, shape = table_to_arrays(load_dataset(dataset, "train" if dataset == "mnist" else "all"))
    X, y = (X[:samples], y[:samples]) if samples else (X, y)
    spec = TrainSpec(input_shape=shape, num_classes=10, seed=seed, checkpoint_every=20, **cfg)
    return spec, X, y


def dishonest_steps(run, spec: TrainSpec, X, y) -> np.ndarray:
    """For every step, whether the verifier's spot check at that step (``StepSpotCheck.fault_at``) fails
    against the states the worker would reveal."""
    steps = run.recorded.steps
    every = Challenge(seed="", replay_segments=[], loss_steps=[], pev_fraction=0.0, spot_steps=list(range(len(steps))))
    ctx = CheckContext(bundle=run.bundle, committed_root=run.committed_root, challenge=every, config=VerifyConfig(),
                       X=X, y=y, expected_spec=spec, steps=steps)
    check, stepper = StepSpotCheck(), Stepper(spec, X, y)
    labels = np.zeros(len(steps), dtype=bool)
    for t in range(len(steps)):
        ctx.revealed = {s: run.spool.get(s) for s in (t, t + 1) if s in run.spool}
        labels[t] = check.fault_at(ctx, t, stepper)[0] is not None
    return labels


def traces(jobs: list[str], honest_seeds: int, attack_seeds: int, intensities: list[float], out: Path = TRACES,
           attacks: list[str] | None = None) -> dict:
    """Train and label every run (``attacks``: a subset of the step-level ones); write one row per step."""
    rows, started = [], time.perf_counter()
    for job in jobs:
        plan = [(None, 0.0, s) for s in range(honest_seeds)]
        plan += [(a, i, s) for a in attacks or FAMILY_OF for i in intensities for s in range(attack_seeds)]
        for attack, intensity, s in plan:
            # every run trains from its own seed (an attack's shifted by its name): no two share a training
            seed = 1000 * s + 17 if attack is None else 1000 * s + 7 + int(hashlib.sha256(attack.encode()).digest()[0])
            spec, X, y = _job(job, seed)
            run = run_worker(attack, spec, X, y, MemoryStore().put, intensity or 1.0, order_id=f"{job}-{seed}", seed=s)
            labels = dishonest_steps(run, spec, X, y)
            run.spool.close()
            features = step_features(run.recorded.steps)
            name = attack or "honest"
            run_id = f"{job}/{name}/{intensity}/{s}"
            for t in range(len(labels)):
                rows.append({"run": run_id, "job": job, "attack": name, "family": FAMILY_OF.get(name, "honest"),
                             "intensity": intensity, "seed": s, "step": t, "dishonest": bool(labels[t]),
                             **{f: float(features[t, k]) for k, f in enumerate(FEATURES)}})
            print(f"[wasp] {run_id}: {int(labels.sum())} of {len(labels)} steps dishonest", file=sys.stderr, flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out)
    return {"runs": len({r["run"] for r in rows}), "steps": len(rows), "seconds": time.perf_counter() - started}


def _fit(table: dict, rows: np.ndarray, trees: int, depth: int, rate: float, margin: float) -> StepModel:
    """Gradient-boosted trees on ``rows`` of ``table`` (classes weighted equally), exported to a StepModel."""
    from sklearn.ensemble import GradientBoostingClassifier

    x, label = table["x"][rows], table["dishonest"][rows]
    weight = np.where(label, 0.5 / max(label.sum(), 1), 0.5 / max((~label).sum(), 1)) * len(label)
    clf = GradientBoostingClassifier(n_estimators=trees, max_depth=depth, learning_rate=rate, random_state=0)
    clf.fit(x, label, sample_weight=weight)
    exported = [Tree(left=[int(v) for v in e.tree_.children_left], right=[int(v) for v in e.tree_.children_right],
                     feature=[max(int(v), 0) for v in e.tree_.feature], threshold=[float(v) for v in e.tree_.threshold],
                     value=[float(v) for v in e.tree_.value[:, 0, 0]]) for e in clf.estimators_[:, 0]]
    init = float(clf._raw_predict_init(x[:1])[0, 0])
    model = StepModel(features=list(FEATURES), init=init, rate=rate, trees=exported, threshold=math.inf)
    if not np.allclose(model.feature_scores(x[:512]), clf.decision_function(x[:512]), rtol=1e-9, atol=1e-9):
        raise RuntimeError("the exported trees do not reproduce scikit-learn's scores")
    honest = rows[table["honest"][rows]]
    threshold = float(model.feature_scores(table["x"][honest]).max()) + margin if len(honest) else 0.0
    return model.model_copy(update={"threshold": threshold})


def _load(path: Path) -> dict:
    data = pq.read_table(path).to_pydict()
    table = {k: np.asarray(v) for k, v in data.items() if k not in FEATURES}
    table["x"] = np.stack([np.asarray(data[f], dtype=np.float64) for f in FEATURES], axis=1)
    table["honest"] = table["attack"] == "honest"
    return table


def train(traces_path: Path, trees: int, depth: int, rate: float, margin: float, out: Path = MODEL_PATH) -> dict:
    table = _load(traces_path)
    model = _fit(table, np.arange(len(table["x"])), trees, depth, rate, margin)
    runs = sorted(set(table["run"]))
    model = model.model_copy(update={"trained_on": {
        "traces_sha256": hashlib.sha256(traces_path.read_bytes()).hexdigest(), "runs": len(runs),
        "steps": int(len(table["x"])), "dishonest_steps": int(table["dishonest"].sum()),
        "trees": trees, "depth": depth, "rate": rate, "margin": margin}})
    out.write_bytes(model.to_bytes())
    read_model(out.read_bytes())
    return {"sha256": model.sha256(), "threshold": model.threshold, **model.trained_on}


def _auroc(positive: list[float], negative: list[float]) -> float:
    """The probability that a positive scores above a negative (ties count half)."""
    if not positive or not negative:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def evaluate(traces_path: Path, trees: int, depth: int, rate: float, margin: float, spot_steps: int,
             suspicious_steps: int, out_dir: Path = RESULTS) -> dict:
    """Leave one family out; see the module's docstring."""
    table = _load(traces_path)
    seeds = sorted(set(table["seed"][table["honest"]]))
    held_seeds = set(seeds[len(seeds) // 2:])
    held_honest = table["honest"] & np.isin(table["seed"], list(held_seeds))
    runs_of = {}
    for i, run in enumerate(table["run"]):
        runs_of.setdefault(run, []).append(i)
    per_attack, families, honest_flags = [], {}, []
    for family, attacks in FAMILIES.items():
        if not np.isin(table["attack"], list(attacks)).any():
            continue
        train_rows = np.flatnonzero(~np.isin(table["attack"], list(attacks)) & ~held_honest)
        model = _fit(table, train_rows, trees, depth, rate, margin)
        honest_scores = []
        for run, rows in runs_of.items():
            if held_honest[rows[0]]:
                scores = model.feature_scores(table["x"][rows])
                honest_scores.append(float(scores.max()))
                honest_flags.append(bool(scores.max() >= model.threshold))
        outcome = {}
        for run, rows in runs_of.items():
            attack = table["attack"][rows[0]]
            if attack not in attacks:
                continue
            rows = np.asarray(rows)
            scores = model.feature_scores(table["x"][rows])
            dishonest = table["dishonest"][rows]
            ranked = sorted(range(len(scores)), key=lambda t: (-scores[t], t))
            chosen = [t for t in ranked[:suspicious_steps] if scores[t] >= model.threshold]
            n, bad = len(rows), int(dishonest.sum())
            key = (attack, float(table["intensity"][rows[0]]))
            cell = outcome.setdefault(key, {"score": [], "uniform": [], "learned": [], "equal_cost": [], "added": [],
                                            "cheated": []})
            cell["score"].append(float(scores.max()))
            cell["cheated"].append((n, bad))
            if bad == 0:
                continue
            # the seed draws the uniform steps from every step, whatever the model chose
            uniform = spot_detection(n, bad, spot_steps)
            cell["uniform"].append(uniform)
            cell["learned"].append(1.0 if dishonest[chosen].any() else uniform)
            cell["added"].append(len(chosen))
        for (attack, intensity), cell in sorted(outcome.items()):
            added = float(np.mean(cell["added"])) if cell["added"] else 0.0
            cell["equal_cost"] = [spot_detection(n, bad, spot_steps + round(added)) for n, bad in cell["cheated"] if bad]
            per_attack.append({
                "family": family, "attack": attack, "intensity": intensity, "runs": len(cell["score"]),
                "runs_that_cheated": len(cell["uniform"]),
                "auroc": _auroc(cell["score"], honest_scores),
                "uniform": _mean(cell["uniform"]), "learned": _mean(cell["learned"]),
                "equal_cost_uniform": _mean(cell["equal_cost"]), "added_steps": added,
            })
        by_intensity: dict[float, list[float]] = {}
        for (_, intensity), cell in outcome.items():
            by_intensity.setdefault(intensity, []).extend(cell["score"])
        families[family] = {f"{i:g}": _auroc(scores, honest_scores) for i, scores in sorted(by_intensity.items())}
    result = {"trees": trees, "depth": depth, "rate": rate, "margin": margin, "spot_steps": spot_steps,
              "suspicious_steps": suspicious_steps, "held_out_honest_runs": len(honest_flags) // max(len(families), 1),
              "false_flag_rate": _mean([float(f) for f in honest_flags]), "family_auroc": families,
              "attacks": per_attack}
    for intensity in sorted({r["intensity"] for r in per_attack}):
        rows = [r for r in per_attack if r["intensity"] == intensity and r["runs_that_cheated"]]
        result[f"at_{intensity:g}"] = {k: _mean([r[k] for r in rows]) for k in ("uniform", "learned", "equal_cost_uniform",
                                                                               "added_steps")}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "wasp_evaluate.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "wasp_evaluate.md").write_text(markdown(result))
    _plot(result, out_dir / "wasp_detection.png")
    return result


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def markdown(result: dict) -> str:
    pct = lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"  # noqa: E731
    lines = [f"Wasp's learned step model, each attack family held out of its training: {result['held_out_honest_runs']} "
             f"held-out honest runs, of which {result['false_flag_rate']:.1%} cleared the threshold (each such run "
             f"costs {result['suspicious_steps']} more spot steps, never a rejection). Uniform spot check: "
             f"{result['spot_steps']} steps.", "",
             "| family | attack | intensity | runs (cheated) | AUROC | uniform | with the learned steps | uniform, same extra steps | steps added |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["attacks"]:
        lines.append(f"| {r['family']} | {r['attack']} | {r['intensity']:.0%} | {r['runs']} ({r['runs_that_cheated']}) | "
                     f"{pct(r['auroc'])} | {pct(r['uniform'])} | {pct(r['learned'])} | {pct(r['equal_cost_uniform'])} | "
                     f"{r['added_steps']:.1f} |")
    aurocs = "; ".join(f"{family} " + ", ".join(f"{pct(v)} at {float(i):.0%}" for i, v in by.items())
                       for family, by in result["family_auroc"].items())
    lines.append(f"\nRun-level AUROC of each held-out family against the held-out honest runs: {aurocs}.")
    for key in sorted(k for k in result if k.startswith("at_")):
        s = result[key]
        lines.append(f"\nAt {float(key[3:]):.0%} intensity, mean detection per challenge: uniform {pct(s['uniform'])}, with the "
                     f"learned steps {pct(s['learned'])}, uniform with as many extra steps {pct(s['equal_cost_uniform'])} "
                     f"({s['added_steps']:.1f} steps added on average).")
    return "\n".join(lines) + "\n"


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["attacks"] if r["runs_that_cheated"] and r["intensity"] == min(
        x["intensity"] for x in result["attacks"])]
    fig, ax = plt.subplots(figsize=(11, 4))
    index = np.arange(len(rows))
    for k, (key, label) in enumerate((("uniform", "uniform"), ("equal_cost_uniform", "uniform, same extra steps"),
                                      ("learned", "with the learned steps"))):
        ax.bar(index + (k - 1) * 0.27, [r[key] or 0 for r in rows], 0.27, label=label)
    ax.set_xticks(index, [r["attack"] for r in rows], rotation=40, ha="right")
    ax.set_ylabel("detection per challenge")
    ax.set_title(f"attacks at {rows[0]['intensity']:.0%} intensity, each family held out" if rows else "no attack")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("traces", help="train and label honest and attack runs")
    a = sub.add_parser("all", help="traces, a model and its evaluation under --out-dir (the packaged model untouched)")
    for p in (t, a):
        p.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
        p.add_argument("--honest-seeds", type=int, default=8)
        p.add_argument("--attack-seeds", type=int, default=2)
        p.add_argument("--intensities", type=float, nargs="+", default=[0.01, 0.1])
        p.add_argument("--attacks", nargs="+", choices=list(FAMILY_OF), help="a subset of the step-level attacks")
    t.add_argument("--out", type=Path, default=TRACES)
    for name in ("train", "evaluate", "all"):
        p = sub.choices.get(name) or sub.add_parser(name, help=f"{name} the step model on the traces")
        if name != "all":
            p.add_argument("--traces", type=Path, default=TRACES)
        p.add_argument("--trees", type=int, default=60)
        p.add_argument("--depth", type=int, default=3)
        p.add_argument("--rate", type=float, default=0.1)
        p.add_argument("--margin", type=float, default=1.0, help="the threshold's height, in log-odds, above the "
                       "highest step score of an honest training run")
    sub.choices["train"].add_argument("--out", type=Path, default=MODEL_PATH)
    for p in (sub.choices["evaluate"], a):
        p.add_argument("--spot-steps", type=int, default=VerifyConfig().spot_steps)
        p.add_argument("--suspicious-steps", type=int, default=VerifyConfig().suspicious_steps)
        p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.command == "traces":
        print(json.dumps(traces(args.jobs, args.honest_seeds, args.attack_seeds, args.intensities, args.out, args.attacks)))
    elif args.command == "train":
        print(json.dumps(train(args.traces, args.trees, args.depth, args.rate, args.margin, args.out)))
    else:
        path = args.traces if args.command == "evaluate" else args.out_dir / "wasp_traces.parquet"
        if args.command == "all":
            traces(args.jobs, args.honest_seeds, args.attack_seeds, args.intensities, path, args.attacks)
            train(path, args.trees, args.depth, args.rate, args.margin, args.out_dir / "wasp_model.json")
        result = evaluate(path, args.trees, args.depth, args.rate, args.margin, args.spot_steps, args.suspicious_steps,
                          args.out_dir)
        print(markdown(result))


if __name__ == "__main__":
    main()
