"""Drift of the stable version's served rows against the reference its manifest carries (feature, prediction and
attribution drift, overall and per segment), on a hashed sample of its served rows.

The reference is written at training (`retrain_job.drift.reference`): sampled training rows, the holdout's
answers and the training rows' mean absolute attributions. A version without one (the shipped model, or one
trained before it existed) gets no drift verdict, said in the report. Served rows hold features as logged: a spec
that logs a feature otherwise than as sent (`log` in the spec) gets no attribution drift, since the model cannot
explain what it was not sent, and features are compared as `build_report` says (retrain_job/drift/logged.py).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from retrain_job.drift.attribution import ATTRIBUTION_ROWS, attribution_drift, mean_abs_attribution
from retrain_job.drift.reference import reference_rows
from retrain_job.drift.stats import DriftThresholds
from retrain_job.report import build_report
from shared.model import ServingModel
from shared.spec import KEEP, ModelSpec

SERVED_ROWS = 5000  # served rows of the stable version the monitor's drift compares (hashed sample)


def monitor_drift(spec: ModelSpec, version: str | None, *, manifest: Mapping | None, model: ServingModel | None,
                  served: Sequence[dict], total: int, thresholds: DriftThresholds,
                  hash_key: bytes | None = None) -> dict:
    """The drift section of the monitor report for the stable `version`."""
    reference = (manifest or {}).get("reference")
    if version is None or model is None or not isinstance(reference, Mapping):
        return {"version": version, "status": "no_reference",
                "message": "no training reference in this version's manifest (the shipped model, or trained "
                           "before references were kept): no drift verdict"}
    names = model.contract.field_names
    rows = [{name: row.get(name) for name in names} for row in served]
    attribution, skipped = None, {}
    altered = [f.name for f in spec.features if f.log != KEEP]
    if altered:
        skipped = {"attribution_skipped": f"{', '.join(altered)} logged otherwise than as sent (log policies): "
                                          "served rows cannot be explained"}
    elif served and isinstance(reference.get("attribution"), Mapping):
        attribution = attribution_drift(reference["attribution"],
                                        mean_abs_attribution(model, rows[:ATTRIBUTION_ROWS]), thresholds.distance)
    serving = pd.DataFrame([{**row, "predicted": s.get("predicted")} for row, s in zip(rows, served)],
                           columns=[*names, "predicted"])
    report = build_report(spec, model.contract, pd.DataFrame(reference_rows(reference), columns=names), serving,
                          pd.DataFrame(columns=names), thresholds=thresholds,
                          window={"served_rows": total, "sampled_rows": len(served)},
                          reference_predictions=reference.get("predictions"), attribution=attribution,
                          hash_key=hash_key)
    return {"version": version, **{k: report[k] for k in (
        "status", "reference", "current", "features", "skipped_features", "drifted_features", "share_drifted",
        "prediction_drift", "attribution_drift", "segments", "thresholds")}, **(
        {"message": report["message"]} if "message" in report else {}), **skipped}
