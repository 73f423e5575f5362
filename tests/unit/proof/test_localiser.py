"""Wasp's learned step model: known answers, refusals, and what it adds to a challenge."""

import hashlib
import json
import math
import random
import statistics

import numpy as np
import pytest

from bench.pot import MemoryStore
from proof.attacks import run_worker, worker_challenge
from proof.challenge import derive_challenge
from proof.localiser import FEATURES, MODEL_PATH, WINDOW, ModelError, StepModel, Tree, packaged_model, read_model, step_features
from proof.verifier import VerifyConfig, verify_proof
from training.steps import StepRecord

SEED = b"\x05" * 32
NO_UPDATE = FEATURES.index("no update")
STUMP_SHA256 = "49d3e3a19b96e8df570980f7e62c8708a4925cba3682218598509694a784537a"


def _steps(n: int, **changed: dict[str, float]) -> list[StepRecord]:
    """An honest-looking log of ``n`` steps; ``changed`` maps "step" -> fields to overwrite at that step."""
    steps = [StepRecord(step=t, epoch=0, batch_digest="", loss=2.0 - t / n, lr=0.1, grad_norm=1.0 + 0.01 * (t % 3),
                        update_norm=0.1 + 0.001 * (t % 5), seconds=0.01) for t in range(n)]
    for t, fields in changed.items():
        steps[int(t)] = steps[int(t)].model_copy(update=fields)
    return steps


def _stump(threshold: float) -> StepModel:
    """One split: a step with no update scores +2 (over init -1), any other -3 (a 0 goes left: ``<=``)."""
    tree = Tree(left=[1, -1, -1], right=[2, -1, -1], feature=[NO_UPDATE, 0, 0], threshold=[0.0, 0, 0],
                value=[0.0, -2.0, 3.0])
    return StepModel(features=list(FEATURES), init=-1.0, rate=1.0, trees=[tree], threshold=threshold)


def test_a_stump_scores_steps_by_its_split_and_names_those_over_the_threshold():
    steps = _steps(40, **{"7": {"update_norm": 0.0}, "30": {"update_norm": 0.0}, "31": {"update_norm": 0.0}})
    model = _stump(threshold=0.0)
    scores = model.scores(steps)
    assert scores[7] == scores[30] == 2.0 and scores[0] == -3.0
    assert model.suspicious(steps, 2) == [7, 30]  # ties to the earlier steps
    assert model.suspicious(steps, 8) == [7, 30, 31]  # never a step under the threshold
    assert _stump(threshold=2.5).suspicious(steps, 8) == []
    assert _stump(threshold=2.0).suspicious(steps, 1) == [7]  # a score at the threshold clears it
    assert model.suspicious(steps, 0) == [] and model.suspicious([], 4) == []
    assert hashlib.sha256(model.to_bytes()).hexdigest() == model.sha256() == STUMP_SHA256  # canonical JSON
    assert model.to_bytes().startswith(b'{"features":["update vs neighbours","gradient vs neighbours",')


def _neighbours(values: list[float]) -> list[float]:
    """Each value less the median of the 65 around it, the ends repeated: the specification, in plain Python."""
    padded = [values[0]] * WINDOW + values + [values[-1]] * WINDOW
    return [v - statistics.median(padded[t:t + 2 * WINDOW + 1]) for t, v in enumerate(values)]


def test_step_features_against_their_specification():
    rng = random.Random(4)
    steps = [StepRecord(step=t, epoch=0, batch_digest="", loss=0.5 * rng.random() + 0.01, lr=0.1 * (1 + t % 2),
                        grad_norm=rng.random() + 0.1, update_norm=0.01 * rng.random() + 1e-4, seconds=0.02 + rng.random())
             for t in range(90)]
    steps[40] = steps[40].model_copy(update={"loss": math.nan})
    loss = [0.0 if t == 40 else r.loss for t, r in enumerate(steps)]
    log = lambda values: [math.log10(v) for v in values]  # noqa: E731
    update, grad = log([r.update_norm for r in steps]), log([r.grad_norm for r in steps])
    scale = [max(abs(v), 1e-12) for v in loss]
    expected = list(zip(
        _neighbours(update), _neighbours(grad), [d / s for d, s in zip(_neighbours(loss), scale)],
        [(loss[t] - loss[max(t - 1, 0)]) / scale[t] for t in range(90)],
        _neighbours([u - math.log10(r.lr * r.grad_norm) for u, r in zip(update, steps)]),
        _neighbours(log([r.lr for r in steps])), _neighbours(log([r.seconds for r in steps])),
        [0.0] * 90, [1.0 if t == 40 else 0.0 for t in range(90)],
    ))
    np.testing.assert_allclose(step_features(steps), np.array(expected), rtol=1e-12, atol=1e-12)


def test_features_are_finite_and_mark_what_no_honest_step_claims():
    steps = _steps(100, **{"50": {"update_norm": 0.0}, "60": {"loss": math.nan}, "70": {"grad_norm": math.inf}})
    x = step_features(steps)
    assert x.shape == (100, len(FEATURES)) and np.isfinite(x).all()
    assert np.flatnonzero(x[:, NO_UPDATE]).tolist() == [50]
    assert np.flatnonzero(x[:, FEATURES.index("not finite")]).tolist() == [60, 70]
    # a step whose update is ten times its neighbours' stands one decade above them
    x = step_features(_steps(100, **{"40": {"update_norm": 1.0}}))
    assert x[40, FEATURES.index("update vs neighbours")] == pytest.approx(1.0, abs=0.01)
    assert step_features([]).shape == (0, len(FEATURES))


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(features=d["features"][::-1]), "trained on features"),
    (lambda d: d["trees"][0].update(left=[0, -1, -1]), "malformed node 0"),  # a node that is its own child: a loop
    (lambda d: d["trees"][0].update(feature=[99, 0, 0]), "malformed node 0"),
    (lambda d: d["trees"][0].update(value=[0.0]), "tree 0 has arrays of different lengths$"),
    (lambda d: d["trees"][0].update(left=[-1, -1, -1]), "malformed node 0"),  # half a leaf
    (lambda d: d["trees"][0].update(left=[3, -1, -1]), "malformed node 0"),  # a child past the end
    (lambda d: d["trees"][0].update(right=[3, -1, -1]), "malformed node 0"),
    (lambda d: d["trees"][0].update(right=[0, -1, -1]), "malformed node 0"),
    (lambda d: d["trees"][0].update(feature=[len(FEATURES), 0, 0]), "malformed node 0"),
    (lambda d: d["trees"][0].update(left=[1, -1, 3, -1, -1], right=[2, -1, 4, -1, -1], feature=[0, 0, 99, 0, 0],
                                    threshold=[0.0] * 5, value=[0.0] * 5), "malformed node 2"),  # after a leaf
    (lambda d: d.update(extra=1), "not a step model"),
])
def test_a_model_file_that_is_not_a_model_is_refused_by_name(change, message):
    data = _stump(0.0).model_dump(mode="json")
    change(data)
    with pytest.raises(ModelError, match=message):
        read_model(json.dumps(data).encode(), name="model.json")


def test_bytes_that_are_no_model_are_refused_under_a_default_name():
    with pytest.raises(ModelError, match="^localiser model is not a step model"):
        read_model(b"[]")


def test_the_packaged_model_is_the_one_dvc_pins():
    model = packaged_model()
    assert model.sha256() == read_model(MODEL_PATH.read_bytes()).sha256()
    assert math.isfinite(model.threshold) and model.trees and model.trained_on["runs"] > 0
    lock = (MODEL_PATH.parents[1] / "dvc.lock").read_text()
    assert hashlib.md5(MODEL_PATH.read_bytes()).hexdigest() in lock


def test_gradient_boosted_trees_export_to_the_scores_scikit_learn_computes():
    from bench.wasp import _fit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, len(FEATURES)))
    dishonest = x[:, 0] + 0.5 * x[:, 3] > 1.0
    table = {"x": x, "dishonest": dishonest, "honest": ~dishonest}
    model = _fit(table, np.arange(600), trees=10, depth=3, rate=0.2, margin=1.0)  # asserts the export against sklearn
    assert model.threshold == pytest.approx(model.feature_scores(x[~dishonest]).max() + 1.0)


def test_worker_and_verifier_add_the_same_suspicious_steps_and_an_honest_worker_still_passes(spec, data, monkeypatch):
    import proof.localiser
    import proof.verifier

    X, y, _ = data
    store = MemoryStore()
    # only the model's steps are spot-checked: no uniform, largest-update or replayed step
    config = VerifyConfig(spot_steps=0, largest_steps=0, suspicious_steps=3, replay_segments=0, largest_update_segments=0)
    honest = run_worker(None, spec, X, y, store.put)
    cheat = run_worker("skipped-steps", spec, X, y, store.put, 0.05, seed=3)  # its skipped steps claim no update
    skipped = list(cheat.attack.cheated_steps)
    assert 0 < len(skipped) < 3
    filled = sorted(skipped + [t for t in range(3) if t not in skipped][:3 - len(skipped)])  # then ties to the earlier
    for model, expected in ((_stump(threshold=0.0), {"honest": [], "cheat": skipped}),
                            (_stump(threshold=-10.0), {"honest": [0, 1, 2], "cheat": filled}),
                            (_stump(threshold=2.5), {"honest": [], "cheat": []})):
        monkeypatch.setattr(proof.localiser, "packaged_model", lambda model=model: model)
        monkeypatch.setattr(proof.verifier, "packaged_model", lambda model=model: model)
        for name, run in (("honest", honest), ("cheat", cheat)):
            challenge = worker_challenge(SEED, run.bundle, run.recorded.steps, config)
            assert challenge.suspicious_steps == challenge.spot_steps == expected[name]
            assert challenge.uniform_steps == derive_challenge(SEED, run.bundle, config).spot_steps == []
            report = verify_proof(run.bundle, committed_root=run.committed_root, challenge_seed=SEED, X=X, y=y,
                                  fetch=store.fetch, expected_spec=run.job.spec, config=config,
                                  response=run.answer(SEED, config))
            assert report.suspicious_steps == expected[name] and report.localiser == model.sha256()
            spot = next(c for c in report.checks if c.name == "spot-steps")
            # the model's steps never fail honest work; on the cheat they are the skipped steps, caught
            assert spot.passed is (name == "honest" or not expected[name]), spot.detail
            if name == "honest":
                assert report.passed
    honest.spool.close()
    cheat.spool.close()


def _steady(steps: list[StepRecord]) -> list[StepRecord]:
    """The same log with every step taking the same time."""
    return [r.model_copy(update={"seconds": 0.01}) for r in steps]


def test_the_packaged_model_finds_skipped_steps_and_a_worker_who_mimics_its_neighbours_evades_it(spec, data, honest):
    X, y, _ = data
    store = MemoryStore()
    model = packaged_model()
    plain = run_worker("skipped-steps", spec, X, y, store.put, 0.05, seed=3)
    mimic = run_worker("mimicking-skipper", spec, X, y, store.put, 0.05, seed=3)
    assert list(plain.attack.cheated_steps) and list(mimic.attack.cheated_steps)
    # the step times this host measured say how busy it was, not how the worker trained: hold them steady
    assert set(model.suspicious(_steady(plain.recorded.steps), 8)) & set(plain.attack.cheated_steps)
    # the adaptive worker is left to the uniform spot check, exactly as strong as without the model
    assert not set(model.suspicious(_steady(mimic.recorded.steps), 8)) & set(mimic.attack.cheated_steps)
    assert model.suspicious(_steady(honest.recorded.steps), 8) == []
    plain.spool.close()
    mimic.spool.close()
