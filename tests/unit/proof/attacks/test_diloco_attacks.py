"""Attack family D against the DiLoCo outer step: each dishonest worker is excluded by the rule named
for it (proof/attacks/README.md), and the round's result is the one its honest workers alone give."""

import pytest
import torch

from proof.attacks import run_worker
from proof.attacks.diloco import PSEUDO_GRADIENT_ATTACKS, LabelFlipped, RoundView
from proof.verifier import VerifyConfig, verify_proof
from training.diloco import aggregate
from training.models import weights_digest

ATTACKER = 3
EXCLUDED_BY = {
    "sign-flipped": "disagreement",
    "random-direction": "disagreement",
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


@pytest.mark.parametrize("name", sorted(PSEUDO_GRADIENT_ATTACKS))
def test_a_dishonest_update_is_excluded_by_its_rule_and_the_round_is_the_honest_workers_alone(diloco_rounds, name):
    updates, seen = _submit(diloco_rounds, PSEUDO_GRADIENT_ATTACKS[name])
    state = diloco_rounds["history"][1]["state"]
    kwargs = dict(outer=diloco_rounds["outer"], parameters=diloco_rounds["parameters"], seen=seen)
    outcome = aggregate(state, updates, **kwargs)
    assert [(r.worker, r.rule) for r in outcome.rejections] == [(ATTACKER, EXCLUDED_BY[name])]
    assert outcome.accepted == [0, 1, 2]
    honest_alone = aggregate(state, {w: u for w, u in updates.items() if w != ATTACKER}, **kwargs)
    assert outcome.digest == honest_alone.digest


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


@pytest.mark.parametrize("factor", [-0.05, -1.0, -3.0])
def test_a_reversed_update_of_any_length_disagrees_with_the_round(diloco_rounds, factor):
    updates, seen = _submit(diloco_rounds, _scaled(factor))
    outcome = aggregate(diloco_rounds["history"][1]["state"], updates, outer=diloco_rounds["outer"],
                        parameters=diloco_rounds["parameters"], seen=seen)
    assert [(r.worker, r.rule) for r in outcome.rejections] == [(ATTACKER, "disagreement")]


def test_a_worker_training_on_flipped_labels_fails_its_round_proof(diloco_rounds, store):
    second = diloco_rounds["history"][1]
    from training.diloco import round_spec

    task = round_spec(diloco_rounds["spec"], diloco_rounds["outer"], ATTACKER, 1,
                      weights_digest(second["state"].weights))
    X, y = second["data"][ATTACKER]
    seed, config = b"\x05" * 32, VerifyConfig()
    reports = {}
    for attack in (None, LabelFlipped()):
        run = run_worker(attack, task, X, y, store.put, initial=second["state"].weights)
        reports[attack is None] = verify_proof(
            run.bundle, committed_root=run.committed_root, challenge_seed=seed, X=X, y=y, fetch=store.fetch,
            expected_spec=task, response=run.answer(seed, config), initial=second["state"].weights)
        run.spool.close()
    assert reports[True].passed  # the honest worker-round is an ordinary proof from the global weights
    assert not reports[False].passed
    assert {"spot-steps", "replay-random"} <= {c.name for c in reports[False].failed_checks}
