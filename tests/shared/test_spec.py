"""Model specs: both models load, and a spec that cannot drive a model fails with the file and the field named."""
from __future__ import annotations

import copy
import tomllib

import pytest

from shared.spec import SPEC_FILE, SpecError, default_model, load_spec, parse_spec, spec_names


def _raw(name: str) -> tuple[dict, object]:
    spec = load_spec(name)
    return tomllib.loads((spec.folder / SPEC_FILE).read_text()), spec.folder


def test_both_models_load_and_penguins_is_the_default():
    assert spec_names() == ("co2", "penguins") and default_model() == "penguins"
    penguins, co2 = load_spec("penguins"), load_spec("co2")
    assert penguins.is_classifier and penguins.regression is None and penguins.holdout.stratify
    assert penguins.gate.extra == {"accuracy_tolerance": 0.01, "macro_f1_tolerance": 0.01, "accuracy_floor": 0.9}
    assert not co2.is_classifier and co2.holdout.group_by == ("make", "model")
    assert co2.gate.metric == "rmse" and co2.gate.extra == {"coverage_min": 0.87, "coverage_max": 0.93}


def test_regression_section_of_the_co2_spec():
    r = load_spec("co2").regression
    assert r.group == "fuel_type" and r.calibration_fraction == 0.25 and r.min_level_rows == 30
    assert [(g.name, g.needs, g.baseline) for g in r.regimes] == [
        ("rated", ("fuel_consumption_comb_l_per_100km",), ("fuel_consumption_comb_l_per_100km",)),
        ("characteristics", (), ("engine_size_l", "cylinders"))]


def _broken(name: str, change) -> str:
    raw, folder = _raw(name)
    raw = copy.deepcopy(raw)
    change(raw)
    with pytest.raises(SpecError) as err:
        parse_spec(raw, folder)
    message = str(err.value)
    assert message.startswith(str(folder / SPEC_FILE)), message
    return message


def _regimes(raw: dict) -> list[dict]:
    return raw["regression"]["regimes"]


@pytest.mark.parametrize(("change", "says"), [
    (lambda r: r.pop("regression"), "needs at least one [[regression.regimes]]"),
    (lambda r: _regimes(r)[1].update(needs=["fuel_consumption_comb_mpg"]), "the last regime serves every row"),
    (lambda r: _regimes(r)[0].update(needs=[]), "every regime but the last needs at least one input"),
    (lambda r: _regimes(r)[0].update(needs=["engine_size_l"]), "'engine_size_l' is not an optional numeric"),
    (lambda r: _regimes(r)[1].update(baseline=["make"]), "baseline: 'make' is not a numeric feature"),
    (lambda r: _regimes(r)[1].update(baseline=["fuel_consumption_comb_mpg"]), "a baseline input must be required"),
    (lambda r: _regimes(r)[0].update(name="all"), "name: lower-case letters"),
    (lambda r: _regimes(r)[1].update(name="rated"), "names must be unique"),
    (lambda r: _regimes(r)[0].update(weight=2), "unknown setting(s) ['weight']"),
    (lambda r: r["regression"].update(group="engine_size_l"), "group: 'engine_size_l' is not a categorical"),
    (lambda r: r["regression"].update(calibration_fraction=1.5), "calibration_fraction"),
    (lambda r: r["target"].pop("interval"), "needs an interval level"),
    (lambda r: r["target"].update(bounds=[-10.0, 1500.0]), "bounds must start at 0 or above"),
    (lambda r: r["gate"].update(metric="log_loss"), "gated on 'rmse', not 'log_loss'"),
    (lambda r: r["gate"].update(coverage_min=0.95), "coverage_min and coverage_max"),
    (lambda r: r["gate"].update(accuracy_floor=0.9), "unknown setting(s) ['accuracy_floor']"),
    (lambda r: r["search"].pop("num_boost_round"), "num_boost_round included"),
    (lambda r: r["holdout"].update(group_by=["make", "year"]), "unknown field(s) ['year']"),
])
def test_a_bad_regressor_spec_names_the_field(change, says):
    assert says in _broken("co2", change)


@pytest.mark.parametrize(("change", "says"), [
    (lambda r: r.update(regression={"regimes": [{"name": "x"}]}), "only a regression model has input regimes"),
    (lambda r: r["gate"].update(coverage_min=0.8), "unknown setting(s) ['coverage_min']"),
    (lambda r: r["gate"].update(accuracy_floor="high"), "accuracy_floor: must be a number"),
    (lambda r: r["target"].update(labels=["Adelie"]), "needs at least two labels"),
    (lambda r: r.pop("data"), "missing 'data'"),
])
def test_a_bad_classifier_spec_names_the_field(change, says):
    assert says in _broken("penguins", change)


def test_an_unknown_model_names_the_known_ones():
    with pytest.raises(SpecError, match="no model spec named 'nonesuch' \\(known: co2, penguins\\)"):
        load_spec("nonesuch")
