"""Wasp's learned model of honest training: which steps of a step log look wrong.

Every step of a committed step log gets a score from features of the log alone (its loss, gradient
and update norms, learning rate and time, each against the steps around it), by an ensemble of
regression trees trained on honest runs and on the attack catalogue (``bench.wasp``, the DVC stages
``wasp-traces`` and ``wasp-train``), where a step is dishonest when one honest step from its revealed
state does not reach the state committed after it. The model only ever adds checks: a proof whose
highest step score clears the model's threshold has its ``suspicious_steps`` (an order field)
highest-scoring steps spot-checked on top of the uniform ones (``proof.challenge.with_targeted_steps``).
A worker is rejected only by a failed re-execution or a broken commitment, so a model that is wrong,
or that an adaptive worker evades, costs an honest worker nothing and leaves the uniform challenge
as strong as before.

Scores are a pure function of the committed step log and the model (float64 arithmetic in a fixed
order, ties to the earlier step), so the worker answering the challenge and every verifier derive
the same steps. The model is a JSON document (no code is unpickled to read it) whose SHA-256 every
verification report records and ``dvc.lock`` pins.
"""

import hashlib
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proof.challenge import rolling_median
from proof.errors import ProofError
from training.steps import StepRecord

MODEL_PATH = Path(__file__).with_name("wasp_model.json")
WINDOW = 32  # steps on each side a step is compared with
FEATURES = (
    "update vs neighbours", "gradient vs neighbours", "loss vs neighbours", "loss change",
    "update per gradient vs neighbours", "learning rate vs neighbours", "time vs neighbours", "no update",
    "not finite",
)
_TINY = 1e-30


class ModelError(ProofError):
    """The localiser's model file is missing or not a model."""


class Tree(BaseModel, frozen=True):
    """One regression tree: node ``i`` splits on ``feature[i] <= threshold[i]`` (left) or is a leaf
    (``left[i] == -1``) whose output is ``value[i]``."""

    model_config = ConfigDict(extra="forbid")

    left: list[int]
    right: list[int]
    feature: list[int]
    threshold: list[float]
    value: list[float]


class StepModel(BaseModel, frozen=True):
    """A gradient-boosted ensemble scoring steps: ``init + rate × Σ trees`` (log-odds of a dishonest step)."""

    model_config = ConfigDict(extra="forbid")

    features: list[str] = Field(description="The feature names, in column order; must be this module's")
    init: float
    rate: float
    trees: list[Tree]
    threshold: float = Field(description="Least step score that makes a proof worth a closer look")
    trained_on: dict = Field(default_factory=dict, description="What the model was trained on, for its reader")

    def scores(self, steps: Sequence[StepRecord]) -> np.ndarray:
        """The score of every step of ``steps``, in step order."""
        return self.feature_scores(step_features(steps))

    def feature_scores(self, x: np.ndarray) -> np.ndarray:
        """The score of every row of :data:`FEATURES` values (``step_features``)."""
        total = np.zeros(len(x), dtype=np.float64)
        for tree in self.trees:
            total += _tree_values(tree, x)
        return self.init + self.rate * total

    def suspicious(self, steps: Sequence[StepRecord], count: int) -> list[int]:
        """Up to ``count`` steps to spot-check besides the uniform ones: the highest-scoring steps at
        or above the threshold, ties to the earlier step; none when no step reaches it."""
        if count <= 0 or not len(steps):
            return []
        scores = self.scores(steps)
        ranked = sorted(range(len(scores)), key=lambda t: (-scores[t], t))
        return sorted(t for t in ranked[:count] if scores[t] >= self.threshold)

    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


def _tree_values(tree: Tree, x: np.ndarray) -> np.ndarray:
    """Every row's leaf value, all rows walking the tree together."""
    left, right = np.asarray(tree.left), np.asarray(tree.right)
    feature, threshold, value = np.asarray(tree.feature), np.asarray(tree.threshold), np.asarray(tree.value)
    node = np.zeros(len(x), dtype=np.int64)
    rows = np.arange(len(x))
    while True:
        inner = left[node] >= 0
        if not inner.any():
            return value[node]
        go_left = x[rows, np.where(inner, feature[node], 0)] <= threshold[node]
        node = np.where(inner, np.where(go_left, left[node], right[node]), node)


def _against_neighbours(values: np.ndarray) -> np.ndarray:
    """Each value less the median of the :data:`WINDOW` steps on each side of it (itself included)."""
    return values - rolling_median(values, WINDOW)


def _log(values: np.ndarray) -> np.ndarray:
    return np.log10(np.maximum(values, _TINY))


def step_features(steps: Sequence[StepRecord]) -> np.ndarray:
    """The :data:`FEATURES` of every step, one row per step (float64; non-finite claims become 0 and
    set the "not finite" column)."""
    raw = np.array([[r.loss, r.grad_norm, r.update_norm, r.lr, r.seconds] for r in steps], dtype=np.float64)
    if not len(raw):
        return np.zeros((0, len(FEATURES)))
    finite = np.isfinite(raw).all(axis=1)
    loss, grad, update, lr, seconds = np.where(np.isfinite(raw), raw, 0.0).T
    log_update, log_grad = _log(np.abs(update)), _log(np.abs(grad))
    per_gradient = log_update - _log(np.abs(lr) * np.abs(grad))
    scale = np.maximum(np.abs(loss), 1e-12)
    change = np.diff(loss, prepend=loss[:1]) / scale
    columns = (
        _against_neighbours(log_update), _against_neighbours(log_grad), _against_neighbours(loss) / scale, change,
        _against_neighbours(per_gradient), _against_neighbours(_log(np.abs(lr))),
        _against_neighbours(_log(np.abs(seconds))), (update <= 0).astype(np.float64), (~finite).astype(np.float64),
    )
    return np.stack(columns, axis=1)


def _tree_fault(tree: Tree) -> str | None:
    """Why ``tree`` cannot be walked to a leaf from every node, or None: every split names a feature and
    two children after it (so no walk loops), every leaf has none."""
    n = len(tree.value)
    if not n or not len(tree.left) == len(tree.right) == len(tree.feature) == len(tree.threshold) == n:
        return "has arrays of different lengths"
    for i, (a, b, f) in enumerate(zip(tree.left, tree.right, tree.feature)):
        if a == -1 and b == -1:
            continue
        if not (i < a < n and i < b < n and 0 <= f < len(FEATURES)):
            return f"has a malformed node {i}"
    return None


def read_model(data: bytes, *, name: str = "localiser model") -> StepModel:
    """A model from its JSON bytes; raises :class:`ModelError` naming what is wrong."""
    try:
        model = StepModel.model_validate_json(data)
    except ValidationError as exc:
        raise ModelError(f"{name} is not a step model: {exc.errors()[0]['msg']}") from None
    if tuple(model.features) != FEATURES:
        raise ModelError(f"{name} was trained on features {model.features}, not this version's {list(FEATURES)}")
    for i, tree in enumerate(model.trees):
        if (fault := _tree_fault(tree)) is not None:
            raise ModelError(f"{name}: tree {i} {fault}")
    return model


@cache
def packaged_model() -> StepModel:
    """The model this version of bahen ships (``proof/wasp_model.json``, the output of ``dvc repro wasp-train``)."""
    if not MODEL_PATH.is_file():
        raise ModelError(f"{MODEL_PATH} is missing: `dvc repro wasp-train` makes it")
    return read_model(MODEL_PATH.read_bytes(), name=str(MODEL_PATH))
