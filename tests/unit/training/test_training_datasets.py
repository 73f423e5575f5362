"""Datasets in bahen's table format."""

import json

import numpy as np
import pyarrow as pa
import pytest

from training.datasets import (
    CORPUS, SHAPE_KEY, TEXT_WINDOW, arrays_to_table, is_text, load_dataset, table_to_arrays, text_corpus, text_table,
)
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


def test_a_text_table_labels_each_window_with_the_byte_after_it():
    table = text_table(b"abcdefghij", 3)  # windows abc, def, ghi; the last byte is only a label
    X, y, shape = table_to_arrays(table)
    assert shape == (3,) and is_text(table) and not is_text(arrays_to_table(X, y))
    assert [bytes(w.astype(np.uint8)) for w in X] == [b"abc", b"def", b"ghi"]
    assert bytes(y.astype(np.uint8)) == b"dgj"
    with pytest.raises(DatasetError, match="holds no window of 10 bytes"):
        text_table(b"abcdefghij", 10)


def test_shakespeare_is_the_pinned_corpus_in_windows_of_the_context():
    import hashlib

    corpus = CORPUS.read_bytes()
    assert hashlib.sha256(corpus).hexdigest() == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    X, y, shape = table_to_arrays(load_dataset("shakespeare", context=100))
    assert shape == (100,) and len(X) == (len(corpus) - 1) // 100
    assert bytes(X[1].astype(np.uint8)) == corpus[100:200] and y[1] == corpus[200]
