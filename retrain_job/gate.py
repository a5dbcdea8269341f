"""The quality gate: candidate and stable model on the same frozen holdout, plus sanity checks."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from retrain_job.train import encode, metrics
from shared.bundle import MODEL_FILE, Bundle
from shared.examples import SEED_EXAMPLES
from shared.features import build_batch
from shared.predictor import BoosterPredictor


@dataclass(frozen=True)
class Tolerances:
    """How much worse than stable a candidate may be and still be promoted."""

    accuracy: float = 0.01
    macro_f1: float = 0.01
    log_loss: float = 0.05
    min_accuracy: float = 0.9


@dataclass(frozen=True)
class Verdict:
    """The gate's answer, with every reason for a rejection and the holdout metrics behind it."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    candidate: dict = field(default_factory=dict)
    stable: dict | None = None


def score(bundle: Bundle, holdout: pd.DataFrame) -> tuple[dict, np.ndarray]:
    """Holdout metrics of a bundle (through XGBoost itself) and its predicted class per row."""
    x, y = encode(holdout, bundle.contract, tuple(bundle.manifest["labels"]))
    proba = BoosterPredictor(bundle.files[MODEL_FILE]).predict_proba(x)
    return metrics(proba, y), proba.argmax(axis=1)


def seed_examples_right(bundle: Bundle) -> list[str]:
    """The seed examples this bundle gets wrong (empty when all are right)."""
    labels = tuple(bundle.manifest["labels"])
    x = build_batch(bundle.contract, [dict(row) for row, _ in SEED_EXAMPLES]).matrix
    predicted = BoosterPredictor(bundle.files[MODEL_FILE]).predict_proba(x).argmax(axis=1)
    return [f"seed example {expected} predicted as {labels[p]}"
            for (_, expected), p in zip(SEED_EXAMPLES, predicted) if labels[p] != expected]


def judge(candidate: Bundle, stable: Bundle | None, holdout: pd.DataFrame, tol: Tolerances) -> Verdict:
    """Promote only a sane candidate that is not worse than stable beyond the tolerances."""
    cand, predicted = score(candidate, holdout)
    reasons = seed_examples_right(candidate)
    missing = set(range(len(candidate.manifest["labels"]))) - set(predicted.tolist())
    if missing:
        reasons.append(f"never predicts {sorted(candidate.manifest['labels'][i] for i in missing)}")
    if cand["accuracy"] < tol.min_accuracy:
        reasons.append(f"accuracy {cand['accuracy']:.4f} below the floor {tol.min_accuracy}")
    stable_metrics = None
    if stable is not None:
        stable_metrics, _ = score(stable, holdout)
        if cand["accuracy"] < stable_metrics["accuracy"] - tol.accuracy:
            reasons.append(f"accuracy {cand['accuracy']:.4f} vs stable {stable_metrics['accuracy']:.4f}")
        if cand["macro_f1"] < stable_metrics["macro_f1"] - tol.macro_f1:
            reasons.append(f"macro F1 {cand['macro_f1']:.4f} vs stable {stable_metrics['macro_f1']:.4f}")
        if cand["log_loss"] > stable_metrics["log_loss"] + tol.log_loss:
            reasons.append(f"log loss {cand['log_loss']:.4f} vs stable {stable_metrics['log_loss']:.4f}")
    return Verdict(not reasons, reasons, cand, stable_metrics)
