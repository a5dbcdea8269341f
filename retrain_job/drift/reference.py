"""The training reference a version carries in its manifest, for drift judged long after training.

Written once at training (`reference_profile`), read by the monitor: a bounded sample of training rows (their
feature values), the holdout's answers (what the model said on data it never saw: the reference of prediction
drift) and the training rows' mean absolute attributions (the reference of attribution drift).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from retrain_job.data.labelled import to_records
from retrain_job.drift.attribution import ATTRIBUTION_ROWS, mean_abs_attribution, predictions_of
from shared.model import ServingModel

REFERENCE_ROWS = 1000  # training rows kept per version (their feature values), and the holdout answers kept
SEED = 0


def _sample(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    if len(frame) <= rows:
        return frame
    return frame.iloc[np.sort(np.random.default_rng(SEED).permutation(len(frame))[:rows])]


def reference_profile(model: ServingModel, train: pd.DataFrame, holdout: pd.DataFrame) -> dict:
    """The manifest's `reference` section: sampled training feature values, holdout answers, mean |attribution|."""
    names = model.contract.field_names
    sample = to_records(_sample(train, REFERENCE_ROWS), names)
    answers = predictions_of(model, to_records(_sample(holdout, REFERENCE_ROWS), names))
    return {"rows": len(sample), "features": {name: [row[name] for row in sample] for name in names},
            "predictions": answers, "attribution": mean_abs_attribution(model, sample[:ATTRIBUTION_ROWS])}


def reference_rows(reference: dict) -> list[dict]:
    """The reference's sampled training rows, request-shaped."""
    features = reference.get("features") or {}
    names = list(features)
    return [dict(zip(names, values)) for values in zip(*features.values())] if names else []
