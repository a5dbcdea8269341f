"""Arrow chunks judged by the function's validator: the verdicts, messages, matrix and warnings `build_batch` gives
the same rows sent as requests, whichever path (columns, halving, row by row) a row takes."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from retrain_job.score.columns import Fields, judge, request_rows, typed_text
from shared.contract import CategoricalFeature, FeatureContract, NumericFeature, Passthrough, Target
from shared.validation import InvalidRows, build_batch
from shared.validation.schema import schema_errors


def _expected(contract, requests: list[dict]):
    """What the function makes of the rows: each row's errors, and the valid rows' matrix and warnings."""
    _, errors = schema_errors(contract, requests)
    valid = [r for i, r in enumerate(requests) if i not in errors]
    batch = build_batch(contract, valid) if valid else None
    return errors, batch


def _check(contract, batch: pa.RecordBatch, text: bool = False):
    fields = Fields(contract)
    if text:
        batch = typed_text(fields, batch)
    requests = request_rows(fields, batch, text)
    errors, expected = _expected(contract, requests)
    judged = judge(fields, batch, text)
    got = {}
    for row, name, message in judged.errors:
        got.setdefault(row, {}).setdefault(name, []).append(message)
    assert got == errors
    assert judged.rows.tolist() == [i for i in range(len(requests)) if i not in errors]
    if expected is None:
        assert judged.batch is None
        return judged
    np.testing.assert_array_equal(judged.batch.matrix, expected.matrix)
    assert [list(w) for w in judged.batch.warnings] == [list(w) for w in expected.warnings]
    return judged


def _corrupted(rows: pd.DataFrame, rng, changes: dict[str, list], share: float) -> pd.DataFrame:
    frame = rows.astype({c: object for c in rows.columns if rows[c].dtype == object}).copy()
    for name, values in changes.items():
        hit = np.flatnonzero(rng.random(len(frame)) < share)
        for i in hit:
            frame.loc[i, name] = values[int(rng.integers(len(values)))]
    return frame


@pytest.mark.parametrize("seed", range(4))
def test_penguin_rows_with_bad_values_scattered(trained_bundle, penguin_rows, seed):
    rng = np.random.default_rng(seed)
    rows = penguin_rows.sample(300, replace=True, random_state=seed).reset_index(drop=True)
    frame = _corrupted(rows, rng, {
        "bill_length_mm": [-1.0, 0.0, 5.0, 250.0, np.inf, 95.0, 15.5],  # bounds, at the low bound, outside training
        "body_mass_g": [1e12, 499.0, 60000.0],
        "island": ["Atlantis", "dream", " Dream", "", None],  # unknown, another case, spaces, empty, null
        "sex": ["x", "MALE", None],
        "year": [1800, 2500, None],
    }, share=0.03)
    judged = _check(trained_bundle.contract, pa.RecordBatch.from_pandas(frame, preserve_index=False))
    assert judged.errors and len(judged.rows) > 200  # both kinds of rows were there


def test_nan_is_no_number_but_null_is_no_value(trained_bundle, penguin_rows):
    frame = penguin_rows.iloc[:100].reset_index(drop=True)
    table = pa.RecordBatch.from_pandas(frame, preserve_index=False)
    bill = table.column("bill_length_mm").to_pylist()
    bill[7] = float("nan")
    bill[8] = None
    table = table.set_column(table.schema.get_field_index("bill_length_mm"), "bill_length_mm",
                             pa.array(bill, pa.float64()))
    judged = _check(trained_bundle.contract, table)
    assert {row for row, _, _ in judged.errors} == {7, 8}


@pytest.mark.parametrize("kind", [pa.string(), pa.int64(), pa.bool_(), pa.float32()])
def test_columns_of_another_type(trained_bundle, penguin_rows, kind):
    frame = penguin_rows.iloc[:40].reset_index(drop=True)
    table = pa.RecordBatch.from_pandas(frame, preserve_index=False)
    for name in ("island", "bill_depth_mm", "year"):
        values = table.column(name).to_pylist()
        typed = [None if v is None else _as(v, kind) for v in values]
        column = pa.array(typed, kind)
        table = table.set_column(table.schema.get_field_index(name), name, column)
        _check(trained_bundle.contract, table)


def _as(value, kind: pa.DataType):
    if pa.types.is_string(kind):
        return str(value)
    if pa.types.is_boolean(kind):
        return bool(value)
    if pa.types.is_integer(kind):
        return len(value) if isinstance(value, str) else int(value)
    return float(len(value)) if isinstance(value, str) else float(value)


def test_regression_rows_with_unseen_levels_and_optional_inputs(co2_bundle, co2_rows):
    rng = np.random.default_rng(7)
    rows = co2_rows.sample(400, replace=True, random_state=1).reset_index(drop=True)
    frame = _corrupted(rows, rng, {
        "make": ["TESLA", "  FORD", None],  # never seen: served as missing with a warning
        "engine_size_l": [2000.0, 0.0, 11.0],  # a unit mistake the hint names, bounds
        "fuel_consumption_city_l_per_100km": [None, 70.0, np.nan],
        "model": ["x" * 65, "ok"],  # a passthrough string too long
    }, share=0.05)
    judged = _check(co2_bundle.contract, pa.RecordBatch.from_pandas(frame, preserve_index=False))
    assert any(w for w in judged.batch.warnings)


def test_csv_text_cells(trained_bundle, penguin_rows):
    frame = penguin_rows.iloc[:60].astype(str).reset_index(drop=True)
    frame.loc[3, "bill_length_mm"] = "NaN"  # no value
    frame.loc[4, "bill_length_mm"] = " 41.5 "
    frame.loc[5, "bill_length_mm"] = "4l.5"
    frame.loc[6, "sex"] = " none "
    frame.loc[7, "year"] = "2007.5"
    frame.loc[8, "year"] = "2007.0"
    batch = pa.RecordBatch.from_pandas(frame, preserve_index=False)
    judged = _check(trained_bundle.contract, batch, text=True)
    assert {row for row, _, _ in judged.errors} == {3, 5, 7}


def test_a_value_meaning_missing_inside_the_bounds():
    contract = FeatureContract(
        numeric=(NumericFeature("depth", 0.0, 100.0, 1.0, 50.0, required=False, missing_values=(0.0, 99.0)),),
        categorical=(CategoricalFeature("colour", ("blue", "red"), required=True, missing_values=("unknown",)),),
        target=Target("y", "multiclass", ("a", "b")), passthrough=(Passthrough("id", "integer", 0, 10),))
    batch = pa.RecordBatch.from_pydict({"depth": [0.0, 99.0, 20.0, 60.0, None, 101.0] * 20,
                                        "colour": ["Unknown", "red", "blue", "RED", "green", "blue"] * 20,
                                        "id": [1, 2, 3, 4, 5, 11] * 20})
    judged = _check(contract, batch)
    assert judged.errors and any(judged.batch.warnings)
    with pytest.raises(InvalidRows):  # the checks are not vacuous: the function refuses the same rows
        build_batch(replace(contract), request_rows(Fields(contract), batch, False))
