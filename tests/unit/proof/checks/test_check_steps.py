"""The state chain, the one-step spot check and the update-size bound: honest proofs pass; forged
steps, withheld or mismatched states, forged checkpoints and oversized moves fail, naming the step."""

import dataclasses

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


def test_a_checkpoint_of_no_form_of_the_orders_is_named_not_hashed_nor_measured(context):
    """Its form fault is the finding: hashing it met values no state encodes (bytes in an optimizer group raised
    TypeError), and measuring a segment from it met weights it lacks (KeyError)."""
    ctx = context()
    a = ctx.checkpoint_steps[1]
    start = ctx.checkpoints[a]
    groups = [{**g, "lr": b"x"} for g in start.optimizer_state["param_groups"]]
    ctx.checkpoints[a] = dataclasses.replace(start, optimizer_state={**start.optimizer_state, "param_groups": groups})
    chain = StateChainCheck().run(ctx)
    assert (chain.observed, chain.detail) == (1.0, f"{ctx.checkpoint_name(a)} sets the optimizer's 'lr' to b'x' where "
                                                   f"the order implies {ctx.spec.lr}")
    ctx.checkpoints[a] = dataclasses.replace(start, model_state=dict(list(start.model_state.items())[1:]))
    assert UpdateSizeCheck().run(ctx).passed  # the segment from it is the state-chain check's to name
    assert "holds model state" in StateChainCheck().run(ctx).detail


def test_claims_that_sum_past_any_float_bound_their_segment_by_infinity_without_raising(context):
    """Each claim finite, their sum not: math.fsum raised OverflowError inside the verifier."""
    ctx = context()
    a, b = ctx.checkpoint_steps[:2]
    for t in range(a, b):
        ctx.steps[t] = ctx.steps[t].model_copy(update={"update_norm": 1e308})
    assert UpdateSizeCheck().run(ctx).passed  # a segment moves no farther than an infinite claim


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
    _admitting(monkeypatch, 0.06)
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


def _admitting(monkeypatch, step: float) -> None:
    """Every profile admits a relative deviation of ``step`` for one step (the spot check, the logged loss, the run total)."""
    import dataclasses

    from training import tolerance

    real = tolerance.replay_tolerance
    monkeypatch.setattr(tolerance, "replay_tolerance", lambda profile: dataclasses.replace(real(profile), step=step))


def _forged(spec, data, store, context):
    """A worker that trains every step at 0.9x the rate: every challenged step is off by a known error."""
    cheat = run_worker("wrong-lr", spec, data[0], data[1], store.put, 1.0, seed=2)
    return context(bundle=cheat.bundle, config=FEW, response=cheat.answer(SEED, FEW), committed_root=cheat.committed_root)


def _one_step(ctx, t):
    """The revealed states ``t`` and ``t + 1`` and the state one honest step reaches from ``t``."""
    from training.state import decode_state
    from training.trainer import Stepper

    start, end = (decode_state(steps._revealed(ctx, step)[0]) for step in (t, t + 1))
    reached, _ = Stepper(ctx.spec, ctx.X, ctx.y).step(start)
    return start, end, decode_state(reached.to_bytes())


def test_each_re_executed_step_costs_one_step_and_a_refused_revealed_state_none(spec, data, store, context):
    ctx = _forged(spec, data, store, context)
    challenged = ctx.challenge.spot_steps
    result = StepSpotCheck().run(ctx)
    assert result.observed == result.cost_steps == len(challenged)  # every step re-executed once, and failed
    t = challenged[1]
    ctx.steps[t] = ctx.steps[t].model_copy(update={"update_norm": ctx.steps[t].update_norm * 2})
    result = StepSpotCheck().run(ctx)  # the size claim is refused before stepping: no step executed for it
    assert result.cost_steps == len(challenged) - 1 and f"step {t}: the revealed states" in result.detail


def test_a_step_exactly_at_the_profiles_tolerance_passes_and_just_above_it_fails(spec, data, store, context, monkeypatch):
    from proof.checks.replay import state_distance

    ctx = _forged(spec, data, store, context)
    t = ctx.challenge.spot_steps[0]
    error = state_distance(*_one_step(ctx, t))
    assert error > 0
    from training.trainer import Stepper

    _admitting(monkeypatch, error)
    assert StepSpotCheck().fault_at(ctx, t, Stepper(ctx.spec, ctx.X, ctx.y))[0] is None
    _admitting(monkeypatch, error * (1 - 1e-9))
    why, ran, deviation = StepSpotCheck().fault_at(ctx, t, Stepper(ctx.spec, ctx.X, ctx.y))
    assert why.startswith(f"one honest step from state {t} does not reach the committed state {t + 1} (error ")
    assert (ran, deviation) == (1, None)


def test_a_tolerated_steps_deviation_is_its_claimed_weights_less_the_re_executed_ones(spec, data, store, context,
                                                                                      monkeypatch):
    from proof.checks.base import flatten_weights
    from training.trainer import Stepper

    ctx = _forged(spec, data, store, context)
    _admitting(monkeypatch, 1.0)
    t = ctx.challenge.spot_steps[0]
    _, end, reached = _one_step(ctx, t)
    names = ctx.form.trainable
    why, ran, deviation = StepSpotCheck().fault_at(ctx, t, Stepper(ctx.spec, ctx.X, ctx.y))
    assert (why, ran) == (None, 1)
    expected = flatten_weights(end.model_state, names) - flatten_weights(reached.model_state, names)
    assert deviation.shape == expected.shape and torch.equal(deviation, expected) and bool(expected.abs().sum() > 0)


def test_the_run_total_measures_the_run_from_the_initial_to_the_final_trainable_weights(context):
    """Pinned by an independent computation: the displacement is the distance between the state rebuilt
    from the order's seed and the last checkpoint, over the trainable weights only."""
    from training.state import decode_state

    ctx = context()
    names = ctx.form.trainable
    initial = decode_state(steps.initial_state_bytes(ctx)).model_state
    final = ctx.checkpoints[max(ctx.checkpoint_steps)].model_state
    before = torch.cat([initial[k].flatten().double() for k in names])
    after = torch.cat([final[k].flatten().double() for k in names])
    deviation = torch.zeros_like(before)
    deviation[0] = 0.5
    expected = 0.5 * len(ctx.steps) / 2 / float(torch.linalg.vector_norm(after - before))
    assert run_deviation(ctx, [deviation, EXACT], names) == pytest.approx(expected, rel=1e-12)


def test_a_segment_that_moves_exactly_as_far_as_its_steps_claim_passes_and_zero_claims_are_sizes(context, monkeypatch):
    ctx = context()
    a, b = ctx.checkpoint_steps[1:3]
    moved = weight_distance(ctx.checkpoints[a].model_state, ctx.checkpoints[b].model_state, ctx.form.trainable)
    monkeypatch.setattr(steps, "SIZE_RTOL", 0.0)
    for t in range(a, b):  # the whole move claimed by the segment's first step, none by the others
        ctx.steps[t] = ctx.steps[t].model_copy(update={"update_norm": moved if t == a else 0.0})
    result = UpdateSizeCheck().run(ctx)
    assert result.passed and result.observed == 0, result.detail
    ctx.steps[a] = ctx.steps[a].model_copy(update={"update_norm": moved * (1 - 1e-12)})
    result = UpdateSizeCheck().run(ctx)
    assert result.observed == 1 and f"from step {a} to {b}; its steps claim" in result.detail
    ctx.steps[a] = ctx.steps[a].model_copy(update={"update_norm": -1.0})
    assert f"step {a} claims an update of -1.0" in UpdateSizeCheck().run(ctx).detail


def test_a_run_whose_steps_and_total_stay_within_the_tolerance_passes(spec, data, store, context, monkeypatch):
    """Every forged step within a tolerance of 1 (the deviations measured over the trainable weights) passes."""
    ctx = _forged(spec, data, store, context)
    _admitting(monkeypatch, 1.0)
    result = StepSpotCheck().run(ctx)
    assert result.passed and result.cost_steps == len(ctx.challenge.spot_steps), result.detail


def test_a_state_refused_before_stepping_costs_no_step(context, monkeypatch):
    from training.trainer import Stepper

    ctx = context(config=FEW)
    t = ctx.challenge.spot_steps[2]
    stepper = Stepper(ctx.spec, ctx.X, ctx.y)
    for step, why in ((t, f"state {t} was not revealed (absent from the response)"),
                      (t + 1, f"state {t + 1} was not revealed (absent from the response)")):
        ctx = context(config=FEW)
        del ctx.revealed[step]
        ctx.state_problems.pop(step, None)
        assert StepSpotCheck().fault_at(ctx, t, stepper) == (why, 0, None)

    def breaks(self, ctx, t, stepper):
        raise RuntimeError("a forged state")

    monkeypatch.setattr(StepSpotCheck, "_check_step", breaks)
    assert StepSpotCheck().fault_at(ctx, t, stepper) == (
        f"state {t} cannot be restored and stepped (RuntimeError: a forged state)", 0, None)


@pytest.mark.parametrize("which", [0, 1])
def test_a_committed_state_that_is_no_state_is_named_by_its_step(context, which):
    """The worker committed the digest of bytes that do not decode: the fault names the state, at no cost."""
    import hashlib

    from training.trainer import Stepper

    ctx = context(config=FEW)
    t = next(t for t in ctx.challenge.spot_steps if t > 0)
    step = t + which
    garbage = b"not a training state"
    ctx.steps[step - 1] = ctx.steps[step - 1].model_copy(update={"state_sha256": hashlib.sha256(garbage).hexdigest()})
    ctx.revealed[step] = garbage
    why, ran, deviation = StepSpotCheck().fault_at(ctx, t, Stepper(ctx.spec, ctx.X, ctx.y))
    assert why.startswith(f"state {t} cannot be restored and stepped (CheckpointError: ") and (ran, deviation) == (0, None)
    assert f"state {step}" in why.split("(", 1)[1] and f"state {step + 1 - 2 * which}" not in why.split("(", 1)[1]


def test_a_claimed_size_is_held_to_its_relative_slack(context, monkeypatch):
    from proof.checks.steps import SIZE_RTOL
    from training.trainer import Stepper

    ctx = context(config=FEW)
    t = next(t for t in ctx.challenge.spot_steps if t > 0)
    start, end, _ = _one_step(ctx, t)
    moved = weight_distance(start.model_state, end.model_state, ctx.form.trainable)
    assert moved < 0.5  # so a slack of SIZE_RTOL x moved is narrower than SIZE_RTOL / moved
    stepper = Stepper(ctx.spec, ctx.X, ctx.y)
    for factor, passes in ((1 + SIZE_RTOL / 2, True), (1 + 2 * SIZE_RTOL, False)):
        ctx.steps[t] = ctx.steps[t].model_copy(update={"update_norm": moved * factor})
        assert (StepSpotCheck().fault_at(ctx, t, stepper)[0] is None) == passes
    monkeypatch.setattr(steps, "SIZE_RTOL", 0.0)
    ctx.steps[t] = ctx.steps[t].model_copy(update={"update_norm": moved})
    assert StepSpotCheck().fault_at(ctx, t, stepper)[0] is None  # a claim of exactly the distance moved


def test_a_logged_loss_is_held_to_the_tolerance_relative_to_the_re_executed_loss(context):
    from training.trainer import Stepper

    config = VerifyConfig(spot_steps=6, loss_rtol=1e-3)
    ctx = context(config=config)
    stepper = Stepper(ctx.spec, ctx.X, ctx.y)
    t = next(t for t in ctx.challenge.spot_steps if ctx.steps[t].loss > 1.5)
    loss = ctx.steps[t].loss
    for off, passes in ((0.5e-3, True), (1.5e-3, False)):
        ctx.steps[t] = ctx.steps[t].model_copy(update={"loss": loss * (1 + off)})
        assert (StepSpotCheck().fault_at(ctx, t, stepper)[0] is None) == passes


def test_the_run_total_of_no_deviation_is_none_and_a_vanishing_displacement_is_floored():
    from proof.checks.steps import total_deviation

    assert total_deviation([], 4, 100, 1.0) == 0.0
    v = torch.tensor([3.0, 4.0], dtype=torch.float64)
    assert total_deviation([v, v], 4, 100, 0.5) == pytest.approx(10.0 * 100 / 4 / 0.5)
    assert total_deviation([v], 1, 1, 0.0) == pytest.approx(5.0 / 1e-30)


def test_the_checks_details_list_at_most_five_faults_joined_and_count_what_held(context):
    ctx = context()
    n = len(ctx.checkpoint_steps)
    assert UpdateSizeCheck().run(ctx).detail == f"{n - 1} segments moved no farther than their steps claim"
    ctx.steps = [r.model_copy(update={"update_norm": -1.0, "state_sha256": ""}) for r in ctx.steps]
    sizes = UpdateSizeCheck().run(ctx)
    assert sizes.detail == "; ".join(f"step {t} claims an update of -1.0" for t in range(5))
    assert sizes.observed == len(ctx.steps) + n - 1
    chain = StateChainCheck().run(ctx)
    assert chain.detail.startswith("; ".join(f"step {t} has no state digest" for t in range(3)) + "; ")
    assert chain.detail.count("has no state digest") == 3 and chain.detail.count("; ") == 4


def test_a_missing_checkpoint_leaves_the_later_segments_bounded(context):
    ctx = context()
    a, b, c, d = ctx.checkpoint_steps[1:5]
    del ctx.checkpoints[a]
    for t in range(c, d):
        ctx.steps[t] = ctx.steps[t].model_copy(update={"update_norm": ctx.steps[t].update_norm * 0.1})
    result = UpdateSizeCheck().run(ctx)
    assert result.observed == 1 and f"from step {c} to {d}" in result.detail


def test_the_spot_checks_faults_are_joined_five_at_most(spec, data, store, context):
    many = VerifyConfig(spot_steps=8)
    cheat = run_worker("wrong-lr", spec, data[0], data[1], store.put, 1.0, seed=2)
    ctx = context(bundle=cheat.bundle, config=many, response=cheat.answer(SEED, many), committed_root=cheat.committed_root)
    result = StepSpotCheck().run(ctx)
    assert result.observed == len(ctx.challenge.spot_steps) > 5
    assert result.detail.count("does not reach the committed state") == 5
    assert [piece.split(":")[0] for piece in result.detail.split("; ")] == [f"step {t}" for t in ctx.challenge.spot_steps[:5]]


def test_a_committed_state_that_holds_another_step_is_refused_before_stepping(context):
    """A worker committed, as its state after step t + 1, the right weights labelled with another step."""
    import hashlib

    from training.state import checkpoint_state, decode_state
    from training.trainer import Stepper

    ctx = context(config=FEW)
    t = ctx.challenge.spot_steps[2]
    relabelled = decode_state(ctx.revealed[t + 1])
    relabelled.step = t + 5
    data = checkpoint_state(relabelled).to_bytes()
    ctx.steps[t] = ctx.steps[t].model_copy(update={"state_sha256": hashlib.sha256(data).hexdigest()})
    ctx.revealed[t + 1] = data
    assert StepSpotCheck().fault_at(ctx, t, Stepper(ctx.spec, ctx.X, ctx.y)) == (
        f"the revealed state {t + 1} holds step {t + 5}", 0, None)
