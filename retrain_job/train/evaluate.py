"""A bundle scored on labelled rows through the serving code path (`shared.model.load_model`).

Training records these numbers in the manifest and the gate recomputes them for the candidate and the
stable model on the same frozen holdout, so training, the gate and serving answer through one path.
A classifier's rows are scored as they are; a regressor's once per regime: the rows having the inputs
that regime needs, with every other optional numeric input removed, so the regime itself answers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from retrain_job.data.labelled import feature_names, to_records
from retrain_job.monitor.quality import expected_calibration_error
from shared.bundle import Bundle
from shared.model import ServingModel, load_model
from shared.predictor import Baseline, Estimates
from shared.spec import ModelSpec
from shared.validation import build_batch


@dataclass(frozen=True)
class Score:
    """Metrics of a bundle on some rows, and (for a classifier) the class index it predicted for each."""

    metrics: dict
    predicted: np.ndarray | None = None


def serving_model(spec: ModelSpec, bundle: Bundle) -> ServingModel:
    """The bundle loaded and verified as the function loads it; XGBoost answers every batch."""
    return load_model(spec.name, bundle, "store", fast_max_rows=0)


def predicted_classes(proba: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Each row's class index: the most probable, or for a binary model (threshold set) the positive one (1) iff
    its probability reaches the threshold."""
    return (proba[:, 1] >= threshold).astype(int) if threshold is not None else proba.argmax(axis=1)


def classifier_metrics(proba: np.ndarray, y: np.ndarray, threshold: float | None = None) -> dict:
    """Accuracy, macro F1, log loss and expected calibration error (top-label, 10 bins) of predicted probabilities;
    for a binary model (threshold set) also ROC AUC, PR AUC (average precision), the Brier score, and precision,
    recall and F1 of the positive class at the threshold."""
    from sklearn.metrics import accuracy_score, f1_score  # noqa: PLC0415 - scikit-learn only when scoring: the monitor never does

    predicted = predicted_classes(proba, threshold)
    out = {
        "accuracy": round(float(accuracy_score(y, predicted)), 6),
        "macro_f1": round(float(f1_score(y, predicted, average="macro")), 6),
        "log_loss": round(float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-7, 1.0)))), 6),
        "ece": round(expected_calibration_error(proba, y), 6) if len(y) else None,
        "rows": int(len(y)),
    }
    if threshold is not None:
        out.update(binary_metrics(proba[:, 1], y, threshold))
    return out


def binary_metrics(p: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    """A binary model's ranking and probability quality, and its decisions at the threshold (1: positive)."""
    from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: PLC0415 - as in classifier_metrics

    both = len(np.unique(y)) == 2  # AUCs need both classes
    predicted = p >= threshold
    tp = int(np.sum(predicted & (y == 1)))
    precision, recall = tp / max(int(predicted.sum()), 1), tp / max(int(np.sum(y == 1)), 1)
    return {"roc_auc": round(float(roc_auc_score(y, p)), 6) if both else None,
            "pr_auc": round(float(average_precision_score(y, p)), 6) if both else None,
            "brier": round(float(np.mean((p - y) ** 2)), 6), "threshold": threshold,
            "precision": round(precision, 6), "recall": round(recall, 6),
            "f1": round(2 * precision * recall / (precision + recall), 6) if tp else 0.0}


def point_metrics(predicted: np.ndarray, y: np.ndarray) -> dict:
    """RMSE and MAE of predicted values."""
    err = np.asarray(predicted, dtype=np.float64) - y
    return {"rmse": round(float(np.sqrt(np.mean(err ** 2))), 4), "mae": round(float(np.mean(np.abs(err))), 4),
            "rows": int(len(y))}


def interval_metrics(est: Estimates, y: np.ndarray) -> dict:
    """Share of true values inside their interval, and the mean and median width."""
    lower, upper = np.asarray(est.lower), np.asarray(est.upper)
    width = upper - lower
    return {"coverage": round(float(np.mean((y >= lower) & (y <= upper))), 4),
            "mean_width": round(float(np.mean(width)), 4), "median_width": round(float(np.median(width)), 4)}


def score(spec: ModelSpec, model: ServingModel, rows: pd.DataFrame) -> Score:
    """Metrics of a loaded model on rows carrying the target."""
    if spec.is_classifier:
        return _classifier(spec, model, rows)
    return Score(regression_metrics(spec, model, rows))


def _classifier(spec: ModelSpec, model: ServingModel, rows: pd.DataFrame) -> Score:
    contract = model.contract
    x = build_batch(contract, to_records(rows, contract.field_names)).matrix
    proba = model.predictor.outputs(x)
    index = {label: i for i, label in enumerate(contract.labels)}
    y = rows[spec.target.name].map(index).to_numpy(dtype=int)
    threshold = model.threshold
    return Score(classifier_metrics(proba, y, threshold), predicted_classes(proba, threshold))


def segment_metrics(spec: ModelSpec, model: ServingModel, rows: pd.DataFrame) -> dict:
    """The metrics per value of each of the spec's segment fields (rows without a value left out): a classifier's
    as `score` gives them, a regressor's per regime that served rows of that value."""
    def of(part: pd.DataFrame) -> dict:
        if spec.is_classifier:
            return score(spec, model, part).metrics
        measured = {m["name"]: regime_metrics(spec, model, part, m) for m in model.manifest["members"]}
        return {"regimes": {name: m for name, m in measured.items() if m is not None}}

    return {name: {str(value): of(part) for value, part in rows.groupby(name, sort=True)} for name in spec.segments}


def regime_rows(spec: ModelSpec, rows: pd.DataFrame, needs: list[str]) -> tuple[pd.DataFrame, list[dict]]:
    """The rows a regime serves (those having its inputs) as requests without the other optional inputs."""
    have = rows[needs].notna().all(axis=1) if needs else pd.Series(True, index=rows.index)
    chosen = rows[have.to_numpy()]
    records = to_records(chosen, feature_names(spec))
    dropped = [f.name for f in spec.features if not f.required and f.kind == "numeric" and f.name not in needs]
    for record in records:
        for name in dropped:
            record[name] = None
    return chosen, records


def regression_metrics(spec: ModelSpec, model: ServingModel, rows: pd.DataFrame) -> dict:
    """Per regime: RMSE, MAE, interval coverage and width (overall and per group level); and the baseline alone."""
    contract, members = model.contract, model.manifest["members"]
    out: dict = {"regimes": {member["name"]: regime_metrics(spec, model, rows, member) for member in members}}
    first = members[0]
    chosen, records = regime_rows(spec, rows, first["needs"])
    x = build_batch(contract, records).matrix
    scale = first.get("scale", "log")
    b = Baseline.from_dict(first["baseline"], scale).batch(x)
    b = np.exp(b) if scale == "log" else b
    out["baseline"] = {"regime": first["name"], **point_metrics(b, chosen[spec.target.name].to_numpy(np.float64))}
    out["rmse"] = out["regimes"][first["name"]]["rmse"]
    return out


def regime_metrics(spec: ModelSpec, model: ServingModel, rows: pd.DataFrame, member: dict) -> dict | None:
    """One regime's RMSE, MAE, interval coverage and width on the rows it serves (and per group level); None when
    it serves none of them."""
    chosen, records = regime_rows(spec, rows, member["needs"])
    if chosen.empty:
        return None
    est = model.predictor.predict(build_batch(model.contract, records))
    if set(est.regimes) - {member["name"]}:
        raise ValueError(f"rows meant for regime {member['name']} were answered by {sorted(set(est.regimes))}")
    y = chosen[spec.target.name].to_numpy(dtype=np.float64)
    m = {**point_metrics(np.asarray(est.values), y), **interval_metrics(est, y)}
    group = spec.regression.group
    if group:
        levels = chosen[group].to_numpy(dtype=object)
        m["by_level"] = {str(level): {"rows": int((levels == level).sum()), **_subset(est, y, levels == level)}
                         for level in sorted({v for v in levels if v is not None})}
    return m


def _subset(est: Estimates, y: np.ndarray, mask: np.ndarray) -> dict:
    values = np.asarray(est.values)[mask]
    part = Estimates(values.tolist(), np.asarray(est.lower)[mask].tolist(), np.asarray(est.upper)[mask].tolist(), [])
    return {"rmse": point_metrics(values, y[mask])["rmse"], "coverage": interval_metrics(part, y[mask])["coverage"]}


def predict_examples(spec: ModelSpec, model: ServingModel) -> list[str]:
    """The spec's examples this model gets wrong (a label, or a value outside the example's tolerance). Every
    example must be answered (InvalidRows otherwise); only those with an `expected` outcome are checked."""
    examples = spec.examples()
    if not examples:
        return []
    batch = build_batch(model.contract, [dict(e["request"]) for e in examples])
    wrong = []
    if spec.is_classifier:
        proba = model.predictor.outputs(batch.matrix)
        for example, p in zip(examples, predicted_classes(proba, model.threshold)):
            if "expected" in example and model.labels[p] != example["expected"]:
                wrong.append(f"example {example['expected']} predicted as {model.labels[p]}")
        return wrong
    est = model.predictor.predict(batch)
    for i, (example, value) in enumerate(zip(examples, est.values)):
        if "expected" in example and abs(value - float(example["expected"])) > float(example.get("tolerance", 0.0)):
            wrong.append(f"example {i + 1} predicted {value:.4g}, expected {example['expected']} "
                         f"+/- {example.get('tolerance', 0)}")
    return wrong
