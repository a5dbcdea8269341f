"""A version's model card as data: what its spec says of its purpose, and what its manifest and the monitor measured.

Pure: the spec, the bundle's manifest, the serving pointer and the monitor's latest report in, a JSON-ready dict
out. Nothing is inferred beyond them: a fact the manifest does not record is None in the card and named, with the
reason, in `not_recorded`; a purpose the spec leaves out is None (or an empty list) and named in `not_stated`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from retrain_job.drift.attribution import ATTRIBUTION_ROWS
from shared.contract import FeatureContract
from shared.pointer import ServingPointer
from shared.spec import ModelSpec

SCHEMA_VERSION = 1
CLASSIFIER_METRICS = ("accuracy", "macro_f1", "log_loss", "ece", "roc_auc", "pr_auc", "brier", "threshold",
                      "precision", "recall", "f1", "rows")
REGIME_METRICS = ("rmse", "mae", "coverage", "mean_width", "median_width", "rows")
SEGMENT_METRICS = ("rows", "accuracy", "macro_f1", "log_loss", "rmse", "coverage")
HOLDOUT_FACTS = ("method", "fraction", "seed", "group_by", "groups", "share", "identical_row_in_train",
                 "same_required_inputs_in_train", "labelled_rows_set_aside")
# why each fact the card shows may be missing from a manifest (the path is the card's key)
WHY_NOT_RECORDED = {
    "training_data.date_range": "the manifest records no date or time column's range over the training rows",
    "training_data.target": "the manifest records no label counts or target distribution of the training rows",
    "calibration": "the manifest records no calibration of this classifier",
    "gate": "the manifest records neither the gate's decision nor the stable version it was compared with",
    "feature_importance": "the manifest has no reference attributions (mean |TreeSHAP|)",
    "live_quality": "no monitor report in the store for this model yet",
}
WHY_NO_SEGMENT = "the manifest records no holdout metrics per value of {field}"


def build_card(spec: ModelSpec, manifest: Mapping, *, generated_at: datetime, pointer: ServingPointer | None = None,
               monitor: Mapping | None = None, monitor_key: str | None = None) -> dict:
    """The card of the version whose manifest is given: JSON for tools, rendered for people by `render.render_card`."""
    contract = FeatureContract.from_dict(manifest["contract"])
    version = manifest["version"]
    card = {
        "schema_version": SCHEMA_VERSION,
        "kind": "model_card",
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "model": {"name": spec.name, "title": spec.title, "task": spec.task, "version": version,
                  "created_at": manifest.get("created_at"), "target": _target(contract),
                  "serving": serving_role(pointer, version)},
        "purpose": purpose(spec),
        "training_data": training_data(spec, manifest),
        "holdout": holdout(spec, manifest),
        "intervals": None if spec.is_classifier else intervals(contract, manifest),
        "threshold": manifest.get("threshold") if spec.is_binary else None,
        "calibration": (manifest.get("metrics") or {}).get("calibration") if spec.is_classifier else None,
        "gate": manifest.get("gate"),
        "feature_importance": feature_importance(contract, manifest),
        "known_limits": known_limits(contract),
        "live_quality": live_quality(monitor, version, monitor_key),
    }
    card["not_stated"] = [key for key, value in card["purpose"].items() if not value]
    card["not_recorded"] = not_recorded(card, spec)
    return card


def serving_role(pointer: ServingPointer | None, version: str) -> str:
    """What the serving pointer makes of the version when the card is written."""
    if pointer is None:
        return "not serving"
    roles = ((pointer.stable, "stable"), (pointer.canary, "canary"), (pointer.shadow, "shadow"))
    role = next((name for named, name in roles if named == version), None)
    return role or ("fallback" if version in pointer.previous else "not serving")


def purpose(spec: ModelSpec) -> dict:
    """What the owners say the model is for (the spec's description and `[card]`); empty where they say nothing."""
    c = spec.card
    return {"description": spec.description or None, "intended_use": c.intended_use or None,
            "out_of_scope": list(c.out_of_scope), "owners": list(c.owners), "limitations": list(c.limitations)}


def _target(contract: FeatureContract) -> dict:
    t = contract.target
    if contract.is_classifier:
        return {"name": t.name, "labels": list(t.labels)}
    return {"name": t.name, "unit": t.unit, "interval": t.interval}


def training_data(spec: ModelSpec, manifest: Mapping) -> dict:
    """Where the rows came from (each source's licence and provenance as the spec states them for its base file),
    how many trained and were held out, how the holdout was drawn, and what the rows span."""
    recorded = manifest.get("training_data") or {}
    sources = []
    for s in recorded.get("sources") or ():
        base = s.get("name") == spec.data.file and s.get("sha256") == spec.data.sha256
        sources.append({"name": s.get("name"), "sha256": s.get("sha256"), "rows": s.get("rows"),
                        "source": (spec.data.source or None) if base else None,
                        "licence": (spec.data.licence or None) if base else None})
    drawn = recorded.get("holdout") or {}
    return {"sources": sources, "fingerprint": recorded.get("fingerprint"), "train_rows": recorded.get("rows"),
            "holdout_rows": recorded.get("holdout_rows"),
            "holdout": {k: drawn[k] for k in HOLDOUT_FACTS if k in drawn},
            "date_range": recorded.get("date_range"), "target": recorded.get("target")}


def holdout(spec: ModelSpec, manifest: Mapping) -> dict:
    """The frozen holdout's metrics: overall (per regime for a regressor) and per value of each segment field."""
    metrics = manifest.get("metrics") or {}
    recorded = metrics.get("holdout") or {}
    if spec.is_classifier:
        overall = {k: recorded[k] for k in CLASSIFIER_METRICS if k in recorded}
    else:
        overall = {"regimes": {name: {k: m.get(k) for k in REGIME_METRICS}
                               for name, m in (recorded.get("regimes") or {}).items()},
                   "baseline": recorded.get("baseline")}
    by_segment = metrics.get("segments") or {}
    return {"overall": overall,
            "segments": {field: segment_rows(spec, recorded, by_segment.get(field), field) for field in spec.segments}}


def segment_rows(spec: ModelSpec, recorded: Mapping, per_value: Mapping | None, field: str) -> list[dict] | None:
    """One row per segment value (and regime, for a regressor): its holdout rows and main metrics; None when the
    manifest has none. A regressor's interval group is such a field: its regimes' `by_level` figures."""
    if per_value is not None:
        if spec.is_classifier:
            return [{"value": value, **_pick(m, SEGMENT_METRICS)} for value, m in per_value.items()]
        return [{"value": value, "regime": name, **_pick(r, SEGMENT_METRICS)}
                for value, m in per_value.items() for name, r in (m.get("regimes") or {}).items()]
    if spec.regression is not None and spec.regression.group == field:
        return [{"value": value, "regime": name, **_pick(m, SEGMENT_METRICS)}
                for name, regime in (recorded.get("regimes") or {}).items()
                for value, m in (regime.get("by_level") or {}).items()]
    return None


def _pick(metrics: Mapping, keys: tuple[str, ...]) -> dict:
    return {k: metrics[k] for k in keys if k in metrics}


def intervals(contract: FeatureContract, manifest: Mapping) -> dict:
    """A regressor's intervals per regime: holdout coverage and width, and the half-width per level of its group
    (as a factor on the log scale: lower = value / factor, upper = value * factor; on the identity scale in the
    target's unit: value -/+ half-width)."""
    regimes = ((manifest.get("metrics") or {}).get("holdout") or {}).get("regimes") or {}
    out = []
    for member in manifest.get("members") or ():
        interval, scale = member["interval"], member.get("scale", "log")
        q, pooled = interval["q"], interval["q_pooled"]
        levels = [contract.columns[c].split("=", 1)[1] for c in interval["group_columns"]]
        measured = regimes.get(member["name"]) or {}
        out.append({"regime": member["name"], "needs": list(member.get("needs") or ()), "scale": scale,
                    "half_width": "factor" if scale == "log" else contract.target.unit or "target unit",
                    "by_level": {level: _half_width(w, scale) for level, w in zip(levels, q)},
                    "pooled": _half_width(pooled, scale), "widest": _half_width(max([*q, pooled]), scale),
                    **{k: measured.get(k) for k in ("coverage", "mean_width", "median_width", "rows")}})
    return {"level": contract.target.interval, "regimes": out}


def _half_width(q: float, scale: str) -> float:
    """A conformal half-width as the card shows it: exp(q) on the log scale, q itself on the identity scale."""
    return round(math.exp(q) if scale == "log" else q, 6)


def feature_importance(contract: FeatureContract, manifest: Mapping) -> dict | None:
    """Mean absolute TreeSHAP per feature over the reference's training rows (in output space: probability, or
    the target's unit), most important first, with each one's share of the total."""
    reference = manifest.get("reference") or {}
    attribution = reference.get("attribution")
    if not isinstance(attribution, Mapping) or not attribution:
        return None
    total = sum(attribution.values())
    ranked = sorted(attribution.items(), key=lambda item: -item[1])
    unit = "probability" if contract.is_classifier else contract.target.unit or "target unit"
    return {"unit": unit, "rows": min(reference.get("rows") or 0, ATTRIBUTION_ROWS),
            "features": [{"feature": name, "mean_abs_shap": round(value, 6),
                          "share": round(value / total, 4) if total > 0 else 0.0} for name, value in ranked]}


def known_limits(contract: FeatureContract) -> dict:
    """What the version has seen: each numeric input's training range within its possible bounds, each category's
    levels and what an unseen one gets (a regressor's wider intervals are in `intervals`)."""
    numeric = [{"feature": f.name, "unit": f.unit, "required": f.required, "training_range": [f.train_min, f.train_max],
                "bounds": [f.hard_min, f.hard_max]} for f in contract.numeric]
    categorical = [{"feature": c.name, "required": c.required, "levels": list(c.levels), "unseen": c.unseen}
                   for c in contract.categorical]
    return {"numeric": numeric, "categorical": categorical}


def live_quality(monitor: Mapping | None, version: str, key: str | None) -> dict | None:
    """The monitor's latest figures for this version: its quality per role, per segment value, and its drift when
    it is the stable version; None without a report."""
    if not monitor:
        return None
    window = monitor.get("window") or {}
    drift = monitor.get("drift") or {}
    return {"report": key, "generated_at": monitor.get("generated_at"),
            "window": {k: window.get(k) for k in ("feedback_from", "to")}, "min_labels": monitor.get("min_labels"),
            "versions": [_live_version(v) for v in monitor.get("versions") or () if v.get("model_version") == version],
            "segments": [{"segment": part.get("segment"), **_live_version(v)} for part in monitor.get("segments") or ()
                         for v in part.get("versions") or () if v.get("model_version") == version],
            "drift": ({k: drift.get(k) for k in ("status", "share_drifted", "drifted_features", "message")}
                      if drift.get("version") == version else None)}


def _live_version(v: Mapping) -> dict:
    return {"role": v.get("role"), "labels": v.get("labels"), "predictions": v.get("predictions"),
            "verdict": v.get("verdict"), "reasons": list(v.get("reasons") or ()),
            "metrics": {name: {k: m.get(k) for k in ("value", "low", "high", "n")}
                        for name, m in (v.get("metrics") or {}).items()}}


def not_recorded(card: Mapping, spec: ModelSpec) -> dict[str, str]:
    """Each fact the card could not show, by its key, and why."""
    gaps = {}
    for path, why in WHY_NOT_RECORDED.items():
        head, _, tail = path.partition(".")
        value = card[head][tail] if tail else card[head]
        if value is None and (head != "calibration" or spec.is_classifier):
            gaps[path] = why
    for field, rows in card["holdout"]["segments"].items():
        if rows is None:
            gaps[f"holdout.segments.{field}"] = WHY_NO_SEGMENT.format(field=field)
    return gaps
