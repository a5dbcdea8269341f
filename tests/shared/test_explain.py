"""Explanations add up: margin attributions to XGBoost's margin, output attributions to the served answer."""
from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb
from numpy.polynomial.legendre import leggauss

from shared.bundle import MODEL_FILE
from shared.explain import Explanation, _significant, _softmax_path_attributions, explain
from shared.model import load_model
from shared.validation import build_batch

FAST_MAX_ROWS = 64


@pytest.fixture(scope="module")
def classifier(trained_bundle):
    return load_model("penguins", trained_bundle, "store", FAST_MAX_ROWS)


@pytest.fixture(scope="module")
def regressor(co2_bundle):
    return load_model("co2", co2_bundle, "store", FAST_MAX_ROWS)


def _random_rows(contract, n: int, seed: int) -> list[dict]:
    """Valid requests drawn from the training ranges and levels, optional values left out or null at times."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        row: dict = {}
        for f in contract.numeric:
            if not f.required and rng.random() < 0.4:
                if rng.random() < 0.5:
                    row[f.name] = None
                continue
            row[f.name] = float(rng.uniform(f.train_min, f.train_max))
        for c in contract.categorical:
            u = rng.random()
            if not c.required and u < 0.2:
                row[c.name] = None
            elif c.unseen == "missing" and u > 0.9:
                row[c.name] = "a level never seen"
            else:
                row[c.name] = str(rng.choice(c.levels))
        rows.append(row)
    return rows


def _booster(data: bytes) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(bytearray(data))
    return booster


def _margin(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    return booster.predict(xgb.DMatrix(x, missing=np.nan), output_margin=True).reshape(x.shape[0], -1)


def _softmax(m: np.ndarray) -> np.ndarray:
    z = np.exp(m - m.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _members_of(model, x: np.ndarray) -> list:
    return [model.predictor.member_of(row) for row in x.tolist()]


def test_classifier_margin_attributions_add_up_to_xgboost_margin(classifier, trained_bundle):
    contract = classifier.contract
    batch = build_batch(contract, _random_rows(contract, 300, seed=1))
    e = explain(classifier, batch)
    k, f = len(contract.labels), len(contract.field_names)
    assert e.margin_attributions.shape == (300, k, f) and e.base_margin.shape == (300, k)
    assert e.features == tuple(contract.field_names) and e.outputs == contract.labels and e.regimes == ()
    expected = _margin(_booster(trained_bundle.files[MODEL_FILE]), batch.matrix)
    np.testing.assert_allclose(e.base_margin + e.margin_attributions.sum(axis=2), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(e.margin, expected, rtol=0, atol=1e-5)


def test_regressor_margin_attributions_add_up_to_the_log_of_the_answer(regressor, co2_bundle):
    contract = regressor.contract
    batch = build_batch(contract, _random_rows(contract, 400, seed=2))
    x = batch.matrix
    e = explain(regressor, batch)
    assert e.margin_attributions.shape == (400, 1, len(contract.field_names)) and e.outputs == (contract.target.name,)
    boosters = {spec["name"]: _booster(co2_bundle.files[spec["model_file"]]) for spec in co2_bundle.manifest["members"]}
    members = _members_of(regressor, x)
    assert e.regimes == tuple(m.name for m in members)
    assert set(e.regimes) == {m.name for m in regressor.predictor.members}  # every member explained
    for member in regressor.predictor.members:
        rows = [i for i, m in enumerate(members) if m is member]
        expected = member.baseline.log_batch(x[rows]) + _margin(boosters[member.name], x[rows])[:, 0]
        got = e.base_margin[rows, 0] + e.margin_attributions[rows, 0].sum(axis=1)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
        assert np.ptp(e.base_margin[rows]) < 1e-9  # one base value per member
    bases = {name: e.base_margin[e.regimes.index(name), 0] for name in set(e.regimes)}
    assert len(set(bases.values())) == len(bases)


def test_one_hot_columns_are_summed_into_their_feature(classifier):
    contract = classifier.contract
    batch = build_batch(contract, _random_rows(contract, 50, seed=3))
    contribs = classifier.predictor.contributions(batch.matrix)
    e = explain(classifier, batch)
    n_numeric = len(contract.numeric)
    np.testing.assert_array_equal(e.margin_attributions[..., :n_numeric], contribs[..., :n_numeric])
    start = n_numeric
    for j, feature in enumerate(contract.categorical):
        names = [f"{feature.name}={level}" for level in feature.levels]
        assert contract.columns[start:start + len(names)] == names
        np.testing.assert_allclose(e.margin_attributions[..., n_numeric + j],
                                   contribs[..., start:start + len(names)].sum(axis=2), rtol=0, atol=1e-12)
        start += len(names)
    np.testing.assert_array_equal(e.base_margin, contribs[..., -1])


def test_regressor_baseline_goes_to_its_inputs_and_group_feature(regressor):
    contract = regressor.contract
    rows = _random_rows(contract, 200, seed=4)
    batch = build_batch(contract, rows)
    x = batch.matrix
    e = explain(regressor, batch)
    features = list(contract.field_names)
    for i, member in enumerate(_members_of(regressor, x)):
        trees = member.predictor.contributions(x[i:i + 1])[0, 0]
        baseline = member.baseline
        expected = np.zeros(len(features))
        constant = baseline.pooled_intercept
        for column, beta in zip(baseline.columns, baseline.betas):
            f = contract.numeric[column]
            reference = (np.log(f.train_min) + np.log(f.train_max)) / 2
            expected[features.index(f.name)] += beta * (np.log(float(x[i, column])) - reference)
            constant += beta * reference
        group = contract.columns[baseline.group_columns[0]].split("=")[0]
        level = [j for j, c in enumerate(baseline.group_columns) if x[i, c] == 1.0]
        seen = rows[i][group] in contract.categorical[features.index(group) - len(contract.numeric)].levels
        assert bool(level) == seen
        if level:
            expected[features.index(group)] += baseline.intercepts[level[0]] - baseline.pooled_intercept
        trees_by_feature = e.margin_attributions[i, 0] - expected
        np.testing.assert_allclose(trees_by_feature.sum(), trees[:-1].sum(), rtol=0, atol=1e-9)
        for name in [f.name for f in contract.numeric]:
            np.testing.assert_allclose(trees_by_feature[features.index(name)], trees[contract.columns.index(name)],
                                       rtol=0, atol=1e-12)
        np.testing.assert_allclose(e.base_margin[i, 0], trees[-1] + constant, rtol=0, atol=1e-9)


@pytest.mark.parametrize("n", [1, 10, 200])
def test_probability_attributions_sum_to_served_minus_baseline(classifier, n):
    contract = classifier.contract
    batch = build_batch(contract, _random_rows(contract, n, seed=10 + n))
    served = classifier.predictor.predict(batch)
    served = np.array(served.rows) if served.rows is not None else served.array
    e = explain(classifier, batch)
    np.testing.assert_allclose(e.baseline_output, _softmax(e.base_margin), rtol=0, atol=1e-12)
    np.testing.assert_allclose(e.output, served, rtol=0, atol=1e-6)
    np.testing.assert_allclose(e.output_attributions.sum(axis=2), served - e.baseline_output, rtol=0, atol=1e-6)
    np.testing.assert_allclose(e.baseline_output + e.output_attributions.sum(axis=2), e.output, rtol=0, atol=1e-12)
    assert e.output_space == "probability" and e.approximation_error.max() < 1e-9


@pytest.mark.parametrize("n", [1, 10, 300])
def test_value_attributions_sum_to_served_minus_baseline(regressor, n):
    contract = regressor.contract
    batch = build_batch(contract, _random_rows(contract, n, seed=20 + n))
    served = regressor.predictor.predict(batch)
    values = np.array(served.values)
    e = explain(regressor, batch)
    assert e.regimes == tuple(served.regimes) and e.output_space == "value"
    np.testing.assert_allclose(e.baseline_output[:, 0], np.exp(e.base_margin[:, 0]), rtol=1e-12)
    np.testing.assert_allclose(e.output[:, 0], values, rtol=1e-6)
    gap = e.output_attributions[:, 0].sum(axis=1) - (values - e.baseline_output[:, 0])
    assert np.all(np.abs(gap) <= 1e-6 * values)
    np.testing.assert_array_equal(e.approximation_error, 0.0)


def _reference_attributions(base: np.ndarray, phi: np.ndarray, nodes: int = 64) -> np.ndarray:
    """Integrated gradients of one row written out: the softmax Jacobian at each node, classes by features."""
    points, weights = leggauss(nodes)
    out = np.zeros_like(phi)
    for point, weight in zip(points, weights):
        p = _softmax(base + (point + 1) / 2 * phi.sum(axis=1))
        out += weight / 2 * (np.diag(p) - np.outer(p, p)) @ phi
    return out


@pytest.mark.parametrize("n", [1, 200])
def test_probability_attributions_are_vectorised_correctly(classifier, n):
    contract = classifier.contract
    batch = build_batch(contract, _random_rows(contract, n, seed=30 + n))
    e = explain(classifier, batch)
    assert e.output_attributions.shape == (n, len(contract.labels), len(contract.field_names))
    for i in range(n):
        expected = _reference_attributions(e.base_margin[i], e.margin_attributions[i])
        np.testing.assert_allclose(e.output_attributions[i], expected, rtol=0, atol=1e-9)
    alone = explain(classifier, build_batch(contract, [_random_rows(contract, n, seed=30 + n)[-1]]))
    np.testing.assert_allclose(alone.output_attributions[0], e.output_attributions[-1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [3.0, 40.0])
def test_a_probability_back_where_it_started_keeps_exact_sums(scale):
    # the first class's probability dips along the path and comes back: its attributions cancel out, and the
    # steep path leaves the quadrature a gap that rescaling their near-zero sum would blow up
    base = np.zeros((1, 3))
    phi = np.array([[[np.log(np.cosh(scale)), 0.0], [0.0, scale], [-scale, 0.0]]])
    exact = _softmax(base + phi.sum(axis=2)) - _softmax(base)
    assert abs(exact[0, 0]) < 1e-15
    attributions, error = _softmax_path_attributions(base, phi, exact)
    assert np.isfinite(attributions).all() and error.max() < 1e-6
    np.testing.assert_allclose(attributions.sum(axis=2), exact, rtol=0, atol=1e-13)
    np.testing.assert_allclose(attributions[0], _reference_attributions(base[0], phi[0], nodes=400), rtol=0,
                               atol=1e-7)


def _check_rounded(value, digits: int = 6) -> None:
    assert type(value) is float and float(f"{value:.{digits}g}") == value and len(repr(value)) <= digits + 8


def test_vertex_format_of_a_classifier(classifier):
    contract = classifier.contract
    e = explain(classifier, build_batch(contract, _random_rows(contract, 3, seed=5)))
    out = e.to_vertex()
    assert len(out) == 3 and json.loads(json.dumps(out)) == out
    for row, explanation in enumerate(out):
        attributions = explanation["attributions"]
        assert [a["outputIndex"] for a in attributions] == [[c] for c in range(len(contract.labels))]
        assert [a["outputDisplayName"] for a in attributions] == list(contract.labels)
        for c, a in enumerate(attributions):
            assert list(a["featureAttributions"]) == contract.field_names
            assert list(a["margin"]["featureAttributions"]) == contract.field_names
            assert a["outputName"] == contract.target.name
            for value in (a["baselineOutputValue"], a["instanceOutputValue"], *a["featureAttributions"].values(),
                          a["margin"]["baseValue"], a["margin"]["outputValue"],
                          *a["margin"]["featureAttributions"].values()):
                _check_rounded(value)
            assert a["instanceOutputValue"] == pytest.approx(e.output[row, c], rel=1e-5)
            total = a["baselineOutputValue"] + sum(a["featureAttributions"].values())
            assert total == pytest.approx(a["instanceOutputValue"], abs=1e-5)
            margin = a["margin"]["baseValue"] + sum(a["margin"]["featureAttributions"].values())
            assert margin == pytest.approx(a["margin"]["outputValue"], abs=1e-4)


def test_vertex_format_of_a_regressor(regressor):
    contract = regressor.contract
    e = explain(regressor, build_batch(contract, _random_rows(contract, 2, seed=6)))
    for row, explanation in enumerate(e.to_vertex()):
        (a,) = explanation["attributions"]
        assert "outputIndex" not in a  # a scalar output: Vertex leaves it out
        assert a["outputDisplayName"] == a["outputName"] == contract.target.name and a["approximationError"] == 0.0
        assert list(a["featureAttributions"]) == contract.field_names
        _check_rounded(a["instanceOutputValue"])
        assert a["instanceOutputValue"] == pytest.approx(e.output[row, 0], rel=1e-5)
        assert a["margin"]["outputValue"] == pytest.approx(np.log(e.output[row, 0]), rel=1e-5)


def test_rounding_to_significant_digits():
    values = np.array([0.0, 123456789.0, -0.99864712, 1.23456789e-7, 2.5e-300, np.inf, 0.1 + 0.2])
    assert _significant(values, 6).tolist() == [0.0, 123457000.0, -0.998647, 1.23457e-07, 2.5e-300, np.inf, 0.3]


def test_an_explanation_cannot_be_changed(classifier):
    contract = classifier.contract
    e = explain(classifier, build_batch(contract, _random_rows(contract, 2, seed=7)))
    assert isinstance(e, Explanation) and len(e) == 2
    with pytest.raises(ValueError, match="read-only"):
        e.output_attributions[0, 0, 0] = 1.0


def test_an_empty_batch_has_an_empty_explanation(classifier, regressor):
    for model in (classifier, regressor):
        e = explain(model, build_batch(model.contract, []))
        assert len(e) == 0 and e.to_vertex() == []
        assert e.output_attributions.shape == (0, len(e.outputs), len(model.contract.field_names))


# ---- a binary classifier and an identity-scale regressor ------------------------------------------------------

@pytest.fixture(scope="module")
def binary():
    from tests.support.kinds import binary_bundle  # noqa: PLC0415 - trains a model on first use

    return load_model("binary", binary_bundle(), "store", FAST_MAX_ROWS)


@pytest.fixture(scope="module")
def plain():
    from tests.support.kinds import plain_bundle  # noqa: PLC0415 - trains a model on first use

    return load_model("plain", plain_bundle(), "store", FAST_MAX_ROWS)


def _sigmoid(m: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-m))


@pytest.mark.parametrize("n", [1, 10, 300])
def test_a_binary_classifier_is_explained_as_its_positive_class(binary, n):
    """One margin (the positive class's logit): TreeSHAP adds up to XGBoost's margin, and the probability-space
    attributions, exact in closed form, add up to the served P(positive) minus the baseline's."""
    from tests.support.kinds import binary_bundle  # noqa: PLC0415

    contract = binary.contract
    batch = build_batch(contract, _random_rows(contract, n, seed=40 + n))
    e = explain(binary, batch)
    f = len(contract.field_names)
    assert e.margin_attributions.shape == (n, 1, f) and e.output_attributions.shape == (n, 1, f)
    assert e.outputs == ("yes",) and e.output_index == (1,) and e.output_space == "probability"
    margin = _margin(_booster(binary_bundle().files[MODEL_FILE]), batch.matrix)
    np.testing.assert_allclose(e.base_margin + e.margin_attributions.sum(axis=2), margin, rtol=0, atol=1e-5)
    served = binary.predictor.predict(batch)
    p = np.asarray(served.positive())
    np.testing.assert_allclose(e.output[:, 0], p, rtol=0, atol=1e-6)
    np.testing.assert_allclose(e.baseline_output, _sigmoid(e.base_margin), rtol=0, atol=1e-12)
    np.testing.assert_allclose(e.output_attributions.sum(axis=2)[:, 0], p - e.baseline_output[:, 0], rtol=0,
                               atol=1e-6)
    np.testing.assert_allclose(e.baseline_output + e.output_attributions.sum(axis=2), e.output, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(e.approximation_error, 0.0)
    # a feature's share of the probability has the sign of its share of the margin (the sigmoid only rises)
    assert np.all(np.sign(e.output_attributions) * np.sign(e.margin_attributions) >= 0)


def test_vertex_format_of_a_binary_classifier(binary):
    contract = binary.contract
    e = explain(binary, build_batch(contract, _random_rows(contract, 3, seed=8)))
    for row, explanation in enumerate(e.to_vertex()):
        (a,) = explanation["attributions"]
        assert a["outputIndex"] == [1] and a["outputDisplayName"] == "yes" and a["outputName"] == "approved"
        assert list(a["featureAttributions"]) == contract.field_names == ["x1", "x2", "colour"]
        assert a["instanceOutputValue"] == pytest.approx(e.output[row, 0], rel=1e-5)
        total = a["baselineOutputValue"] + sum(a["featureAttributions"].values())
        assert total == pytest.approx(a["instanceOutputValue"], abs=1e-5)
        logit = np.log(e.output[row, 0] / (1 - e.output[row, 0]))
        assert a["margin"]["outputValue"] == pytest.approx(logit, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("n", [1, 300])
def test_an_identity_scale_regressor_is_explained_in_its_own_unit(plain, n):
    """The margin is the answer itself: offset (the mean target, in the base value) + trees; output attributions
    are the margin's, summing to the served value minus the base."""
    from tests.support.kinds import plain_bundle  # noqa: PLC0415

    contract = plain.contract
    batch = build_batch(contract, _random_rows(contract, n, seed=50 + n))
    served = plain.predictor.predict(batch)
    e = explain(plain, batch)
    assert e.output_space == "value" and e.outputs == ("delta",) and e.regimes == ("all",) * n
    # served by the compiled trees (n = 1) or XGBoost (float32 sums): equal to float32 rounding
    np.testing.assert_allclose(e.output[:, 0], served.values, rtol=1e-6, atol=2e-5)
    np.testing.assert_array_equal(e.output, e.margin)
    np.testing.assert_array_equal(e.output_attributions, e.margin_attributions)
    np.testing.assert_array_equal(e.baseline_output, e.base_margin)
    np.testing.assert_allclose(e.output_attributions.sum(axis=2)[:, 0], np.asarray(served.values) -
                               e.baseline_output[:, 0], rtol=1e-6, atol=2e-5)
    np.testing.assert_allclose(e.baseline_output + e.output_attributions.sum(axis=2), e.output, rtol=0, atol=1e-12)
    (member,) = plain.predictor.members
    trees = _booster(plain_bundle().files[MODEL_FILE])
    contribs = trees.predict(xgb.DMatrix(batch.matrix, missing=np.nan), pred_contribs=True)
    np.testing.assert_allclose(e.base_margin[:, 0], contribs[:, -1] + member.baseline.pooled_intercept, rtol=0,
                               atol=1e-5)
    np.testing.assert_array_equal(e.approximation_error, 0.0)
    assert np.ptp(e.base_margin) < 1e-9  # one base value for the one member


def test_an_empty_batch_of_the_new_kinds_has_an_empty_explanation(binary, plain):
    for model, outputs in ((binary, ("yes",)), (plain, ("delta",))):
        e = explain(model, build_batch(model.contract, []))
        assert len(e) == 0 and e.to_vertex() == [] and e.outputs == outputs
        assert e.output_attributions.shape == (0, 1, len(model.contract.field_names))
