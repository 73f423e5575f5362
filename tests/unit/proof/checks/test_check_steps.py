"""The state chain and the one-step spot check: honest proofs pass; forged steps, withheld or
mismatched states and forged checkpoints fail, naming the step."""

from proof.attacks import run_worker
from proof.checks.steps import StateChainCheck, StepSpotCheck
from proof.response import Response
from proof.verifier import VerifyConfig

from tests.unit.proof.conftest import SEED

FEW = VerifyConfig(spot_steps=6)


def test_honest_steps_and_chain_pass(context):
    ctx = context()
    spot = StepSpotCheck().run(ctx)
    assert spot.passed and spot.observed == 0 and spot.cost_steps == len(ctx.challenge.spot_steps) > 0
    assert StateChainCheck().run(ctx).passed


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
