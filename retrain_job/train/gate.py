"""The quality gate: candidate and stable model on the same frozen holdout, plus sanity checks.

Tolerances come from the spec's `[gate]`; the job's flags and TOL_* settings override them. Both models
are scored through the serving code path (`retrain_job.train.evaluate`).

- A classifier passes when its accuracy and macro F1 are not lower than stable's by more than their
  tolerances, its log loss not higher by more than the gate's tolerance, its accuracy reaches the floor,
  it predicts every label and gets the spec's examples that have an expected outcome right. A binary
  one also keeps its ROC AUC within `roc_auc_tolerance` of stable's, and its threshold rule must have been
  reachable (a minimum precision or recall that no threshold reached on out-of-fold predictions fails).
- A regressor passes when its first regime's RMSE is not above stable's by more than the tolerance, every
  other regime's not by more than the tolerance scaled by that regime's error (stable's RMSE there over
  stable's in the first regime: the same slack relative to each regime's own scale), the first regime
  beats its baseline formula alone, every regime's interval covers between coverage_min and coverage_max
  of the holdout, and its answers to the spec's examples are within their tolerances.

A rejected candidate is *close* when it would pass with every tolerance against stable widened
`CLOSE_FACTOR` times (the sanity checks unchanged): worth a shadow on live traffic (`--shadow-if-close`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import pandas as pd

from retrain_job.train.evaluate import Score, predict_examples, score, serving_model
from shared.bundle import Bundle, CorruptBundle
from shared.spec import ModelSpec
from shared.validation import InvalidRows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tolerances:
    """Overrides of the spec's gate tolerances (None: the spec's own)."""

    accuracy: float | None = None
    macro_f1: float | None = None
    log_loss: float | None = None
    rmse: float | None = None


CLASSIFIER_POLICY = ("tolerance", "accuracy_tolerance", "macro_f1_tolerance", "accuracy_floor")
BINARY_POLICY = (*CLASSIFIER_POLICY, "roc_auc_tolerance")
REGRESSION_POLICY = ("tolerance", "coverage_min", "coverage_max")
CLOSE_FACTOR = 2.0  # a rejected candidate within this many times every tolerance is close


@dataclass(frozen=True)
class GatePolicy:
    """The numbers the gate applies to one model: the spec's `[gate]` with the overrides applied."""

    tolerance: float  # the main metric's: log loss (classifier) or the first regime's RMSE (regressor)
    accuracy_tolerance: float = 0.0
    macro_f1_tolerance: float = 0.0
    accuracy_floor: float = 0.0
    roc_auc_tolerance: float = 1.0
    coverage_min: float = 0.0
    coverage_max: float = 1.0

    @classmethod
    def of(cls, spec: ModelSpec, overrides: Tolerances | None = None) -> GatePolicy:
        """The spec's gate, each override that is set replacing its value."""
        o = overrides or Tolerances()
        extra = spec.gate.extra

        def pick(override: float | None, default: float) -> float:
            return float(default) if override is None else float(override)

        if spec.is_classifier:
            return cls(pick(o.log_loss, spec.gate.tolerance), pick(o.accuracy, extra.get("accuracy_tolerance", 0.0)),
                       pick(o.macro_f1, extra.get("macro_f1_tolerance", 0.0)), float(extra.get("accuracy_floor", 0.0)),
                       float(extra.get("roc_auc_tolerance", 1.0)))
        return cls(pick(o.rmse, spec.gate.tolerance), coverage_min=float(extra.get("coverage_min", 0.0)),
                   coverage_max=float(extra.get("coverage_max", 1.0)))

    def widened(self, factor: float) -> GatePolicy:
        """The same policy with every tolerance against stable `factor` times as wide (floors and coverage kept)."""
        return replace(self, tolerance=self.tolerance * factor, accuracy_tolerance=self.accuracy_tolerance * factor,
                       macro_f1_tolerance=self.macro_f1_tolerance * factor,
                       roc_auc_tolerance=self.roc_auc_tolerance * factor)


@dataclass(frozen=True)
class Verdict:
    """The gate's answer, with every reason for a rejection and the holdout metrics behind it."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    candidate: dict = field(default_factory=dict)
    stable: dict | None = None
    policy: dict = field(default_factory=dict)
    close: bool = False  # rejected, but within CLOSE_FACTOR times every tolerance against stable


def _stable_score(spec: ModelSpec, stable: Bundle | None, holdout: pd.DataFrame) -> Score | None:
    if stable is None:
        return None
    try:
        return score(spec, serving_model(spec, stable), holdout)
    except (CorruptBundle, InvalidRows, KeyError, TypeError, ValueError) as exc:
        log.warning("stable %s cannot be scored on the holdout, gating on sanity only: %s", stable.version, exc)
        return None


def judge(spec: ModelSpec, candidate: Bundle, stable: Bundle | None, holdout: pd.DataFrame,
          overrides: Tolerances | None = None) -> Verdict:
    """Promote only a sane candidate that is not worse than stable beyond the tolerances."""
    policy = GatePolicy.of(spec, overrides)
    model = serving_model(spec, candidate)
    cand = score(spec, model, holdout)
    examples = predict_examples(spec, model)
    old = _stable_score(spec, stable, holdout)
    threshold = candidate.manifest.get("threshold") or {}

    def against(p: GatePolicy) -> list[str]:
        found = _classifier_reasons(cand, old, model.labels, p) if spec.is_classifier else \
            regression_reasons(cand.metrics, old.metrics if old else None, p)
        return found + (_binary_reasons(cand, old, threshold, p) if spec.is_binary else [])

    reasons = examples + against(policy)
    close = bool(reasons) and old is not None and not examples and not against(policy.widened(CLOSE_FACTOR))
    shown = BINARY_POLICY if spec.is_binary else CLASSIFIER_POLICY if spec.is_classifier else REGRESSION_POLICY
    return Verdict(not reasons, reasons, cand.metrics, old.metrics if old else None,
                   {k: v for k, v in vars(policy).items() if k in shown}, close)


def _classifier_reasons(cand: Score, old: Score | None, labels: tuple[str, ...], p: GatePolicy) -> list[str]:
    c = cand.metrics
    reasons = []
    missing = set(range(len(labels))) - set(cand.predicted.tolist())
    if missing:
        reasons.append(f"never predicts {sorted(labels[i] for i in missing)}")
    if c["accuracy"] < p.accuracy_floor:
        reasons.append(f"accuracy {c['accuracy']:.4f} below the floor {p.accuracy_floor}")
    if old is not None:
        s = old.metrics
        if c["accuracy"] < s["accuracy"] - p.accuracy_tolerance:
            reasons.append(f"accuracy {c['accuracy']:.4f} vs stable {s['accuracy']:.4f}")
        if c["macro_f1"] < s["macro_f1"] - p.macro_f1_tolerance:
            reasons.append(f"macro F1 {c['macro_f1']:.4f} vs stable {s['macro_f1']:.4f}")
        if c["log_loss"] > s["log_loss"] + p.tolerance:
            reasons.append(f"log loss {c['log_loss']:.4f} vs stable {s['log_loss']:.4f}")
    return reasons


def _binary_reasons(cand: Score, old: Score | None, threshold: dict, p: GatePolicy) -> list[str]:
    reasons = []
    if threshold.get("reached") is False:
        reasons.append(f"no threshold reaches {threshold['rule']} {threshold['rule_value']} on out-of-fold "
                       f"predictions (the closest: {threshold['training_oof']})")
    c, s = cand.metrics, old.metrics if old is not None else {}
    if s.get("roc_auc") is not None and c.get("roc_auc") is not None and \
            c["roc_auc"] < s["roc_auc"] - p.roc_auc_tolerance:
        reasons.append(f"ROC AUC {c['roc_auc']:.4f} vs stable {s['roc_auc']:.4f}")
    return reasons


def regression_reasons(c: dict, s: dict | None, p: GatePolicy) -> list[str]:
    """Why a regressor's holdout metrics `c` fail the gate against stable's `s` (None: sanity checks only)."""
    reasons = []
    regimes = c["regimes"]
    first = next(iter(regimes))
    base = c["baseline"]
    if not regimes[first]["rmse"] < base["rmse"]:
        reasons.append(f"{first} RMSE {regimes[first]['rmse']:.4g} does not beat its baseline formula alone "
                       f"({base['rmse']:.4g})")
    for name, m in regimes.items():
        if not p.coverage_min <= m["coverage"] <= p.coverage_max:
            reasons.append(f"{name} interval coverage {m['coverage']:.3f} outside "
                           f"[{p.coverage_min}, {p.coverage_max}]")
    if s is not None:
        old = s["regimes"]
        scale = old[first]["rmse"] if first in old else None
        for name, m in regimes.items():
            if name not in old:
                continue
            slack = p.tolerance if name == first or not scale else p.tolerance * old[name]["rmse"] / scale
            if m["rmse"] > old[name]["rmse"] + slack:
                reasons.append(f"{name} RMSE {m['rmse']:.4g} vs stable {old[name]['rmse']:.4g} "
                               f"(tolerance {slack:.3g})")
    return reasons
