"""Ground truth sent back for served predictions, joined to them: the results' shapes and the truth's rules.

`retrain_job.data.logs.join_feedback` runs the join in the log engine and returns a `Joined`: its counts,
window, per-(version, role) prediction sums, and the joined rows (one per fed-back prediction id).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

UNKNOWN = "unknown"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def predicted_probability(predicted: Any, labels: tuple[str, ...] | None,
                          probabilities: tuple[float, ...] | None) -> float | None:
    """The probability of the predicted label (the top one if the label is not among them); None without any."""
    if probabilities is None or labels is None:
        return None
    if predicted in labels:
        return probabilities[labels.index(predicted)]
    return max(probabilities)


@dataclass(frozen=True)
class PredictionStats:
    """One (version, role)'s predictions in the window, as sums: how many, and what CBPE needs of them."""

    model_version: str
    role: str
    predictions: int  # rows logged (a repeated id counted once)
    with_probability: int  # rows logged with the probability of their predicted label
    confidence_sum: float  # sum of those probabilities
    confidence_spread: float  # sum of p * (1 - p): the variance of the number right, if calibrated
    classifier: bool
    labels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ShadowPairs:
    """A shadow version beside the answers given (one answering version and role) to the same prediction ids, as
    sums: agreement over every shadowed id, and each side's quality over those with a truth fed back."""

    shadow_version: str
    answered_version: str
    answered_role: str
    classifier: bool
    pairs: int  # ids both answered and shadowed
    agreed: int  # same label (a classifier)
    compared: int  # pairs with both values numeric (a regressor)
    abs_difference: float  # sum of |shadow - answer| (a regressor)
    squared_difference: float  # sum of (shadow - answer)^2
    labelled: int  # pairs with a truth
    shadow_hits: int  # right labels (a classifier)
    answer_hits: int
    differing_hits: int  # pairs where exactly one side is right
    scored: int  # labelled pairs with both errors numeric (a regressor)
    error_difference: float  # sum of |shadow error| - |answer error|
    error_difference_squares: float  # sum of its squares
    shadow_squares: float  # sum of shadow's squared errors
    answer_squares: float
    with_interval: int  # labelled pairs where the shadow gave an interval
    inside: int  # ... holding the truth


@dataclass(slots=True)
class JoinedRow:
    """A prediction with the truth fed back for it (the last one sent). Not frozen: a retrain builds a million of
    them, and a frozen dataclass's per-field `object.__setattr__` doubles that cost; treat it as read-only."""

    id: str
    model_version: str
    role: str
    instance: dict
    predicted: Any
    truth: str | float
    source: str
    feedback_time: datetime | None  # None when joined for training rows only (join_feedback's `outputs`)
    prediction_time: datetime | None
    labels: tuple[str, ...] | None = None
    probabilities: tuple[float, ...] | None = None
    interval: tuple[float, float] | None = None

    @property
    def predicted_probability(self) -> float | None:
        """The probability the model gave its own answer."""
        return predicted_probability(self.predicted, self.labels, self.probabilities)

    @property
    def late(self) -> bool:
        """The prediction's line is stamped after the feedback about it (lines may be written out of order)."""
        if self.prediction_time is None or self.feedback_time is None:
            return False
        return self.prediction_time > self.feedback_time


@dataclass(frozen=True)
class FeedbackCounts:
    """How the window's feedback items were used; each item is counted in exactly one of the last five."""

    lines: int = 0  # feedback entries of this model in the window
    items: int = 0
    malformed: int = 0  # not an object with a text `id` and a `truth`
    unknown_ids: int = 0  # no prediction of this model with that id in the window
    invalid_truths: int = 0  # a truth the prediction cannot take (a number for a label, a label it does not know)
    duplicates: int = 0  # an id already fed back: the last truth wins
    joined: int = 0
    late: int = 0  # joined rows whose prediction line is stamped after its feedback
    other_model_lines: int = 0
    by_source: Mapping[str, int] = field(default_factory=dict)  # items per source

    def to_dict(self) -> dict:
        """JSON-ready counts."""
        return {"lines": self.lines, "items": self.items, "malformed": self.malformed,
                "unknown_ids": self.unknown_ids, "invalid_truths": self.invalid_truths,
                "duplicates": self.duplicates, "joined": self.joined, "late": self.late,
                "other_model_lines": self.other_model_lines, "by_source": dict(sorted(self.by_source.items()))}


@dataclass(frozen=True)
class Window:
    """The times read: feedback in (feedback_from, to], predictions in [predictions_from, to]."""

    feedback_from: datetime
    predictions_from: datetime
    to: datetime
    files: int = 0
    bad_lines: int = 0
    prediction_lines: int = 0
    repeated_predictions: int = 0  # a prediction id logged twice: the first line is kept

    def to_dict(self) -> dict:
        """JSON-ready window."""
        return {"feedback_from": self.feedback_from.isoformat(), "predictions_from": self.predictions_from.isoformat(),
                "to": self.to.isoformat(), "files": self.files, "bad_lines": self.bad_lines,
                "prediction_lines": self.prediction_lines, "repeated_predictions": self.repeated_predictions}


@dataclass(frozen=True)
class JoinedTotals:
    """One (version, role)'s joined rows summed by the engine, all of them: what accuracy, RMSE, MAE and
    coverage are over every row when the rows brought into Python are a sample."""

    rows: int
    hits: int  # a classifier's rows whose truth is the answer
    scored: int  # a regressor's rows with a numeric answer
    with_interval: int  # a regressor's rows with an interval
    inside: int  # of those, truths inside it
    squares: float = 0.0  # sum of squared errors
    absolutes: float = 0.0  # sum of absolute errors


@dataclass(frozen=True)
class Joined:
    """One model's feedback joined to its predictions: the labelled rows, all predictions, and the counts."""

    model: str
    window: Window
    rows: tuple[JoinedRow, ...]
    predictions: tuple[PredictionStats, ...]
    counts: FeedbackCounts
    labelled: Mapping[tuple[str, str], int] = field(default_factory=dict)  # joined rows per (version, role)
    sampled: bool = False  # rows holds a hashed sample of each (version, role)'s joined rows, not all of them
    totals: Mapping[tuple[str, str], JoinedTotals] = field(default_factory=dict)  # over every joined row


@lru_cache(maxsize=64)
def _label_lookup(labels: tuple[str, ...]) -> dict[str, str]:
    return {label.lower(): label for label in labels}


def canonical_truth(prediction: Any, truth: Any) -> str | float | None:
    """The truth in the prediction's terms (a known label in its spelling, or a finite number); None if it cannot be."""
    if prediction.is_classifier:
        if not isinstance(truth, str) or not truth.strip():
            return None
        if prediction.labels is None:
            return truth.strip()
        return _label_lookup(prediction.labels).get(truth.strip().lower())
    if isinstance(truth, str):
        try:
            truth = float(truth)
        except ValueError:
            return None
    return _number(truth)
