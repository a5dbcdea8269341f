"""The log line contract: the events a sink routes, their payload fields and types, and the sink's file layout.

The function writes one JSON line per request to stdout; Cloud Logging routes the lines of `SINK_EVENTS` to
BigQuery (and, if kept, to a bucket), and `make serve` appends the same LogEntry lines to the local store.
A BigQuery sink fixes each payload field's column type from the first entry it sees and refuses later entries
whose field has another type; each model's inputs, answers and truths differ in kind. So every routed field has
one type for every model (`ROUTED_FIELDS`), and what varies per model (each row's inputs and answer, or each
feedback item) travels as JSON text in `data`: one object per row, `{"id", "instance", "predicted", ...}` or
`{"id", "truth"}`, which BigQuery's JSON functions and DuckDB's read alike.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import orjson

LOG_ID = "run.googleapis.com/stdout"
BIGQUERY_TABLE = "run_googleapis_com_stdout"  # the table a Cloud Logging sink into BigQuery names after LOG_ID
PREDICTION, PREDICTION_ROWS, FEEDBACK = "prediction", "prediction_rows", "feedback"
PREDICTION_EVENTS = (PREDICTION, PREDICTION_ROWS)  # a request's first entry, and a large batch's later ones
SINK_EVENTS = frozenset({*PREDICTION_EVENTS, FEEDBACK})  # what the sinks route
DATA = "data"  # the payload field holding the rows as JSON text

# Every payload field a routed line may carry, with its BigQuery type (Cloud Logging writes JSON numbers as
# FLOAT). terraform/README.md and the BigQuery tests build the sink table from this.
ROUTED_FIELDS: dict[str, str] = {
    "severity": "STRING", "message": "STRING", "event": "STRING", "status": "FLOAT", "request_id": "STRING",
    "latency_ms": "FLOAT", "parse_ms": "FLOAT", "validate_ms": "FLOAT", "predict_ms": "FLOAT",
    "format_ms": "FLOAT", "inference_ms": "FLOAT", "explain_ms": "FLOAT", "model": "STRING",
    "model_version": "STRING", "role": "STRING", "fallback": "BOOLEAN", "rows": "FLOAT", "first_row": "FLOAT",
    "prediction": "STRING", "out_of_range": "FLOAT", "labels": "STRING REPEATED", "threshold": "FLOAT",
    "cold": "BOOLEAN", "source": "STRING", DATA: "STRING",
}
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def sink_key(when: datetime) -> str:
    """Where a Cloud Logging sink puts an entry's hour: LOG_ID/YYYY/MM/DD/HH:00:00_HH:59:59_S0.json."""
    return f"{LOG_ID}/{when:%Y/%m/%d}/{when:%H}:00:00_{when:%H}:59:59_S0.json"


def prediction_id(request_id: str, row: int) -> str:
    """The id a client sends feedback with: the request's id and the row's position in it."""
    return f"{request_id}-{row}"


def _list(values: Any) -> list:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


class PredictionRows:
    """One inference's rows as logged: inputs, answer, and probabilities or interval; encoded slice by slice.

    `inputs` is `{"instances": rows}` or `{"columns": {field: values}}`. A classifier's rows carry their
    `probabilities` (in the line's `labels` order) and `probability`, the one of the predicted label; a
    regressor's their `interval` and `extrapolation` flag.
    """

    __slots__ = ("request_id", "inputs", "predicted", "probabilities", "probability", "intervals", "extrapolation")

    def __init__(self, request_id: str, inputs: dict, predicted: Sequence, *, probabilities: Any = None,
                 probability: Any = None, intervals: Any = None, extrapolation: Any = None) -> None:
        self.request_id = request_id
        self.inputs = inputs
        self.predicted = predicted
        self.probabilities = probabilities
        self.probability = probability
        self.intervals = intervals
        self.extrapolation = extrapolation

    def __len__(self) -> int:
        return len(self.predicted)

    def _instances(self, start: int, stop: int) -> list:
        instances = self.inputs.get("instances")
        if instances is not None:
            return instances[start:stop]
        columns = {name: _list(values[start:stop]) for name, values in self.inputs["columns"].items()}
        names = list(columns)
        return [dict(zip(names, values)) for values in zip(*columns.values())]

    def encode(self, start: int, stop: int) -> str:
        """Rows start:stop as the JSON text of `data`."""
        fields = {"instance": self._instances(start, stop), "predicted": _list(self.predicted[start:stop])}
        for name in ("probabilities", "probability", "interval", "extrapolation"):
            values = self.intervals if name == "interval" else getattr(self, name)
            if values is not None:
                fields[name] = _list(values[start:stop])
        rid = self.request_id
        names = list(fields)
        rows = [{"id": f"{rid}-{start + j}", **dict(zip(names, values))}
                for j, values in enumerate(zip(*fields.values()))]
        return orjson.dumps(rows, option=_NUMPY).decode()


class FeedbackRows:
    """One feedback request's accepted items (`{"id", "truth"}`), encoded slice by slice."""

    __slots__ = ("items",)

    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def encode(self, start: int, stop: int) -> str:
        """Items start:stop as the JSON text of `data`."""
        return orjson.dumps(self.items[start:stop], option=_NUMPY).decode()
