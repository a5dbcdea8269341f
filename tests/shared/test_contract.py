"""The feature contract: derived from a spec and its data, and kept whole through the manifest's JSON."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from shared.contract import FeatureContract, derive_contract
from shared.spec import FeatureSpec, load_spec


@pytest.fixture(scope="module")
def sensor_contract() -> FeatureContract:
    """A regressor with an inclusive low bound, values that mean missing and an inclusive target low bound."""
    co2 = load_spec("co2")
    spec = replace(co2, target=replace(co2.target, bounds=(0.0, 1500.0), low_inclusive=True), passthrough=(),
                   features=(
                       FeatureSpec("sensor_x", "numeric", required=False, unit="%", bounds=(0.0, 100.0),
                                   missing_values=(0.0, -1.0)),
                       FeatureSpec("level", "numeric", unit="m", bounds=(0.0, 10.0), low_inclusive=True),
                       FeatureSpec("colour", "categorical", required=False, strip=True,
                                   missing_values=("?", "unknown")),
                   ))
    rows = [{"sensor_x": 0, "level": 0.0, "colour": "?"}, {"sensor_x": 5.0, "level": 2.0, "colour": "red"},
            {"sensor_x": -1, "level": 7.0, "colour": " UNKNOWN "}, {"sensor_x": 40, "level": 3.0, "colour": "blue"},
            {"sensor_x": None, "level": 1.0, "colour": None}]
    return derive_contract(spec, rows)


def test_derive_carries_the_new_rules_and_leaves_values_meaning_missing_out_of_ranges_and_levels(sensor_contract):
    sensor, level = sensor_contract.numeric
    assert (sensor.missing_values, sensor.low_inclusive, sensor.train_min, sensor.train_max) == ((0.0, -1.0), False,
                                                                                                 5.0, 40.0)
    assert (level.missing_values, level.low_inclusive, level.train_min) == ((), True, 0.0)
    colour = sensor_contract.categorical[0]
    assert colour.levels == ("blue", "red") and colour.missing_values == ("?", "unknown")
    assert sensor_contract.target.low_inclusive is True


def test_the_manifest_form_round_trips(sensor_contract):
    assert FeatureContract.from_dict(json.loads(json.dumps(sensor_contract.to_dict()))) == sensor_contract


def test_a_contract_published_before_the_new_keys_still_loads(sensor_contract):
    old = json.loads(json.dumps(sensor_contract.to_dict()))
    for f in old["numeric"]:
        del f["low_inclusive"], f["missing_values"]
    for c in old["categorical"]:
        del c["missing_values"]
    del old["target"]["low_inclusive"]
    loaded = FeatureContract.from_dict(old)
    assert all(not f.low_inclusive and f.missing_values == () for f in loaded.numeric)
    assert loaded.categorical[0].missing_values == () and loaded.target.low_inclusive is False
    assert loaded.columns == sensor_contract.columns
