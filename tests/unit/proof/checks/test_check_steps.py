"""The state chain, the one-step spot check and the update-size bound: honest proofs pass; forged
steps, withheld or mismatched states, forged checkpoints and oversized moves fail, naming the step."""

import pytest
import torch

from proof.attacks import run_worker
from proof.attacks.hidden_poisoning import HiddenPoisoning, admitted
from proof.challenge import largest_claimed_steps
from proof.checks import steps
from proof.checks.steps import EXACT, StateChainCheck, StepSpotCheck, UpdateSizeCheck, run_deviation, weight_distance
from proof.response import Response
from proof.verifier import VerifyConfig

from tests.unit.proof.conftest import SEED

FEW = VerifyConfig(spot_steps=6)


def test_honest_steps_and_chain_pass(context):
    ctx = context()
    spot = StepSpotCheck().run(ctx)
    assert spot.passed and spot.observed == 0 and spot.cost_steps == len(ctx.challenge.spot_steps) > 0
    assert StateChainCheck().run(ctx).passed


def test_an_order_that_challenges_no_step_passes_the_spot_check_at_no_cost(context):
    ctx = context(config=VerifyConfig(spot_steps=0, largest_steps=0, suspicious_steps=0))
    assert ctx.challenge.spot_steps == []
    result = StepSpotCheck().run(ctx)
    assert (result.passed, result.threshold, result.observed, result.cost_steps, result.detail) == (
        True, 0.0, 0.0, 0, "no steps challenged")


def test_forged_step_fails_naming_it(spec, data, store, context):
    # a worker that trains every step at 0.9x the rate commits digests of what it really did
    cheat = run_worker("wrong-lr", spec, data[0], data[1], store.put, 1.0, seed=2)
    ctx = context(bundle=cheat.bundle, config=FEW, response=cheat.answer(SEED, FEW), committed_root=cheat.committed_root)
    assert not ctx.state_problems  # every state was revealed and matches its digest...
    result = StepSpotCheck().run(ctx)
    t = ctx.challenge.spot_steps[0]
    assert not result.passed and result.observed == len(ctx.challenge.spot_steps)
    # ...but one honest step from it does not reach the next committed state
    assert f"step {t}: one honest step from state {t} does not reach the committed state {t + 1}" in result.detail


def _without(response: Response, step: int) -> Response:
    return response.model_copy(update={"states": [(s, r) for s, r in response.states if s != step]})


def test_withheld_state_fails_naming_the_step(honest, context):
    response = honest.answer(SEED, FEW)
    step = response.states[0][0]
    result = StepSpotCheck().run(context(config=FEW, response=_without(response, step)))
    assert not result.passed and f"state {step} was not revealed (withheld)" in result.detail


def test_state_that_does_not_match_its_digest_fails(honest, context):
    response = honest.answer(SEED, FEW)
    (a, ref_a), (b, ref_b) = response.states[:2]
    swapped = [(a, ref_b), (b, ref_a)] + response.states[2:]
    result = StepSpotCheck().run(context(config=FEW, response=response.model_copy(update={"states": swapped})))
    assert not result.passed and f"the revealed state {a} does not hash to the digest committed for it" in result.detail


def test_response_to_another_challenge_is_not_accepted(honest, context):
    other = honest.answer(b"\x01" * 32, FEW)
    result = StepSpotCheck().run(context(config=FEW, response=other))
    assert not result.passed and "answers another challenge" in result.detail


def test_no_response_fails_every_challenged_step(context):
    ctx = context(config=FEW, response=None)
    result = StepSpotCheck().run(ctx)
    assert result.observed == len(ctx.challenge.spot_steps) and "the worker gave no response" in result.detail


def test_checkpoint_off_the_committed_states_breaks_the_chain(context):
    ctx = context()
    step = ctx.checkpoint_steps[2]
    ctx.checkpoints[step].model_state = {k: v + 1e-6 for k, v in ctx.checkpoints[step].model_state.items()}
    result = StateChainCheck().run(ctx)
    assert not result.passed and f"{ctx.checkpoint_name(step)} is not the state committed for step {step}" in result.detail


def test_step_log_without_digests_fails_the_chain(context):
    ctx = context()
    ctx.steps = [r.model_copy(update={"state_sha256": ""}) for r in ctx.steps]
    result = StateChainCheck().run(ctx)
    assert not result.passed and "step 0 has no state digest" in result.detail


def test_settings_carried_in_the_state_are_refused_at_every_state_that_holds_them(spec, data, store, context):
    # The block's inner steps are honest steps under the worker's own settings: a verifier taking
    # the settings from the revealed state would reproduce them. It takes them from the order.
    cheat = run_worker("carried-settings", spec, data[0], data[1], store.put, 0.5, seed=3)
    block = cheat.attack.cheated_steps
    ctx = context(bundle=cheat.bundle, config=FEW, response=cheat.answer(SEED, FEW), committed_root=cheat.committed_root)
    inside = [t for t in ctx.challenge.spot_steps if block.start < t < block.stop - 1]
    assert inside, "the challenge must land inside the block for this test"
    spot = StepSpotCheck().run(ctx)
    assert not spot.passed
    t = inside[0]
    assert f"step {t}: the revealed state {t} sets the optimizer's 'momentum' to 0.99 where the order implies 0.9" \
        in spot.detail
    chain = StateChainCheck().run(ctx)
    held = [s for s in ctx.checkpoint_steps if block.start < s < block.stop]
    assert not chain.passed and f"{ctx.checkpoint_name(held[0])} sets the optimizer's 'momentum' to 0.99" in chain.detail


def test_a_claimed_update_size_is_checked_against_the_revealed_states(context):
    ctx = context(config=FEW)
    t = ctx.challenge.spot_steps[1]
    ctx.steps[t] = ctx.steps[t].model_copy(update={"update_norm": ctx.steps[t].update_norm * 0.5})
    result = StepSpotCheck().run(ctx)
    assert not result.passed and result.observed == 1
    assert f"step {t}: the revealed states {t} and {t + 1} lie" in result.detail and "the step log claims" in result.detail


@pytest.mark.parametrize("logged", ["scaled", "nan"])
def test_a_logged_loss_other_than_the_re_executed_one_is_named_by_the_spot_check_alone(context, logged):
    """Every state is the honest one: only the loss the step log claims for one challenged step is off, by
    1% or as NaN, and the spot check names that step at the cost of the one step it re-executed."""
    ctx = context(config=FEW)
    t = ctx.challenge.spot_steps[2]
    honest = ctx.steps[t].loss
    claimed = honest * 1.01 if logged == "scaled" else float("nan")
    ctx.steps[t] = ctx.steps[t].model_copy(update={"loss": claimed})
    result = StepSpotCheck().run(ctx)
    assert not result.passed and result.observed == 1 and result.cost_steps == len(ctx.challenge.spot_steps)
    assert f"step {t}: logged loss {claimed:.6g}, re-executed {honest:.6g}" in result.detail
    assert StateChainCheck().run(ctx).passed  # the states tell one story: the loss alone is off


def test_honest_segments_move_no_farther_than_their_steps_claim(context):
    result = UpdateSizeCheck().run(context())
    assert result.passed and result.observed == 0 and "segments moved no farther" in result.detail


def test_a_segment_that_moves_farther_than_its_claims_is_named(context):
    ctx = context()
    a, b = ctx.checkpoint_steps[2:4]
    for t in range(a, b):
        ctx.steps[t] = ctx.steps[t].model_copy(update={"update_norm": ctx.steps[t].update_norm * 0.1})
    ctx.steps[0] = ctx.steps[0].model_copy(update={"update_norm": float("nan")})
    result = UpdateSizeCheck().run(ctx)
    assert not result.passed and result.observed == 3  # the NaN claim leaves its own segment no bound either
    assert "step 0 claims an update of nan" in result.detail and f"from step {a} to {b}; its steps claim" in result.detail


def test_oversized_steps_are_caught_by_their_size_whatever_the_uniform_sample(spec, data, store, context):
    none = VerifyConfig(spot_steps=0, largest_steps=0, suspicious_steps=0, replay_segments=0, largest_update_segments=0)
    cheat = run_worker("oversized-steps", spec, data[0], data[1], store.put, 0.05, seed=1)
    pieces = sorted(cheat.attack.cheated_steps)
    assert pieces
    ctx = context(bundle=cheat.bundle, config=none, response=cheat.answer(SEED, none), committed_root=cheat.committed_root)
    sizes = UpdateSizeCheck().run(ctx)
    assert not sizes.passed  # the small claims do not add up to how far the weights moved
    # Claimed truthfully, the pieces are the largest claimed updates: re-executed by every challenge.
    truthful = [r.update_norm * 20 if r.step in cheat.attack.cheated_steps else r.update_norm for r in cheat.recorded.steps]
    assert largest_claimed_steps(truthful, len(pieces)) == pieces


def test_a_jump_within_the_size_bound_passes_it_and_is_caught_only_where_sampled(spec, data, store, context):
    # The adaptive attack on update-sizes: the largest poisoning jump its last segment admits,
    # hidden in the last step under the honest step's claimed size.
    attack = HiddenPoisoning()
    cheat = run_worker(attack, spec, data[0], data[1], store.put)
    assert attack.jump > 0
    last = cheat.attack.cheated_steps.start
    unsampled = VerifyConfig(spot_steps=0, largest_steps=0, suspicious_steps=0)
    ctx = context(bundle=cheat.bundle, config=unsampled, response=cheat.answer(SEED, unsampled),
                  committed_root=cheat.committed_root)
    assert UpdateSizeCheck().run(ctx).passed and StateChainCheck().run(ctx).passed
    every = VerifyConfig(spot_steps=len(cheat.recorded.steps))
    ctx = context(bundle=cheat.bundle, config=every, response=cheat.answer(SEED, every), committed_root=cheat.committed_root)
    spot = StepSpotCheck().run(ctx)
    assert not spot.passed and spot.observed == 1 and f"step {last}:" in spot.detail


def test_the_admitted_jump_is_the_largest_the_size_bound_allows():
    moved = torch.tensor([3.0, 0.0], dtype=torch.float64)
    cases = {(0.0, 1.0): 4.0, (1.0, 0.0): 2.0, (-1.0, 0.0): 8.0}
    for u, t in cases.items():
        assert admitted(moved, 5.0, torch.tensor(u, dtype=torch.float64)) == pytest.approx(t)
    assert admitted(moved, 2.0, torch.tensor([0.0, 1.0], dtype=torch.float64)) == 0.0


def test_the_run_total_is_estimated_from_the_uniform_sample(context):
    from training.state import decode_state

    ctx = context()
    names = ctx.form.trainable
    initial = decode_state(steps.initial_state_bytes(ctx)).model_state
    final = ctx.checkpoints[max(ctx.checkpoint_steps)].model_state
    displacement = weight_distance(initial, final, names)
    width = sum(initial[k].numel() for k in names)
    unit = torch.ones(width, dtype=torch.float64) / width**0.5
    # Eight sampled steps of a run of T each deviate by 0.01 in one direction: all T steps did, in sum 0.01 T.
    assert run_deviation(ctx, [0.01 * unit] * 8, names) == pytest.approx(0.01 * len(ctx.steps) / displacement)
    assert run_deviation(ctx, [0.01 * unit, -0.01 * unit] * 4, names) == 0.0  # noise that cancels adds up to nothing
    assert run_deviation(ctx, [EXACT] * 8, names) is None  # every step re-executed to the same bytes
    assert run_deviation(ctx, [0.01 * unit, None], names) is None  # a failed step is a fault of its own
    assert run_deviation(ctx, [], names) is None


def test_a_drift_that_each_step_admits_is_caught_by_the_run_total(spec, data, store, context, monkeypatch):
    # Under a tolerant profile (here one that admits 6% per step) a worker pushes every step 5% of
    # its update in one direction: each step passes, the pushes add up over the run.
    from proof.attacks import sub_tolerance_drift

    monkeypatch.setattr(sub_tolerance_drift, "SHARE", 0.05)
    monkeypatch.setattr(steps, "_tolerance", lambda ctx: 0.06)
    longer = spec.model_copy(update={"epochs": 10})
    cheat = run_worker("sub-tolerance-drift", longer, data[0], data[1], store.put, 1.0, seed=1)
    config = VerifyConfig()
    ctx = context(bundle=cheat.bundle, expected_spec=longer, response=cheat.answer(SEED, config),
                  committed_root=cheat.committed_root)
    result = StepSpotCheck().run(ctx)
    assert not result.passed and result.observed == 1
    assert result.detail.startswith("the deviations of ") and "of the run's displacement" in result.detail
    monkeypatch.setattr(steps, "run_deviation", lambda *args: None)
    assert StepSpotCheck().run(ctx).passed  # no step alone is out of the tolerance
