"""DiLoCo benchmark: one order trained by 1, 2, 4 and 8 workers, against one worker training alone.

Every worker-round is a real training of ``training.trainer`` (the CNN/MNIST or language-model job
of ``bench.pot``) from the round's global weights on the worker's slice of its shard, and the outer step is
``training.diloco.aggregate``. Time is simulated as the network would see it: a round costs the
slowest worker's measured compute plus the transfer of its pseudo-gradient up and the global
weights down at ``--bandwidth-gbps``. The baseline is one worker training ``rounds x inner_steps``
steps alone, its time measured in the same run; per-step data parallel would instead all-reduce
the model every step (a ring all-reduce sends ``2 (W-1)/W`` model sizes per worker per step).

Reported per worker count: the holdout loss after each round against simulated time, the time to
reach the baseline's final holdout loss and the speed-up it gives, the bytes each worker sends
against per-step data parallel. Then attack family D (``proof.attacks.diloco``): with one of four
workers attacking every round, which rule excluded it, how often, and the final holdout loss
against the honest four-worker run's. The attacker's every round goes through the Proof of Train
(``proof.attacks.diloco.ForgedRound``: its proof agrees with what it submits) and the verifier,
then the aggregation rules; both are reported. Honest rejections across every run are counted: the target is zero.

Writes ``bench/results/diloco_<job>.json``, ``.md`` and ``.png``.
Reduced run: ``python -m bench.diloco --workers 1 2 --rounds 2 --inner-steps 20 --attacks copied --attack-rounds 2``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.pot import MemoryStore, job_data
from proof.attacks import Attack, run_worker
from proof.attacks.diloco import PSEUDO_GRADIENT_ATTACKS, ForgedRound, LabelFlipped, RoundView
from proof.verifier import VerifyConfig, verify_proof
from training.datasets import load_dataset, table_to_arrays
from training.diloco import (AggregationRules, GlobalState, OuterSpec, aggregate, parameter_names, round_indices,
                             round_spec, shard_plan)
from training.hooks import TrainHooks
from training.models import weights_digest
from training.trainer import TrainSpec, evaluate, initial_state, train

RESULTS = Path(__file__).parent / "results"
ATTACKER = 3  # the attacking worker of a four-worker order: it commits last, after the workers it may copy


class _Clock(TrainHooks):
    """Keeps the weights and the compute time (from the first batch, after setup) after every ``every`` steps."""

    def __init__(self, every: int):
        self.every, self.started, self.marks = every, None, []

    def on_batch(self, step, indices, X, y):
        self.started = self.started or time.perf_counter()
        return X, y

    def on_update(self, step, model, optimizer):
        if (step + 1) % self.every == 0:
            self.marks.append((time.perf_counter() - self.started,
                               {k: v.detach().clone() for k, v in model.state_dict().items()}))


def _transfer_seconds(parameters: int, bandwidth_gbps: float) -> float:
    """A round's communication: the pseudo-gradient up and the global weights down, float32."""
    return 2 * parameters * 4 * 8 / (bandwidth_gbps * 1e9)


def _baseline(spec: TrainSpec, X, y, holdout, rounds: int, inner_steps: int) -> dict:
    """One worker training ``rounds * inner_steps`` steps alone: its holdout loss and compute time every ``inner_steps``."""
    samples = rounds * inner_steps * spec.batch_size
    idx = round_indices(spec.seed, np.arange(len(X)), 0, 0, samples)
    clock = _Clock(inner_steps)
    start = initial_state(spec)
    train(spec.model_copy(update=dict(epochs=1)), X[idx], y[idx], hooks=clock)
    losses = [evaluate(spec, start, *holdout)["loss"]] + [evaluate(spec, w, *holdout)["loss"] for _, w in clock.marks]
    times = [0.0] + [t for t, _ in clock.marks]
    return {"losses": losses, "final_loss": losses[-1], "compute_s": [b - a for a, b in zip(times, times[1:])]}


def _proved_round(attack: Attack, spec: TrainSpec, X, y, state: GlobalState, seed: bytes) -> tuple[dict, str | None]:
    """A dishonest worker's round under the Proof of Train: its weights and why the verifier rejected it."""
    store = MemoryStore()
    run = run_worker(attack, spec, X, y, store.put, order_id="diloco", initial=state.weights)
    config = VerifyConfig()
    report = verify_proof(run.bundle, committed_root=run.committed_root, challenge_seed=seed, X=X, y=y,
                          fetch=store.fetch, config=config, expected_spec=spec, response=run.answer(seed, config),
                          initial=state.weights)
    run.spool.close()
    return run.result.final_state, None if report.passed else f"failed {', '.join(c.name for c in report.failed_checks)}"


def diloco(spec: TrainSpec, X, y, holdout, outer: OuterSpec, *, rules: AggregationRules, bandwidth_gbps: float,
           attack: str | None = None) -> dict:
    """One DiLoCo order: every round's workers, aggregation and holdout loss; ``attack`` makes worker
    :data:`ATTACKER` dishonest."""
    parameters = parameter_names(spec)
    plan = shard_plan(spec.seed, len(X), outer.workers)
    state = GlobalState(0, initial_state(spec))
    seen = {weights_digest(state.weights)}
    transfer = _transfer_seconds(sum(state.weights[n].numel() for n in parameters), bandwidth_gbps)
    losses, rounds = [evaluate(spec, state.weights, *holdout)["loss"]], []
    previous, generator = None, torch.Generator().manual_seed(0)
    for r in range(outer.rounds):
        global_digest = weights_digest(state.weights)
        updates, seconds, excluded = {}, {}, {}
        for w in range(outer.workers):
            idx = round_indices(spec.seed, plan[w], w, r, outer.inner_steps * spec.batch_size)
            task = round_spec(spec, outer, w, r, global_digest)
            if attack is not None and w == ATTACKER:
                view = RoundView(state.weights, state.weights, list(updates.values()), previous, parameters, generator)
                cheat = LabelFlipped() if attack == "label-flipped" else ForgedRound(PSEUDO_GRADIENT_ATTACKS[attack], view)
                weights, reason = _proved_round(cheat, task, X[idx], y[idx], state, f"diloco/{r}".encode())
                previous = weights
                if reason:
                    excluded[w] = reason
            else:
                clock_w = _Clock(outer.inner_steps)
                weights = train(task, X[idx], y[idx], initial=state.weights, hooks=clock_w).final_state
                seconds[w] = clock_w.marks[-1][0]
            updates[w] = weights
        outcome = aggregate(state, updates, outer=outer, parameters=parameters, rules=rules, excluded=excluded,
                            seen=seen)
        # what the rules alone would have done with the worker the proof excluded
        alone = aggregate(state, updates, outer=outer, parameters=parameters, rules=rules, seen=seen) \
            if excluded else outcome
        seen |= {weights_digest(u) for u in updates.values() if all(torch.isfinite(t).all() for t in u.values())}
        state = outcome.next_state
        seen.add(weights_digest(state.weights))
        losses.append(evaluate(spec, state.weights, *holdout)["loss"])
        rounds.append({"round": r, "accepted": outcome.accepted, "clipped": outcome.clipped,
                       "rejections": [vars(x) for x in outcome.rejections], "measures": outcome.measures,
                       "rules_alone": [vars(x) for x in alone.rejections],
                       "compute_s": seconds})
    return {"losses": losses, "final_loss": losses[-1], "rounds": rounds, "transfer_s_per_round": transfer,
            "parameters": sum(state.weights[n].numel() for n in parameters)}


def time_to_loss(curve: list[tuple[float, float]], target: float) -> float | None:
    """The first simulated time at which the holdout loss is at or under ``target`` (None: never)."""
    return next((t for t, loss in curve if loss <= target), None)


def bytes_per_worker(parameters: int, workers: int, rounds: int, inner_steps: int) -> dict:
    """Bytes each worker sends over the run: DiLoCo's pseudo-gradients against per-step ring all-reduce."""
    model = parameters * 4
    diloco = rounds * model if workers > 1 else 0
    data_parallel = rounds * inner_steps * 2 * (workers - 1) / workers * model
    return {"diloco": diloco, "data_parallel": data_parallel,
            "ratio": data_parallel / diloco if diloco else None}


def job_splits(job: str, holdout: int) -> tuple[TrainSpec, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The job's spec, training data and holdout: MNIST's test split (its first ``holdout`` images),
    or the corpus's last ``holdout`` windows for the language model, which then never trains on them."""
    spec, X, y = job_data(job)
    if job == "mnist":
        Xh, yh, _ = table_to_arrays(load_dataset("mnist", "test"))
        return spec, X, y, (Xh[:holdout], yh[:holdout])
    return spec, X[:-holdout], y[:-holdout], (X[-holdout:], y[-holdout:])


def run(job: str, workers: list[int], rounds: int, inner_steps: int, attacks: list[str], attack_rounds: int,
        holdout: int, bandwidth_gbps: float, outer_lr: float, outer_momentum: float, out_dir: Path = RESULTS) -> dict:
    torch.set_num_threads(1)
    spec, X, y, held = job_splits(job, holdout)
    rules = AggregationRules()
    started = time.perf_counter()

    def order(w: int, r: int, attack: str | None = None) -> dict:
        outer = OuterSpec(workers=w, rounds=r, inner_steps=inner_steps, outer_lr=outer_lr, outer_momentum=outer_momentum)
        return diloco(spec, X, y, held, outer, rules=rules, bandwidth_gbps=bandwidth_gbps, attack=attack)

    base = _baseline(spec, X, y, held, rounds, inner_steps)
    print(f"{job}: one worker alone reaches holdout loss {base['final_loss']:.4f} in {rounds * inner_steps} steps",
          flush=True)
    result = {"job": job, "model": spec.model, "rounds": rounds, "inner_steps": inner_steps,
              "batch_size": spec.batch_size, "bandwidth_gbps": bandwidth_gbps, "outer_lr": outer_lr,
              "outer_momentum": outer_momentum, "rules": rules.model_dump(), "baseline": base, "workers": {},
              "attack_rounds": attack_rounds, "attacks": {}}
    honest_measures = []
    for w in workers:
        row = order(w, rounds)
        row["bytes"] = bytes_per_worker(row["parameters"], w, rounds, inner_steps)
        honest_measures += [(r, k) for r in row["rounds"] for k in range(w)]
        result["workers"][str(w)] = row
        print(f"{w} workers: holdout loss {row['final_loss']:.4f}, bytes ratio {_fmt(row['bytes']['ratio'])}",
              flush=True)
    simulate_time(result)
    if attacks:
        honest = order(4, attack_rounds) if "4" not in result["workers"] or attack_rounds != rounds \
            else result["workers"]["4"]
        result["honest_4_workers_loss"] = honest["final_loss"]
        honest_measures += [(r, w) for r in honest["rounds"] for w in range(4)]
    for name in attacks:
        row = order(4, attack_rounds, name)
        mine = [[x for x in r["rejections"] if x["worker"] == ATTACKER] for r in row["rounds"]]
        by_rules = [[x["rule"] for x in r["rules_alone"] if x["worker"] == ATTACKER] for r in row["rounds"]]
        honest_measures += [(r, w) for r in row["rounds"] for w in range(4) if w != ATTACKER]
        result["attacks"][name] = {
            "rounds": attack_rounds, "excluded_rounds": sum(1 for m in mine if m),
            "proof_rounds": sum(1 for m in mine if any(x["rule"] == "proof" for x in m)),
            "proof_checks": sorted({c for m in mine for x in m if x["rule"] == "proof"
                                    for c in x["detail"].removeprefix("failed ").split(", ")}),
            "rules_rounds": sum(1 for b in by_rules if b), "rules": sorted({rule for b in by_rules for rule in b}),
            "final_loss": row["final_loss"], "loss_vs_honest": row["final_loss"] / honest["final_loss"] - 1,
        }
        a = result["attacks"][name]
        print(f"attack {name}: excluded in {a['excluded_rounds']}/{attack_rounds} rounds; the proof failed in "
              f"{a['proof_rounds']} ({', '.join(a['proof_checks']) or '-'}), the rules alone caught {a['rules_rounds']} "
              f"({', '.join(a['rules']) or '-'}); final loss {a['loss_vs_honest']:+.1%} against the honest run",
              flush=True)
    result["honest"] = honest_margins(honest_measures)
    result["seconds"] = time.perf_counter() - started
    write(result, out_dir)
    return result


def simulate_time(result: dict) -> None:
    """Put every curve on one simulated clock and add each worker count's speed-up to the single worker's loss.

    Every worker-round and every block of ``inner_steps`` steps of the single worker is the same work
    (the same model, batch size and step count), so the clock charges each the median of all their
    measured compute times: the machine's noise between one measurement and the next does not enter
    the comparison. A round adds its transfer at the stated bandwidth; the single worker sends nothing.
    """
    samples = result["baseline"]["compute_s"] + [s for row in result["workers"].values() for r in row["rounds"]
                                                 for s in r["compute_s"].values()]
    block = float(np.median(samples))
    result["block_compute_s"] = {"median": block, "min": min(samples), "max": max(samples), "samples": len(samples)}
    base = result["baseline"]
    base["curve"] = [(k * block, loss) for k, loss in enumerate(base["losses"])]
    for row in result["workers"].values():
        row["curve"] = [(r * (block + row["transfer_s_per_round"]), loss) for r, loss in enumerate(row["losses"])]
        reached = time_to_loss(row["curve"], base["final_loss"])
        row["time_to_baseline_loss_s"] = reached
        row["speedup"] = base["curve"][-1][0] / reached if reached else None


def honest_margins(measured: list[tuple[dict, int]]) -> dict:
    """What the rules measured on honest workers, at its closest to each threshold, and how many were rejected."""
    def values(key: str) -> list[float]:
        return [r["measures"][key][w] for r, w in measured if w in r["measures"][key]]

    return {"updates": len(measured),
            "rejected": sum(1 for r, w in measured if any(x["worker"] == w for x in r["rejections"])),
            "min_copy_distance": min(values("copy_distance"), default=None),
            "max_norm_ratio": max(values("norm_ratio"), default=None)}


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _fmt(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.2f}x" if value < 1000 else f"{value:.0f}x"


def markdown(result: dict) -> str:
    lines = [
        f"DiLoCo on the {result['job']} job ({result['model']}): {result['rounds']} rounds of {result['inner_steps']} "
        f"inner steps (batch {result['batch_size']}), outer Nesterov lr {result['outer_lr']}, momentum "
        f"{result['outer_momentum']}, {result['bandwidth_gbps']} Gbps. One worker alone reaches holdout loss "
        f"{result['baseline']['final_loss']:.4f} in {result['baseline']['curve'][-1][0]:.1f} s. Each block of "
        f"{result['inner_steps']} steps is charged the median of {result['block_compute_s']['samples']} measured "
        f"({result['block_compute_s']['median']:.2f} s; {result['block_compute_s']['min']:.2f} to "
        f"{result['block_compute_s']['max']:.2f} s).",
        "",
        "| workers | final holdout loss | time to the single worker's final loss | speed-up | bytes per worker (DiLoCo) "
        "| bytes per worker (per-step data parallel) | ratio |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for w, row in result["workers"].items():
        b = row["bytes"]
        reached = row["time_to_baseline_loss_s"]
        lines.append(f"| {w} | {row['final_loss']:.4f} | {'not reached' if reached is None else f'{reached:.1f} s'} "
                     f"| {_fmt(row['speedup'])} | {b['diloco']:,} | {b['data_parallel']:,.0f} | {_fmt(b['ratio'])} |")
    if result["attacks"]:
        lines += ["", f"Attack family D, one of four workers attacking in every one of {result['attack_rounds']} rounds; "
                  f"the honest four-worker order reaches {result['honest_4_workers_loss']:.4f}:", "",
                  "| attack | rounds excluded | the proof failed (checks that failed) | the rules alone caught "
                  "| final loss vs honest |", "| --- | ---: | --- | --- | ---: |"]
        for name, a in result["attacks"].items():
            lines.append(f"| {name} | {a['excluded_rounds']}/{a['rounds']} | {a['proof_rounds']}/{a['rounds']} "
                         f"({', '.join(a['proof_checks']) or '-'}) | {a['rules_rounds']}/{a['rounds']} "
                         f"({', '.join(a['rules']) or '-'}) | {a['loss_vs_honest']:+.1%} |")
    h, rules = result["honest"], result["rules"]
    lines += ["", f"Honest updates rejected: **{h['rejected']} of {h['updates']}**. Closest an honest update came to each "
              f"rule: relative distance to another update {_num(h['min_copy_distance'])} (copy under "
              f"{rules['copy_distance']}), norm {_num(h['max_norm_ratio'])} times the median (rejected over "
              f"{rules['max_norm_ratio']})."]
    return "\n".join(lines) + "\n"


def write(result: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"diloco_{result['job']}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / f"diloco_{result['job']}.md").write_text(markdown(result))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    t, loss = zip(*result["baseline"]["curve"])
    ax.plot(t, loss, "k--", label="one worker alone")
    for w, row in result["workers"].items():
        t, loss = zip(*row["curve"])
        ax.plot(t, loss, marker=".", label=f"DiLoCo, {w} worker{'s' if w != '1' else ''}")
    ax.set_xlabel("simulated wall-clock (s)")
    ax.set_ylabel("holdout loss")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"{result['model']} on {result['job']}: holdout loss against simulated time")
    fig.tight_layout()
    fig.savefig(out_dir / f"diloco_{result['job']}.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", nargs="+", choices=["mnist", "shakespeare"], default=["mnist"],
                        help="the CNN on MNIST and/or the language model of `bahen demo --workload gpt`")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8], help="worker counts to run")
    parser.add_argument("--rounds", type=int, default=8, help="outer steps of every run")
    parser.add_argument("--inner-steps", type=int, default=150, help="steps each worker trains per round (H)")
    parser.add_argument("--attacks", nargs="*", default=[*PSEUDO_GRADIENT_ATTACKS, "label-flipped"],
                        help="family-D attacks, each run with one of four workers attacking")
    parser.add_argument("--attack-rounds", type=int, default=4, help="rounds of each attack's order")
    parser.add_argument("--holdout", type=int, default=2000, help="samples the holdout loss is measured on")
    parser.add_argument("--bandwidth-gbps", type=float, default=1.0, help="each worker's link, for the simulated time")
    parser.add_argument("--outer-lr", type=float, default=0.7)
    parser.add_argument("--outer-momentum", type=float, default=0.9)
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where the figures are written")
    args = parser.parse_args(argv)
    unknown = set(args.attacks) - {*PSEUDO_GRADIENT_ATTACKS, "label-flipped"}
    if unknown:
        parser.error(f"unknown attacks {', '.join(sorted(unknown))}; family D has "
                     f"{', '.join([*PSEUDO_GRADIENT_ATTACKS, 'label-flipped'])}")
    for job in args.jobs:
        result = run(job, args.workers, args.rounds, args.inner_steps, args.attacks, args.attack_rounds, args.holdout,
                     args.bandwidth_gbps, args.outer_lr, args.outer_momentum, args.out_dir)
        print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
