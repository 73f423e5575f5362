"""Datasets in bahen's table format."""

import json

import numpy as np
import pyarrow as pa
import pytest

from training.datasets import (
    CLASSES_KEY, CORPUS, FEATURES_KEY, SCALES_KEY, SHAPE_KEY, TEXT_WINDOW, arrays_to_table, image_folder_table, is_text, load_dataset, named_table,
    scale_features, table_to_arrays, text_corpus, text_table,
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



def _png(path, pixels, mode="L"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode=mode).save(path)


def test_an_image_folder_is_labelled_by_subfolder_in_sorted_order(tmp_path):
    _png(tmp_path / "zebra" / "a.png", np.full((4, 6), 255))
    _png(tmp_path / "ant" / "b.png", np.zeros((4, 6)))
    _png(tmp_path / "ant" / "c.png", np.full((4, 6), 51))
    (tmp_path / "ant" / "notes.txt").write_text("not an image, not read")
    table = image_folder_table(tmp_path)
    X, y, shape = table_to_arrays(table)
    assert shape == (1, 4, 6) and y.tolist() == [0, 0, 1]
    assert json.loads(table.schema.metadata[CLASSES_KEY]) == ["ant", "zebra"]
    assert X[1].max() == pytest.approx(0.2) and X[2].min() == 1.0


def test_colour_images_have_three_channels_first(tmp_path):
    pixels = np.zeros((2, 3, 3))
    pixels[..., 0] = 255  # red
    for name in ("a", "b"):
        _png(tmp_path / name / "x.png", pixels, mode="RGB")
    X, _, shape = table_to_arrays(image_folder_table(tmp_path))
    assert shape == (3, 2, 3) and X[0, 0].min() == 1.0 and X[0, 1:].max() == 0.0


def test_an_image_folder_names_the_file_at_fault(tmp_path):
    _png(tmp_path / "a" / "1.png", np.zeros((4, 4)))
    with pytest.raises(DatasetError, match="needs a subfolder of images .* for each of at least two classes"):
        image_folder_table(tmp_path)
    _png(tmp_path / "b" / "2.png", np.zeros((5, 4)))
    with pytest.raises(DatasetError, match=r"b/2.png is 4x5, where the first image, .*a/1.png, is 4x4"):
        image_folder_table(tmp_path)
    (tmp_path / "b" / "2.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"b/2.png cannot be read as an image"):
        image_folder_table(tmp_path)
    _png(tmp_path / "b" / "2.png", np.zeros((4, 4)))
    from PIL import Image

    Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)).save(tmp_path / "b" / "3.png")  # 16-bit grey
    with pytest.raises(DatasetError, match=r"b/3.png has I;16 pixels: save the images with 8 bits a channel"):
        image_folder_table(tmp_path)



def test_named_columns_become_features_in_file_order_and_the_label_column_the_label():
    table = pa.table({"height": [1.5, 2.0], "kind": [1, 0], "age": pa.array([3, 9], pa.int32())})
    named = named_table(table, "kind")
    X, y, shape = table_to_arrays(named)
    assert shape == (2,) and X.tolist() == [[1.5, 3.0], [2.0, 9.0]] and y.tolist() == [1, 0]
    assert json.loads(named.schema.metadata[FEATURES_KEY]) == ["height", "age"]
    with pytest.raises(DatasetError, match="no label column 'label'.*set label_column"):
        named_table(table, "label")
    with pytest.raises(DatasetError, match=r"columns \['city'\] are not numbers"):
        named_table(table.append_column("city", pa.array(["a", "b"])), "kind")
    with pytest.raises(DatasetError, match="label column 'height' holds double, not integers"):
        named_table(table, "height")


def test_scaling_maps_each_feature_to_the_unit_interval_and_keeps_its_range():
    table = named_table(pa.table({"a": [2.0, 4.0, 3.0], "b": [7, 7, 7], "label": [0, 1, 0]}), "label")
    scaled = scale_features(table)
    X, y, _ = table_to_arrays(scaled)
    assert X[:, 0].tolist() == [0.0, 1.0, 0.5] and X[:, 1].tolist() == [0.0, 0.0, 0.0] and y.tolist() == [0, 1, 0]
    assert json.loads(scaled.schema.metadata[SCALES_KEY]) == {"x0": [2.0, 4.0], "x1": [7.0, 7.0]}
    assert scaled.schema.metadata[FEATURES_KEY] == table.schema.metadata[FEATURES_KEY]
