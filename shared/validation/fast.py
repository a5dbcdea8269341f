"""Request rows to the model's float32 matrix, in contract order: the one place that knows the layout.

Valid rows never reach Marshmallow: small batches are checked row by row in plain Python, large ones
column by column with a few set and NumPy operations, both against the bounds, levels and policies of
`rules` (and with its warnings). When anything looks wrong the batch goes to the Marshmallow schema,
which names every bad field with the rules' messages. Tests hold the paths to the same verdicts.

A value that means missing (a feature's `missing_values`) costs the features without any nothing: each
path's quick bounds check fails for it (a feature with such a value inside its bounds is given an empty
quick range), and only then is the value looked up, served as NaN and warned about.
"""
from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from math import inf, isnan
from operator import itemgetter

import numpy as np

from shared.contract import FeatureContract
from shared.validation.rules import MAX_STRING_CHARS, CategoryRule, NumericRule, Violation

_NUMBER_TYPES = frozenset({int, float})
_OPTIONAL_NUMBER_TYPES = frozenset({int, float, type(None)})
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
    # name, low, high (the quick check `low < x <= high`, see _quick_bounds), train_min, train_max, required,
    # rule: in contract order
    numeric: tuple[tuple[str, float, float, float, float, bool, NumericRule], ...]
    # name, normalised level -> its one-hot columns (None -> NaNs if optional), width, rule
    one_hot: tuple[tuple[str, dict, int, CategoryRule], ...]
    integers: tuple[tuple[str, int | None, int | None], ...]  # passthrough integers: name, low, high
    strings: tuple[str, ...]  # passthrough strings
    # numeric feature with values that mean missing -> those values as an encoded (float32) tensor holds them
    missing32: dict[str, frozenset[float]]


@lru_cache(maxsize=16)
def _layout(contract: FeatureContract) -> _Layout:
    required = {f.name for f in contract.numeric if f.required} | {c.name for c in contract.categorical if c.required}
    allowed = set(contract.field_names) | {p.name for p in contract.passthrough}
    rules = [NumericRule(f) for f in contract.numeric]
    numeric = tuple((f.name, *_quick_bounds(rule), f.train_min, f.train_max, f.required, rule)
                    for f, rule in zip(contract.numeric, rules))
    categories = [CategoryRule(c) for c in contract.categorical]
    one_hot = tuple((rule.feature.name, _one_hot_table(rule), len(rule.feature.levels), rule) for rule in categories)
    integers = tuple((p.name, p.low, p.high) for p in contract.passthrough if p.kind == "integer")
    strings = tuple(p.name for p in contract.passthrough if p.kind == "string")
    missing32 = {rule.feature.name: frozenset(array("f", sorted(rule.missing)).tolist()) for rule in rules
                 if rule.missing}
    return _Layout(frozenset(allowed), frozenset(required), len(contract.columns), numeric, one_hot, integers,
                   strings, missing32)


def _quick_bounds(rule: NumericRule) -> tuple[float, float]:
    """The bounds of the quick check every value passes through; a value failing it is looked at again.

    The rule's own, unless a value that means missing lies within them: then none (each value of the
    feature is looked at again), since the quick check alone would take that value for a measurement.
    """
    low, high = rule.low, rule.feature.hard_max
    return (inf, -inf) if any(low < v <= high for v in rule.missing) else (low, high)


def _one_hot_table(rule: CategoryRule) -> dict:
    width = len(rule.feature.levels)
    table: dict = {key: tuple(float(i == index) for i in range(width)) for key, index in rule.index.items()}
    if not rule.feature.required:
        table[None] = (_NAN,) * width  # absent: missing for the model, not "none of the levels"
    return table


def build_batch(contract: FeatureContract, rows: list) -> FeatureBatch:
    """Validate rows and build the matrix; raises InvalidRows naming every bad field of every bad row."""
    batch = _fast_path(contract, rows)
    if batch is not None:
        return batch
    # imported here: valid requests never need Marshmallow, so cold starts need not pay for importing it
    from shared.validation.schema import schema_errors  # noqa: PLC0415

    cleaned, errors = schema_errors(contract, rows)
    if errors:
        raise InvalidRows(errors)
    batch = _fast_path(contract, _missing_given_back(contract, rows, cleaned))
    if batch is None:  # the schema's cleaned rows always fit the fast path; anything else is our bug
        raise RuntimeError("schema accepted rows the column check rejects")
    return batch


def _missing_given_back(contract: FeatureContract, rows: list[dict], cleaned: list[dict]) -> list[dict]:
    """The schema's cleaned rows with each value that means missing (None there) given back as a plain float or
    string, so that the fast path serves it as missing with its warning, as for the rows it accepts itself."""
    fields = [(f.name, float) for f in contract.numeric if f.missing_values]
    fields += [(c.name, str) for c in contract.categorical if c.missing_values]
    for row, clean in zip(rows, cleaned):
        for name, kind in fields:
            if clean.get(name) is None and row.get(name) is not None:
                clean[name] = kind(row[name])
    return cleaned


def _fast_path(contract: FeatureContract, rows: list) -> FeatureBatch | None:
    """The batch as a matrix, or None if any row needs Marshmallow's judgement."""
    layout = _layout(contract)
    if len(rows) <= SMALL_BATCH:
        return _by_rows(layout, rows)
    if set(map(type, rows)) != {dict}:
        return None
    return _by_columns(layout, rows)


def _passthrough_ok(layout: _Layout, row: dict) -> bool:
    for name, low, high in layout.integers:
        value = row.get(name)
        if value is not None and (type(value) is not int or (low is not None and not low <= value <= high)):
            return False
    for name in layout.strings:
        value = row.get(name)
        if value is not None and (type(value) is not str or len(value) > MAX_STRING_CHARS):
            return False
    return True


def _by_rows(layout: _Layout, rows: list[dict]) -> FeatureBatch | None:
    """Small batches, one row at a time in plain Python: the same rules as the column path's for large ones."""
    values: list[list[float]] = []
    warnings: list = []
    for row in rows:
        if type(row) is not dict or not (row.keys() >= layout.required and layout.allowed.issuperset(row)):
            return None
        out: list[float] = []
        notes: list[str] = []
        for name, low, high, train_min, train_max, required, rule in layout.numeric:
            number = row.get(name)
            kind = type(number)
            if kind is int:  # exact types: a bool is an int subclass and no measurement
                try:
                    number = float(number)
                except OverflowError:
                    return None
            elif kind is not float:
                if number is None and not required:
                    out.append(_NAN)
                    continue
                return None
            if not low < number <= high:  # the comparison is False for NaN too
                if number in rule.missing:
                    out.append(_NAN)
                    notes.append(rule.missing_warning(number))
                    continue
                if not rule.accepts(number):
                    return None
            if number < train_min or number > train_max:
                notes.append(rule.warning(number))
            out.append(number)
        out = array("f", out).tolist()  # float32 rounding, as the model sees its inputs (one-hot 0, 1, NaN are exact)
        for name, one_hot, width, rule in layout.one_hot:
            value = row.get(name)
            if type(value) is str:
                if len(value) > MAX_STRING_CHARS:
                    return None
                encoded = one_hot.get(rule.normalise(value))
                if encoded is None:
                    if rule.normalise(value) in rule.missing:
                        encoded = (_NAN,) * width
                        notes.append(rule.missing_warning(value))
                    elif rule.feature.unseen == "missing":
                        encoded = (_NAN,) * width
                        notes.append(rule.warning(value))
            else:
                encoded = one_hot.get(None) if value is None else None  # NaNs, or None if the feature is required
            if encoded is None:
                return None
            out += encoded
        if not _passthrough_ok(layout, row):
            return None
        values.append(out)
        warnings.append(notes or ())
    return FeatureBatch(warnings, rows=values)


def _by_columns(layout: _Layout, rows: list[dict]) -> FeatureBatch | None:
    """Large batches as columns, one list per field: the column path's checks then apply as for columnar input."""
    present = set().union(*rows)
    if not layout.allowed.issuperset(present):
        return None
    try:  # a row without a required field raises here
        columns = {name: list(map(itemgetter(name), rows)) for name in layout.required}
    except KeyError:
        return None
    for name in present - layout.required:
        columns[name] = [row.get(name) for row in rows]
    return _columns_fast_path(layout, columns, len(rows))


def build_batch_from_columns(contract: FeatureContract, columns: dict[str, list], n: int) -> FeatureBatch:
    """Validate a batch sent as one list per field (each a list of length `n`) and build its matrix.

    The columnar form maps straight to arrays, so valid columns are checked with vectorised range and
    level checks, no dict per row; anything wrong is judged row by row by the schema, whose `InvalidRows`
    names every bad field of every bad row, exactly as for rows.
    """
    layout = _layout(contract)
    batch = None
    if layout.required.issubset(columns) and layout.allowed.issuperset(columns):
        batch = _columns_fast_path(layout, columns, n)
    if batch is not None:
        return batch
    return build_batch(contract, [{name: column[i] for name, column in columns.items()} for i in range(n)])


def _columns_fast_path(layout: _Layout, columns: dict[str, list], n: int) -> FeatureBatch | None:
    by_feature = np.empty((len(layout.numeric), n), dtype=np.float64)  # a row per feature: contiguous writes
    for j, (name, *_, required, _rule) in enumerate(layout.numeric):
        column = columns.get(name)
        if column is None:
            by_feature[j] = _NAN
            continue
        kinds = set(map(type, column))
        if not kinds <= (_NUMBER_TYPES if required else _OPTIONAL_NUMBER_TYPES):
            return None
        try:
            by_feature[j] = column  # None becomes NaN
        except OverflowError:
            return None
    block = by_feature.T
    for name, low, high in layout.integers:
        given = _given_column(columns.get(name), int)
        if given is None or (given and low is not None and (min(given) < low or max(given) > high)):
            return None
    for name in layout.strings:
        given = _given_column(columns.get(name), str)
        if given is None or (given and max(map(len, given)) > MAX_STRING_CHARS):
            return None
    return _encode(layout, block, lambda name: columns.get(name) or [None] * n, n)


def _given_column(column: list | None, kind: type) -> list | None:
    """The values a column carries (nulls left out), or None if any is not of `kind`."""
    if column is None:
        return []
    kinds = set(map(type, column))
    if not kinds <= {kind, type(None)}:
        return None
    return [v for v in column if v is not None] if type(None) in kinds else column


def _encode(layout: _Layout, block: np.ndarray, column_of: Callable[[str], list], n: int) -> FeatureBatch | None:
    """The matrix of a numeric block (float64, NaN: missing) and each category's column, or None if any is bad."""
    matrix = np.empty((n, layout.width), dtype=np.float32)
    notes: list = []  # (row mask, message of a row index)
    for j, (_name, low, high, train_min, train_max, required, rule) in enumerate(layout.numeric):
        values = block[:, j]
        given = values if required else values[~np.isnan(values)]
        # NaN fails both comparisons, so non-finite values are caught here too
        if not bool(np.all((given > low) & (given <= high))) and not _serve_missing(values, rule, required, notes):
            return None
        outside = (values < train_min) | (values > train_max)
        if outside.any():
            notes.append((outside, lambda i, values=values, rule=rule: rule.warning(float(values[i]))))
    matrix[:, :len(layout.numeric)] = block
    col = len(layout.numeric)
    for name, _table, width, rule in layout.one_hot:
        codes = _category_codes(column_of(name), rule, n)
        if codes is None:
            return None
        if rule.missing:
            meant = codes == _MEANS_MISSING
            if meant.any():
                column = column_of(name)
                notes.append((meant, lambda i, column=column, rule=rule: rule.missing_warning(column[i])))
        unseen = codes == _UNSEEN
        if unseen.any():
            column = column_of(name)
            notes.append((unseen, lambda i, column=column, rule=rule: rule.warning(column[i])))
        one_hot_block = (codes[:, None] == np.arange(width)).astype(np.float32)
        one_hot_block[codes < 0] = np.nan  # absent, unseen or meaning missing: missing for the model
        matrix[:, col:col + width] = one_hot_block
        col += width
    return FeatureBatch(_warnings(n, notes), _matrix=matrix)


def _serve_missing(values: np.ndarray, rule: NumericRule, required: bool, notes: list) -> bool:
    """After the quick check failed: the values that mean missing set to NaN in place, each with its warning;
    False if any other value breaks the bounds."""
    if not rule.missing:
        return False
    meant = np.isin(values, np.fromiter(rule.missing, dtype=np.float64))
    accepted = meant | ((values > rule.low) & (values <= rule.feature.hard_max))
    if not bool(np.all(accepted if required else accepted | np.isnan(values))):
        return False
    if meant.any():
        sent = values.copy()
        notes.append((meant, lambda i: rule.missing_warning(float(sent[i]))))
        values[meant] = _NAN
    return True


# category codes of a missing value (null or absent), a level never seen in training, a value that means missing
_ABSENT, _UNSEEN, _MEANS_MISSING = -1, -2, -3


def _category_codes(column: list, rule: CategoryRule, n: int) -> np.ndarray | None:
    """Each row's level index (or _ABSENT, _UNSEEN), judged once per distinct spelling; None if any is bad.

    A batch repeats a handful of spellings, so each distinct value is checked and normalised once and the
    column mapped through the result at C speed.
    """
    try:
        distinct = set(column)
    except TypeError:  # an unhashable value (a list, an object) is no category
        return None
    if not set(map(type, distinct)) <= ({str} if rule.feature.required else {str, type(None)}):
        return None
    code_of: dict = {}
    for value in distinct:
        if value is None:
            code_of[value] = _ABSENT
            continue
        if len(value) > MAX_STRING_CHARS:
            return None
        code = rule.index.get(rule.normalise(value))
        if code is None:
            if rule.normalise(value) in rule.missing:
                code = _MEANS_MISSING
            elif rule.feature.unseen != "missing":  # a level the model does not know
                return None
            else:
                code = _UNSEEN
        code_of[value] = code
    return np.fromiter(map(code_of.__getitem__, column), dtype=np.int64, count=n)


def check_matrix(contract: FeatureContract, x: np.ndarray) -> FeatureBatch:
    """Validate a float32 matrix of encoded columns (NaN: missing), as the model's own input tensor arrives.

    Numeric columns keep their bounds and missing-value policy (a value that means missing is served as NaN,
    in a copy: `x` is left as sent); each category's one-hot block must hold one 1 and otherwise 0s, or only
    NaNs where the category may be missing. Raises `InvalidRows` naming the column (`contract.columns`) and
    row of every bad value.
    """
    layout = _layout(contract)
    if x.shape[0] <= SMALL_BATCH:
        batch = _matrix_by_rows(layout, x)
        if batch is not None:
            return batch
    errors: dict[int, dict] = {}

    def reject(mask: np.ndarray, column: str, message: str) -> None:
        for i in np.flatnonzero(mask)[:_MAX_REPORTED_ROWS].tolist():
            errors.setdefault(i, {}).setdefault(column, []).append(message)

    notes: list = []
    served = x
    for j, (name, _low, _high, train_min, train_max, required, rule) in enumerate(layout.numeric):
        values = x[:, j].astype(np.float64)
        missing = np.isnan(values)
        if required:
            reject(missing, name, "must be a number")
        if name in layout.missing32:
            meant = np.isin(values, np.fromiter(layout.missing32[name], dtype=np.float64))
            if meant.any():
                notes.append((meant, lambda i, values=values, rule=rule: rule.missing_warning(float(values[i]))))
                served = x.copy() if served is x else served
                served[meant, j] = np.nan
                missing |= meant
        bad = ~missing & ~((values > rule.low) & (values <= rule.feature.hard_max))
        if bad.any():
            for i in np.flatnonzero(bad)[:_MAX_REPORTED_ROWS].tolist():
                try:
                    rule.parse(float(values[i]))
                except Violation as exc:
                    errors.setdefault(i, {}).setdefault(name, []).append(str(exc))
        outside = ~missing & ((values < train_min) | (values > train_max))
        if outside.any():
            notes.append((outside, lambda i, values=values, rule=rule: rule.warning(float(values[i]))))
    col = len(layout.numeric)
    for name, _table, width, rule in layout.one_hot:
        block = x[:, col:col + width]
        columns = contract.columns[col:col + width]
        col += width
        missing = np.isnan(block)
        all_missing = missing.all(axis=1)
        if rule.feature.required and rule.feature.unseen != "missing":
            reject(all_missing, columns[0], f"{name} is required: its one-hot columns must not be missing")
        partly = missing.any(axis=1) & ~all_missing
        reject(partly, columns[0], f"{name}'s one-hot columns must all be given or all be missing")
        given = ~missing.any(axis=1)
        binary = np.isin(block, (0.0, 1.0)).all(axis=1)
        reject(given & ~binary, columns[0], f"{name}'s one-hot columns must be 0 or 1")
        reject(given & binary & (block.sum(axis=1) != 1.0), columns[0],
               f"{name}'s one-hot columns must hold exactly one 1 (one level of {', '.join(rule.feature.levels)})")
    if errors:
        raise InvalidRows(dict(sorted(errors.items())))
    return FeatureBatch(_warnings(x.shape[0], notes), _matrix=served)


_MAX_REPORTED_ROWS = 100  # a bad tensor names at most this many rows per column


def _matrix_by_rows(layout: _Layout, x: np.ndarray) -> FeatureBatch | None:
    """A few encoded rows checked in plain Python (NumPy's cost per call outweighs them), or None if any is
    wrong, for `check_matrix` to name; kept as rows so the predictor needs no NumPy either."""
    rows = x.tolist()  # float32 values as Python floats: exactly what the model sees
    warnings: list = []
    width = len(layout.numeric)
    for row in rows:
        notes: list[str] = []
        for j, (name, low, high, train_min, train_max, required, rule) in enumerate(layout.numeric):
            value = row[j]
            if isnan(value):  # missing
                if required:
                    return None
                continue
            if not low < value <= high:
                if value in layout.missing32.get(name, ()):
                    row[j] = _NAN
                    notes.append(rule.missing_warning(value))
                    continue
                if not rule.accepts(value):
                    return None
            if value < train_min or value > train_max:
                notes.append(rule.warning(value))
        col = width
        for _name, _table, levels, rule in layout.one_hot:
            block = row[col:col + levels]
            col += levels
            if block.count(1.0) == 1 and block.count(0.0) == levels - 1:
                continue
            if rule.feature.required and rule.feature.unseen != "missing" or not all(map(isnan, block)):
                return None
        warnings.append(notes or ())
    return FeatureBatch(warnings, rows=rows)


def _warnings(n: int, notes: list) -> list:
    warnings: list = [()] * n  # rows without warnings share one empty (immutable) sequence
    for mask, message in notes:
        for i in np.flatnonzero(mask):
            warnings[i] = [*warnings[i], message(int(i))]
    return warnings
