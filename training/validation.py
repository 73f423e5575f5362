"""The dataset contract, checked with a Great Expectations suite before anything leaves the client.

A dataset is a table of feature columns ``x0..x{d-1}`` scaled to [0, 1] and an integer ``label``.
The suite checks the schema, the row count, nulls, the feature range, the label set and the class
balance. A language-modelling table (`training.datasets.text_table`) has byte values instead: its
suite asks for whole numbers from 0 to 255 and leaves out the balance, which text never has. Per-feature expectations would cost O(d) validations (784 for MNIST), so the feature
checks run on per-row statistics (min, max, null count) that pyarrow computes in one pass: the same
guarantees at a constant cost.

Great Expectations takes ~3 s to import, so it is imported only when a suite runs.
"""

import math
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from training.datasets import BYTE_VOCAB, is_text
from training.errors import DatasetError

HINTS = {
    False: "A dataset is a table of feature columns x0, x1, … with values in [0, 1], no nulls, and an integer column "
    "label from 0 to the number of classes less one, not too unbalanced; fix the file and submit the order again.",
    True: "A text dataset is a text file of at least 100 times the order's context in bytes, cut into windows of "
    "the context; fix the file or lower the context and submit the order again.",
}


class ExpectationOutcome(BaseModel):
    """One expectation of the suite and what it observed."""

    expectation: str
    column: str | None
    success: bool
    observed: str


class DatasetReport(BaseModel):
    """The suite's verdict on a dataset."""

    rows: int
    num_features: int
    num_classes: int
    evaluated: int
    success: bool
    outcomes: list[ExpectationOutcome]

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]


class DatasetInvalidError(DatasetError):
    """The dataset failed expectations; ``report`` holds every outcome."""

    def __init__(self, name: str, report: DatasetReport, *, text: bool = False):
        self.report = report
        lines = [f"  - {o.expectation}({o.column or 'table'}): observed {o.observed}" for o in report.failed]
        super().__init__(
            f"dataset {name} failed {len(report.failed)} of {report.evaluated} expectations; "
            "nothing was uploaded or paid:\n" + "\n".join(lines) + "\n" + HINTS[text]
        )


def feature_columns(num_features: int) -> list[str]:
    return [f"x{i}" for i in range(num_features)]


def _row_stats(table: pa.Table, features: list[str]) -> pd.DataFrame:
    """Per-row min, max and null count over the feature columns, plus the label."""
    present = [c for c in features if c in table.column_names]
    if present:
        matrix = np.column_stack(
            [table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in present]
        )
        nulls = np.isnan(matrix).sum(axis=1)
        with np.errstate(all="ignore"):
            lo, hi = np.nanmin(matrix, axis=1, initial=np.inf), np.nanmax(matrix, axis=1, initial=-np.inf)
            fraction = np.nanmax(np.abs(matrix - np.round(matrix)), axis=1, initial=0.0)
    else:
        nulls = lo = hi = fraction = np.zeros(table.num_rows)
    label = table.column("label").to_pandas() if "label" in table.column_names else pd.Series([None] * table.num_rows)
    return pd.DataFrame({"label": label, "feature_min": lo, "feature_max": hi, "feature_nulls": nulls,
                         "feature_fraction": fraction})


def _suite(gx, *, features: list[str], num_classes: int, min_rows: int, max_kl: float, text: bool):
    schema = [gx.expectations.ExpectTableColumnsToMatchSet(column_set=[*features, "label"], exact_match=True)]
    rows = [
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=min_rows),
        gx.expectations.ExpectColumnValuesToNotBeNull(column="label"),
        gx.expectations.ExpectColumnValuesToBeInSet(column="label", value_set=list(range(num_classes))),
        gx.expectations.ExpectColumnValuesToBeBetween(column="feature_nulls", min_value=0, max_value=0),
        gx.expectations.ExpectColumnValuesToBeBetween(column="feature_min", min_value=0.0),
    ]
    if text:  # byte values: whole numbers up to 255, as unbalanced as the language is
        rows += [
            gx.expectations.ExpectColumnValuesToBeBetween(column="feature_max", max_value=BYTE_VOCAB - 1),
            gx.expectations.ExpectColumnValuesToBeBetween(column="feature_fraction", max_value=0.0),
        ]
    else:
        rows += [
            gx.expectations.ExpectColumnValuesToBeBetween(column="feature_max", max_value=1.0),
            gx.expectations.ExpectColumnKLDivergenceToBeLessThan(
                column="label",
                partition_object={"values": list(range(num_classes)), "weights": [1.0 / num_classes] * num_classes},
                threshold=max_kl,
            ),
        ]
    return schema, rows


def _outcomes(result) -> list[ExpectationOutcome]:
    outcomes = []
    for r in result.results:
        cfg = r.expectation_config
        observed = r.result.get("observed_value")
        mismatched = (r.result.get("details") or {}).get("mismatched")
        if mismatched:
            observed = ", ".join(f"{kind} columns {cols}" for kind, cols in mismatched.items() if cols)
        elif observed is None and "unexpected_count" in r.result:
            observed = f"{r.result['unexpected_count']} unexpected, e.g. {r.result.get('partial_unexpected_list', [])[:5]}"
        if r.exception_info and r.exception_info.get("raised_exception"):
            observed = r.exception_info.get("exception_message")
        outcomes.append(
            ExpectationOutcome(
                expectation=cfg.type, column=cfg.kwargs.get("column"), success=bool(r.success), observed=str(observed)
            )
        )
    return outcomes


def validate_dataset(
    table: pa.Table, *, num_features: int, num_classes: int, name: str = "dataset",
    min_rows: int = 100, max_kl: float = 0.1,
) -> DatasetReport:
    """Run the suite on ``table``; raise :class:`DatasetInvalidError` listing every failure.

    ``max_kl`` bounds the KL divergence of the label distribution from uniform: 0.1 nats lets a
    class be roughly half as frequent as the others before the suite refuses the data. A text
    table (`training.datasets.is_text`) gets the text suite.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    features = feature_columns(num_features)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    source = context.data_sources.add_pandas(name="bahen")
    text = is_text(table)
    schema_suite, row_suite = _suite(gx, features=features, num_classes=num_classes, min_rows=min_rows, max_kl=max_kl,
                                     text=text)
    outcomes: list[ExpectationOutcome] = []
    for asset_name, frame, expectations in (
        ("schema", table.slice(0, 1).to_pandas(), schema_suite),
        ("rows", _row_stats(table, features), row_suite),
    ):
        batch = source.add_dataframe_asset(asset_name).add_batch_definition_whole_dataframe(asset_name)
        suite = context.suites.add(gx.ExpectationSuite(name=asset_name, expectations=expectations))
        outcomes += _outcomes(batch.get_batch(batch_parameters={"dataframe": frame}).validate(suite))
    report = DatasetReport(
        rows=table.num_rows, num_features=num_features, num_classes=num_classes,
        evaluated=len(outcomes), success=all(o.success for o in outcomes), outcomes=outcomes,
    )
    if not report.success:
        raise DatasetInvalidError(name, report, text=text)
    return report


def infer_input_shape(num_features: int) -> tuple[int, ...]:
    """Square feature counts are single-channel images; anything else is a flat vector."""
    side = math.isqrt(num_features)
    return (1, side, side) if side * side == num_features else (num_features,)


def count_features(table: pa.Table) -> int:
    """Number of ``x<i>`` columns, however the table orders them."""
    return sum(1 for c in table.column_names if c.startswith("x") and c[1:].isdigit())


def num_classes_of(table: pa.Table) -> int:
    """Classes implied by the labels (max label + 1); 0 for an empty or label-less table."""
    if "label" not in table.column_names or table.num_rows == 0:
        return 0
    top = pc.max(table.column("label")).as_py()
    return int(top) + 1 if top is not None else 0
