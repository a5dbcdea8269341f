"""Model specs: both models load, and a spec that cannot drive a model fails with the file and the field named."""
from __future__ import annotations

import copy
import tomllib

import pytest

from shared.spec import SPEC_FILE, CardSpec, SpecError, default_model, load_spec, parse_spec, spec_names


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
    assert r.strategy == "log_baseline" and r.log_scale and r.group == "fuel_type" and r.min_level_rows == 30
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
    (lambda r: r["regression"].pop("regimes"), "log_baseline strategy needs at least one [[regression.regimes]]"),
    (lambda r: r["regression"].update(strategy="plain"), "only the log_baseline strategy has a baseline formula"),
    (lambda r: r["regression"].update(strategy="cubic"), "strategy: must be one of plain, log_baseline"),
    (lambda r: _regimes(r)[1].update(needs=["fuel_consumption_comb_mpg"]), "the last regime serves every row"),
    (lambda r: _regimes(r)[0].update(needs=[]), "every regime but the last needs at least one input"),
    (lambda r: _regimes(r)[0].update(needs=["engine_size_l"]), "'engine_size_l' is not an optional numeric"),
    (lambda r: _regimes(r)[1].update(baseline=["make"]), "baseline: 'make' is not a numeric feature"),
    (lambda r: _regimes(r)[1].update(baseline=["fuel_consumption_comb_mpg"]), "a baseline input must be required"),
    (lambda r: _regimes(r)[0].update(name="all"), "name: lower-case letters"),
    (lambda r: _regimes(r)[1].update(name="rated"), "names must be unique"),
    (lambda r: _regimes(r)[0].update(weight=2), "unknown key 'weight'; allowed: name, needs, baseline"),
    (lambda r: r["regression"].update(group="engine_size_l"), "group: 'engine_size_l' is not a categorical"),
    (lambda r: r["regression"].update(calibration_fraction=0.25), "unknown key 'calibration_fraction'"),
    (lambda r: r["target"].update(interval=1.5), "interval level must be between 0 and 1"),
    (lambda r: r["target"].update(bounds=[-10.0, 1500.0]), "the log_baseline strategy models log(y)"),
    (lambda r: r["target"].update(low_inclusive=True), "the log_baseline strategy models log(y)"),
    (lambda r: r["target"].pop("bounds"), "a regression target needs plausible bounds"),
    (lambda r: r["target"].update(positive="x"), "a regression target has no labels or positive class"),
    (lambda r: r.update(threshold={"rule": "best_f1"}), "only a binary model has a decision threshold"),
    (lambda r: r["features"][2].update(missing_values=[0]), "must say required = false"),
    (lambda r: r["features"][6].update(missing_values=["none"]), "missing_values: must be a list of numbers"),
    (lambda r: r["features"][2].update(required="no"), "required: must be true or false"),
    (lambda r: r["data"].update(bad_rows="skip"), "bad_rows: must be one of reject, drop"),
    (lambda r: r["data"].update(max_bad_share=0.1), "only with bad_rows = \"drop\""),
    (lambda r: r["holdout"].update(stratify=True), "a regression target has no classes to stratify by"),
    (lambda r: r["gate"].update(metric="log_loss"), "gated on 'rmse', not 'log_loss'"),
    (lambda r: r["gate"].update(coverage_min=0.95), "coverage_min and coverage_max"),
    (lambda r: r["gate"].update(accuracy_floor=0.9), "unknown setting(s) ['accuracy_floor']"),
    (lambda r: r["search"].update(max_dept=[3]), "unknown key 'max_dept' (did you mean 'max_depth'?)"),
    (lambda r: r["search"].update(max_depth=[2.5]), "max_depth: a list of integers >= 1"),
    (lambda r: r.update(taks="binary"), "unknown key 'taks' (did you mean 'task'?)"),
    (lambda r: r["holdout"].update(group_by=["make", "year"]), "unknown field(s) ['year']"),
])
def test_a_bad_regressor_spec_names_the_field(change, says):
    assert says in _broken("co2", change)


@pytest.mark.parametrize(("change", "says"), [
    (lambda r: r.update(regression={"regimes": [{"name": "x"}]}), "only a regression model has a [regression]"),
    (lambda r: r["gate"].update(coverage_min=0.8), "unknown setting(s) ['coverage_min']"),
    (lambda r: r["gate"].update(accuracy_floor="high"), "accuracy_floor: must be a number"),
    (lambda r: r["target"].update(labels=["Adelie"]), "needs at least two distinct labels"),
    (lambda r: r["target"].update(labels=["Adelie", "adelie"]), "needs at least two distinct labels"),
    (lambda r: r["target"].update(positive="Adelie"), "only a binary target has a positive class"),
    (lambda r: r.update(task="binary"), "a binary target has exactly two labels"),
    (lambda r: r["holdout"].update(group_by=["island"]), "stratify and group_by cannot both hold"),
    (lambda r: r.pop("data"), "missing 'data'"),
    (lambda r: r.update(card="for teaching"), "[card]: must be a table of intended_use, out_of_scope, owners"),
    (lambda r: r["card"].update(intended_use=["teaching"]), "[card] intended_use: must be a non-empty string"),
    (lambda r: r["card"].update(intended_use="  "), "[card] intended_use: must be a non-empty string"),
    (lambda r: r["card"].update(owners="the team"), "[card] owners: must be a list of non-empty strings"),
    (lambda r: r["card"].update(out_of_scope=["chicks", 3]), "[card] out_of_scope: must be a non-empty string"),
    (lambda r: r["card"].update(owner=["x"]), "[card]: unknown key 'owner' (did you mean 'owners'?)"),
    (lambda r: r["data"].update(licence=""), "[data] licence: must be a non-empty string"),
    (lambda r: r["data"].update(source=1), "[data] source: must be a non-empty string"),
])
def test_a_bad_classifier_spec_names_the_field(change, says):
    assert says in _broken("penguins", change)


def test_an_unknown_model_names_the_known_ones():
    with pytest.raises(SpecError, match="no model spec named 'nonesuch' \\(known: co2, penguins\\)"):
        load_spec("nonesuch")


def _binary(raw: dict) -> dict:
    raw = copy.deepcopy(raw)
    raw.update(task="binary")
    raw["target"].update(labels=["Adelie", "Gentoo"], positive="Adelie")
    return raw


def test_a_binary_spec_puts_its_positive_class_last_and_defaults_its_threshold_rule():
    raw, folder = _raw("penguins")
    spec = parse_spec(_binary(raw), folder)
    assert spec.is_binary and spec.labels == ("Gentoo", "Adelie") and spec.threshold.rule == "best_f1"
    assert spec.holdout.stratify  # a classifier's holdout is stratified unless the spec says otherwise
    fixed = _binary(raw)
    fixed["threshold"] = {"rule": "min_precision", "value": 0.9}
    assert parse_spec(fixed, folder).threshold.value == 0.9


@pytest.mark.parametrize(("change", "says"), [
    (lambda r: r["target"].update(positive="Chinstrap"), "names its positive class, one of ['Adelie', 'Gentoo']"),
    (lambda r: r.update(threshold={"rule": "min_recall"}), "the min_recall rule needs a value"),
    (lambda r: r.update(threshold={"rule": "best_f1", "value": 0.5}), "the best_f1 rule takes no value"),
    (lambda r: r.update(threshold={"rule": "fixed", "value": 1.5}), "value: must be between 0 and 1"),
    (lambda r: r.update(threshold={"rul": "fixed"}), "unknown key 'rul' (did you mean 'rule'?)"),
    (lambda r: r["gate"].update(roc_auc_tolerance="x"), "roc_auc_tolerance: must be a number"),
])
def test_a_bad_binary_spec_names_the_field(change, says):
    raw, folder = _raw("penguins")
    raw = _binary(raw)
    change(raw)
    with pytest.raises(SpecError) as err:
        parse_spec(raw, folder)
    assert says in str(err.value)


def test_a_plain_regressor_needs_no_regimes_and_may_predict_negative_values():
    raw, folder = _raw("co2")
    raw = copy.deepcopy(raw)
    raw.pop("regression")
    raw["holdout"].pop("group_by")
    raw["target"].update(bounds=[-50.0, 50.0])
    raw.pop("search")
    spec = parse_spec(raw, folder)
    r = spec.regression
    assert r.strategy == "plain" and not r.log_scale and [g.name for g in r.regimes] == ["all"]
    assert not spec.holdout.stratify and spec.holdout.group_by == () and spec.target.interval == 0.9
    assert set(spec.search) >= {"max_depth", "num_boost_round"}  # defaults when [search] is left out


def test_the_shipped_specs_state_their_card_and_a_spec_without_one_states_nothing():
    for name in ("penguins", "co2"):
        spec = load_spec(name)
        assert spec.card.intended_use and spec.card.out_of_scope and spec.card.owners and spec.card.limitations
        assert spec.data.source and spec.data.licence
    raw, folder = _raw("penguins")
    raw = copy.deepcopy(raw)
    raw.pop("card")
    for key in ("source", "licence"):
        raw["data"].pop(key)
    spec = parse_spec(raw, folder)
    assert spec.card == CardSpec() and spec.card.owners == () and spec.data.licence == ""


def _penguins_with(change) -> dict:
    raw, _ = _raw("penguins")
    raw = copy.deepcopy(raw)
    change(raw)
    return raw


def _no_feedback(raw: dict) -> None:
    raw["retrain"] = {"from_feedback": False}


@pytest.mark.parametrize(("change", "says"), [
    (lambda r: r["features"][0].update(log="mask"), "log: must be one of keep, hash, bucket, drop, not 'mask'"),
    (lambda r: r["features"][0].update(log="drop"),
     "retraining from feedback learns from the logged features"),
    (lambda r: r["features"][0].update(log="bucket"), "needs the width of its bins"),
    (lambda r: (r["features"][0].update(log="bucket", bucket_width=0), _no_feedback(r)), "must be above 0"),
    (lambda r: r["features"][0].update(bucket_width=5), "only a field with log = \"bucket\" has a bucket width"),
    (lambda r: (r["features"][4].update(log="bucket", bucket_width=1), _no_feedback(r)),
     "only a numeric feature or an integer passthrough field can be bucketed"),
    (lambda r: (r["features"][4].update(log="drop"), _no_feedback(r)), "a segment or holdout group field"),
    (lambda r: r.update(retrain={"from_feedbak": False}), "unknown key 'from_feedbak' (did you mean 'from_feedback'?)"),
    (lambda r: r.update(retrain={"from_feedback": "no"}), "[retrain] from_feedback: must be true or false"),
])
def test_a_bad_log_policy_names_the_field_and_the_reason(change, says):
    assert says in _broken("penguins", change)


def test_log_policies_default_to_keep_and_a_spec_not_learning_from_feedback_may_hide_features():
    assert load_spec("penguins").log_policies == {} and load_spec("penguins").retrain.from_feedback
    raw = _penguins_with(lambda r: (r["features"][0].update(log="bucket", bucket_width=5), _no_feedback(r),
                                    r["features"][1].update(log="drop")))
    spec = parse_spec(raw, load_spec("penguins").folder)
    assert not spec.retrain.from_feedback
    assert spec.log_policies == {spec.features[0].name: ("bucket", 5.0), spec.features[1].name: ("drop", None)}
