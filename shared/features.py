"""Request rows to the model's float32 matrix, in contract order: the one place that knows the layout.

The column-wise fast path checks a whole batch with a handful of set and NumPy operations. It accepts
only what the Marshmallow schema accepts; when anything looks wrong it hands the batch to Marshmallow,
which names every bad field. Tests hold the two paths to the same verdicts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from shared.contract import FeatureContract
from shared.schema import MAX_STRING_CHARS, schema_errors

_NUMBER_TYPES = frozenset({int, float})


class InvalidRows(Exception):
    """Validation failed; `errors` maps row index to {field: [messages]} (Marshmallow's shape)."""

    def __init__(self, errors: dict[int, dict]) -> None:
        super().__init__(f"{len(errors)} invalid row(s)")
        self.errors = errors


@dataclass
class FeatureBatch:
    """Validated rows as a model matrix, with per-row warnings for values outside the training range."""

    matrix: np.ndarray
    warnings: list[list[str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Layout:
    allowed: frozenset
    required: frozenset
    lookups: tuple[dict, ...]


@lru_cache(maxsize=8)
def _layout(contract: FeatureContract) -> _Layout:
    required = {f.name for f in contract.numeric} | {c.name for c in contract.categorical if c.required}
    allowed = set(contract.field_names) | {"year"}
    lookups = tuple({level.lower(): i for i, level in enumerate(c.levels)} for c in contract.categorical)
    return _Layout(frozenset(allowed), frozenset(required), lookups)


def build_batch(contract: FeatureContract, rows: list) -> FeatureBatch:
    """Validate rows and build the matrix; raises InvalidRows naming every bad field of every bad row."""
    batch = _fast_path(contract, rows)
    if batch is not None:
        return batch
    cleaned, errors = schema_errors(contract, rows)
    if errors:
        raise InvalidRows(errors)
    batch = _fast_path(contract, cleaned)
    if batch is None:  # the schema's cleaned rows always fit the fast path; anything else is our bug
        raise RuntimeError("schema accepted rows the column check rejects")
    return batch


def _fast_path(contract: FeatureContract, rows: list) -> FeatureBatch | None:
    """The whole batch as columns, or None if any row needs Marshmallow's judgement."""
    layout = _layout(contract)
    for row in rows:
        if type(row) is not dict:
            return None
        keys = row.keys()
        if not (layout.required <= keys <= layout.allowed):
            return None
    n = len(rows)
    width = len(contract.columns)
    matrix = np.empty((n, width), dtype=np.float32)
    out_of_range = []
    for j, f in enumerate(contract.numeric):
        column = [row[f.name] for row in rows]
        if not set(map(type, column)) <= _NUMBER_TYPES:
            return None
        try:
            values = np.array(column, dtype=np.float64)
        except OverflowError:
            return None
        # NaN fails both comparisons, so non-finite values are caught here too
        if not bool(np.all((values > f.hard_min) & (values <= f.hard_max))):
            return None
        matrix[:, j] = values
        outside = (values < f.train_min) | (values > f.train_max)
        if outside.any():
            out_of_range.append((f, outside, values))
    col = len(contract.numeric)
    for c, lookup in zip(contract.categorical, layout.lookups):
        codes = np.empty(n, dtype=np.int64)
        for i, row in enumerate(rows):
            value = row.get(c.name)
            if value is None:
                if c.required:
                    return None
                codes[i] = -1
            elif type(value) is str and len(value) <= MAX_STRING_CHARS and value.lower() in lookup:
                codes[i] = lookup[value.lower()]
            else:
                return None
        block = (codes[:, None] == np.arange(len(c.levels))).astype(np.float32)
        block[codes < 0] = np.nan  # absent category: missing for the model, not "none of the levels"
        matrix[:, col:col + len(c.levels)] = block
        col += len(c.levels)
    low, high = contract.year_range
    for row in rows:
        year = row.get("year")
        if year is not None and (type(year) is not int or not low <= year <= high):
            return None
    return FeatureBatch(matrix, _warnings(n, out_of_range))


def _warnings(n: int, out_of_range: list) -> list[list[str]]:
    warnings: list[list[str]] = [[] for _ in range(n)]
    for f, outside, values in out_of_range:
        for i in np.flatnonzero(outside):
            warnings[i].append(
                f"{f.name}={values[i]:g} is outside the training range {f.train_min:g} to {f.train_max:g}; "
                "the prediction is less reliable")
    return warnings
