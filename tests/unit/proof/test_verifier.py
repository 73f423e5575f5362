"""verify_proof end to end on a tiny honest task: the report, its cost, and tampered storage."""

import dataclasses
import math

import pytest

from proof.attacks import run_worker
from proof.bundle import artifacts, build_bundle, read_step_log, write_step_log
from proof.merkle import merkle_root
from proof.report import VerificationReport
from proof.verifier import VerifyConfig, verify_proof
from tests.unit.proof.conftest import MemoryStore
from training.datasets import load_dataset, table_to_arrays
from training.models import GPTConfig
from training.trainer import TrainSpec, state_form

SEED = b"\x2a" * 32


@pytest.fixture(scope="module")
def job():
    X, y, shape = table_to_arrays(load_dataset("digits"))
    spec = TrainSpec(model="mlp", input_shape=shape, num_classes=10, optimizer="adamw", lr=0.01,
                     batch_size=50, epochs=2, seed=11, checkpoint_every=5, lr_schedule="cosine")
    store = MemoryStore()
    return spec, X[:500], y[:500], store, run_worker(None, spec, X[:500], y[:500], store.put)


def _verify(job, fetch=None, bundle=None, **kwargs):
    spec, X, y, store, run = job
    kwargs.setdefault("response", run.answer(SEED, VerifyConfig()))
    kwargs.setdefault("expected_spec", spec)
    return verify_proof(bundle or run.bundle, committed_root=run.committed_root, challenge_seed=SEED, X=X, y=y,
                        fetch=fetch or store.fetch, config=VerifyConfig(), **kwargs)


def _verify_counting_fetches(job, checkpoints):
    """Verify the honest proof with ``checkpoints`` in its place; the report and the names fetched."""
    fetched = []

    def fetch(ref):
        fetched.append(ref.name)
        return job[3].fetch(ref)

    return _verify(job, fetch, job[4].bundle.model_copy(update={"checkpoints": checkpoints})), fetched


def test_honest_report_passes_with_costs_and_artifacts(job):
    spec, X, y, store, run = job
    report = _verify(job)
    assert report.passed, [c for c in report.checks if not c.passed]
    assert [c.name for c in report.checks][:2] == ["integrity", "artifacts"]
    # all 20 steps spot-checked (48 samples, 20 steps) plus two 5-step segments replayed
    assert report.cost.replayed_steps == sum(c.cost_steps for c in report.checks) == 20 + 10
    # on a 20-step task the spot checks alone exceed the training: cost scales with samples, not steps
    assert report.cost.fraction_of_training == (3 * 30 * 50 + report.cost.forward_samples) / (3 * 20 * 50)
    assert set(report.artifacts.values()) == set(run.bundle.leaves)
    assert report.merkle_root == run.committed_root and report.challenge_seed == SEED.hex()
    assert report.claimed_final_loss == read_step_log(store.fetch(run.bundle.step_log))[-1].loss


def test_a_step_log_that_cannot_be_read_claims_no_final_loss(job):
    import math

    spec, X, y, store, run = job
    withheld = _verify(job, fetch=lambda ref: b"" if ref == run.bundle.step_log else store.fetch(ref))
    assert math.isnan(withheld.claimed_final_loss) and not withheld.passed


def test_report_round_trips_as_json(job):
    report = _verify(job)
    assert VerificationReport.model_validate_json(report.model_dump_json()) == report


def test_tampered_artifact_fails_the_report_without_raising(job):
    spec, X, y, store, run = job
    victim = run.bundle.checkpoints[3][1]
    original = store.objects[victim.sha256]
    store.objects[victim.sha256] = original[:-1] + bytes([original[-1] ^ 1])
    try:
        report = _verify(job)
    finally:
        store.objects[victim.sha256] = original
    assert not report.passed
    artifacts = next(c for c in report.checks if c.name == "artifacts")
    assert not artifacts.passed and victim.name in artifacts.detail


def test_honest_states_fit_the_bound_that_an_oversized_artifact_is_refused_by_unfetched(job):
    spec, X, y, store, run = job
    bound = state_form(spec, len(X)).max_bytes
    sizes = [ref.size for _, ref in run.bundle.checkpoints]
    assert bound / 8 < max(sizes) <= bound
    step, victim = run.bundle.checkpoints[2]
    huge = victim.model_copy(update={"size": bound + 1})
    checkpoints = [(s, huge if s == step else ref) for s, ref in run.bundle.checkpoints]
    report, fetched = _verify_counting_fetches(job, checkpoints)
    artifacts = next(c for c in report.checks if c.name == "artifacts")
    assert not artifacts.passed and f"{victim.name}: is {bound + 1:,} bytes, over the {bound:,}" in artifacts.detail
    assert victim.name not in fetched


def test_an_oversized_revealed_state_is_refused_unfetched(job):
    spec, X, y, store, run = job
    response = run.answer(SEED, VerifyConfig())
    bound = state_form(spec, len(X)).max_bytes
    first, ref = response.states[0]
    forged = response.model_copy(update={"states": [(first, ref.model_copy(update={"size": bound + 1})),
                                                    *response.states[1:]]})
    report = _verify(job, response=forged)
    spot = next(c for c in report.checks if c.name == "spot-steps")
    assert not spot.passed and f"over the {bound:,} a state of this order takes" in spot.detail


def test_misreported_spec_is_rejected(job):
    spec = job[0]
    report = _verify(job, expected_spec=spec.model_copy(update={"weight_decay": 0.01}))
    assert not report.passed


def test_a_bundle_trained_and_named_under_a_spec_the_worker_chose_fails_against_the_orders(job):
    """The worker trains honestly under another seed and names that spec in its bundle: self-consistent, not ordered."""
    spec, X, y, store, _ = job
    chosen = spec.model_copy(update={"seed": spec.seed + 1})
    run = run_worker(None, chosen, X, y, store.put)
    assert _verify((chosen, X, y, store, run)).passed  # checked against its own spec, it is flawless
    report = _verify((spec, X, y, store, run))
    integrity = next(c for c in report.checks if c.name == "integrity")
    assert not report.passed and "differs from the order's" in integrity.detail


def test_a_language_model_verifies_and_a_smaller_one_than_ordered_does_not():
    """The order fixes the gpt's size: a worker training one block where two were ordered, honestly
    and naming its own size, does half the work and is refused."""
    X, y, shape = table_to_arrays(load_dataset("text"))
    ordered = TrainSpec(model="gpt", architecture=GPTConfig(layers=2, heads=2, embed=16), input_shape=shape,
                        num_classes=128, optimizer="adamw", lr=3e-3, batch_size=32, epochs=1, seed=5, checkpoint_every=5)
    store = MemoryStore()
    honest = run_worker(None, ordered, X, y, store.put)
    assert _verify((ordered, X, y, store, honest)).passed
    smaller = ordered.model_copy(update={"architecture": GPTConfig(layers=1, heads=2, embed=16)})
    report = _verify((ordered, X, y, store, run_worker(None, smaller, X, y, store.put)))
    checks = {c.name: c for c in report.checks}
    assert not report.passed and "differs from the order's" in checks["integrity"].detail
    # every check that loads the worker's checkpoints says they are not the order's model, none crashes
    for name in ("loss", "pev"):
        assert not checks[name].passed and "it is not a model of this order" in checks[name].detail


def test_a_fine_tuning_order_verifies_from_the_clients_weights_and_not_from_others(job):
    from training.models import build_model, weights_digest

    spec, X, y, store, _ = job
    def weights(seed):
        return build_model("mlp", input_shape=spec.input_shape, num_classes=10, seed=seed).state_dict()

    ordered = spec.model_copy(update={"initial_weights": weights_digest(weights(7)), "epochs": 1})
    honest = run_worker(None, ordered, X, y, store.put, initial=weights(7))
    report = _verify((ordered, X, y, store, honest), initial=weights(7))
    checks = {c.name: c for c in report.checks}
    assert report.passed and checks["initialization"].detail == "initial weights equal the client's starting weights"
    # a worker that starts from weights of its own choosing, under a spec naming them
    own = ordered.model_copy(update={"initial_weights": weights_digest(weights(8))})
    report = _verify((ordered, X, y, store, run_worker(None, own, X, y, store.put, initial=weights(8))), initial=weights(7))
    checks = {c.name: c for c in report.checks}
    assert not report.passed and checks["initialization"].observed > 0
    assert checks["initialization"].detail == "initial weights differ from the client's starting weights"


def test_a_proof_made_for_one_order_fails_as_another_orders(job):
    """Same data, same client seed: the worker trains order A once and serves it for order B too."""
    spec, X, y, store, _ = job
    order_a, order_b = "0x" + "a1" * 32, "0x" + "b2" * 32
    spec_a = spec.model_copy(update={"order": f"31337/0x{'cd' * 20}/{order_a}", "seed": 101})
    spec_b = spec.model_copy(update={"order": f"31337/0x{'cd' * 20}/{order_b}", "seed": 202})
    run = run_worker(None, spec_a, X, y, store.put, order_id=order_a)
    assert _verify((spec_a, X, y, store, run)).passed

    served = _verify((spec_b, X, y, store, run))  # A's proof as it is
    integrity = next(c for c in served.checks if c.name == "integrity")
    assert not served.passed and f"names order {order_a}" in integrity.detail

    relabelled = build_bundle(run.recorded, order_id=order_b, task=0, spec=spec_b, put=store.put)
    forged = dataclasses.replace(run, bundle=relabelled, committed_root=relabelled.merkle_root)
    report = _verify((spec_b, X, y, store, forged))  # A's work, re-committed under B's name and spec
    failed = {c.name for c in report.checks if c.decisive and not c.passed}
    assert not report.passed and "initialization" in failed


def test_a_response_for_another_order_reveals_nothing(job):
    spec, X, y, store, run = job
    response = run.answer(SEED, VerifyConfig()).model_copy(update={"order_id": "0x" + "ee" * 32})
    report = _verify(job, response=response)
    spot = next(c for c in report.checks if c.name == "spot-steps")
    assert not report.passed and "another challenge, commitment or order" in spot.detail


def test_missing_response_fails_the_spot_check_naming_steps(job):
    report = _verify(job, response=None)
    spot = next(c for c in report.checks if c.name == "spot-steps")
    assert not report.passed and not spot.passed
    assert "was not revealed (the worker gave no response)" in spot.detail


def test_the_verifier_runs_every_check_in_order():
    # Pinned: a check dropped from the list would otherwise pass unnoticed wherever another check
    # happens to reject the same attacks.
    from proof.checks import default_checks

    assert [c.name for c in default_checks()] == [
        "integrity", "artifacts", "initialization", "data-order", "state-chain", "update-sizes", "loss",
        "spot-steps", "pev", "replay-random", "replay-largest-update", "telemetry",
    ]


def test_a_proof_listing_more_checkpoints_than_the_order_schedules_costs_no_fetch(job):
    spec, X, y, store, run = job
    padded = run.bundle.checkpoints + [(step, run.bundle.checkpoints[-1][1]) for step in range(10_000, 10_500)]
    report, fetched = _verify_counting_fetches(job, padded)
    artifacts = next(c for c in report.checks if c.name == "artifacts")
    assert not report.passed and "the proof lists 505 checkpoints at other steps than the 5 the order schedules" in artifacts.detail
    assert not any("checkpoint" in name for name in fetched)


def test_a_proof_listing_its_checkpoints_at_other_steps_than_the_order_schedules_costs_no_fetch(job):
    """As many checkpoints as scheduled, at other steps ([0, T, T + 1, ...]): the largest-update replay would
    have re-executed the whole run in one segment, and one at step -1 broke the loss check's data order."""
    spec, X, y, store, run = job
    cps = run.bundle.checkpoints
    total = cps[-1][0]
    for steps in ([0, total, *range(total + 1, total + len(cps) - 1)], [-1, *[s for s, _ in cps[1:]]]):
        report, fetched = _verify_counting_fetches(job, [(s, ref) for s, (_, ref) in zip(steps, cps, strict=True)])
        artifacts = next(c for c in report.checks if c.name == "artifacts")
        assert not report.passed and f"at other steps than the {len(cps)} the order schedules" in artifacts.detail
        assert not any("checkpoint" in name for name in fetched)
        assert all(c.detail.startswith("cannot check") for c in report.checks if c.name.startswith("replay"))


def test_a_loss_logged_as_infinite_fails_the_epochs_pev(job):
    """One loss past any float made the epoch's allowance infinite, and the epoch passed whatever else it logged."""
    from proof.bundle import write_step_log

    spec, X, y, store, run = job
    steps = read_step_log(store.fetch(run.bundle.step_log))
    steps[3] = steps[3].model_copy(update={"loss": math.inf})
    forged = run.bundle.model_copy(update={"step_log": store.put("step-log.parquet", write_step_log(steps))})
    pev = next(c for c in _verify(job, bundle=forged).checks if c.name == "pev")
    assert not pev.passed and pev.observed == math.inf and "e0=+inf" in pev.detail


def _without(bundle, store, kind):
    """The worker's bundle with one kind of record left out, committed as it stands (leaves and root redone)."""
    cps, digests = bundle.checkpoints, bundle.checkpoint_sha256
    steps = read_step_log(store.fetch(bundle.step_log))
    update = {
        "a middle checkpoint": {"checkpoints": cps[:2] + cps[3:], "checkpoint_sha256": digests[:2] + digests[3:]},
        "the step-0 checkpoint": {"checkpoints": cps[1:], "checkpoint_sha256": digests[1:]},
        "the last checkpoint": {"checkpoints": cps[:-1], "checkpoint_sha256": digests[:-1]},
        "a plaintext digest": {"checkpoint_sha256": digests[:-1]},
        "a step record": {"step_log": store.put("step-log.parquet", write_step_log(steps[:7] + steps[8:]))},
        "the last step record": {"step_log": store.put("step-log.parquet", write_step_log(steps[:-1]))},
        "an epoch digest": {"epoch_digests": bundle.epoch_digests[:-1]},
    }[kind]
    forged = bundle.model_copy(update=update)
    leaves = [ref.sha256 for ref in artifacts(forged)]
    return forged.model_copy(update={"leaves": leaves, "merkle_root": merkle_root([bytes.fromhex(x) for x in leaves]).hex()})


@pytest.mark.parametrize(("kind", "caught_by"), [
    ("a middle checkpoint", {"integrity", "artifacts"}),
    ("the step-0 checkpoint", {"integrity", "artifacts", "initialization"}),
    ("the last checkpoint", {"integrity", "artifacts"}),
    ("a plaintext digest", {"artifacts"}),
    ("a step record", {"integrity", "state-chain", "spot-steps"}),
    ("the last step record", {"integrity", "state-chain", "spot-steps"}),
    ("an epoch digest", {"integrity", "data-order"}),
])
def test_a_bundle_missing_a_kind_of_record_is_rejected_by_the_checks_that_need_it(job, kind, caught_by):
    spec, X, y, store, run = job
    forged = _without(run.bundle, store, kind)
    forger = dataclasses.replace(run, bundle=forged, committed_root=forged.merkle_root)
    report = verify_proof(forged, committed_root=forged.merkle_root, challenge_seed=SEED, X=X, y=y, fetch=store.fetch,
                          config=VerifyConfig(), expected_spec=spec, response=forger.answer(SEED, VerifyConfig()))
    failed = {c.name for c in report.checks if not c.passed}
    assert not report.passed and caught_by <= failed, sorted(failed)


def test_a_checkpoint_whose_plaintext_is_not_the_listed_digest_is_named(job):
    spec, X, y, store, run = job
    digests = list(run.bundle.checkpoint_sha256)
    digests[2] = "0" * 64
    report = _verify(job, bundle=run.bundle.model_copy(update={"checkpoint_sha256": digests}))
    artifacts = next(c for c in report.checks if c.name == "artifacts")
    name = run.bundle.checkpoints[2][1].name
    assert not report.passed and f"{name}: its plaintext is not the SHA-256 the proof lists" in artifacts.detail


def test_the_seconds_reported_lie_within_the_verification(job):
    import time

    started = time.perf_counter()
    report = _verify(job)
    elapsed = time.perf_counter() - started
    assert 0 < sum(c.seconds for c in report.checks) <= report.cost.seconds <= elapsed
    assert all(0 <= c.seconds for c in report.checks)
