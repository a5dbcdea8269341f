"""Validation: the column-wise fast path and the Marshmallow schema give the same verdicts."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.spec import load_spec
from shared.validation.fast import SMALL_BATCH, InvalidRows, _fast_path, build_batch
from shared.validation.schema import schema_errors
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


def _agree(contract, batch: list, good: dict, as_columns: bool) -> None:
    """The fast path accepts only what Marshmallow accepts, and both paths encode and warn alike."""
    if as_columns:  # pad past SMALL_BATCH so the column-wise path decides
        batch = batch + [dict(good) for _ in range(SMALL_BATCH)]
    fast = _fast_path(contract, batch)
    cleaned, errors = schema_errors(contract, batch)
    if fast is not None:
        assert not errors, f"fast path accepted what Marshmallow rejects: {errors}"
    if not errors:
        # Marshmallow accepts: the full path succeeds and encodes exactly like the fast path on clean rows
        again = build_batch(contract, batch)
        np.testing.assert_array_equal(again.matrix, _fast_path(contract, cleaned).matrix)
        assert again.warnings == _fast_path(contract, cleaned).warnings
    else:
        with pytest.raises(InvalidRows) as exc:
            build_batch(contract, batch)
        assert exc.value.errors == errors


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
