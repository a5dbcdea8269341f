"""The compiled and vectorised tree evaluators agree with XGBoost; routing sends batches to the right predictor."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import xgboost as xgb

from shared.bundle import MODEL_FILE, TREES_FILE
from shared.predictor import (
    MAX_COMPILED_DEPTH,
    BoosterPredictor,
    Estimates,
    Probabilities,
    RoutedPredictor,
    TreeEnsemble,
)
from shared.validation import SMALL_BATCH, FeatureBatch, build_batch
from tests.support.examples import SEED_EXAMPLES


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
        assert np.abs(trees.outputs(test) - booster.inplace_predict(test)).max() < 1e-5


def test_serialised_form_predicts_identically(trained_bundle):
    trees = TreeEnsemble.from_bytes(trained_bundle.files[TREES_FILE])
    again = TreeEnsemble.from_bytes(trees.to_bytes())
    x = np.random.default_rng(1).uniform(0, 60, size=(50, len(trained_bundle.contract.columns))).astype(np.float32)
    np.testing.assert_array_equal(trees.outputs(x), again.outputs(x))
    booster = BoosterPredictor(trained_bundle.files[MODEL_FILE])
    assert np.abs(trees.outputs(x) - booster.outputs(x)).max() < 1e-5


def test_routing_by_batch_size(trained_bundle):
    trees = TreeEnsemble.from_bytes(trained_bundle.files[TREES_FILE])
    booster = BoosterPredictor(trained_bundle.files[MODEL_FILE])
    routed = RoutedPredictor(trees, booster, fast_max_rows=4)
    x = np.zeros((4, len(trained_bundle.contract.columns)), dtype=np.float32)
    routed.outputs(x)
    assert booster._booster is None  # small batch never touched XGBoost
    routed.outputs(np.zeros((5, x.shape[1]), dtype=np.float32))
    assert booster._booster is not None


def test_single_row_python_path_matches_xgboost():
    for depth in (1, 3, 6):
        booster, test = _random_model(depth, seed=depth)
        trees = TreeEnsemble.from_xgboost_json(booster.save_raw("json"))
        one_by_one = np.array([trees.predict_one(row) for row in test[:500].tolist()])
        assert np.abs(one_by_one - booster.inplace_predict(test[:500])).max() < 1e-5


def _routed(bundle) -> RoutedPredictor:
    trees = TreeEnsemble.from_bytes(bundle.files[TREES_FILE])
    return RoutedPredictor(trees, BoosterPredictor(bundle.files[MODEL_FILE]), fast_max_rows=64)


def _seed_batch(contract, n: int) -> FeatureBatch:
    return build_batch(contract, [SEED_EXAMPLES[i % len(SEED_EXAMPLES)][0] for i in range(n)])


def test_routed_predict_keeps_small_batches_in_python(trained_bundle):
    routed = _routed(trained_bundle)
    batch = _seed_batch(trained_bundle.contract, len(SEED_EXAMPLES))
    small = routed.predict(batch)
    assert small.rows is not None and small.array is None and routed.booster._booster is None
    np.testing.assert_allclose(np.array(small.rows), routed.booster.outputs(batch.matrix), atol=1e-5)


def test_predict_returns_one_type_in_every_regime(trained_bundle):
    """1 and 16 rows: generated Python; 64: the NumPy walk; 1000: XGBoost. One result type, one meaning."""
    routed, reference = _routed(trained_bundle), BoosterPredictor(trained_bundle.files[MODEL_FILE])
    labels = trained_bundle.contract.labels
    expected = [species for _, species in SEED_EXAMPLES]
    for n, in_python, xgboost_loaded in ((1, True, False), (SMALL_BATCH, True, False), (64, False, False),
                                         (1000, False, True)):
        batch = _seed_batch(trained_bundle.contract, n)
        proba = routed.predict(batch)
        assert type(proba) is Probabilities
        assert (proba.rows is not None) == in_python and (routed.booster._booster is not None) == xgboost_loaded
        species, rounded = proba.labels_and_rows(labels, 6)
        assert species == [expected[i % len(expected)] for i in range(n)]
        assert len(rounded) == n and all(type(p) is list and len(p) == len(labels) for p in rounded)
        assert all(type(v) is float and round(v, 6) == v for v in rounded[0])
        np.testing.assert_allclose(np.array(rounded), reference.outputs(batch.matrix), atol=1e-5)


def test_probabilities_answer_alike_from_lists_and_arrays():
    rows = [[0.2, 0.5, 0.3], [0.6, 0.2, 0.2], [0.1234567891, 0.1234567891, 0.7530864218]]
    from_lists = Probabilities(rows).labels_and_rows(("a", "b", "c"), 4)
    from_array = Probabilities(array=np.array(rows)).labels_and_rows(("a", "b", "c"), 4)
    assert from_lists == from_array == (["b", "a", "c"], [[0.2, 0.5, 0.3], [0.6, 0.2, 0.2], [0.1235, 0.1235, 0.7531]])


def test_estimates_answer_alike_from_lists_and_arrays():
    values, lower, upper = [231.23456, 99.9996, 180.0], [200.11111, 90.0, 170.5], [260.98765, 110.00049, 190.25]
    from_lists = Estimates(values, lower, upper, ["a"] * 3)
    from_arrays = Estimates(np.array(values), np.array(lower), np.array(upper), ["a"] * 3)
    expected = ([231.235, 100.0, 180.0], [200.111, 90.0, 170.5], [260.988, 110.0, 190.25])
    assert from_lists.rounded(3) == from_arrays.rounded(3) == expected
    assert np.asarray(from_lists.intervals()).tolist() == from_arrays.intervals().tolist() == [
        [200.11111, 260.98765], [90.0, 110.00049], [170.5, 190.25]]


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


def _xgboost_contributions(booster: xgb.Booster, x: np.ndarray, outputs: int) -> np.ndarray:
    return booster.predict(xgb.DMatrix(x, missing=np.nan), pred_contribs=True).reshape(len(x), outputs, -1)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_numpy_treeshap_equals_xgboost_pred_contribs(depth):
    booster, test = _random_model(depth, seed=10 + depth)  # 7 features: deep paths split on one feature twice
    trees = TreeEnsemble.from_bytes(TreeEnsemble.from_xgboost_json(booster.save_raw("json")).to_bytes())
    assert trees.explains
    x = test[:400]
    ours = trees.contributions(x)
    np.testing.assert_allclose(ours, _xgboost_contributions(booster, x, 3), rtol=0, atol=2e-5)
    margin = booster.predict(xgb.DMatrix(x, missing=np.nan), output_margin=True)
    np.testing.assert_allclose(ours.sum(axis=2), margin, rtol=0, atol=2e-5)


def test_numpy_treeshap_of_a_regressor_in_chunks():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(800, 5)).astype(np.float32)
    y = 3 * x[:, 0] - np.abs(x[:, 1]) + (x[:, 2] > 0)
    x[rng.random(x.shape) < 0.2] = np.nan
    booster = xgb.train({"objective": "reg:squarederror", "max_depth": 3, "seed": 5}, xgb.DMatrix(x, label=y), 40)
    trees = TreeEnsemble.from_xgboost_json(booster.save_raw("json"))
    big = np.repeat(x, 4, axis=0)  # more (row, leaf) pairs than one chunk holds
    np.testing.assert_allclose(trees.contributions(big), _xgboost_contributions(booster, big, 1), rtol=0, atol=2e-5)


def test_contributions_fall_back_to_xgboost_without_covers(trained_bundle):
    trees = TreeEnsemble.from_bytes(trained_bundle.files[TREES_FILE])
    assert trees.explains
    booster = BoosterPredictor(trained_bundle.files[MODEL_FILE])
    x = np.random.default_rng(2).uniform(0, 60, size=(20, len(trained_bundle.contract.columns))).astype(np.float32)
    routed = RoutedPredictor(trees, booster, fast_max_rows=64)
    ours = routed.contributions(x)
    assert booster._booster is None  # answered without loading XGBoost
    older = TreeEnsemble({k: v for k, v in _arrays(trees).items() if k != "cover"})  # a bundle from before covers
    assert not older.explains
    np.testing.assert_allclose(RoutedPredictor(older, booster, 64).contributions(x), ours, rtol=0, atol=2e-5)
    assert booster._booster is not None


def _arrays(trees: TreeEnsemble) -> dict:
    with np.load(io.BytesIO(trees.to_bytes())) as npz:
        return {name: npz[name] for name in npz.files}
