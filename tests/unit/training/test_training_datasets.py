"""Datasets in bahen's table format."""

import json

import numpy as np
import pyarrow as pa
import pytest

from training.datasets import SHAPE_KEY, TEXT_WINDOW, arrays_to_table, load_dataset, table_to_arrays, text_corpus
from training.errors import DatasetError


def test_digits(digits):
    X, y, shape = digits
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float32 and shape == (1, 8, 8)
    assert y.dtype == np.int64 and set(y.tolist()) == set(range(10))
    assert X.min() == 0.0 and X.max() == 1.0


def test_table_format():
    table = load_dataset("digits")
    assert table.column_names[:2] == ["x0", "x1"] and table.column_names[-1] == "label"
    assert table.schema.field("x0").type == pa.float32() and table.schema.field("label").type == pa.int64()
    assert json.loads(table.schema.metadata[SHAPE_KEY]) == [1, 8, 8]


def test_mnist_test_split():
    X, y, shape = table_to_arrays(load_dataset("mnist", split="test"))
    assert X.shape == (10000, 1, 28, 28) and shape == (1, 28, 28)
    assert 0.0 <= X.min() and X.max() <= 1.0
    assert np.bincount(y).min() > 800  # every class is well represented


def test_text(text):
    X, y, shape = text
    corpus = text_corpus()
    assert corpus.startswith(b"The Zen of Python")
    assert shape == (TEXT_WINDOW,) and len(X) == len(corpus) - TEXT_WINDOW
    assert bytes(X[0].astype(np.uint8)) == corpus[:TEXT_WINDOW] and y[0] == corpus[TEXT_WINDOW]


def test_round_trip():
    rng = np.random.default_rng(0)
    X, y = rng.random((5, 2, 3, 3), dtype=np.float32), rng.integers(0, 4, 5)
    X2, y2, shape = table_to_arrays(arrays_to_table(X, y))
    assert shape == (2, 3, 3) and np.array_equal(X, X2) and np.array_equal(y, y2)


def test_foreign_table_is_rejected():
    with pytest.raises(DatasetError, match="bahen.input_shape"):
        table_to_arrays(pa.table({"x0": [1.0], "label": [0]}))


def test_unknown_dataset_and_split():
    with pytest.raises(DatasetError, match="built-in ones"):
        load_dataset("cifar10")
    with pytest.raises(DatasetError, match="no official"):
        load_dataset("digits", split="train")
