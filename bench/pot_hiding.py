"""How far a worker can move the model with one step the verifier does not sample, and what that buys.

The adaptive attack (``proof.attacks.hidden_poisoning``): the worker trains honestly, then adds
to its last step a jump towards a targeted poisoning (7s called 1s) as long as the update-size
bound admits, and claims the honest step's size. This trains it once, measures for every segment
of that training the largest jump one lying step could hide from the bound (orthogonal to the
segment's displacement, as a share of the run's whole displacement), the harm of the jump made
(the share of the test set's 7s the model calls 1s, and its accuracy on the other digits, against
the honest final model of the same run) and how often the verifier catches it over
``--challenges`` independent challenges.
"""

import argparse
import hashlib
import json
import math
import platform
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from bench.pot import RESULTS, MemoryStore, job_data
from proof.attacks import run_worker
from proof.attacks.hidden_poisoning import SOURCE, TARGET, HiddenPoisoning
from proof.checks.base import flatten_weights
from proof.checks.steps import weight_distance
from proof.verifier import VerifyConfig, verify_proof
from training.datasets import load_dataset, table_to_arrays
from training.models import build_model
from training.trainer import state_form


def _confusion(spec, state: dict, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Share of ``SOURCE`` samples predicted as ``TARGET``, and accuracy on the other samples."""
    model = build_model(spec.model, input_shape=spec.input_shape, num_classes=spec.num_classes, seed=spec.seed)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(torch.as_tensor(X[i:i + 2048])).argmax(dim=1) for i in range(0, len(X), 2048)]).numpy()
    picked = y == SOURCE
    return float((predicted[picked] == TARGET).mean()), float((predicted[~picked] == y[~picked]).mean())


def run(job: str, epochs: int | None, challenges: int, out_dir: Path) -> dict:
    started = time.perf_counter()
    spec, X, y = job_data(job, epochs)
    store = MemoryStore()
    attack = HiddenPoisoning()
    cheat = run_worker(attack, spec, X, y, store.put)
    names = state_form(spec, len(X)).trainable
    states = {s: c.model_state for s, c in attack.capture.checkpoints.items()}
    claims = [r.update_norm for r in cheat.recorded.steps]
    steps = sorted(states)
    whole = weight_distance(states[steps[0]], states[steps[-1]], names)
    slack = []
    for a, b in zip(steps, steps[1:]):
        moved = flatten_weights(states[b], names) - flatten_weights(states[a], names)
        slack.append(math.sqrt(max(0.0, math.fsum(claims[a:b]) ** 2 - float(moved @ moved))) / whole)
    X_test, y_test, _ = table_to_arrays(load_dataset("mnist", "test")) if job == "mnist" else (X, y, None)
    honest_flip, honest_other = _confusion(spec, states[steps[-1]], X_test, y_test)
    flip, other = _confusion(spec, attack.forged_state, X_test, y_test)
    caught, by = 0, Counter()
    config = VerifyConfig()
    for i in range(challenges):
        seed = hashlib.sha256(f"pot-hiding/{i}".encode()).digest()
        report = verify_proof(cheat.bundle, committed_root=cheat.committed_root, challenge_seed=seed, X=X, y=y,
                              fetch=store.fetch, expected_spec=spec, config=config, response=cheat.answer(seed, config))
        caught += not report.passed
        by.update(c.name for c in report.failed_checks)
    cheat.spool.close()
    result = {
        "job": job, "spec": spec.model_dump(mode="json"), "steps": len(claims), "segments": len(slack),
        "hardware": f"{platform.processor() or platform.machine()}; torch {torch.__version__}",
        "hidden_orthogonal_share": {"median": statistics.median(slack), "max": max(slack)},
        "jump_share": attack.jump / whole, "source": SOURCE, "target": TARGET,
        "honest": {"flipped": honest_flip, "other_accuracy": honest_other},
        "poisoned": {"flipped": flip, "other_accuracy": other},
        "challenges": challenges, "detected": caught, "failed_checks": dict(by),
        "spot_sample_probability": config.spot_steps / len(claims), "seconds": time.perf_counter() - started,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"pot_hiding_{job}.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", choices=("mnist", "digits"), default="mnist")
    parser.add_argument("--epochs", type=int, default=None, help="Override the job's epochs")
    parser.add_argument("--challenges", type=int, default=20, help="Independent challenges the attack faces")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    r = run(args.job, args.epochs, args.challenges, args.out)
    print(f"{r['job']}: {r['steps']} steps, {r['segments']} segments; one lying step hides an orthogonal jump of "
          f"median {r['hidden_orthogonal_share']['median']:.1%}, max {r['hidden_orthogonal_share']['max']:.1%} of the "
          f"run's displacement")
    print(f"last-step poisoning ({r['jump_share']:.1%} of the run's displacement): {r['poisoned']['flipped']:.1%} of "
          f"{r['source']}s called {r['target']}s (honest {r['honest']['flipped']:.1%}), other digits "
          f"{r['poisoned']['other_accuracy']:.1%} (honest {r['honest']['other_accuracy']:.1%}); detected in "
          f"{r['detected']}/{r['challenges']} challenges ({r['failed_checks']})")


if __name__ == "__main__":
    main()
