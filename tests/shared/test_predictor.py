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


# ---- binary classifiers (binary:logistic) -----------------------------------------------------------------

def _random_binary(depth: int, seed: int, base_score: float | None = None) -> tuple[xgb.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 7)).astype(np.float32)
    y = ((x[:, 0] + x[:, 1] > 0.7) ^ (rng.random(600) < 0.1)).astype(int)
    x[rng.random(x.shape) < 0.1] = np.nan
    params = {"objective": "binary:logistic", "max_depth": depth, "seed": seed}
    if base_score is not None:
        params["base_score"] = base_score
    booster = xgb.train(params, xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=25)
    test = rng.normal(scale=2, size=(3000, 7)).astype(np.float32)
    test[rng.random(test.shape) < 0.25] = np.nan
    return booster, test


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_binary_logistic_compiles_to_xgboosts_probabilities_with_missing_values(depth):
    """Both evaluators give [1 - p, p] with p XGBoost's P(positive) to float32 rounding, and so does
    BoosterPredictor; the serialised trees answer identically."""
    booster, test = _random_binary(depth, seed=depth)
    trees = TreeEnsemble.from_bytes(TreeEnsemble.from_xgboost_json(booster.save_raw("json")).to_bytes())
    assert (trees.link, trees.n_classes, trees.n_outputs) == ("logistic", 1, 2)
    p = booster.inplace_predict(test).astype(np.float64)
    assert p.shape == (len(test),)
    batched = trees.outputs(test)
    one_by_one = np.array([trees.predict_one(row) for row in test[:800].tolist()])
    assert batched.shape == (len(test), 2) and one_by_one.shape == (800, 2)
    np.testing.assert_allclose(batched[:, 1], p, rtol=0, atol=1e-6)
    np.testing.assert_allclose(one_by_one[:, 1], p[:800], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(batched.sum(axis=1), 1.0)
    np.testing.assert_allclose(BoosterPredictor(bytes(booster.save_raw("ubj"))).outputs(test), np.column_stack(
        (1 - p, p)), rtol=0, atol=1e-12)
    for expected in (p, p[:, None], np.column_stack((1 - p, p))):  # what verification may have recorded
        assert trees.max_difference(test[:300], expected[:300]) < 1e-6
    assert trees.max_difference(test[:300], 1 - p[:300]) > 0.1  # the wrong column is caught


def test_binary_base_score_becomes_xgboosts_base_margin():
    """XGBoost stores a binary:logistic base_score as a probability: its margin is -logf(1/p - 1) in float32.
    With no tree contributing (eta 0), XGBoost's margin is that base margin alone."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    ours, theirs = [], []
    for i in range(150):
        y = (rng.random(40) < rng.uniform(0.05, 0.95)).astype(int)
        params = {"objective": "binary:logistic", "max_depth": 1, "eta": 0.0}
        if i % 3 == 0 or y.min() == y.max():
            params["base_score"] = float(rng.uniform(0.001, 0.999))
        booster = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=1)
        trees = TreeEnsemble.from_xgboost_json(booster.save_raw("json"))
        ours.append(trees.base_margin[0])
        theirs.append(booster.predict(xgb.DMatrix(x[:1]), output_margin=True)[0])
        assert trees.predict_one(x[0].tolist())[1] == pytest.approx(booster.inplace_predict(x[:1])[0], abs=1e-7)
    ours, theirs = np.array(ours, dtype=np.float32), np.array(theirs, dtype=np.float32)
    ulps = np.abs(ours.view(np.int32) - theirs.view(np.int32))  # same sign: ulps apart
    assert ulps.max() <= 1 and np.mean(ulps == 0) >= 0.95, (ulps.max(), np.mean(ulps == 0))


def test_npz_of_every_earlier_form_still_loads():
    """Bundles from before links were stored (softmax), before covers, and of each link, load and answer."""
    booster, test = _random_model(3)
    arrays = _arrays(TreeEnsemble.from_xgboost_json(booster.save_raw("json")))
    oldest = TreeEnsemble({k: v for k, v in arrays.items() if k not in ("link", "cover")})
    assert oldest.link == "softmax" and not oldest.explains
    np.testing.assert_allclose(oldest.outputs(test), booster.inplace_predict(test), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="link"):
        TreeEnsemble({**arrays, "link": np.array("probit")})
    with pytest.raises(ValueError, match="one output group"):
        TreeEnsemble({**arrays, "link": np.array("logistic")})  # three classes cannot be logistic


def _binary_routed(threshold: float) -> tuple[RoutedPredictor, list[dict], np.ndarray]:
    """The synthetic binary bundle's predictor, 1000 request rows, and XGBoost's [1 - p, p] of them."""
    from tests.support.kinds import binary_bundle, rows  # noqa: PLC0415 - trains a model on first use

    bundle = binary_bundle()
    trees = TreeEnsemble.from_bytes(bundle.files[TREES_FILE])
    routed = RoutedPredictor(trees, BoosterPredictor(bundle.files[MODEL_FILE]), 64, threshold)
    requests = rows(1000, seed=5)
    reference = BoosterPredictor(bundle.files[MODEL_FILE]).outputs(build_batch(bundle.contract, requests).matrix)
    return routed, requests, reference


def test_binary_labels_are_decided_by_the_threshold_in_every_regime():
    """1 and 16 rows: generated Python; 64: the NumPy walk; 1000: XGBoost. Each says "yes" iff P(yes) >= 0.37,
    where argmax would say "no" for P(yes) in [0.37, 0.5)."""
    from tests.support.kinds import LABELS, THRESHOLD, binary_bundle  # noqa: PLC0415

    contract = binary_bundle().contract
    routed, requests, reference = _binary_routed(THRESHOLD)
    p = reference[:, 1]
    window = (p >= THRESHOLD) & (p < 0.5)
    assert window.sum() > 10 and (p < THRESHOLD).sum() > 10 and (p >= 0.5).sum() > 10
    order = np.argsort(~window, kind="stable")  # rows in the window first: every regime answers some
    for n, in_python, xgboost_loaded in ((1, True, False), (SMALL_BATCH, True, False), (64, False, False),
                                         (1000, False, True)):
        chosen = order[:n]
        proba = routed.predict(build_batch(contract, [requests[i] for i in chosen]))
        assert type(proba) is Probabilities and proba.threshold == THRESHOLD
        assert (proba.rows is not None) == in_python and (routed.booster._booster is not None) == xgboost_loaded
        expected = [LABELS[1] if p[i] >= THRESHOLD else LABELS[0] for i in chosen]
        labels, rounded = proba.labels_and_rows(LABELS, 6)
        assert labels == proba.labels(LABELS) == expected
        assert labels != [LABELS[int(k)] for k in reference[chosen].argmax(axis=1)]  # not argmax
        np.testing.assert_allclose(np.array(rounded), reference[chosen], rtol=0, atol=2e-6)
        np.testing.assert_allclose(np.asarray(proba.positive()), p[chosen], rtol=0, atol=1e-6)


def test_a_threshold_decides_alike_from_lists_and_arrays():
    rows = [[0.63, 0.37], [0.6300001, 0.3699999], [0.1, 0.9], [0.9, 0.1], [0.5, 0.5]]
    for proba in (Probabilities(rows, None, 0.37), Probabilities(None, np.array(rows), 0.37)):
        assert proba.labels(("no", "yes")) == ["yes", "no", "yes", "no", "yes"]  # at the threshold: positive
        assert list(proba.positive()) == [0.37, 0.3699999, 0.9, 0.1, 0.5]
    assert Probabilities(rows).labels(("no", "yes")) == ["no", "no", "yes", "no", "no"]  # no threshold: argmax


# ---- regressors: identity scale, extrapolation ---------------------------------------------------------------

def _plain_model():
    from shared.model import load_model  # noqa: PLC0415
    from tests.support.kinds import plain_bundle  # noqa: PLC0415 - trains a model on first use

    return load_model("plain", plain_bundle(), "store", 64)


def _plain_rows(n: int, seed: int) -> list[dict]:
    from tests.support.kinds import rows  # noqa: PLC0415

    return rows(n, seed)


def test_identity_scale_values_are_offset_plus_margin_and_intervals_value_minus_plus_q():
    model = _plain_model()
    (member,) = model.predictor.members
    assert member.scale == "identity" and member.baseline.columns == () and member.name == "all"
    booster = BoosterPredictor(_plain_booster_bytes())
    q_of = dict(zip(("blue", "green", "red"), member.interval.q))
    assert q_of["red"] == member.interval.widest > q_of["blue"]  # the noisiest colour has the widest
    requests = _plain_rows(1000, seed=31)
    for n in (1, SMALL_BATCH, 64, 1000):
        batch = build_batch(model.contract, requests[:n])
        est = model.predictor.predict(batch)
        assert isinstance(est.values, list) == (n <= SMALL_BATCH)
        expected = member.baseline.pooled_intercept + booster.outputs(batch.matrix)[:, 0]
        np.testing.assert_allclose(est.values, expected, rtol=0, atol=1e-4)
        # a few random rows fall just beyond the training rows' extremes: those have the widest interval
        beyond = [any(not f.train_min <= r.get(f.name, f.train_min) <= f.train_max for f in model.contract.numeric)
                  for r in requests[:n]]
        q = np.array([member.interval.widest if b else q_of[r["colour"]] for r, b in zip(requests[:n], beyond)])
        np.testing.assert_allclose(np.asarray(est.lower), np.asarray(est.values) - q, rtol=0, atol=1e-9)
        np.testing.assert_allclose(np.asarray(est.upper), np.asarray(est.values) + q, rtol=0, atol=1e-9)
        assert est.flags() == beyond and est.regimes == ["all"] * n
    assert 0 < sum(beyond) < 20 and (np.asarray(est.values) < 0).any()  # a target of any sign


def _plain_booster_bytes() -> bytes:
    from tests.support.kinds import plain_bundle  # noqa: PLC0415

    return plain_bundle().files[MODEL_FILE]


def _beyond(requests: list[dict]) -> list[dict]:
    """The rows with one numeric input moved outside its training range (alternately x1 above, x2 below)."""
    out = []
    for i, row in enumerate(requests):
        out.append({**row, "x1": 10.5} if i % 2 else {**row, "x2": -7.5})
    return out


def test_a_row_beyond_the_training_ranges_is_flagged_and_gets_the_widest_interval():
    model = _plain_model()
    (member,) = model.predictor.members
    widest = member.interval.widest
    f1, f2 = model.contract.numeric
    inside = [r for r in _plain_rows(60, seed=32) if f1.train_min <= r["x1"] <= f1.train_max
              and f2.train_min <= r.get("x2", 0.0) <= f2.train_max][:40]
    beyond = _beyond(inside)
    edges = [{"x1": f1.train_min, "x2": f2.train_max, "colour": "blue"},  # on the bounds: within
             {"x1": f1.train_max, "colour": "green"}]  # x2 missing: within
    for requests in (inside[:1] + beyond[:1] + edges, inside + beyond + edges):  # plain Python, NumPy
        est = model.predictor.predict(build_batch(model.contract, requests))
        n = len(requests) // 2 - 1 if len(requests) > 4 else 1
        flags = est.flags()
        assert flags == [False] * n + [True] * n + [False, False]
        half = (np.asarray(est.upper) - np.asarray(est.lower)) / 2
        np.testing.assert_allclose(half[n:2 * n], widest, rtol=0, atol=1e-9)
        assert half[n:2 * n].min() >= half[:n].max() - 1e-9  # never narrower than any row within the ranges
        alone = model.predictor.predict(build_batch(model.contract, requests[n:2 * n]))
        np.testing.assert_allclose(alone.values, np.asarray(est.values)[n:2 * n], rtol=0, atol=1e-4)


def test_log_scale_rows_beyond_the_ranges_get_the_widest_log_half_width(co2_bundle):
    from shared.model import load_model  # noqa: PLC0415

    model = load_model("co2", co2_bundle, "store", 64)
    rated = _example("co2")
    heavy = {**rated, "fuel_consumption_comb_l_per_100km": 40.0}  # beyond the training range
    for requests in ([rated, heavy], [rated, heavy] * 20):
        est = model.predictor.predict(build_batch(model.contract, requests))
        assert est.flags()[:2] == [False, True] and est.regimes[:2] == ["rated", "rated"]
        member = model.predictor.members[0]
        log_half = (np.log(np.asarray(est.upper)) - np.log(np.asarray(est.lower))) / 2
        assert log_half[1] == pytest.approx(member.interval.widest, abs=1e-9)
        assert log_half[0] == pytest.approx(member.interval.one(build_batch(model.contract, [rated]).rows[0]),
                                            abs=1e-9)
        assert np.asarray(est.values)[1] > np.asarray(est.values)[0]


def _example(name: str) -> dict:
    from shared.spec import load_spec  # noqa: PLC0415

    return dict(load_spec(name).examples()[0]["request"])


def test_estimates_flags_alike_from_lists_and_arrays():
    lists = Estimates([1.0, 2.0], [0.5, 1.5], [1.5, 2.5], ["a", "a"], [False, True])
    arrays = Estimates(np.array([1.0, 2.0]), np.array([0.5, 1.5]), np.array([1.5, 2.5]), ["a", "a"],
                       np.array([False, True]))
    assert lists.flags() == arrays.flags() == [False, True] and type(arrays.flags()[1]) is bool
    assert Estimates([1.0], [0.5], [1.5], ["a"]).flags() == [False]  # made without flags (as the job's subsets)


def test_a_binary_bundle_loads_with_its_threshold_or_is_refused():
    from shared.bundle import CorruptBundle, make_bundle  # noqa: PLC0415
    from shared.model import DEFAULT_THRESHOLD, load_model  # noqa: PLC0415
    from tests.support.kinds import THRESHOLD, binary_bundle, rows  # noqa: PLC0415

    bundle = binary_bundle()
    sections = {k: v for k, v in bundle.manifest.items() if k not in {"format", "version", "created_at", "files"}}

    def variant(files=None, **changes):
        return make_bundle(bundle.version, files or bundle.files, **{**sections, **changes})

    assert load_model("b", bundle, "store", 64).threshold == THRESHOLD
    assert load_model("b", variant(threshold=None), "store", 64).threshold == DEFAULT_THRESHOLD
    unthresholded = {k: v for k, v in sections.items() if k != "threshold"}
    assert load_model("b", make_bundle(bundle.version, bundle.files, **unthresholded), "store", 64).threshold == 0.5
    # without its compiled trees, XGBoost answers alone: the same [1 - p, p] and the same thresholded labels
    slow = load_model("b", variant(files={MODEL_FILE: bundle.files[MODEL_FILE]}), "store", 64)
    fast = load_model("b", bundle, "store", 64)
    assert slow.predictor.fast is None and fast.predictor.fast is not None
    requests = rows(200, seed=9)
    for n in (1, 10, 200):  # Python, Python, XGBoost for the fast one; XGBoost always for the slow one
        batch = build_batch(bundle.contract, requests[:n])
        a, b = slow.predictor.predict(batch), fast.predictor.predict(batch)
        assert a.array is not None and a.threshold == b.threshold == THRESHOLD
        assert a.labels(("no", "yes")) == b.labels(("no", "yes"))
        np.testing.assert_allclose(a.array, np.asarray(b.rows) if b.rows is not None else b.array, atol=1e-6)
    for bad in ({"value": 1.5}, {"value": "0.4"}, {"value": float("nan")}, {"rule": "best_f1"}, [0.4]):
        with pytest.raises(CorruptBundle, match="threshold"):
            load_model("b", variant(threshold=bad), "store", 64)
    three = variant(contract={**sections["contract"], "target": {**sections["contract"]["target"],
                                                                 "labels": ["no", "maybe", "yes"]}})
    with pytest.raises(CorruptBundle, match="two labels"):
        load_model("b", three, "store", 64)
    with pytest.raises(CorruptBundle, match="task"):
        load_model("b", variant(task="multiclass"), "store", 64)
