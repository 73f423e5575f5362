"""Validators' performance reports and their robust aggregate.

Each validator scores the final model on the holdout split independently. The aggregate is the
median, and a validator whose score is far from it (more than ``k`` scaled median absolute
deviations, with a floor so identical honest scores do not make every rounding an outlier) is
flagged: one lying or broken validator cannot move the outcome.
"""

import math
import statistics

from pydantic import BaseModel, ConfigDict, Field

# 1.4826 · MAD estimates the standard deviation of normally distributed scores.
MAD_SCALE = 1.4826


class PerformanceReport(BaseModel):
    """One validator's score of one task's final model (NaN scores when it could not evaluate)."""

    model_config = ConfigDict(ser_json_inf_nan="strings")

    order_id: str
    task: int
    validator: str
    model_sha256: str
    holdout_sha256: str
    samples: int = Field(ge=0, le=2**53, description="Holdout samples scored: a count, which every party's "
                         "figures against chance divide by")
    accuracy: float
    loss: float
    input_blind_loss: float | None = Field(
        default=None, description="The holdout loss of the best model that ignores its input (the targets' entropy)")
    error: str | None = None
    nonce: str = Field("", description="Fresh random hex the validator adds to the report it signs, so nobody can know "
                       "the report's digest, which names it in the store, before the validator writes it")


class Aggregate(BaseModel):
    median_accuracy: float
    median_loss: float
    median_input_blind_loss: float | None
    valid: int
    outliers: list[str]


def scored(report: PerformanceReport) -> bool:
    """Whether ``report`` holds a score: no error, an accuracy that is a share (0 to 1) and a loss that is a finite,
    non-negative number. Anything else, a NaN above all (a median over it means nothing), counts as no score."""
    return report.error is None and 0 <= report.accuracy <= 1 and math.isfinite(report.loss) and report.loss >= 0


def aggregate(reports: list[PerformanceReport], *, k: float = 3.0, floor: float = 0.01) -> Aggregate:
    """Median accuracy and loss over the reports that hold a score (:func:`scored`); flag outlying validators,
    and every validator whose report holds none."""
    valid = [r for r in reports if scored(r)]
    if not valid:
        return Aggregate(median_accuracy=float("nan"), median_loss=float("nan"), median_input_blind_loss=None, valid=0,
                         outliers=[r.validator for r in reports])
    accuracies = [r.accuracy for r in valid]
    median = statistics.median(accuracies)
    spread = max(MAD_SCALE * statistics.median(abs(a - median) for a in accuracies), floor)
    outliers = [r.validator for r in valid if abs(r.accuracy - median) > k * spread]
    outliers += [r.validator for r in reports if not scored(r)]
    blind = [r.input_blind_loss for r in valid
             if r.input_blind_loss is not None and math.isfinite(r.input_blind_loss) and r.input_blind_loss >= 0]
    return Aggregate(
        median_accuracy=median, median_loss=statistics.median(r.loss for r in valid),
        median_input_blind_loss=statistics.median(blind) if blind else None, valid=len(valid), outliers=outliers,
    )
