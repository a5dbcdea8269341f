"""Quality of each served version from the truth fed back for it, with 95% intervals, and what it expects of itself.

Realised quality per (model version, role) comes from the joined rows (`retrain_job.data.feedback.join_feedback`):
accuracy (Wilson interval), macro F1 and log loss (bootstrap) for a classifier; for a binary one also ROC AUC,
PR AUC (average precision) and the Brier score of P(positive) (bootstrap), and precision and recall of the
positive class at the version's threshold (Wilson) with its F1 (bootstrap); RMSE and MAE (bootstrap) and
interval coverage (Wilson) for a regressor. Beside it, confidence-based performance estimation (CBPE, as
NannyML names it): with calibrated probabilities a prediction is right with the probability of its predicted
label, so the mean of those over all recent predictions, labelled or not, estimates accuracy where no truth
has come back. Everything here is pure: it reads a `Joined` and returns numbers.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from retrain_job.data.feedback import FeedbackCounts, Joined, JoinedRow, JoinedTotals, PredictionStats, Window

Z95 = NormalDist().inv_cdf(0.975)
PROBABILITY_FLOOR = 1e-7  # log loss clips probabilities as evaluate.classifier_metrics does
BOOTSTRAP_CELLS = 2_000_000  # resample weights held in memory at once (resamples x rows)
HIGHER_IS_BETTER = frozenset({"accuracy", "macro_f1", "coverage", "roc_auc", "pr_auc", "precision", "recall", "f1"})
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae", "brier"})
BINARY_METRICS = ("roc_auc", "pr_auc", "brier", "precision", "recall", "f1")  # a binary classifier's, after log loss
ROLE_ORDER = ("stable", "canary", "fallback", "shipped")


def _round(value: float | None) -> float | None:
    """Six significant digits: enough for any metric's scale, short in JSON."""
    return None if value is None else float(f"{value:.6g}")


@dataclass(frozen=True)
class Metric:
    """One number with the rows behind it and its 95% interval (None where there is nothing to measure)."""

    value: float | None
    n: int
    low: float | None = None
    high: float | None = None
    method: str = ""  # how the interval was drawn: wilson, bootstrap or cbpe

    def to_dict(self) -> dict:
        """JSON-ready metric."""
        return {"value": _round(self.value), "n": self.n, "low": _round(self.low), "high": _round(self.high),
                "method": self.method}

    def describe(self) -> str:
        """The metric in words, for evidence."""
        if self.value is None:
            return "not measured"
        return f"{self.value:.4g} (95% {self.low:.4g} to {self.high:.4g}, n={self.n})"


# ---- intervals ------------------------------------------------------------------------------------------

def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion: stays inside [0, 1] and behaves at small n and extreme shares."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_interval(statistic: Callable[[np.ndarray], np.ndarray], n: int, resamples: int = 1000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of a statistic over seeded resamples of n rows.

    `statistic` maps resample weights (resamples x n: how often each row was drawn) to one value per resample,
    so every resample is a matrix product rather than a Python loop.
    """
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, BOOTSTRAP_CELLS // max(n, 1)))
    values = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        drawn = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        weights = np.bincount(drawn.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)
        values.append(np.asarray(statistic(weights), dtype=np.float64))
    low, high = np.nanpercentile(np.concatenate(values), [2.5, 97.5])
    return float(low), float(high)


# ---- metrics --------------------------------------------------------------------------------------------

def _macro_f1_from_counts(tp: np.ndarray, true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Macro F1 over the last axis, averaging only labels seen as truth or prediction (scikit-learn's default)."""
    support = true + predicted
    present = support > 0
    f1 = np.where(present, 2 * tp / np.maximum(support, 1), 0.0)
    return f1.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def macro_f1(truths_index: np.ndarray, predicted_index: np.ndarray, classes: int) -> float:
    """Unweighted mean of per-label F1 over the labels that occur as truth or prediction."""
    true = np.bincount(truths_index, minlength=classes)
    predicted = np.bincount(predicted_index, minlength=classes)
    tp = np.bincount(truths_index[truths_index == predicted_index], minlength=classes)
    return float(_macro_f1_from_counts(tp, true, predicted))


def expected_calibration_error(probabilities: np.ndarray, truths_index: np.ndarray, bins: int = 10) -> float:
    """Top-label ECE: the row-weighted gap between confidence and accuracy in equal-width confidence bins.

    Standalone (NumPy arrays: rows x labels, and each row's true label index) so training can measure its
    holdout with the same function the monitor uses on served traffic.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    truths_index = np.asarray(truths_index)
    if probabilities.ndim != 2 or len(probabilities) != len(truths_index) or len(truths_index) == 0:
        raise ValueError("expected rows x labels probabilities and one truth index per row, at least one row")
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == truths_index).astype(np.float64)
    # bins are (lower, upper] between equally spaced edges, the first also taking 0
    which = np.clip(np.searchsorted(np.linspace(0.0, 1.0, bins + 1), confidence, side="left") - 1, 0, bins - 1)
    gap = np.abs(np.bincount(which, correct, bins) - np.bincount(which, confidence, bins))
    return float(gap.sum() / len(truths_index))


def estimate_accuracy(confidences: np.ndarray, z: float = Z95) -> Metric:
    """CBPE: the accuracy calibrated probabilities expect (mean predicted-label probability), and its 95% range.

    Each prediction is right with its probability p, so realised accuracy on these rows would have that mean
    and variance sum(p(1 - p)) / n^2 (a Poisson binomial): the range is where it should land.
    """
    c = np.asarray(confidences, dtype=np.float64)
    return estimate_accuracy_of_sums(len(c), float(c.sum()), float(np.sum(c * (1 - c))), z)


def estimate_accuracy_of_sums(n: int, total: float, spread: float, z: float = Z95) -> Metric:
    """`estimate_accuracy` from sums the engine computes: n, sum(p) and sum(p(1 - p)) of the confidences."""
    if n == 0:
        return Metric(None, 0, method="cbpe")
    value = total / n
    half = z * math.sqrt(max(spread, 0.0)) / n
    return Metric(value, n, max(0.0, value - half), min(1.0, value + half), "cbpe")


def _wilson_metric(hits: np.ndarray) -> Metric:
    n = len(hits)
    if n == 0:
        return Metric(None, 0, method="wilson")
    successes = int(hits.sum())
    return Metric(successes / n, n, *wilson_interval(successes, n), "wilson")


def _bootstrap_metric(value: float, statistic: Callable[[np.ndarray], np.ndarray], n: int, resamples: int,
                      seed: int) -> Metric:
    return Metric(value, n, *bootstrap_interval(statistic, n, resamples, seed), "bootstrap")


def _probability_table(rows: Sequence[JoinedRow]) -> tuple[tuple[str, ...], list[JoinedRow], np.ndarray, np.ndarray]:
    """The most common logged label order, its rows (with probabilities and a truth among those labels), their
    probabilities and truth indices."""
    orders: dict[tuple[str, ...], int] = {}
    for r in rows:
        if r.probabilities is not None and r.labels is not None:
            orders[r.labels] = orders.get(r.labels, 0) + 1
    if not orders:
        return (), [], np.empty((0, 0)), np.empty(0, dtype=int)
    labels = max(orders, key=orders.get)
    chosen = [r for r in rows if r.labels == labels and r.probabilities is not None and r.truth in labels]
    return (labels, chosen, np.array([r.probabilities for r in chosen], dtype=np.float64),
            np.array([labels.index(r.truth) for r in chosen], dtype=int))


def _probability_rows(rows: Sequence[JoinedRow]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and truth indices of the rows logged with the most common label order."""
    _, _, probabilities, truth_index = _probability_table(rows)
    return probabilities, truth_index


def ranking_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and average precision (PR AUC) of scores against a binary truth, one of each per row of `weights`
    (resamples x rows: how often each row counts; None: every row once).

    The one implementation of both, for a value (no weights) and its bootstrap alike. Rows are grouped by tied
    score, highest first: ROC AUC is the chance a positive outscores a negative, a tie counting half; average
    precision is the precision at each distinct score weighted by the share of the positives it adds (what
    scikit-learn's roc_auc_score and average_precision_score compute). NaN where the weights leave out a class.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    w = np.ones((1, len(s))) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if len(s) == 0:
        return np.full(len(w), np.nan), np.full(len(w), np.nan)
    order = np.argsort(-s, kind="stable")
    ranked, truth, w = s[order], y[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # the first row of each tied score
    pos = np.add.reduceat(np.where(truth, w, 0.0), starts, axis=1)  # resamples x distinct scores, highest first
    neg = np.add.reduceat(np.where(truth, 0.0, w), starts, axis=1)
    tp, fp = pos.cumsum(axis=1), neg.cumsum(axis=1)  # counted positive at each score as threshold
    positives, negatives = tp[:, -1], fp[:, -1]
    both = (positives > 0) & (negatives > 0)
    lower_negatives = negatives[:, None] - fp  # negatives scored strictly below each group
    roc = (pos * (lower_negatives + 0.5 * neg)).sum(axis=1) / np.where(both, positives * negatives, 1.0)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    average_precision = (pos * precision).sum(axis=1) / np.where(both, positives, 1.0)
    return np.where(both, roc, np.nan), np.where(both, average_precision, np.nan)


def binary_quality(rows: Sequence[JoinedRow], threshold: float | None = None, resamples: int = 1000,
                   seed: int = 0) -> dict[str, Metric]:
    """A binary classifier's metrics of P(positive) (the last logged label's probability) on labelled rows.

    ROC AUC and PR AUC (`ranking_auc`) and the Brier score, each with a bootstrap interval; precision and
    recall of the positive class with Wilson intervals (n: the rows decided positive, the truly positive ones)
    and its F1 (bootstrap). The decisions are P(positive) >= `threshold` (the version's, from its manifest), or
    the logged answers when it is None. The AUCs are not measured while the rows hold only one class, nor
    precision while no row is decided positive (evaluate.binary_metrics gives 0 there).
    """
    labels, chosen, probabilities, truth_index = _probability_table(rows)
    out = {name: Metric(None, 0, method="wilson" if name in ("precision", "recall") else "bootstrap")
           for name in BINARY_METRICS}
    if len(labels) != 2 or not chosen:
        return out
    n = len(chosen)
    p, y = probabilities[:, 1], truth_index == 1
    decided = p >= threshold if threshold is not None else np.array([r.predicted == labels[1] for r in chosen])
    roc, average_precision = (float(v[0]) for v in ranking_auc(p, y))
    for name, value, k in (("roc_auc", roc, 0), ("pr_auc", average_precision, 1)):
        if not math.isnan(value):
            out[name] = _bootstrap_metric(value, lambda w, k=k: ranking_auc(p, y, w)[k], n, resamples, seed)
        else:
            out[name] = Metric(None, n, method="bootstrap")
    squared = (p - y) ** 2
    out["brier"] = _bootstrap_metric(float(squared.mean()), lambda w: w @ squared / n, n, resamples, seed)
    out["precision"] = _wilson_metric(y[decided].astype(np.float64))
    out["recall"] = _wilson_metric(decided[y].astype(np.float64))
    hit, said, true = (decided & y).astype(np.float64), decided.astype(np.float64), y.astype(np.float64)
    out["f1"] = _bootstrap_metric(float(2 * hit.sum() / max(said.sum() + true.sum(), 1.0)),
                                  lambda w: 2 * (w @ hit) / np.maximum(w @ said + w @ true, 1.0), n, resamples, seed)
    return out


def classifier_quality(rows: Sequence[JoinedRow], resamples: int = 1000, seed: int = 0, *, binary: bool = False,
                       threshold: float | None = None) -> dict[str, Metric]:
    """Accuracy (Wilson), macro F1 and log loss (bootstrap) of labelled rows; log loss from logged probabilities.
    A binary classifier's (`binary`) also `binary_quality`'s at `threshold`."""
    classes = sorted({str(r.truth) for r in rows} | {str(r.predicted) for r in rows})
    index = {label: i for i, label in enumerate(classes)}
    truth = np.array([index[str(r.truth)] for r in rows], dtype=int)
    predicted = np.array([index[str(r.predicted)] for r in rows], dtype=int)
    out = {"accuracy": _wilson_metric((truth == predicted).astype(np.float64))}
    if len(rows):
        eye = np.eye(len(classes))
        t, p = eye[truth], eye[predicted]
        tp = t * p
        out["macro_f1"] = _bootstrap_metric(
            macro_f1(truth, predicted, len(classes)),
            lambda w: _macro_f1_from_counts(w @ tp, w @ t, w @ p), len(rows), resamples, seed)
    else:
        out["macro_f1"] = Metric(None, 0, method="bootstrap")
    probabilities, truth_index = _probability_rows(rows)
    if len(truth_index):
        loss = -np.log(np.clip(probabilities[np.arange(len(truth_index)), truth_index], PROBABILITY_FLOOR, 1.0))
        out["log_loss"] = _bootstrap_metric(float(loss.mean()), lambda w: w @ loss / len(loss), len(loss),
                                            resamples, seed)
    else:
        out["log_loss"] = Metric(None, 0, method="bootstrap")
    if binary:
        out.update(binary_quality(rows, threshold, resamples, seed))
    return out


def regressor_quality(rows: Sequence[JoinedRow], resamples: int = 1000, seed: int = 0) -> dict[str, Metric]:
    """RMSE and MAE (bootstrap) of labelled rows, and the share of truths inside their logged interval (Wilson)."""
    scored = [r for r in rows if isinstance(r.predicted, int | float) and not isinstance(r.predicted, bool)]
    error = np.array([float(r.predicted) - float(r.truth) for r in scored], dtype=np.float64)
    out: dict[str, Metric] = {}
    if len(error):
        squared, absolute = error ** 2, np.abs(error)
        out["rmse"] = _bootstrap_metric(float(np.sqrt(squared.mean())), lambda w: np.sqrt(w @ squared / len(error)),
                                        len(error), resamples, seed)
        out["mae"] = _bootstrap_metric(float(absolute.mean()), lambda w: w @ absolute / len(error), len(error),
                                       resamples, seed)
    else:
        out["rmse"] = Metric(None, 0, method="bootstrap")
        out["mae"] = Metric(None, 0, method="bootstrap")
    inside = [r.interval[0] <= float(r.truth) <= r.interval[1] for r in rows if r.interval is not None]
    out["coverage"] = _wilson_metric(np.array(inside, dtype=np.float64))
    return out


# ---- per version ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VersionQuality:
    """One (version, role): realised quality on its labelled rows, and for a classifier what CBPE expects."""

    model_version: str
    role: str
    task: str  # "classifier" or "regressor"
    labels: int  # joined rows
    predictions: int  # all its predictions in the window, labelled or not
    metrics: Mapping[str, Metric] = field(default_factory=dict)
    estimated_accuracy: Metric | None = None  # CBPE over all its predictions
    expected_accuracy_labelled: Metric | None = None  # CBPE over the labelled rows: comparable to realised accuracy
    calibration_error: float | None = None  # top-label ECE of the labelled rows
    verdict: str | None = None  # "ok", "degraded", or None: not enough labels
    reasons: tuple[str, ...] = ()
    positive: str | None = None  # a binary classifier's positive label (None for any other model)
    threshold: float | None = None  # a binary classifier's threshold on P(positive); None: its logged answers

    def to_dict(self) -> dict:
        """JSON-ready result."""
        return {"model_version": self.model_version, "role": self.role, "task": self.task, "labels": self.labels,
                "predictions": self.predictions, "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
                "estimated_accuracy": None if self.estimated_accuracy is None else self.estimated_accuracy.to_dict(),
                "expected_accuracy_labelled": (None if self.expected_accuracy_labelled is None
                                               else self.expected_accuracy_labelled.to_dict()),
                "calibration_error": _round(self.calibration_error), "verdict": self.verdict,
                "reasons": list(self.reasons),
                **({"positive": self.positive, "threshold": self.threshold} if self.positive is not None else {})}


def _worse_than(name: str, metric: Metric, reference: float) -> bool:
    """The whole interval is on the bad side of the reference."""
    if metric.value is None:
        return False
    if name in HIGHER_IS_BETTER:
        return metric.high < reference
    return metric.low > reference


def version_quality(model_version: str, role: str, rows: Sequence[JoinedRow], predictions: PredictionStats | None, *,
                    min_labels: int = 30, expected: Mapping[str, float] | None = None, interval_level: float = 0.9,
                    resamples: int = 1000, seed: int = 0, binary: bool = False,
                    threshold: float | None = None, labelled: int | None = None,
                    totals: JoinedTotals | None = None) -> VersionQuality:
    """Quality of one (version, role) with a verdict once it has `min_labels` labels.

    Degraded when a metric's whole interval is worse than its reference: the holdout's value in `expected`;
    for a classifier, the accuracy its own probabilities expect on the same rows (miscalibration or a changed
    relation between inputs and truth); for a regressor, the intervals' nominal `interval_level`. A binary
    classifier (`binary`) is also measured by `binary_quality` at `threshold`.
    """
    classifier = any(isinstance(x.predicted, str) for x in rows) or bool(predictions and predictions.classifier)
    binary = binary and classifier
    if not rows:
        metrics = {}
    elif classifier:
        metrics = classifier_quality(rows, resamples, seed, binary=binary, threshold=threshold)
    else:
        metrics = regressor_quality(rows, resamples, seed)
    if totals is not None and totals.rows > len(rows) and metrics:
        metrics = {**metrics, **_over_all_rows(metrics, totals, len(rows))}
    estimated = labelled_estimate = None
    ece = None
    reasons: list[str] = []
    if classifier:
        estimated = (estimate_accuracy_of_sums(predictions.with_probability, predictions.confidence_sum,
                                               predictions.confidence_spread) if predictions else
                     Metric(None, 0, method="cbpe"))
        with_probabilities = [r for r in rows if r.predicted_probability is not None]
        labelled_estimate = estimate_accuracy(np.array([r.predicted_probability for r in with_probabilities]))
        probabilities, truth_index = _probability_rows(rows)
        ece = expected_calibration_error(probabilities, truth_index) if len(truth_index) else None
        realised = np.mean([r.predicted == r.truth for r in with_probabilities]) if with_probabilities else None
        if realised is not None and labelled_estimate.low is not None and realised < labelled_estimate.low:
            reasons.append(f"accuracy {realised:.4g} below the {labelled_estimate.value:.4g} its probabilities "
                           f"expect on the same rows (95% {labelled_estimate.low:.4g} to {labelled_estimate.high:.4g})")
    elif "coverage" in metrics and _worse_than("coverage", metrics["coverage"], interval_level):
        reasons.append(f"coverage {metrics['coverage'].describe()} below the intervals' level {interval_level:g}")
    for name, reference in (expected or {}).items():  # a manifest's holdout metrics also hold rows, regimes...
        if name in metrics and isinstance(reference, int | float) and _worse_than(name, metrics[name], reference):
            side = "below" if name in HIGHER_IS_BETTER else "above"
            reasons.append(f"{name} {metrics[name].describe()} {side} the holdout's {reference:.4g}")
    labelled = len(rows) if labelled is None else labelled
    if labelled < min_labels:
        verdict, reasons = None, [f"not enough labels: {labelled} of {min_labels}"]
    else:
        verdict = "degraded" if reasons else "ok"
    labels = next((x.labels for x in rows if x.labels), predictions.labels if predictions else None)
    positive = labels[-1] if labels and binary else None  # binary labels are logged (negative, positive)
    return VersionQuality(model_version, role, "classifier" if classifier else "regressor", labelled,
                          predictions.predictions if predictions else 0, metrics, estimated, labelled_estimate, ece,
                          verdict, tuple(reasons), positive, threshold if binary else None)


def _over_all_rows(sample: Mapping[str, Metric], totals: JoinedTotals, n_sample: int) -> dict[str, Metric]:
    """Accuracy, coverage, RMSE and MAE over every joined row (the engine's sums), for a version judged on a sample."""
    out = {}
    if "accuracy" in sample and totals.rows:
        out["accuracy"] = Metric(totals.hits / totals.rows, totals.rows, *wilson_interval(totals.hits, totals.rows),
                                 "wilson")
    if "coverage" in sample and totals.with_interval:
        out["coverage"] = Metric(totals.inside / totals.with_interval, totals.with_interval,
                                 *wilson_interval(totals.inside, totals.with_interval), "wilson")
    narrow = math.sqrt(n_sample / totals.scored) if totals.scored else 1.0  # a bootstrap's width goes as 1/sqrt(n)
    for name, value in (("rmse", math.sqrt(totals.squares / totals.scored) if totals.scored else None),
                        ("mae", totals.absolutes / totals.scored if totals.scored else None)):
        m = sample.get(name)
        if m is not None and m.value is not None and value is not None:
            out[name] = Metric(value, totals.scored, value - (m.value - m.low) * narrow,
                               value + (m.high - m.value) * narrow, "bootstrap, narrowed to all rows")
    return out


# ---- feedback guards ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceGuard:
    """One feedback source's volume and how often its truths contradict what the model was sure of."""

    source: str
    items: int  # items received (before deduplication and the join)
    joined: int  # rows whose winning truth came from this source
    confident: int  # joined rows whose predicted label had at least the confidence threshold
    confident_disagreements: int  # of those, truths other than the prediction
    outside_interval: int  # joined regressor rows whose truth is outside the logged interval

    def to_dict(self) -> dict:
        """JSON-ready guard, with the disagreement share."""
        share = self.confident_disagreements / self.confident if self.confident else None
        return {"source": self.source, "items": self.items, "joined": self.joined, "confident": self.confident,
                "confident_disagreements": self.confident_disagreements,
                "confident_disagreement_share": _round(share), "outside_interval": self.outside_interval}


def feedback_guards(joined: Joined, confidence: float = 0.9) -> tuple[SourceGuard, ...]:
    """Per source: volume, and truths contradicting confident predictions (a labeller to check, or a real shift)."""
    sources = sorted(set(joined.counts.by_source) | {r.source for r in joined.rows})
    guards = []
    for source in sources:
        rows = [r for r in joined.rows if r.source == source]
        sure = [r for r in rows if (r.predicted_probability or 0.0) >= confidence]
        outside = [r for r in rows if r.interval is not None and not isinstance(r.truth, str)
                   and not r.interval[0] <= r.truth <= r.interval[1]]
        guards.append(SourceGuard(source, joined.counts.by_source.get(source, 0), len(rows), len(sure),
                                  sum(r.truth != r.predicted for r in sure), len(outside)))
    return tuple(guards)


# ---- the report -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MonitorReport:
    """Everything the monitor found for one model over one window."""

    model: str
    window: Window
    counts: FeedbackCounts
    versions: tuple[VersionQuality, ...]
    guards: tuple[SourceGuard, ...]
    min_labels: int
    confidence: float

    def version(self, model_version: str, role: str | None = None) -> VersionQuality | None:
        """The result of a version (in a role); the one with most labels if it served in several."""
        found = [v for v in self.versions if v.model_version == model_version and role in (None, v.role)]
        return max(found, key=lambda v: v.labels) if found else None

    def role(self, role: str) -> VersionQuality | None:
        """The version that served the most predictions in a role (the current stable or canary)."""
        found = [v for v in self.versions if v.role == role]
        return max(found, key=lambda v: (v.predictions, v.labels)) if found else None

    def to_dict(self) -> dict:
        """JSON-ready report."""
        return {"model": self.model, "window": self.window.to_dict(), "min_labels": self.min_labels,
                "confidence": self.confidence, "feedback": self.counts.to_dict(),
                "versions": [v.to_dict() for v in self.versions], "guards": [g.to_dict() for g in self.guards]}


def _role_rank(role: str) -> int:
    return ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER)


def monitor(joined: Joined, *, min_labels: int = 30, confidence: float = 0.9,
            expected: Mapping[str, Mapping[str, float]] | None = None, interval_level: float = 0.9,
            resamples: int = 1000, seed: int = 0, binary: bool = False,
            thresholds: Mapping[str, float | None] | None = None) -> MonitorReport:
    """Quality of every (version, role) seen in the window, with CBPE estimates, counts and feedback guards.

    `expected` maps a version to its holdout metrics (its manifest's), the reference a verdict is judged by;
    for a binary classifier (`binary`), `thresholds` a version to its threshold on P(positive) (a version
    without one is judged on its logged answers).
    """
    groups: dict[tuple[str, str], tuple[list[JoinedRow], PredictionStats | None]] = {}
    for p in joined.predictions:
        groups[(p.model_version, p.role)] = ([], p)
    for r in joined.rows:
        groups.setdefault((r.model_version, r.role), ([], None))[0].append(r)
    versions = tuple(
        version_quality(version, role, rows, predictions, min_labels=min_labels,
                        expected=(expected or {}).get(version), interval_level=interval_level,
                        resamples=resamples, seed=seed, binary=binary, threshold=(thresholds or {}).get(version),
                        labelled=joined.labelled.get((version, role), len(rows)),
                        totals=joined.totals.get((version, role)))
        for (version, role), (rows, predictions) in sorted(groups.items(), key=lambda kv: (_role_rank(kv[0][1]),
                                                                                            kv[0][0])))
    return MonitorReport(joined.model, joined.window, joined.counts, versions, feedback_guards(joined, confidence),
                         min_labels, confidence)


# ---- canary against stable ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """The canary decision on realised quality, and the evidence behind it."""

    decision: str  # "promote", "rollback" or "undecided"
    evidence: str


def compare_versions(canary: VersionQuality | None, stable: VersionQuality | None, tolerance: Mapping[str, float],
                     min_labels: int = 30) -> Comparison:
    """Promote unless a metric of the canary is worse than stable's by more than its tolerance; undecided below
    `min_labels` on either side.

    `tolerance` maps a metric (accuracy, macro_f1, log_loss, rmse, mae, coverage; a binary classifier's roc_auc,
    pr_auc, brier, precision, recall, f1) to how much worse the canary may be, as the offline gate's tolerances;
    point values are compared, their intervals given as evidence.
    """
    unknown = set(tolerance) - HIGHER_IS_BETTER - LOWER_IS_BETTER
    if unknown:
        raise ValueError(f"no such metric: {sorted(unknown)}")
    have = {"canary": canary.labels if canary else 0, "stable": stable.labels if stable else 0}
    if min(have.values()) < min_labels:
        return Comparison("undecided", f"not enough labels: canary {have['canary']}, stable {have['stable']}, "
                                       f"at least {min_labels} each needed")
    lines, failed = [], False
    judged = 0
    for name, allowed in tolerance.items():
        c, s = canary.metrics.get(name), stable.metrics.get(name)
        if c is None or s is None or c.value is None or s.value is None or min(c.n, s.n) < min_labels:
            lines.append(f"{name}: not judged (canary {c.describe() if c else 'not measured'}, "
                         f"stable {s.describe() if s else 'not measured'})")
            continue
        judged += 1
        worse = s.value - c.value if name in HIGHER_IS_BETTER else c.value - s.value
        fails = worse > allowed
        failed = failed or fails
        lines.append(f"{name}: canary {c.describe()} vs stable {s.describe()}: "
                     f"{'worse' if worse > 0 else 'better'} by {abs(worse):.4g}, tolerance {allowed:g}"
                     f"{' -> fails' if fails else ''}")
    if not judged:
        return Comparison("undecided", "no metric measured on both sides; " + "; ".join(lines))
    return Comparison("rollback" if failed else "promote", "; ".join(lines))
