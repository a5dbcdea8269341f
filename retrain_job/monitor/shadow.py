"""The shadow version beside stable on the same requests: how often they agree, how each did where the truth came
back, the drift of the shadow's answers, and the verdict `promote-shadow` respects.

Pure: sums from the log engine (`retrain_job.data.logs.shadow_pairs`) in, the report's `shadow` section and its
metric points out. The comparison is paired (the same prediction ids on both sides), so its interval is the
difference's own, far narrower than two separate intervals:
- a classifier: accuracy, shadow minus stable, per id in {-1, 0, 1}; agreement is the share of the same label
  (Wilson interval);
- a regressor: mean absolute error, shadow minus stable, per id |shadow error| - |stable error|; agreement is the
  mean |shadow - stable| (normal interval); RMSE and the shadow's interval coverage are shown beside.
Verdict, with the canary's tolerance (`canary_tolerance`) on accuracy or (for the MAE) on RMSE's scale, once at
least `min_labels` ids carry a truth: "better" if the whole interval favours the shadow, "worse" if it is worse
beyond the tolerance over the whole interval, "not-worse" if the interval stays within the tolerance, else
"undecided" (also below `min_labels`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from retrain_job.data.feedback import ShadowPairs
from retrain_job.drift.attribution import prediction_drift
from retrain_job.drift.stats import DriftThresholds
from retrain_job.metrics import MetricPoint
from retrain_job.monitor.quality import Z95, wilson_interval
from shared.logline import SHADOW_ROLE

VERDICTS = ("better", "not-worse", "undecided", "worse")
SHADOW_SAMPLE_ROWS = 5000  # the shadow's answers its prediction drift compares (hashed sample)


def _r(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.6g}")


def _mean_interval(total: float, squares: float, n: int, z: float) -> dict:
    """Mean of n values from their sum and sum of squares, with its normal interval."""
    if n <= 0:
        return {"value": None, "low": None, "high": None, "n": 0}
    mean = total / n
    variance = max(0.0, squares / n - mean * mean) * (n / (n - 1) if n > 1 else 1.0)
    half = z * math.sqrt(variance / n)
    return {"value": _r(mean), "low": _r(mean - half), "high": _r(mean + half), "n": n}


def agreement(p: ShadowPairs, z: float = Z95) -> dict:
    """How alike the shadow's answers are to those given: the share of the same label, or the mean |difference|."""
    if p.classifier:
        low, high = wilson_interval(p.agreed, p.pairs, z)
        return {"metric": "label_agreement", "value": _r(p.agreed / p.pairs) if p.pairs else None, "low": _r(low),
                "high": _r(high), "n": p.pairs}
    return {"metric": "mean_abs_difference", **_mean_interval(p.abs_difference, p.squared_difference, p.compared, z)}


def quality(p: ShadowPairs, z: float = Z95) -> dict:
    """Each side's quality on the ids with a truth, and the paired difference (shadow minus the answers given)."""
    if p.classifier:
        n = p.labelled
        difference = _mean_interval(p.shadow_hits - p.answer_hits, p.differing_hits, n, z)
        return {"metric": "accuracy", "labelled": n, "shadow": _r(p.shadow_hits / n) if n else None,
                "answered": _r(p.answer_hits / n) if n else None, "difference": difference}
    n = p.scored
    difference = _mean_interval(p.error_difference, p.error_difference_squares, n, z)
    return {"metric": "mae", "labelled": p.labelled, "difference": difference,
            "shadow_rmse": _r(math.sqrt(p.shadow_squares / n)) if n else None,
            "answered_rmse": _r(math.sqrt(p.answer_squares / n)) if n else None,
            "shadow_coverage": _r(p.inside / p.with_interval) if p.with_interval else None}


def verdict(p: ShadowPairs | None, tolerance: Mapping[str, float], min_labels: int,
            z: float = Z95) -> tuple[str, str]:
    """The shadow against stable on live labels: (verdict, evidence in words)."""
    if p is None:
        return "undecided", "no request was answered by stable and scored by the shadow in the window"
    q = quality(p, z)
    d = q["difference"]
    if d["n"] < min_labels or d["value"] is None:
        return "undecided", f"{d['n']} labelled requests scored by both, fewer than the {min_labels} a verdict needs"
    words = (f"{q['metric']} shadow minus stable {d['value']:.4g} (95% {d['low']:.4g} to {d['high']:.4g}, "
             f"n={d['n']})")
    if p.classifier:
        tol = float(tolerance.get("accuracy", 0.0))
        better, worse, within = d["low"] > 0, d["high"] < -tol, d["low"] >= -tol
    else:
        tol = float(tolerance.get("rmse", 0.0))
        better, worse, within = d["high"] < 0, d["low"] > tol, d["high"] <= tol
    name = "better" if better else "worse" if worse else "not-worse" if within else "undecided"
    return name, f"{words}; tolerance {tol:.4g}"


def shadow_section(pairs: Sequence[ShadowPairs], *, shadow: str | None, stable: str | None, percent: float | None,
                   tolerance: Mapping[str, float], min_labels: int, predictions: Sequence | None,
                   reference_predictions: Sequence | None, classifier: bool, target: str,
                   thresholds: DriftThresholds) -> dict:
    """The monitor report's `shadow` section: the pointer's shadow judged against stable, and every pair seen."""
    every = [{"shadow_version": p.shadow_version, "answered_version": p.answered_version,
              "answered_role": p.answered_role, "pairs": p.pairs, "agreement": agreement(p), "quality": quality(p)}
             for p in pairs]
    if shadow is None:
        return {"version": None, "verdict": "none", "evidence": "no shadow in the serving pointer", "pairs": every}
    against = next((p for p in pairs if p.shadow_version == shadow and p.answered_version == stable
                    and p.answered_role == "stable"), None)
    name, evidence = verdict(against, tolerance, min_labels)
    drift = None
    if predictions and reference_predictions and len(predictions) >= thresholds.min_rows:
        mix = prediction_drift(f"predicted_{target}", list(reference_predictions), list(predictions), classifier,
                               thresholds)
        drift = {**mix.to_dict(), "reference": "the shadow version's answers on its holdout"}
    return {"version": shadow, "stable": stable, "percent": percent, "verdict": name, "evidence": evidence,
            "tolerance": {k: float(f"{v:.4g}") for k, v in tolerance.items()}, "min_labels": min_labels,
            "agreement": agreement(against) if against else None, "quality": quality(against) if against else None,
            "prediction_drift": drift, "pairs": every}


def shadow_points(section: Mapping, min_labels: int) -> list[MetricPoint]:
    """The pointer's shadow's agreement with stable and, with enough labels, its quality difference."""
    if section.get("version") is None or section.get("agreement") is None:
        return []
    labels = {"model_version": section["version"], "role": SHADOW_ROLE}
    points = []
    if section["agreement"]["value"] is not None:
        points.append(MetricPoint("live_shadow_agreement", section["agreement"]["value"], labels))
    difference = section["quality"]["difference"]
    if difference["value"] is not None and difference["n"] >= min_labels:
        points.append(MetricPoint("live_shadow_quality_difference", difference["value"], labels))
    return points
