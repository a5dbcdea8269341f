"""The compiled and vectorised tree evaluators agree with XGBoost; routing sends batches to the right predictor."""
from __future__ import annotations

import math

import numpy as np
import pytest
import xgboost as xgb

from shared.bundle import MODEL_FILE, TREES_FILE
from shared.predictor import MAX_COMPILED_DEPTH, BoosterPredictor, RoutedPredictor, TreeEnsemble


def _random_model(depth: int, seed: int = 0) -> tuple[xgb.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 7)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1)
    x[rng.random(x.shape) < 0.1] = np.nan
    booster = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": depth, "seed": seed},
                        xgb.DMatrix(x, label=y), num_boost_round=25)
    test = rng.normal(scale=2, size=(3000, 7)).astype(np.float32)
    test[rng.random(test.shape) < 0.25] = np.nan
    return booster, test


def test_matches_xgboost_with_missing_values():
    for depth in (1, 3, 6):
        booster, test = _random_model(depth)
        trees = TreeEnsemble.from_xgboost_json(booster.save_raw("json"))
        assert np.abs(trees.predict_proba(test) - booster.inplace_predict(test)).max() < 1e-5


def test_serialised_form_predicts_identically(trained_bundle):
    trees = TreeEnsemble.from_bytes(trained_bundle.files[TREES_FILE])
    again = TreeEnsemble.from_bytes(trees.to_bytes())
    x = np.random.default_rng(1).uniform(0, 60, size=(50, len(trained_bundle.contract.columns))).astype(np.float32)
    np.testing.assert_array_equal(trees.predict_proba(x), again.predict_proba(x))
    booster = BoosterPredictor(trained_bundle.files[MODEL_FILE])
    assert np.abs(trees.predict_proba(x) - booster.predict_proba(x)).max() < 1e-5


def test_routing_by_batch_size(trained_bundle):
    trees = TreeEnsemble.from_bytes(trained_bundle.files[TREES_FILE])
    booster = BoosterPredictor(trained_bundle.files[MODEL_FILE])
    routed = RoutedPredictor(trees, booster, fast_max_rows=4)
    x = np.zeros((4, len(trained_bundle.contract.columns)), dtype=np.float32)
    routed.predict_proba(x)
    assert booster._booster is None  # small batch never touched XGBoost
    routed.predict_proba(np.zeros((5, x.shape[1]), dtype=np.float32))
    assert booster._booster is not None


def test_single_row_python_path_matches_xgboost():
    for depth in (1, 3, 6):
        booster, test = _random_model(depth, seed=depth)
        trees = TreeEnsemble.from_xgboost_json(booster.save_raw("json"))
        one_by_one = np.array([trees.predict_one(row) for row in test[:500].tolist()])
        assert np.abs(one_by_one - booster.inplace_predict(test[:500])).max() < 1e-5


def test_routed_predict_keeps_small_batches_in_python(trained_bundle):
    from shared.examples import SEED_EXAMPLES
    from shared.features import build_batch
    trees = TreeEnsemble.from_bytes(trained_bundle.files[TREES_FILE])
    routed = RoutedPredictor(trees, BoosterPredictor(trained_bundle.files[MODEL_FILE]), fast_max_rows=64)
    batch = build_batch(trained_bundle.contract, [row for row, _ in SEED_EXAMPLES])
    small = routed.predict(batch)
    assert isinstance(small, list) and routed.booster._booster is None
    np.testing.assert_allclose(np.array(small), routed.booster.predict_proba(batch.matrix), atol=1e-5)


def _chain_tree(depth: int) -> dict[str, np.ndarray]:
    """One tree of `depth` splits on x0 < 0, each with a leaf on its left; the deepest right leaf is 1."""
    nodes = 2 * depth + 1
    children = np.array([[n, n] for n in range(nodes)])
    for split in range(0, 2 * depth, 2):
        children[split] = (split + 1, split + 2)
    leaf_value = np.zeros(nodes, dtype=np.float32)
    leaf_value[-1] = 1.0
    return {"feature": np.zeros(nodes, dtype=int), "threshold": np.zeros(nodes, dtype=np.float32),
            "children": children, "default_left": np.zeros(nodes, dtype=bool), "leaf_value": leaf_value,
            "roots": np.array([0]), "tree_class": np.array([0]), "base_margin": np.zeros(2, dtype=np.float32),
            "depth": np.array(depth)}


def test_compiles_trees_up_to_the_depth_limit_and_refuses_deeper():
    deepest = TreeEnsemble(_chain_tree(MAX_COMPILED_DEPTH))
    e = math.exp(1.0)
    assert deepest.predict_one([0.0]) == pytest.approx([e / (e + 1), 1 / (e + 1)])  # right all the way down
    assert deepest.predict_one([-1.0]) == pytest.approx([0.5, 0.5])  # first left leaf is 0
    with pytest.raises(ValueError, match="deeper"):
        TreeEnsemble(_chain_tree(MAX_COMPILED_DEPTH + 1))
