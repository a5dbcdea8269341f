"""Training a classifier from its spec: accurate, reproducible, searched as the spec says, its trees verified."""
from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from retrain_job.data.labelled import fingerprint, to_records
from retrain_job.monitor.quality import expected_calibration_error
from retrain_job.train import fit as train
from shared.bundle import MODEL_FILE, TREES_FILE
from shared.model import load_model
from shared.predictor import BoosterPredictor, TreeEnsemble
from shared.spec import ThresholdSpec
from shared.validation import build_batch
from tests.support.bundles import FAST_PARAMS


def test_holdout_accuracy_at_least_097(trained_bundle):
    holdout = trained_bundle.manifest["metrics"]["holdout"]
    assert holdout["accuracy"] >= 0.97 and holdout["rows"] >= 60
    assert holdout["log_loss"] < 0.1 and trained_bundle.manifest["metrics"]["train"]["rows"] == 273


def test_same_data_same_metrics(penguins_spec, base_data, trained_bundle):
    again = train.build_candidate(train.prepare(penguins_spec, base_data), FAST_PARAMS, [])
    assert again.manifest["metrics"] == trained_bundle.manifest["metrics"]
    assert again.files[MODEL_FILE] == trained_bundle.files[MODEL_FILE]
    assert fingerprint(base_data, penguins_spec) == trained_bundle.manifest["training_data"]["fingerprint"]


def test_stratified_frozen_holdout_from_the_spec(penguins_spec, base_data):
    data = train.prepare(penguins_spec, base_data)
    assert len(base_data) == 342  # two rows lack every measurement: [data] required drops them
    assert (len(data.split.train), len(data.split.holdout)) == (273, 69)
    assert data.split.info["method"] == "stratified" and data.split.info["identical_row_in_train"] == 0.0
    shares = data.split.holdout["species"].value_counts(normalize=True)
    overall = base_data["species"].value_counts(normalize=True)
    assert (shares - overall).abs().max() < 0.02


def test_cv_search_is_deterministic(penguins_spec, base_data):
    data = train.prepare(penguins_spec, base_data)
    assert data.labels == ("Adelie", "Chinstrap", "Gentoo")
    items = train.search_items(penguins_spec)
    assert len(items) == 6 and all(item["rounds"] == [30, 60, 120] for item in items)  # 18 grid points, 6 fits
    a = train.score_items(data, items[:1])
    assert a == train.score_items(data, items[:1])
    assert len(a) == 3 and all(s["cv_accuracy"] > 0.95 for s in a)


def test_round_counts_share_one_fit(penguins_spec, base_data):
    """A score read at 30 rounds off a 120-round fit is the score of a 30-round fit."""
    data = train.prepare(penguins_spec, base_data)
    item = train.search_items(penguins_spec)[0]
    shared_fit = train.score_items(data, [item])[0]
    alone = train.score_items(data, [{**item, "rounds": [item["rounds"][0]]}])[0]
    assert shared_fit == alone


def test_one_standard_error_rule_picks_the_cheapest_close_point(penguins_spec):
    scores = [{"member": "all", "params": {"max_depth": 4, "eta": 0.3, "num_boost_round": 120},
               "cv_log_loss": 0.040, "cv_log_loss_se": 0.010},
              {"member": "all", "params": {"max_depth": 2, "eta": 0.3, "num_boost_round": 30},
               "cv_log_loss": 0.049, "cv_log_loss_se": 0.012},
              {"member": "all", "params": {"max_depth": 2, "eta": 0.1, "num_boost_round": 30},
               "cv_log_loss": 0.090, "cv_log_loss_se": 0.010}]
    assert train.best_params(penguins_spec, scores) == {"max_depth": 2, "eta": 0.3, "num_boost_round": 30}


def test_contract_reflects_training_data(trained_bundle):
    contract = trained_bundle.contract
    assert [c.name for c in contract.categorical] == ["island", "sex"]
    assert contract.categorical[0].levels == ("Biscoe", "Dream", "Torgersen")
    assert not contract.categorical[1].required
    mass = contract.numeric[3]
    assert mass.name == "body_mass_g" and 2500 <= mass.train_min < mass.train_max <= 6500
    assert contract.target.labels == ("Adelie", "Chinstrap", "Gentoo") and contract.is_classifier


def test_fast_predictor_shipped_in_bundle_matches_xgboost(trained_bundle):
    members = trained_bundle.manifest["members"]
    assert [(m["name"], m["model_file"], m["trees_file"], m["needs"]) for m in members] == [
        ("all", MODEL_FILE, TREES_FILE, [])]
    trees = TreeEnsemble.from_bytes(trained_bundle.files[TREES_FILE])
    check = trained_bundle.manifest["verification"]
    x = build_batch(trained_bundle.contract, check["rows"]).matrix
    booster = BoosterPredictor(trained_bundle.files[MODEL_FILE])
    assert len(check["rows"]) == 23  # 20 training rows and the spec's 3 examples
    assert np.abs(trees.outputs(x) - booster.outputs(x)).max() < 1e-5
    assert np.abs(trees.outputs(x) - np.asarray(check["outputs"]["all"])).max() < 1e-5
    model = load_model("penguins", trained_bundle, "store", fast_max_rows=64)
    assert model.predictor.fast is not None  # verified at load time, as the function does


def test_holdout_calibration_is_measured_and_a_calibrated_model_left_alone(trained_bundle):
    metrics = trained_bundle.manifest["metrics"]
    cal = metrics["calibration"]
    assert 0 <= metrics["holdout"]["ece"] < train.ECE_POOR and cal["ece_before"]["holdout"] == metrics["holdout"]["ece"]
    assert cal["ece_before"]["training_oof"] <= train.ECE_POOR and not cal["applied"]
    assert cal["ece_after"] == cal["ece_before"] and cal["rows"] == 273 and cal["temperature"] > 0


@pytest.fixture(scope="module")
def overconfident(penguins_spec, base_data):
    """A model that is sure of answers it often gets wrong: a quarter of the labels (holdout too) randomised, deep
    trees and a high learning rate that memorise them."""
    rng = np.random.default_rng(0)
    noisy = base_data.copy()
    flip = rng.random(len(noisy)) < 0.25
    noisy.loc[flip, "species"] = rng.choice(list(penguins_spec.target.labels), int(flip.sum()))
    data = train.prepare(penguins_spec, noisy)
    params = {"max_depth": 6, "eta": 0.5, "num_boost_round": 100}
    return data, params, train.build_candidate(data, params, [])


def test_an_overconfident_model_is_temperature_scaled_and_its_ece_falls(overconfident):
    _, _, bundle = overconfident
    metrics = bundle.manifest["metrics"]
    cal = metrics["calibration"]
    assert cal["applied"] and cal["temperature"] > 1.5  # softened
    assert cal["ece_before"]["training_oof"] > train.ECE_POOR and cal["ece_before"]["holdout"] > 0.15
    assert cal["ece_after"]["training_oof"] < cal["ece_before"]["training_oof"] / 2
    assert cal["ece_after"]["holdout"] == metrics["holdout"]["ece"] < cal["ece_before"]["holdout"] - 0.05
    assert cal["log_loss_after"]["holdout"] == metrics["holdout"]["log_loss"] < cal["log_loss_before"]["holdout"]


def test_a_calibrated_model_is_still_one_booster_its_compiled_trees_reproduce(overconfident):
    data, params, bundle = overconfident
    temperature = bundle.manifest["metrics"]["calibration"]["temperature"]
    x = build_batch(data.contract, to_records(data.split.holdout, data.contract.field_names)).matrix
    raw = train.fit(data.x, data.y, params, len(data.labels)).inplace_predict(x, predict_type="margin")
    served = BoosterPredictor(bundle.files[MODEL_FILE]).outputs(x)
    assert np.abs(served - train.softmax(raw / temperature)).max() < 1e-5  # softmax(margin / T), nothing else
    model = load_model("penguins", bundle, "store", fast_max_rows=64)  # verification of the compiled trees passes
    assert model.predictor.fast is not None
    assert np.abs(model.predictor.fast.outputs(x) - served).max() < 1e-5
    assert np.abs(model.predictor.outputs(x) - served).max() < 1e-5
    y = data.split.holdout["species"].map({label: i for i, label in enumerate(data.labels)}).to_numpy()
    assert round(expected_calibration_error(served, y), 6) == bundle.manifest["metrics"]["holdout"]["ece"]


def test_temperature_scaling_rewrites_leaves_and_base_margin(penguins_spec, base_data):
    data = train.prepare(penguins_spec, base_data)
    booster = train.fit(data.x, data.y, FAST_PARAMS, 3)
    scaled = train.scale_margins(booster, 2.5)
    margins = booster.inplace_predict(data.x, predict_type="margin")
    assert np.abs(scaled.inplace_predict(data.x, predict_type="margin") - margins / 2.5).max() < 1e-5
    assert isinstance(scaled, xgb.Booster) and scaled.num_boosted_rounds() == booster.num_boosted_rounds()
    trees = TreeEnsemble.from_xgboost_json(scaled.save_raw("json"))
    assert trees.max_difference(data.x, scaled.inplace_predict(data.x)) < 1e-6
    y = np.array([0, 1, 2, 0])
    sharp = np.log(np.array([[0.98, 0.01, 0.01], [0.01, 0.98, 0.01], [0.98, 0.01, 0.01], [0.01, 0.98, 0.01]]))
    assert train.fit_temperature(sharp, y) > 1  # half right at 98%: softened


# ---- a binary model's threshold ----------------------------------------------------------------------------------

def _scores(n: int = 400, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    p = np.clip(0.3 + 0.35 * (y - 0.3) + rng.normal(0, 0.18, n), 0.001, 0.999)
    return p, y


def _at(p: np.ndarray, y: np.ndarray, t: float) -> tuple[float, float, float]:
    chosen = p >= t
    tp = int(np.sum(chosen & (y == 1)))
    precision, recall = tp / max(int(chosen.sum()), 1), tp / int(y.sum())
    return precision, recall, (2 * precision * recall / (precision + recall) if tp else 0.0)


def test_each_threshold_rule_picks_what_it_says_on_out_of_fold_probabilities():
    p, y = _scores()
    candidates = np.unique(p)
    best = train.choose_threshold(ThresholdSpec("best_f1"), p, y)
    assert abs(_at(p, y, best["value"])[2] - max(_at(p, y, t)[2] for t in candidates)) < 1e-6
    assert best["training_oof"]["f1"] == pytest.approx(_at(p, y, best["value"])[2], abs=1e-6)
    precise = train.choose_threshold(ThresholdSpec("min_precision", 0.8), p, y)
    ok = [t for t in candidates if _at(p, y, t)[0] >= 0.8]
    assert precise["reached"] and precise["value"] == pytest.approx(min(ok), abs=1e-6)  # the most recall
    recalling = train.choose_threshold(ThresholdSpec("min_recall", 0.9), p, y)
    ok = [t for t in candidates if _at(p, y, t)[1] >= 0.9]
    assert recalling["reached"] and recalling["value"] == pytest.approx(max(ok), abs=1e-6)  # the most precision
    assert train.choose_threshold(ThresholdSpec("fixed", 0.42), p, y)["value"] == 0.42
    top_negative = p.copy()
    top_negative[np.flatnonzero(y == 0)[0]] = 0.9999  # every threshold now takes in a false positive
    assert not train.choose_threshold(ThresholdSpec("min_precision", 0.9999), top_negative, y)["reached"]


def test_a_binary_spec_trains_one_logistic_booster_with_its_threshold_and_metrics(tmp_path):
    from retrain_job.data.labelled import read_base
    from tests.retrain_job.data.test_labelled import _penguins_with

    spec = _penguins_with(tmp_path, spec_edit='bad_rows = "drop"\nmax_bad_share = 0.25', swap=[
        ('task = "multiclass"', 'task = "binary"'),
        ('labels = ["Adelie", "Chinstrap", "Gentoo"]', 'labels = ["Adelie", "Gentoo"]\npositive = "Gentoo"'),
        ("accuracy_floor = 0.9", "accuracy_floor = 0.9\nroc_auc_tolerance = 0.01")])
    base = read_base(spec)
    assert base.intake["bad_rows"] == 68  # the Chinstraps: no label of this model, dropped as the spec allows
    bundle = train.build_candidate(train.prepare(spec, base.frame), FAST_PARAMS, [])
    manifest = bundle.manifest
    booster = xgb.Booster()
    booster.load_model(bytearray(bundle.files[MODEL_FILE]))
    assert '"binary:logistic"' in booster.save_config() and manifest["labels"] == ["Adelie", "Gentoo"]
    assert manifest["threshold"]["rule"] == "best_f1" and 0 < manifest["threshold"]["value"] < 1
    holdout = manifest["metrics"]["holdout"]
    assert holdout["roc_auc"] > 0.99 and {"pr_auc", "brier", "precision", "recall", "f1"} <= set(holdout)
    model = load_model(spec.name, bundle, "store", fast_max_rows=64)
    assert model.threshold == manifest["threshold"]["value"]

