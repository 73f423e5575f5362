"""DiLoCo rounds: the shard plan, each worker-round's task, and the outer step, by known answers and properties."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from safetensors.torch import load, save

from training.diloco import (AggregationRules, GlobalState, OuterSpec, QuorumError, aggregate, round_indices,
                             round_spec, shard_plan, shard_plan_digest)
from training.errors import CheckpointError, TrainingError
from training.models import weights_digest
from training.trainer import train


@settings(max_examples=60, deadline=None)
@given(samples=st.integers(1, 500), workers=st.integers(1, 64), seed=st.integers(-(2**63), 2**63 - 1))
def test_the_shard_plan_partitions_the_samples_into_near_equal_shards(samples, workers, seed):
    if samples < workers:
        with pytest.raises(TrainingError, match="fewer workers"):
            shard_plan(seed, samples, workers)
        return
    plan = shard_plan(seed, samples, workers)
    assert len(plan) == workers
    assert sorted(np.concatenate(plan).tolist()) == list(range(samples))
    assert max(map(len, plan)) - min(map(len, plan)) <= 1
    assert shard_plan_digest(plan) == shard_plan_digest(shard_plan(seed, samples, workers))


def test_the_shard_plan_digest_follows_its_documented_encoding():
    import hashlib
    import struct

    plan = [np.array([4, 0]), np.array([2])]
    expected = hashlib.sha256(b"bahen.shard-plan.v1" + struct.pack(">Q2q", 2, 4, 0) + struct.pack(">Qq", 1, 2))
    assert shard_plan_digest(plan) == expected.hexdigest()


def test_the_shard_plan_digest_commits_to_every_index_and_boundary():
    plan = shard_plan(3, 10, 2)
    digest = shard_plan_digest(plan)
    swapped = [plan[1], plan[0]]
    moved = [plan[0][:-1], np.concatenate([plan[0][-1:], plan[1]])]
    assert len({digest, shard_plan_digest(swapped), shard_plan_digest(moved)}) == 3
    assert shard_plan(4, 10, 2)[0].tolist() != plan[0].tolist()


def test_a_worker_reads_its_shard_epoch_after_epoch_and_never_another_shard():
    plan = shard_plan(5, 100, 4)
    shard = plan[2]  # 25 samples
    rounds = [round_indices(5, shard, 2, r, 10) for r in range(5)]
    assert all(len(r) == 10 for r in rounds)
    assert set(np.concatenate(rounds).tolist()) <= set(shard.tolist())
    # the first two rounds and half the third are one epoch: no sample twice
    epoch = np.concatenate(rounds)[:25]
    assert sorted(epoch.tolist()) == sorted(shard.tolist())
    assert round_indices(5, shard, 1, 0, 10).tolist() != rounds[0].tolist()  # another worker's stream
    with pytest.raises(TrainingError, match="cannot come from a shard"):
        round_indices(5, shard[:0], 2, 0, 10)


def test_a_worker_round_is_one_epoch_from_the_pinned_global_weights(mlp_spec):
    outer = OuterSpec(workers=4, rounds=3, inner_steps=6)
    task = round_spec(mlp_spec(checkpoint_every=10), outer, 2, 1, "ab" * 32)
    assert (task.epochs, task.task, task.initial_weights, task.checkpoint_every) == (1, 6, "ab" * 32, 6)
    with pytest.raises(TrainingError, match="outside the order's 4 workers and 3 rounds"):
        round_spec(mlp_spec(), outer, 4, 0, "ab" * 32)
    with pytest.raises(TrainingError, match="outside"):
        round_spec(mlp_spec(), outer, 0, 3, "ab" * 32)


def test_the_outer_spec_refuses_a_quorum_above_the_workers_and_more_than_64_workers():
    with pytest.raises(ValidationError, match="min_quorum"):
        OuterSpec(workers=2, rounds=1, inner_steps=1, min_quorum=3)
    with pytest.raises(ValidationError, match="workers"):
        OuterSpec(workers=65, rounds=1, inner_steps=1)
    assert OuterSpec(workers=64, rounds=1, inner_steps=1).outer_lr == 0.7


def _state(**tensors) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v) for k, v in tensors.items()}


def test_the_outer_step_clips_to_the_median_norm_averages_and_takes_a_nesterov_step():
    outer = OuterSpec(workers=2, rounds=2, inner_steps=1, outer_lr=0.5, outer_momentum=0.5)
    start = GlobalState(0, _state(w=[1.0, 2.0], b=[0.0], n=3))
    updates = {0: _state(w=[0.5, 1.5], b=[1.0], n=4), 1: _state(w=[0.75, 1.75], b=[2.0], n=5)}
    outcome = aggregate(start, updates, outer=outer, parameters=["w"])
    # pseudo-gradients 0.5 and 0.25 per coordinate; the median norm scales worker 0's by 0.75;
    # mean g = 0.3125, m = g, u = g + 0.5 m = 0.46875, w = w - 0.5 u
    assert outcome.accepted == [0, 1] and outcome.rejections == []
    assert outcome.clipped == {0: pytest.approx(0.75)}
    assert torch.equal(outcome.next_state.weights["w"], torch.tensor([0.765625, 1.765625]))
    assert torch.equal(outcome.next_state.momentum["w"], torch.tensor([0.3125, 0.3125]))
    assert torch.equal(outcome.next_state.weights["b"], torch.tensor([1.5]))  # a buffer: the workers' mean
    assert outcome.next_state.weights["n"].item() == 5  # an integer buffer: the largest
    assert outcome.next_state.round == 1
    # round two: worker 0 hands the global weights back (a free rider, rejected), worker 1 moves 0.25;
    # m = 0.5 * 0.3125 + 0.25 = 0.40625, u = 0.25 + 0.5 m = 0.453125, w = w - 0.5 u
    again = aggregate(outcome.next_state, {0: _state(w=[0.765625, 1.765625], b=[1.5], n=6),
                                           1: _state(w=[0.515625, 1.515625], b=[1.0], n=6)},
                      outer=outer, parameters=["w"])
    assert [(r.worker, r.rule) for r in again.rejections] == [(0, "free-rider")]
    assert again.next_state.momentum["w"].tolist() == [0.40625, 0.40625]
    assert again.next_state.weights["w"].tolist() == [0.5390625, 1.5390625]
    assert again.next_state.weights["b"].tolist() == [1.0]  # the accepted worker's buffer alone


def test_the_global_state_digest_names_the_round_the_weights_and_the_momentum():
    state = GlobalState(1, _state(w=[1.0]), _state(w=[0.5]))
    others = [GlobalState(2, _state(w=[1.0]), _state(w=[0.5])), GlobalState(1, _state(w=[1.5]), _state(w=[0.5])),
              GlobalState(1, _state(w=[1.0]), _state(w=[0.25]))]
    assert len({state.digest(), *(o.digest() for o in others)}) == 4


def _round(history: dict) -> tuple:
    return history["state"], history["updates"], history["outcome"]


def _roundtrip(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return load(save(tensors))


def test_honest_workers_are_all_accepted_and_the_outer_step_recomputes_bit_for_bit(diloco_rounds):
    rounds = diloco_rounds
    for state, updates, outcome in (_round(h) for h in rounds["history"]):
        assert outcome.accepted == [0, 1, 2, 3] and outcome.rejections == []
        # anyone holding the committed states recomputes the next global state, byte for byte
        again = aggregate(GlobalState(state.round, _roundtrip(state.weights), _roundtrip(state.momentum)),
                          {w: _roundtrip(u) for w, u in updates.items()}, outer=rounds["outer"],
                          parameters=rounds["parameters"])
        assert again.digest == outcome.digest
        assert save(again.next_state.weights) == save(outcome.next_state.weights)


def test_the_outer_step_does_not_depend_on_the_thread_count(diloco_rounds):
    rounds = diloco_rounds
    state, updates, outcome = _round(rounds["history"][1])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if threads > 1 else 2)
        again = aggregate(state, updates, outer=rounds["outer"], parameters=rounds["parameters"])
    finally:
        torch.set_num_threads(threads)
    assert again.digest == outcome.digest


def test_a_worker_whose_proof_failed_is_left_out_and_the_aggregate_recomputed_without_it(diloco_rounds):
    rounds = diloco_rounds
    state, updates, _ = _round(rounds["history"][0])
    excluded = aggregate(state, updates, outer=rounds["outer"], parameters=rounds["parameters"],
                         excluded={2: "failed replay-random"})
    without = aggregate(state, {w: u for w, u in updates.items() if w != 2}, outer=rounds["outer"],
                        parameters=rounds["parameters"])
    assert excluded.accepted == [0, 1, 3]
    assert [(r.worker, r.rule, r.detail) for r in excluded.rejections] == [(2, "proof", "failed replay-random")]
    assert excluded.digest == without.digest


def test_a_round_missing_a_dead_worker_proceeds_with_quorum_and_stops_below_it(diloco_rounds):
    rounds = diloco_rounds
    state, updates, _ = _round(rounds["history"][0])
    three = {w: u for w, u in updates.items() if w != 1}
    assert aggregate(state, three, outer=rounds["outer"], parameters=rounds["parameters"]).accepted == [0, 2, 3]
    two = {w: u for w, u in updates.items() if w in (0, 3)}
    with pytest.raises(QuorumError, match="round 0: 2 of 2 updates survived .* min_quorum of 3"):
        aggregate(state, two, outer=rounds["outer"], parameters=rounds["parameters"])


def test_a_weights_file_that_is_not_the_global_state_cannot_start_a_round(diloco_rounds):
    rounds = diloco_rounds
    spec, outer = rounds["spec"], rounds["outer"]
    state, updates, _ = _round(rounds["history"][0])
    task = round_spec(spec, outer, 0, 0, weights_digest(state.weights))
    with pytest.raises(CheckpointError, match="not the ones the order pins"):
        train(task, rounds["X"][:128], rounds["y"][:128], initial=updates[1])


def test_rules_can_be_set_and_travel_as_parameters():
    rules = AggregationRules(copy_distance=0.2, max_norm_ratio=2.0)
    assert AggregationRules.model_validate_json(rules.model_dump_json()) == rules
    with pytest.raises(ValidationError):
        AggregationRules(max_norm_ratio=1.0)
    with pytest.raises(ValidationError, match="min_agreement"):
        AggregationRules(min_agreement=0.5)  # a misspelt or retired threshold is refused, never ignored
