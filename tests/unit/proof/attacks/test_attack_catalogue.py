import pytest

from proof.attacks import ATTACKS, Attack, UnknownAttackError, register, run_worker
from proof.verifier import VerifyConfig, verify_proof
from training.hooks import TrainHooks

SEED = b"\x07" * 32


def _verify(run, data, store):
    response = run.answer(SEED, VerifyConfig())
    return verify_proof(
        run.bundle, committed_root=run.committed_root, challenge_seed=SEED, X=data[0], y=data[1], fetch=store.fetch,
        expected_spec=run.job.spec, response=response,
    )


def test_honest_worker_passes(honest, data, store):
    report = _verify(honest, data, store)
    assert report.passed and not report.flagged


# The checks each catalogue attack must fail at full intensity on the tiny task (others may fail
# too): the "caught by" column of proof/attacks/README.md, so a check dropped or weakened shows here
# even where another check still rejects the same attack.
CAUGHT_BY = {
    "carried-settings": {"state-chain", "spot-steps", "replay-random"},
    "fabricated-losses": {"spot-steps", "loss", "replay-random", "pev"},
    "fabricated-telemetry": {"telemetry"},
    "half-batches": {"spot-steps", "replay-random", "loss"},
    "interpolated-checkpoints": {"state-chain", "update-sizes", "replay-largest-update", "loss"},
    "mimicking-skipper": {"spot-steps", "replay-random"},
    "nonfinite-checkpoint": {"artifacts", "state-chain"},
    "omitted-data": {"replay-random", "replay-largest-update"},
    "oversized-steps": {"update-sizes", "spot-steps", "replay-random"},
    "pretrained-model": {"replay-random", "replay-largest-update", "loss"},
    "proof-after-challenge": {"integrity"},
    "rescaled-updates": {"spot-steps", "replay-random"},
    "sandbagging": {"spot-steps", "replay-random"},
    "skipped-steps": {"spot-steps", "replay-random", "loss"},
    "sub-tolerance-drift": {"spot-steps", "replay-random"},
    "substituted-data": {"replay-random", "replay-largest-update"},
    "switching-free-rider": {"spot-steps", "replay-random"},
    "withheld-checkpoint": {"artifacts"},
    "wrong-lr": {"spot-steps", "replay-random"},
    "wrong-weight-decay": {"spot-steps", "replay-random"},
}


def test_every_catalogue_attack_names_the_checks_that_catch_it():
    assert CAUGHT_BY.keys() == ATTACKS.keys()


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_is_caught_at_full_intensity(name, spec, data, store):
    run = run_worker(name, spec, data[0], data[1], store.put, 1.0, seed=1)
    report = _verify(run, data, store)
    if ATTACKS[name].weak_evidence:
        assert report.passed and report.flagged  # weak evidence flags, it never rejects alone
    else:
        assert not report.passed, [c.name for c in report.checks if not c.passed]
    failed = {c.name for c in report.checks if not c.passed}
    assert CAUGHT_BY[name] <= failed, f"{name} passed {sorted(CAUGHT_BY[name] - failed)}"


def test_zero_intensity_is_the_honest_worker(spec, data, store, honest):
    run = run_worker("skipped-steps", spec, data[0], data[1], store.put, 0.0)
    assert run.result.final_state.keys() == honest.result.final_state.keys()
    assert all((run.result.final_state[k] == honest.result.final_state[k]).all() for k in run.result.final_state)
    assert _verify(run, data, store).passed


def test_unknown_attack_is_named():
    with pytest.raises(UnknownAttackError, match="no attack named 'nope'"):
        run_worker("nope", None, None, None, None)


def test_attacks_written_elsewhere_plug_in(spec, data, store, honest):
    class _Halve(TrainHooks):
        def on_record(self, record):
            return record.model_copy(update={"grad_norm": record.grad_norm / 2})

    @register
    class HalvedGradNorms(Attack):
        name = "halved-grad-norms"
        summary = "logs half the gradient norm"

        def hooks(self, job):
            return _Halve()

    try:
        run = run_worker("halved-grad-norms", spec, data[0], data[1], store.put)
        assert run.recorded.steps[3].grad_norm == honest.recorded.steps[3].grad_norm / 2
    finally:
        del ATTACKS["halved-grad-norms"]


def test_block_and_count_follow_the_intensity():
    attack = Attack(0.25, seed=4)
    block = attack.block(40)
    assert len(block) == 10 and 0 <= block.start and block.stop <= 40
    assert Attack(1.0).count(7) == 7 and Attack(0.0).count(7) == 0


def test_response_hook_lets_a_worker_withhold_states(spec, data, store):
    class Withholding(Attack):
        name = "withholding-responder"

        def respond(self, response, challenge, job):
            assert challenge.spot_steps and response.states  # the honest answer was prepared
            return response.model_copy(update={"states": response.states[1:]})

    run = run_worker(Withholding(), spec, data[0], data[1], store.put)
    report = _verify(run, data, store)
    spot = next(c for c in report.checks if c.name == "spot-steps")
    assert not report.passed and not spot.passed and "was not revealed (withheld)" in spot.detail
    assert [c.name for c in report.failed_checks] == ["spot-steps"]


@pytest.mark.parametrize("name", ["rescaled-updates", "skipped-steps", "sub-tolerance-drift", "wrong-lr",
                                  "wrong-weight-decay"])
def test_at_a_tenth_of_the_work_the_spot_check_alone_stands_between_these_attacks_and_payment(name, spec, data, store):
    run = run_worker(name, spec, data[0], data[1], store.put, 0.1, seed=1)
    report = _verify(run, data, store)
    assert [c.name for c in report.failed_checks] == ["spot-steps"]
