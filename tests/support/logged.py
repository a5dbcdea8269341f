"""Reading the rows a routed log line carries (`shared.logline`): its `data` field is JSON text, one object per row.

- `rows_of(payload)`: the line's row objects, `{"id", "instance", "predicted", ...}` or `{"id", "truth"}`.
- `field_of(payload, name)`: one field of every row, in order (e.g. `"predicted"`, `"instance"`, `"truth"`).
- `data_line(rows, ...)`: a prediction payload's `first_row` and `data` as the app writes them, for tests that
  build lines by hand.
"""
from __future__ import annotations

import json
from typing import Any

from shared.logline import DATA, PredictionRows


def rows_of(payload: dict) -> list[dict]:
    """The row objects of one routed line, decoded from its `data` text (which must be a string)."""
    text = payload[DATA]
    assert isinstance(text, str), f"{DATA} must be JSON text, got {type(text).__name__}"
    rows = json.loads(text)
    assert isinstance(rows, list), rows
    return rows


def field_of(payload: dict, name: str) -> list[Any]:
    """One field of each row of a routed line, in row order."""
    return [row[name] for row in rows_of(payload)]


def data_line(request_id: str, instances: list[dict], predicted: list, **per_row: Any) -> dict:
    """`first_row` and `data` of a one-entry prediction line, encoded as the app encodes them."""
    rows = PredictionRows(request_id, {"instances": instances}, predicted, **per_row)
    return {"first_row": 0, DATA: rows.encode(0, len(rows))}
