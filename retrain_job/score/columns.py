"""Arrow chunks judged by the function's validator (`shared.validation`): the same rules, messages and matrix.

A chunk goes through the column path of `shared.validation.fast` as arrays, without a Python object per cell:
the numeric features through its `_encode` (bounds, values that mean missing, training-range warnings), each
category's distinct values through its `_category_codes` (the chunk's rows then take their value's one-hot row),
each passthrough field's extremes or distinct values through its rule. Where that path refuses a chunk, the chunk
is halved until the pieces it refuses are small, and their rows go to `build_batch` as request rows: the
Marshmallow schema names every bad field of every bad row with the rules' messages, and the valid rows beside
them are encoded as the function encodes them.

A row becomes a request row as the job reads files (`retrain_job.data.labelled`): a null, or in a CSV file a cell
that holds no value, is a field left out; in a CSV file a number in text is a number; an integer field's whole
float is an integer. Columns the contract does not name are not request fields and are not judged.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retrain_job.data.labelled import _is_missing, _logged_value, _request_value
from shared.contract import FeatureContract
from shared.validation import FeatureBatch, InvalidRows, build_batch, fast
from shared.validation.rules import PassthroughRule, Violation

LEAF_ROWS = 64  # a refused piece this small is judged row by row by the schema


@dataclass
class Judged:
    """A chunk's verdict: the valid rows' batch and their positions in the chunk, and every bad field of the others."""

    batch: FeatureBatch | None
    rows: np.ndarray  # positions of the valid rows, increasing
    errors: list[tuple[int, str, str]]  # (position, field, message), by position


@dataclass(frozen=True)
class Fields:
    """What judging needs of a contract: its fields by kind, its layout, and a layout of its numeric part."""

    contract: FeatureContract

    @cached_property
    def layout(self):
        return fast._layout(self.contract)

    @cached_property
    def numeric_layout(self):
        """The layout without categories: `_encode` then fills the numeric columns of a full-width matrix."""
        return replace(self.layout, one_hot=())

    @cached_property
    def kinds(self) -> dict[str, str]:
        """Every request field: "numeric", "categorical", or a passthrough's "integer" or "string"."""
        c = self.contract
        return ({f.name: "numeric" for f in c.numeric} | {f.name: "categorical" for f in c.categorical}
                | {p.name: p.kind for p in c.passthrough})

    @cached_property
    def passthrough(self) -> dict[str, PassthroughRule]:
        return {p.name: PassthroughRule(p) for p in self.contract.passthrough}

    @cached_property
    def text_fields(self) -> frozenset[str]:
        """Fields whose values are strings: read as dictionaries (they repeat a few values)."""
        return frozenset(n for n, kind in self.kinds.items() if kind in ("categorical", "string"))


def judge(fields: Fields, batch: pa.RecordBatch, text: bool = False) -> Judged:
    """Validate and encode a chunk's rows (`text`: its cells are a CSV file's text, `typed_text` applied)."""
    good: list[tuple[np.ndarray, FeatureBatch]] = []
    errors: list[tuple[int, str, str]] = []
    pieces = [(0, batch.num_rows)]
    while pieces:
        start, stop = pieces.pop()
        if start == stop:
            continue
        piece = batch.slice(start, stop - start)
        encoded = encode(fields, piece)
        if encoded is not None:
            good.append((np.arange(start, stop), encoded))
        elif stop - start > LEAF_ROWS:
            middle = (start + stop) // 2
            pieces += [(middle, stop), (start, middle)]  # the first half next: pieces stay in row order
        else:
            _judge_rows(fields, piece, start, text, good=good, errors=errors)
    if not good:
        return Judged(None, np.empty(0, dtype=np.int64), errors)
    if len(good) == 1:
        return Judged(good[0][1], good[0][0], errors)
    rows = np.concatenate([r for r, _ in good])
    matrix = np.concatenate([b.matrix for _, b in good])
    warnings = [w for _, b in good for w in b.warnings]
    return Judged(FeatureBatch(warnings, _matrix=matrix), rows, errors)


def _judge_rows(fields: Fields, piece: pa.RecordBatch, start: int, text: bool, *,
                good: list[tuple[np.ndarray, FeatureBatch]], errors: list[tuple[int, str, str]]) -> None:
    """A small piece's rows through `build_batch`: the schema's messages for bad rows, the valid ones encoded."""
    rows = request_rows(fields, piece, text)
    try:
        good.append((np.arange(start, start + len(rows)), build_batch(fields.contract, rows)))
        return
    except InvalidRows as exc:
        bad = exc.errors
    for i in sorted(bad):
        for name, messages in bad[i].items():
            for message in messages if isinstance(messages, list) else [messages]:
                errors.append((start + i, str(name), str(message)))
    valid = [i for i in range(len(rows)) if i not in bad]
    if valid:
        good.append((start + np.asarray(valid), build_batch(fields.contract, [rows[i] for i in valid])))


def request_rows(fields: Fields, piece: pa.RecordBatch, text: bool) -> list[dict]:
    """The piece's rows as the request rows a client would send: only the contract's fields, nulls left out."""
    kinds = fields.kinds
    names = [n for n in piece.schema.names if n in kinds]
    out = []
    for row in piece.select(names).to_pylist():
        request = {}
        for name, value in row.items():
            if value is None:
                continue
            kind = kinds[name]
            if kind not in ("numeric", "integer"):
                request[name] = value
            elif text and isinstance(value, str):
                request[name] = _request_value(value, kind)
            else:
                request[name] = _logged_value(value, kind)
        out.append(request)
    return out


def encode(fields: Fields, batch: pa.RecordBatch) -> FeatureBatch | None:
    """The batch through the validator's column path, or None if any row needs the schema's judgement."""
    layout = fields.layout
    n = batch.num_rows
    names = set(batch.schema.names)
    if not layout.required <= names:
        return None
    block = np.empty((n, len(layout.numeric)), dtype=np.float64)
    for j, (name, *_) in enumerate(layout.numeric):
        values = _numbers(batch.column(name)) if name in names else np.nan
        if values is None:
            return None
        block[:, j] = values
    if not _passthrough_ok(fields, batch, names):
        return None
    numeric = fast._encode(fields.numeric_layout, block, None, n)
    if numeric is None:
        return None
    matrix, warnings = numeric.matrix, numeric.warnings
    column = len(layout.numeric)
    for name, _table, width, rule in layout.one_hot:
        if name in names:
            category = _category(batch.column(name), rule, width)
            if category is None:
                return None
            table, positions, notes = category
            matrix[:, column:column + width] = table[positions]
            for position, message in notes:
                for i in np.flatnonzero(positions == position).tolist():
                    warnings[i] = [*warnings[i], message]
        else:  # an optional category left out: missing for the model
            matrix[:, column:column + width] = np.nan
        column += width
    return numeric


def _numbers(column: pa.Array) -> np.ndarray | None:
    """A numeric column as float64 with NaN for null; None for any other type, or a NaN value (no number)."""
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        return None
    values = column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    if pa.types.is_floating(kind) and column.null_count < len(column):
        nan = pc.any(pc.is_nan(column)).as_py() if column.null_count else bool(np.isnan(values).any())
        if nan:
            return None
    return values


def _passthrough_ok(fields: Fields, batch: pa.RecordBatch, names: set[str]) -> bool:
    """Whether every passthrough value keeps its rule: integers by their extremes, strings by their distinct values."""
    for name, rule in fields.passthrough.items():
        if name not in names:
            continue
        column = batch.column(name)
        if column.null_count == len(column):
            continue
        if rule.field.kind == "integer":
            column = _integers(column)
            if column is None:
                return False
            extremes = pc.min_max(column)
            values = [extremes["min"].as_py(), extremes["max"].as_py()]
        else:
            distinct = _distinct(column)
            if distinct is None:
                return False
            values = [v for v in distinct[0].to_pylist() if v is not None]
        try:
            for value in values:
                rule.parse(value)
        except Violation:
            return False
    return True


def _integers(column: pa.Array) -> pa.Array | None:
    """An integer column, or a float one whose values are all whole (as integers); None otherwise."""
    if pa.types.is_integer(column.type):
        return column
    if not pa.types.is_floating(column.type):
        return None
    values = column.to_numpy(zero_copy_only=False)
    given = values[~np.isnan(values)] if column.null_count else values
    if not bool(np.all(np.isfinite(given) & (given == np.floor(given)))):
        return None
    return pc.cast(column, pa.int64())


def _distinct(column: pa.Array) -> tuple[pa.Array, np.ndarray] | None:
    """A text column's distinct values used by its rows (a null last, if any) and each row's position among them;
    None if the column is not text."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        if not _is_text(kind.value_type):
            return None
        dictionary, indices = column.dictionary, column.indices
    elif _is_text(kind):
        encoded = pc.dictionary_encode(column)
        dictionary, indices = encoded.dictionary, encoded.indices
    else:
        return None
    used = pc.unique(indices).drop_null().to_numpy(zero_copy_only=False).astype(np.int64)
    lookup = np.zeros(len(dictionary) + 1, dtype=np.int64)
    lookup[used] = np.arange(len(used))
    values = dictionary.take(pa.array(used))
    if indices.null_count:
        lookup[-1] = len(used)
        values = pa.concat_arrays([values.cast(pa.string()), pa.array([None], pa.string())])
    positions = lookup[indices.fill_null(len(dictionary)).to_numpy(zero_copy_only=False)]
    return values, positions


def _category(column: pa.Array, rule, width: int) -> tuple[np.ndarray, np.ndarray, list] | None:
    """A category column's one-hot rows per distinct value (as `fast._encode` builds them), each row's distinct
    value, and the warnings of values served as missing; None if any value is refused."""
    distinct = _distinct(column)
    if distinct is None:
        return None
    values, positions = distinct
    spelled = values.to_pylist()
    codes = fast._category_codes(spelled, rule, len(spelled))
    if codes is None:
        return None
    table = (codes[:, None] == np.arange(width)).astype(np.float32)
    table[codes < 0] = np.nan  # absent, unseen or meaning missing: missing for the model
    notes = [(p, rule.missing_warning(spelled[p]) if code == fast._MEANS_MISSING else rule.warning(spelled[p]))
             for p, code in enumerate(codes.tolist()) if code in (fast._MEANS_MISSING, fast._UNSEEN)]
    return table, positions, notes


def typed_text(fields: Fields, batch: pa.RecordBatch) -> pa.RecordBatch:
    """A CSV chunk's text cells as the values a client would send: a cell holding no value null; a numeric or
    integer field's column a number column where every cell is a number (else text, for the rows to be judged
    one by one)."""
    arrays = [column if fields.kinds.get(name) is None else _typed_column(column, fields.kinds[name])
              for name, column in zip(batch.schema.names, batch.columns)]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _typed_column(column: pa.Array, kind: str) -> pa.Array:
    if kind in ("numeric", "integer"):
        try:
            parsed = pc.cast(column, pa.float64() if kind == "numeric" else pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            parsed = None
        if parsed is not None and not (kind == "numeric" and pc.any(pc.is_nan(parsed)).as_py()):
            return parsed  # plain numbers only: no cell is empty, missing text or NaN
    encoded = pc.dictionary_encode(column)
    spelled = encoded.dictionary.to_pylist()
    if kind in ("numeric", "integer"):
        values = [None if _is_missing(t) else _request_value(t, kind) for t in spelled]
        number = float if kind == "numeric" else int
        if all(v is None or type(v) is number for v in values):
            return pa.array(values, pa.float64() if kind == "numeric" else pa.int64()).take(encoded.indices)
        return pa.array([None if v is None else t for t, v in zip(spelled, values)], pa.string()).take(encoded.indices)
    keep = pa.array([not _is_missing(t) for t in spelled])
    return pa.DictionaryArray.from_arrays(pc.if_else(keep.take(encoded.indices), encoded.indices,
                                                                     pa.scalar(None, encoded.indices.type)),
                                          encoded.dictionary)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)
