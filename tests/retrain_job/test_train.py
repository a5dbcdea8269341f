"""Training: the first model is accurate, reproducible, and its fast predictor is verified."""
from __future__ import annotations

import numpy as np

from retrain_job import train
from retrain_job.data import fingerprint
from shared.bundle import MODEL_FILE, TREES_FILE
from shared.predictor import BoosterPredictor, TreeEnsemble
from tests.conftest import FAST_PARAMS


def test_holdout_accuracy_at_least_097(trained_bundle):
    holdout = trained_bundle.manifest["metrics"]["holdout"]
    assert holdout["accuracy"] >= 0.97 and holdout["rows"] >= 60


def test_same_data_same_metrics(base_data, trained_bundle):
    again = train.build_candidate(train.prepare(base_data), FAST_PARAMS, [])
    assert again.manifest["metrics"] == trained_bundle.manifest["metrics"]
    assert again.files[MODEL_FILE] == trained_bundle.files[MODEL_FILE]
    assert fingerprint(base_data) == trained_bundle.manifest["training_data"]["fingerprint"]


def test_cv_search_is_deterministic(base_data):
    data = train.prepare(base_data)
    assert data.labels == ("Adelie", "Chinstrap", "Gentoo")
    a = train.cv_score(data.x, data.y, FAST_PARAMS, 3)
    assert a == train.cv_score(data.x, data.y, FAST_PARAMS, 3)
    assert a["cv_accuracy"] > 0.95


def test_contract_reflects_training_data(trained_bundle):
    contract = trained_bundle.contract
    assert [c.name for c in contract.categorical] == ["island", "sex"]
    assert contract.categorical[0].levels == ("Biscoe", "Dream", "Torgersen")
    assert not contract.categorical[1].required
    mass = contract.numeric[3]
    assert mass.name == "body_mass_g" and 2500 <= mass.train_min < mass.train_max <= 6500


def test_fast_predictor_shipped_in_bundle_matches_xgboost(trained_bundle):
    trees = TreeEnsemble.from_bytes(trained_bundle.files[TREES_FILE])
    check = trained_bundle.manifest["verification"]
    from shared.features import build_batch
    x = build_batch(trained_bundle.contract, check["rows"]).matrix
    booster = BoosterPredictor(trained_bundle.files[MODEL_FILE])
    assert np.abs(trees.predict_proba(x) - booster.predict_proba(x)).max() < 1e-5
    assert np.abs(trees.predict_proba(x) - np.asarray(check["probabilities"])).max() < 1e-5
