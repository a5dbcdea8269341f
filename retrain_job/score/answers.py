"""A chunk's predictions as output columns: per row what the function answers, one column per part of it.

Every row carries its prediction id, the prediction, a classifier's probability of each label (`probability_<label>`)
or a regressor's interval and extrapolation flag, the function's warnings for the row and the model version, after
the input columns the user named. Values are the predictor's, unrounded (the function rounds them for JSON).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.logline import prediction_id
from shared.model import ServingModel
from shared.predictor import Estimates, Probabilities
from shared.validation import FeatureBatch

PREDICTION_ID, PREDICTION, MODEL_VERSION, WARNINGS = "prediction_id", "prediction", "model_version", "warnings"
INTERVAL_LOWER, INTERVAL_UPPER, EXTRAPOLATION = "interval_lower", "interval_upper", "extrapolation"
PROBABILITY_PREFIX = "probability_"
_TEXT = pa.dictionary(pa.int32(), pa.string())


def probability_column(label: str) -> str:
    """The output column of a label's probability."""
    return PROBABILITY_PREFIX + label


def answer_fields(model: ServingModel) -> list[pa.Field]:
    """The columns every output file has after the named input columns, in order."""
    fields = [pa.field(PREDICTION_ID, pa.string(), nullable=False)]
    if model.contract.is_classifier:
        fields.append(pa.field(PREDICTION, _TEXT, nullable=False))
        fields += [pa.field(probability_column(label), pa.float64(), nullable=False) for label in model.labels]
    else:
        fields += [pa.field(name, pa.float64(), nullable=False)
                   for name in (PREDICTION, INTERVAL_LOWER, INTERVAL_UPPER)]
        fields.append(pa.field(EXTRAPOLATION, pa.bool_(), nullable=False))
    fields += [pa.field(WARNINGS, pa.list_(pa.string()), nullable=False),
               pa.field(MODEL_VERSION, _TEXT, nullable=False)]
    return fields


def predict(model: ServingModel, batch: FeatureBatch) -> Probabilities | Estimates:
    """The served model's answers for a validated batch, from the predictor the function uses."""
    return model.predictor.predict(batch)


def prediction_ids(request_id: str, rows: np.ndarray) -> pa.Array:
    """`shared.logline.prediction_id` of each row, built as one Arrow column."""
    ids = pc.binary_join_element_wise(pa.scalar(request_id), pc.cast(pa.array(rows, pa.int64()), pa.string()), "-")
    if len(rows) and ids[0].as_py() != prediction_id(request_id, int(rows[0])):
        raise AssertionError("prediction ids no longer follow shared.logline.prediction_id")
    return ids


def label_positions(out: Probabilities, labels: Sequence[str]) -> np.ndarray:
    """Each row's predicted label as its position in `labels`, decided by the predictor (threshold or top class)."""
    return np.asarray(out.labels(tuple(range(len(labels)))), dtype=np.int32)


def answer_arrays(model: ServingModel, out: Probabilities | Estimates, warnings: list) -> list[pa.Array]:
    """The answer columns after the prediction id (`answer_fields` order), one value per predicted row."""
    n = len(warnings)
    if isinstance(out, Probabilities):
        labels = model.labels
        probabilities = np.asarray(out.array if out.array is not None else out.rows, dtype=np.float64)
        arrays = [pa.DictionaryArray.from_arrays(label_positions(out, labels), pa.array(labels, pa.string()))]
        arrays += [pa.array(probabilities[:, j]) for j in range(len(labels))]
    else:
        arrays = [pa.array(np.asarray(v, dtype=np.float64)) for v in (out.values, out.lower, out.upper)]
        flags = out.extrapolation if isinstance(out.extrapolation, np.ndarray) else np.asarray(out.flags(), bool)
        arrays.append(pa.array(flags, pa.bool_()))
    arrays.append(warnings_array(warnings))
    arrays.append(pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int32), pa.array([model.version], pa.string())))
    return arrays


def warnings_array(warnings: list) -> pa.Array:
    """Each row's warnings as a list column (rows without any: an empty list)."""
    if not any(warnings):
        offsets = pa.array(np.zeros(len(warnings) + 1, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array([], pa.string()))
    return pa.array([list(w) for w in warnings], pa.list_(pa.string()))
