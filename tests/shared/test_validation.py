"""Validation: the row path, the column path and the Marshmallow schema give the same verdicts, matrices and
warnings."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from shared.contract import CategoricalFeature, FeatureContract, NumericFeature, Target
from shared.spec import load_spec
from shared.validation.fast import (
    SMALL_BATCH,
    InvalidRows,
    _fast_path,
    build_batch,
    build_batch_from_columns,
    check_matrix,
)
from shared.validation.rules import TargetRule, Violation
from shared.validation.schema import row_schema, schema_errors
from tests.support.examples import SEED_EXAMPLES

GOOD = dict(SEED_EXAMPLES[0][0])

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30),
                    st.sampled_from([0, -1, 0.0001, 39.1, 200, 200.0001, 3750, 49_999, 50_001]))
values = st.one_of(numbers, st.booleans(), st.none(), st.text(max_size=70),
                   st.sampled_from(["Dream", "dream", "DREAM", "Biscoe", "male", "FEMALE", "Mars", ""]),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
field_names = st.sampled_from([*GOOD, "species", "Island"])


@st.composite
def rows(draw):
    row = dict(GOOD)
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "delete"]))
        name = draw(field_names)
        if action == "delete":
            row.pop(name, None)
        else:
            row[name] = draw(values)
    return row


class _Float(float):
    """A float the fast paths do not take (they check exact types), as NumPy's float64 is: the schema judges it."""


class _Str(str):
    """A string the fast paths do not take: the schema judges it."""


def _via_schema(contract, batch: list) -> list:
    """The batch with its feature values as float and str subclasses, so that `build_batch` goes through the schema."""
    features = set(contract.field_names)

    def wrap(name, value):
        if name not in features:
            return value
        return _Float(value) if type(value) is float else _Str(value) if type(value) is str else value
    return [{k: wrap(k, v) for k, v in row.items()} if type(row) is dict else row for row in batch]


def _outcome(contract, batch: list):
    """(matrix, warnings) of a batch, or the errors naming its bad fields."""
    try:
        served = build_batch(contract, batch)
    except InvalidRows as exc:
        return exc.errors
    return served.matrix, served.warnings


def _assert_same(a, b) -> None:
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert a == b
    else:
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1] == b[1]


def _marshmallow_only(contract, batch: list) -> tuple[list[dict], dict[int, dict]]:
    """Every row through the Marshmallow schema itself: what `schema_errors` must return, quick rows or not."""
    schema, cleaned, errors = row_schema(contract), [], {}
    for i, row in enumerate(batch):
        try:
            cleaned.append(schema.load(row))
        except ValidationError as exc:
            errors[i] = exc.messages
    return cleaned, errors


def _agree(contract, batch: list, good: dict, as_columns: bool) -> None:
    """The fast path accepts only what Marshmallow accepts, and the paths encode and warn alike: the fast one,
    the schema's (whose cleaned rows encode the same), and both on values only the schema takes."""
    if as_columns:  # pad past SMALL_BATCH so the column-wise path decides
        batch = batch + [dict(good) for _ in range(SMALL_BATCH)]
    fast = _fast_path(contract, batch)
    cleaned, errors = schema_errors(contract, batch)
    assert (cleaned, errors) == _marshmallow_only(contract, batch)  # rows the rules take at once: the same verdict
    if fast is not None:
        assert not errors, f"fast path accepted what Marshmallow rejects: {errors}"
    outcome = _outcome(contract, batch)
    _assert_same(outcome, _outcome(contract, _via_schema(contract, batch)))
    if not errors:
        # Marshmallow accepts: the full path succeeds and its cleaned rows encode alike (meaning missing: None, NaN)
        np.testing.assert_array_equal(outcome[0], _fast_path(contract, cleaned).matrix)
    else:
        assert outcome == errors


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(rows(), values), min_size=1, max_size=4), st.booleans())
def test_fast_path_and_schema_agree(contract, batch, as_columns):
    _agree(contract, batch, GOOD, as_columns)


CAR = load_spec("co2").examples()[0]["request"]
car_values = st.one_of(numbers, st.booleans(), st.none(), st.text(max_size=70),
                       st.sampled_from(["ford", " FORD ", "Brand New Motors", "AS10", "as10 ", "X", "z", "", 1998]))


@st.composite
def car_rows(draw):
    row = dict(CAR)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([*CAR, "co2_emissions_g_per_km", "Make"]))
        if draw(st.booleans()):
            row.pop(name, None)
        else:
            row[name] = draw(car_values)
    return row


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(car_rows(), car_values), min_size=1, max_size=4), st.booleans())
def test_fast_path_and_schema_agree_for_the_regressor(co2_contract, batch, as_columns):
    _agree(co2_contract, batch, CAR, as_columns)


@pytest.fixture(scope="module")
def co2_contract(co2_bundle):
    return co2_bundle.contract


@pytest.fixture(scope="module")
def contract(trained_bundle):
    return trained_bundle.contract


def test_seed_rows_encode_in_contract_order(contract):
    batch = build_batch(contract, [GOOD])
    assert contract.columns[:4] == ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    row = dict(zip(contract.columns, batch.matrix[0].tolist()))
    assert row["bill_length_mm"] == pytest.approx(39.1) and row["island=Torgersen"] == 1.0
    assert row["island=Dream"] == 0.0 and row["sex=male"] == 1.0 and batch.warnings == [()]


def test_missing_sex_is_missing_not_zero(contract):
    for row in ({k: v for k, v in GOOD.items() if k != "sex"}, {**GOOD, "sex": None}):
        values = dict(zip(contract.columns, build_batch(contract, [row]).matrix[0].tolist()))
        assert math.isnan(values["sex=male"]) and math.isnan(values["sex=female"])


def test_categories_ignore_case(contract):
    a = build_batch(contract, [{**GOOD, "island": "tOrGeRsEn", "sex": "MALE"}]).matrix
    np.testing.assert_array_equal(a, build_batch(contract, [GOOD]).matrix)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("bill_length_mm", 0, "greater than 5"),
    ("bill_length_mm", 5e-324, "greater than 5"),
    ("bill_length_mm", -3.5, "greater than 5"),
    ("body_mass_g", 1e12, "at most"),
    ("body_mass_g", 10**400, "too large"),
    ("flipper_length_mm", float("nan"), "finite"),
    ("flipper_length_mm", float("inf"), "finite"),
    ("bill_depth_mm", "18.7", "must be a number"),
    ("bill_depth_mm", True, "must be a number"),
    ("island", "Atlantis", "must be one of"),
    ("island", "x" * 10_000, "must be one of"),
    ("island", None, "null"),
    ("sex", 1, "must be a string"),
    ("year", 2007.5, "integer"),
    ("year", 99999, "between"),
    ("wingspan", 3, "Unknown field"),
])
@pytest.mark.parametrize("size", [2, SMALL_BATCH + 5])
def test_every_bad_field_is_named(contract, field, value, message, size):
    rows = [GOOD, {**GOOD, field: value}] + [GOOD] * (size - 2)
    with pytest.raises(InvalidRows) as exc:
        build_batch(contract, rows)
    assert list(exc.value.errors) == [1]
    assert message in " ".join(exc.value.errors[1][field])


def test_row_and_column_paths_encode_identically(contract):
    rows = [{**GOOD, "sex": None}, {**GOOD, "island": "DREAM", "body_mass_g": 9000}, GOOD]
    small = build_batch(contract, rows)
    large = build_batch(contract, rows * 10)
    np.testing.assert_array_equal(small.matrix, large.matrix[:3])
    assert small.warnings == large.warnings[:3]


def test_plausible_out_of_range_values_warn(contract):
    batch = build_batch(contract, [{**GOOD, "body_mass_g": 9000, "bill_length_mm": 70}, GOOD])
    assert len(batch.warnings[0]) == 2 and "body_mass_g=9000" in " ".join(batch.warnings[0])
    assert batch.warnings[1] == ()


def test_new_category_in_contract_validates_without_code_change(contract):
    from dataclasses import replace
    island = contract.categorical[0]
    wider = replace(contract, categorical=(replace(island, levels=(*island.levels, "Anvers")), contract.categorical[1]))
    batch = build_batch(wider, [{**GOOD, "island": "anvers"}])
    assert dict(zip(wider.columns, batch.matrix[0].tolist()))["island=Anvers"] == 1.0
    with pytest.raises(InvalidRows):
        build_batch(contract, [{**GOOD, "island": "anvers"}])


# ---- inclusive low bounds and values that mean missing ---------------------------------------------------

SENSORS = FeatureContract(
    numeric=(
        # 0 and -1 mean "not measured", both outside the bounds
        NumericFeature("sensor_x", 0.0, 100.0, 1.0, 90.0, required=False, unit="%", missing_values=(0.0, -1.0)),
        NumericFeature("level", 0.0, 10.0, 0.0, 8.0, unit="m", low_inclusive=True),
        # 999 means "not measured" and lies within the bounds
        NumericFeature("depth", 0.0, 1000.0, 1.0, 900.0, required=False, unit="m", missing_values=(999.0,)),
    ),
    categorical=(
        CategoricalFeature("colour", ("blue", "red"), required=False, strip=True, missing_values=("?", "Unknown")),
        CategoricalFeature("shape", ("round", "square"), required=False, unseen="missing", missing_values=("n/a",)),
    ),
    target=Target("y", "regression", unit="g", low=0.0, high=10.0, low_inclusive=True),
)
SENSOR_ROW = {"sensor_x": 12.5, "level": 3, "depth": 10.0, "colour": "red", "shape": "round"}
COLUMN = {name: i for i, name in enumerate(SENSORS.columns)}

sensor_values = st.one_of(numbers, st.none(), st.booleans(), st.text(max_size=70), st.sampled_from(
    [0, 0.0, -0.0, -1, -1.0, 999, 999.0, 998.9999, 1e-300, -1e-300, 10, 10.000001, 100, 1000,
     "?", " ? ", "unknown", " UNKNOWN ", "n/a", "N/A", " n/a", "red", " Red ", "round", " round", "oval"]))


@st.composite
def sensor_rows(draw):
    row = dict(SENSOR_ROW)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([*SENSOR_ROW, "Colour"]))
        if draw(st.booleans()):
            row.pop(name, None)
        else:
            row[name] = draw(sensor_values)
    return row


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(sensor_rows(), sensor_values), min_size=1, max_size=4), st.booleans())
def test_fast_path_and_schema_agree_on_inclusive_bounds_and_missing_values(batch, as_columns):
    _agree(SENSORS, batch, SENSOR_ROW, as_columns)


def _every_path(rows: list[dict]) -> list:
    """(matrix, warnings) of `rows`, or their errors, by the row path, the column path (rows and columns, past
    SMALL_BATCH) and the schema (values only it takes), the padding cut off."""
    n = len(rows)
    pad = [dict(SENSOR_ROW) for _ in range(SMALL_BATCH)]
    names = sorted({name for row in rows for name in row})
    columns = {name: [row.get(name) for row in rows + pad] for name in names}

    def cut(outcome):
        if isinstance(outcome, dict):
            return {i: e for i, e in outcome.items() if i < n}
        return outcome[0][:n], outcome[1][:n]

    def by_columns():
        try:
            served = build_batch_from_columns(SENSORS, columns, n + SMALL_BATCH)
        except InvalidRows as exc:
            return exc.errors
        return served.matrix, served.warnings
    return [_outcome(SENSORS, rows), cut(_outcome(SENSORS, rows + pad)), cut(by_columns()),
            _outcome(SENSORS, _via_schema(SENSORS, rows)), cut(_outcome(SENSORS, _via_schema(SENSORS, rows + pad)))]


def test_the_low_bound_is_inclusive_where_the_contract_says_so():
    rows = [{**SENSOR_ROW, "level": 0}, {**SENSOR_ROW, "level": -0.0}, {**SENSOR_ROW, "level": 10}]
    outside = "level=10 is outside the training range 0 to 8; the prediction is less reliable"
    for matrix, warnings in _every_path(rows):
        assert matrix[:, COLUMN["level"]].tolist() == [0.0, 0.0, 10.0] and warnings == [(), (), [outside]]
    for errors in _every_path([SENSOR_ROW, {**SENSOR_ROW, "level": -1e-300, "depth": 0}]):
        assert errors == {1: {"level": ["must be at least 0 and at most 10 m"],
                              "depth": ["must be greater than 0 and at most 1000 m"]}}


def test_values_that_mean_missing_are_served_as_missing_with_a_warning():
    rows = [{**SENSOR_ROW, "sensor_x": 0, "depth": 999, "colour": " unknown ", "shape": "N/A"},
            {**SENSOR_ROW, "sensor_x": -1.0, "colour": "?", "shape": " n/a"},  # shape keeps its spaces: unseen
            {**SENSOR_ROW, "sensor_x": -0.0, "depth": 998.5}]
    absent = [{k: v for k, v in SENSOR_ROW.items() if k not in ("sensor_x", "depth", "colour", "shape")},
              {**SENSOR_ROW, "sensor_x": None, "colour": None, "shape": None},
              {**SENSOR_ROW, "sensor_x": None, "depth": 998.5}]
    expected = [
        ["sensor_x=0 means not measured for this model; it is treated as missing",
         "depth=999 means not measured for this model; it is treated as missing",
         "colour='unknown' means not measured for this model; it is treated as missing",
         "shape='N/A' means not measured for this model; it is treated as missing"],
        ["sensor_x=-1 means not measured for this model; it is treated as missing",
         "colour='?' means not measured for this model; it is treated as missing",
         "shape='n/a' was not seen in training; it is treated as unknown and the prediction is less reliable"],
        ["sensor_x=-0 means not measured for this model; it is treated as missing",
         "depth=998.5 is outside the training range 1 to 900; the prediction is less reliable"],
    ]
    as_if_absent = build_batch(SENSORS, absent).matrix
    for matrix, warnings in _every_path(rows):
        np.testing.assert_array_equal(matrix, as_if_absent)
        assert warnings == expected
    cleaned, errors = schema_errors(SENSORS, rows)
    assert not errors
    assert [[row[name] for name in ("sensor_x", "depth", "colour", "shape")] for row in cleaned] == [
        [None, None, None, None], [None, 10.0, None, " n/a"], [None, 998.5, "red", "round"]]


def test_values_that_mean_missing_are_never_held_to_the_bounds_but_others_are():
    rows = [SENSOR_ROW, {**SENSOR_ROW, "sensor_x": -2, "depth": 1001, "colour": "??"}]
    for errors in _every_path(rows):
        assert errors == {1: {"sensor_x": ["must be greater than 0 and at most 100 %"],
                              "depth": ["must be greater than 0 and at most 1000 m"],
                              "colour": ["must be one of blue, red (any case)"]}}


def test_a_value_that_means_missing_wins_over_a_level_spelt_alike():
    from dataclasses import replace
    colour = replace(SENSORS.categorical[0], levels=("blue", "red", "unknown"))
    contract = replace(SENSORS, categorical=(colour, SENSORS.categorical[1]))
    for size in (1, SMALL_BATCH + 1):
        batch = build_batch(contract, [{**SENSOR_ROW, "colour": "Unknown"}] * size)
        assert np.isnan(batch.matrix[0, contract.columns.index("colour=unknown")])
        assert "colour='Unknown' means not measured" in batch.warnings[0][0]


@pytest.mark.parametrize("size", [1, SMALL_BATCH + 3])
def test_an_encoded_tensor_serves_values_that_mean_missing_as_missing(size):
    x = np.repeat(build_batch(SENSORS, [SENSOR_ROW]).matrix, size, axis=0)
    x[0, COLUMN["sensor_x"]], x[0, COLUMN["depth"]], x[0, COLUMN["level"]] = 0.0, 999.0, 0.0
    sent = x.copy()
    batch = check_matrix(SENSORS, x)
    np.testing.assert_array_equal(x, sent)  # the caller's tensor is left as sent
    assert np.isnan(batch.matrix[0, COLUMN["sensor_x"]]) and np.isnan(batch.matrix[0, COLUMN["depth"]])
    assert batch.matrix[0, COLUMN["level"]] == 0.0
    np.testing.assert_array_equal(batch.matrix[1:], sent[1:])
    assert batch.warnings[0] == ["sensor_x=0 means not measured for this model; it is treated as missing",
                                 "depth=999 means not measured for this model; it is treated as missing"]
    assert all(w == () for w in batch.warnings[1:])
    x[0, COLUMN["depth"]], x[0, COLUMN["level"]] = 1001.0, -0.5
    with pytest.raises(InvalidRows) as exc:
        check_matrix(SENSORS, x)
    assert exc.value.errors == {0: {"level": ["must be at least 0 and at most 10 m"],
                                    "depth": ["must be greater than 0 and at most 1000 m"]}}


def test_a_target_honours_its_inclusive_low_bound():
    from dataclasses import replace
    assert TargetRule(SENSORS.target).parse(0) == 0.0 and TargetRule(SENSORS.target).parse(10.0) == 10.0
    with pytest.raises(Violation, match="must be at least 0 and at most 10 g"):
        TargetRule(SENSORS.target).parse(-1e-9)
    with pytest.raises(Violation, match="must be greater than 0 and at most 10 g"):
        TargetRule(replace(SENSORS.target, low_inclusive=False)).parse(0)
