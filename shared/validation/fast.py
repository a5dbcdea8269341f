"""Request rows to the model's float32 matrix, in contract order: the one place that knows the layout.

The column-wise fast path checks a whole batch with a handful of set and NumPy operations. It accepts
only what the Marshmallow schema accepts; when anything looks wrong it hands the batch to Marshmallow,
which names every bad field. Tests hold the two paths to the same verdicts.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from itertools import chain
from operator import itemgetter

import numpy as np

from shared.contract import MAX_STRING_CHARS, FeatureContract

_NUMBER_TYPES = frozenset({int, float})
_NAN = float("nan")


class InvalidRows(Exception):
    """Validation failed; `errors` maps row index to {field: [messages]} (Marshmallow's shape)."""

    def __init__(self, errors: dict[int, dict]) -> None:
        super().__init__(f"{len(errors)} invalid row(s)")
        self.errors = errors


@dataclass
class FeatureBatch:
    """Validated rows for the model, with per-row warnings for values outside the training range.

    Small batches keep their rows as lists of float32-rounded Python floats (`rows`), so that one row
    can be predicted without a NumPy call; `matrix` is built from them only when asked for.
    """

    warnings: list
    rows: list[list[float]] | None = None
    _matrix: np.ndarray | None = field(default=None, repr=False)

    @property
    def matrix(self) -> np.ndarray:
        """The float32 model matrix, in contract column order (NaN for missing)."""
        if self._matrix is None:
            self._matrix = np.array(self.rows, dtype=np.float32)
        return self._matrix


SMALL_BATCH = 16  # up to this many rows, plain Python per row beats NumPy's per-call overhead (RoutedPredictor.predict)


@dataclass(frozen=True)
class _Layout:
    allowed: frozenset
    required: frozenset
    width: int
    numeric: tuple[tuple[str, float, float, float, float], ...]  # name, hard_min, hard_max, train_min, train_max
    categorical: tuple[tuple[str, dict, int, bool], ...]  # name, lowercase level -> index, levels, required
    # per categorical feature: lowercase level -> its one-hot columns; None -> NaNs if the feature is optional
    one_hot: tuple[tuple[str, dict], ...]

    @cached_property
    def numeric_getter(self) -> itemgetter:
        names = [spec[0] for spec in self.numeric]
        return itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))


@lru_cache(maxsize=8)
def _layout(contract: FeatureContract) -> _Layout:
    required = {f.name for f in contract.numeric} | {c.name for c in contract.categorical if c.required}
    allowed = set(contract.field_names) | {"year"}
    numeric = tuple((f.name, f.hard_min, f.hard_max, f.train_min, f.train_max) for f in contract.numeric)
    categorical = tuple((c.name, {level.lower(): i for i, level in enumerate(c.levels)}, len(c.levels), c.required)
                        for c in contract.categorical)
    one_hot = tuple((name, _one_hot_table(lookup, n_levels, required)) for name, lookup, n_levels, required
                    in categorical)
    return _Layout(frozenset(allowed), frozenset(required), len(contract.columns), numeric, categorical, one_hot)


def _one_hot_table(lookup: dict[str, int], n_levels: int, required: bool) -> dict:
    table: dict = {level: tuple(float(i == index) for i in range(n_levels)) for level, index in lookup.items()}
    if not required:
        table[None] = (_NAN,) * n_levels  # absent: missing for the model, not "none of the levels"
    return table


def build_batch(contract: FeatureContract, rows: list) -> FeatureBatch:
    """Validate rows and build the matrix; raises InvalidRows naming every bad field of every bad row."""
    batch = _fast_path(contract, rows)
    if batch is not None:
        return batch
    # imported here: valid requests never need Marshmallow, so cold starts need not pay for importing it
    from shared.schema import schema_errors  # noqa: PLC0415

    cleaned, errors = schema_errors(contract, rows)
    if errors:
        raise InvalidRows(errors)
    batch = _fast_path(contract, cleaned)
    if batch is None:  # the schema's cleaned rows always fit the fast path; anything else is our bug
        raise RuntimeError("schema accepted rows the column check rejects")
    return batch


def _fast_path(contract: FeatureContract, rows: list) -> FeatureBatch | None:
    """The batch as a matrix, or None if any row needs Marshmallow's judgement."""
    layout = _layout(contract)
    if len(rows) <= SMALL_BATCH:
        return _by_rows(layout, contract.year_range, rows)
    if set(map(type, rows)) != {dict}:
        return None
    for keys in set(map(tuple, rows)):  # batches repeat a handful of key orders: check each once
        if not (layout.required.issubset(keys) and layout.allowed.issuperset(keys)):
            return None
    return _by_columns(layout, contract.year_range, rows)


def _by_rows(layout: _Layout, year_range: tuple[int, int], rows: list[dict]) -> FeatureBatch | None:
    """Small batches, one row at a time in plain Python: the same rules as `_fast_path`'s for large ones."""
    values: list[list[float]] = []
    warnings: list[list[str]] = []
    low_year, high_year = year_range
    for row in rows:
        if type(row) is not dict or not (row.keys() >= layout.required and layout.allowed.issuperset(row)):
            return None
        out: list[float] = []
        notes: list[str] = []
        for name, hard_min, hard_max, train_min, train_max in layout.numeric:
            number = row[name]
            kind = type(number)
            if kind is int:  # exact types: a bool is an int subclass and no measurement
                try:
                    number = float(number)
                except OverflowError:
                    return None
            elif kind is not float:
                return None
            if not hard_min < number <= hard_max:  # the comparison is False for NaN too
                return None
            if number < train_min or number > train_max:
                notes.append(_warning(name, number, train_min, train_max))
            out.append(number)
        for name, one_hot in layout.one_hot:
            value = row.get(name)
            if type(value) is str:
                encoded = one_hot.get(value.lower()) if len(value) <= MAX_STRING_CHARS else None
            else:
                encoded = one_hot.get(None) if value is None else None  # NaNs, or None if the feature is required
            if encoded is None:
                return None
            out += encoded
        year = row.get("year")
        if year is not None and (type(year) is not int or not low_year <= year <= high_year):
            return None
        values.append(array("f", out).tolist())  # float32 rounding, as the model sees its inputs
        warnings.append(notes or ())
    return FeatureBatch(warnings, rows=values)


def _by_columns(layout: _Layout, year_range: tuple[int, int], rows: list[dict]) -> FeatureBatch | None:
    """Large batches as columns: a few set and NumPy operations per feature."""
    n = len(rows)
    matrix = np.empty((n, layout.width), dtype=np.float32)
    out_of_range = []
    numeric = list(map(layout.numeric_getter, rows))  # one tuple of measurements per row
    if not set(map(type, chain.from_iterable(numeric))) <= _NUMBER_TYPES:
        return None
    try:
        block = np.array(numeric, dtype=np.float64).reshape(n, len(layout.numeric))
    except OverflowError:
        return None
    for j, (name, hard_min, hard_max, train_min, train_max) in enumerate(layout.numeric):
        values = block[:, j]
        # NaN fails both comparisons, so non-finite values are caught here too
        if not bool(np.all((values > hard_min) & (values <= hard_max))):
            return None
        outside = (values < train_min) | (values > train_max)
        if outside.any():
            out_of_range.append((name, train_min, train_max, outside, values))
    matrix[:, :len(layout.numeric)] = block
    col = len(layout.numeric)
    for name, lookup, n_levels, required in layout.categorical:
        column = [row.get(name) for row in rows]
        kinds = set(map(type, column))
        if not kinds <= ({str, type(None)} if not required else {str}):
            return None
        if max(map(len, filter(None, column)), default=0) > MAX_STRING_CHARS:
            return None
        if type(None) in kinds:
            lowered = [v.lower() if v is not None else None for v in column]
            found = list(map({**lookup, None: -1}.get, lowered))
        else:
            found = list(map(lookup.get, map(str.lower, column)))
        if None in found:  # a level the model does not know
            return None
        codes = np.array(found, dtype=np.int64)
        block = (codes[:, None] == np.arange(n_levels)).astype(np.float32)
        block[codes < 0] = np.nan  # absent category: missing for the model, not "none of the levels"
        matrix[:, col:col + n_levels] = block
        col += n_levels
    years = [year for year in (row.get("year") for row in rows) if year is not None]
    if years and (not set(map(type, years)) <= {int} or min(years) < year_range[0] or max(years) > year_range[1]):
        return None
    return FeatureBatch(_warnings(n, out_of_range), _matrix=matrix)


def _warnings(n: int, out_of_range: list) -> list[list[str]]:
    warnings: list = [()] * n  # rows without warnings share one empty (immutable) sequence
    for name, train_min, train_max, outside, values in out_of_range:
        for i in np.flatnonzero(outside):
            warnings[i] = [*warnings[i], _warning(name, float(values[i]), train_min, train_max)]
    return warnings


def _warning(name: str, value: float, train_min: float, train_max: float) -> str:
    return (f"{name}={value:g} is outside the training range {train_min:g} to {train_max:g}; "
            "the prediction is less reliable")
