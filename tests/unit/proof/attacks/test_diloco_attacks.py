"""Attack family D against a DiLoCo round: every dishonest worker fails its round's Proof of Train, the
aggregation rules exclude those they name (proof/attacks/README.md) at no cost to honest workers, and
an excluded worker's round gives the result its honest workers alone give."""

import pytest
import torch

from proof.attacks import run_worker
from proof.attacks.diloco import PSEUDO_GRADIENT_ATTACKS, ForgedRound, LabelFlipped, RoundView
from proof.verifier import VerifyConfig, verify_proof
from training.checkpoint import Checkpoint
from training.diloco import aggregate, round_spec
from training.models import weights_digest

ATTACKER = 3
# The rule that excludes each attack before any proof is checked; None: only its proof can tell.
EXCLUDED_BY = {
    "sign-flipped": None,
    "random-direction": None,
    "norm-inflated": "norm-inflated",
    "nan": "non-finite",
    "copied": "copy",
    "noisy-copy": "copy",
    "free-rider": "free-rider",
    "stale": "stale",
}


def _second_round(rounds: dict) -> tuple:
    first, second = rounds["history"]
    seen = {weights_digest(first["state"].weights), weights_digest(second["state"].weights),
            *(weights_digest(u) for u in first["updates"].values())}
    return first, second, seen


def _submit(rounds: dict, attack) -> tuple[dict, set]:
    first, second, seen = _second_round(rounds)
    honest = second["updates"]
    view = RoundView(second["state"].weights, honest[ATTACKER], [honest[w] for w in range(ATTACKER)],
                     first["updates"][ATTACKER], rounds["parameters"], torch.Generator().manual_seed(1))
    return {**honest, ATTACKER: attack(view)}, seen


def test_every_family_d_attack_names_the_rule_that_excludes_it():
    assert set(EXCLUDED_BY) == set(PSEUDO_GRADIENT_ATTACKS)


@pytest.mark.parametrize("name", sorted(n for n, rule in EXCLUDED_BY.items() if rule))
def test_a_dishonest_update_is_excluded_by_its_rule_and_the_round_is_the_honest_workers_alone(diloco_rounds, name):
    updates, seen = _submit(diloco_rounds, PSEUDO_GRADIENT_ATTACKS[name])
    state = diloco_rounds["history"][1]["state"]
    kwargs = dict(outer=diloco_rounds["outer"], parameters=diloco_rounds["parameters"], seen=seen)
    outcome = aggregate(state, updates, **kwargs)
    assert [(r.worker, r.rule) for r in outcome.rejections] == [(ATTACKER, EXCLUDED_BY[name])]
    assert outcome.accepted == [0, 1, 2]
    honest_alone = aggregate(state, {w: u for w, u in updates.items() if w != ATTACKER}, **kwargs)
    assert outcome.digest == honest_alone.digest


@pytest.mark.parametrize("name", sorted(n for n, rule in EXCLUDED_BY.items() if not rule))
def test_an_update_the_rules_cannot_judge_is_clipped_to_the_median_norm(diloco_rounds, name):
    updates, seen = _submit(diloco_rounds, PSEUDO_GRADIENT_ATTACKS[name])
    outcome = aggregate(diloco_rounds["history"][1]["state"], updates, outer=diloco_rounds["outer"],
                        parameters=diloco_rounds["parameters"], seen=seen)
    assert outcome.accepted == [0, 1, 2, 3] and not outcome.rejections
    assert outcome.measures["norm_ratio"][ATTACKER] < 1.5  # its length is an honest one: only its proof can tell


@pytest.mark.parametrize("name", sorted(PSEUDO_GRADIENT_ATTACKS))
def test_every_family_d_worker_fails_its_round_proof_even_when_the_proof_agrees_with_its_submission(
        diloco_rounds, store, name):
    first, second = diloco_rounds["history"]
    view = RoundView(second["state"].weights, second["state"].weights,
                     [second["updates"][w] for w in range(ATTACKER)], first["updates"][ATTACKER],
                     diloco_rounds["parameters"], torch.Generator().manual_seed(1))
    report, run = _round_proof(diloco_rounds, store, ForgedRound(PSEUDO_GRADIENT_ATTACKS[name], view))
    assert not report.passed
    assert "spot-steps" in {c.name for c in report.failed_checks}
    # the proof commits to what it submits, and that is not what honest training gave
    submitted = run.result.final_state
    last = Checkpoint.from_bytes(store.fetch(run.recorded.checkpoints[-1][1]))
    assert weights_digest(last.model_state) == weights_digest(submitted)
    assert weights_digest(submitted) != weights_digest(second["updates"][ATTACKER])


def test_in_the_first_round_a_stale_worker_hands_back_the_global_weights_and_is_a_free_rider(diloco_rounds):
    first = diloco_rounds["history"][0]
    honest = first["updates"]
    view = RoundView(first["state"].weights, honest[ATTACKER], [], None, diloco_rounds["parameters"],
                     torch.Generator())
    outcome = aggregate(first["state"], {**honest, ATTACKER: PSEUDO_GRADIENT_ATTACKS["stale"](view)},
                        outer=diloco_rounds["outer"], parameters=diloco_rounds["parameters"])
    assert [(r.worker, r.rule) for r in outcome.rejections] == [(ATTACKER, "free-rider")]


def _scaled(factor: float):
    def attack(view: RoundView) -> dict:
        return {n: view.global_weights[n] - factor * (view.global_weights[n] - view.trained[n])
                if n in view.parameters else t for n, t in view.trained.items()}
    return attack


def test_an_update_inflated_just_under_the_norm_rule_is_clipped_to_the_median_norm(diloco_rounds):
    updates, seen = _submit(diloco_rounds, _scaled(3.5))
    outcome = aggregate(diloco_rounds["history"][1]["state"], updates, outer=diloco_rounds["outer"],
                        parameters=diloco_rounds["parameters"], seen=seen)
    assert outcome.accepted == [0, 1, 2, 3] and not outcome.rejections
    # scaled back to the median norm, it weighs no more than an honest worker's update
    assert outcome.clipped[ATTACKER] < 1 / 3.5 * 1.2


def _round_proof(rounds: dict, store, attack) -> tuple:
    """The attacker's second round trained as ``attack`` (None: honestly), verified as any task is: the report and the run."""
    second = rounds["history"][1]
    task = round_spec(rounds["spec"], rounds["outer"], ATTACKER, 1, weights_digest(second["state"].weights))
    X, y = second["data"][ATTACKER]
    seed, config = b"\x05" * 32, VerifyConfig()
    run = run_worker(attack, task, X, y, store.put, initial=second["state"].weights)
    report = verify_proof(run.bundle, committed_root=run.committed_root, challenge_seed=seed, X=X, y=y,
                          fetch=store.fetch, expected_spec=task, response=run.answer(seed, config),
                          initial=second["state"].weights)
    run.spool.close()
    return report, run


def test_an_honest_worker_round_is_an_ordinary_proof_from_the_global_weights(diloco_rounds, store):
    report, run = _round_proof(diloco_rounds, store, None)
    assert report.passed, [c.name for c in report.failed_checks]
    assert weights_digest(run.result.final_state) == weights_digest(diloco_rounds["history"][1]["updates"][ATTACKER])


def test_a_worker_training_on_flipped_labels_fails_its_round_proof(diloco_rounds, store):
    report, _ = _round_proof(diloco_rounds, store, LabelFlipped())
    assert not report.passed
    assert {"spot-steps", "replay-random"} <= {c.name for c in report.failed_checks}
