"""Prediction drift and attribution drift: what the model answers, and what it leans on, against training.

Each is a small calculation over a bounded sample. Attributions are the model's own TreeSHAP values
(`shared.explain`) in output space; a feature's importance is its mean absolute attribution, averaged over the
outputs. Attribution drift compares the importances' shares of their total (so a uniform change of scale is
not drift): its score is the largest change of one feature's share (L-infinity), drifting above `DISTANCE`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from retrain_job.drift.stats import DISTANCE, DriftThresholds, FeatureDrift, categorical_drift, numeric_drift
from shared.explain import explain
from shared.model import ServingModel
from shared.predictor import Probabilities
from shared.validation import InvalidRows, build_batch

ATTRIBUTION_ROWS = 1000  # rows explained on each side: TreeSHAP costs grow with rows x trees x depth


def predictions_of(model: ServingModel, rows: Sequence[Mapping]) -> list:
    """What the model answers for request-shaped rows, as it is logged: a label, or a value."""
    batch = build_batch(model.contract, list(rows))
    if model.contract.is_classifier:
        probabilities = Probabilities(None, np.asarray(model.predictor.outputs(batch.matrix)), model.threshold)
        return probabilities.labels(model.labels)
    return [float(v) for v in model.predictor.predict(batch).values]


def valid_rows(model: ServingModel, rows: Sequence[Mapping]) -> list[Mapping]:
    """The rows the model's contract accepts (a logged row an older contract took may be refused by this one)."""
    rows = list(rows)
    try:
        build_batch(model.contract, rows)
    except InvalidRows as exc:
        return [row for i, row in enumerate(rows) if i not in exc.errors]
    return rows


def mean_abs_attribution(model: ServingModel, rows: Sequence[Mapping]) -> dict[str, float]:
    """Each feature's mean absolute TreeSHAP attribution (output space, averaged over outputs) on the rows."""
    names = model.contract.field_names
    rows = valid_rows(model, rows)
    if not rows:
        return dict.fromkeys(names, 0.0)
    explanation = explain(model, build_batch(model.contract, rows))
    values = np.abs(explanation.output_attributions).mean(axis=(0, 1))
    return {name: float(v) for name, v in zip(names, values)}


def attribution_drift(reference: Mapping[str, float], current: Mapping[str, float],
                      distance: float = DISTANCE) -> dict:
    """Per feature the importance and its share of the total on each side; the score is the largest share change."""
    names = list(reference)
    ref = np.array([reference[n] for n in names], dtype=float)
    cur = np.array([current.get(n, 0.0) for n in names], dtype=float)
    ref_share = ref / ref.sum() if ref.sum() > 0 else np.zeros_like(ref)
    cur_share = cur / cur.sum() if cur.sum() > 0 else np.zeros_like(cur)
    change = cur_share - ref_share
    score = float(np.abs(change).max()) if names else 0.0
    order = np.argsort(-np.abs(change))
    return {"method": "mean |TreeSHAP| share, L-infinity", "score": round(score, 6), "threshold": distance,
            "drifted": score > distance,
            "features": [{"feature": names[i], "reference": round(float(ref[i]), 6),
                          "current": round(float(cur[i]), 6), "reference_share": round(float(ref_share[i]), 6),
                          "current_share": round(float(cur_share[i]), 6), "change": round(float(change[i]), 6)}
                         for i in order]}


def prediction_drift(name: str, reference: Sequence, current: Sequence, classifier: bool,
                     thresholds: DriftThresholds) -> FeatureDrift:
    """The served answers' distribution (class mix, or values) against the reference's (the holdout's answers)."""
    if classifier:
        return categorical_drift(name, [str(v) for v in reference], [str(v) for v in current], thresholds)
    return numeric_drift(name, np.asarray(reference, dtype=float), np.asarray(current, dtype=float), thresholds)
