"""The function through Functions Framework's own test client: answers, errors and limits."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from function.serving.dataplane import Inference
from function.serving.loader import Choice
from function.serving.v1 import format_predictions
from shared.contract import FeatureContract, NumericFeature, Target
from shared.model import ServingModel
from shared.predictor import Probabilities
from tests.support.bundles import STABLE
from tests.support.examples import SEED_EXAMPLES
from tests.support.http import NOT_A_ROUTE

SEED = SEED_EXAMPLES[0][0]


def _error(resp, code: int) -> dict:
    assert resp.status_code == code, resp.data[:300]
    assert resp.content_type == "application/json"
    body = resp.get_json()["error"]
    assert body["code"] == code and body["status"] and body["message"]
    assert "Traceback" not in resp.get_data(as_text=True) and "/work" not in resp.get_data(as_text=True)
    return body


@pytest.mark.parametrize(("row", "species"), SEED_EXAMPLES)
def test_seed_examples(client, row, species):
    resp = client.post("/predict", json=row)
    body = resp.get_json()
    assert resp.status_code == 200 and body["species"] == species
    assert set(body["probabilities"]) == {"Adelie", "Chinstrap", "Gentoo"}
    assert body["probabilities"][species] > 0.9 and abs(sum(body["probabilities"].values()) - 1) < 1e-4
    assert body["model_version"] == STABLE and body["fallback"] is False and body["warnings"] == []


def test_batch_keeps_input_order(client):
    rows = [r for r, _ in SEED_EXAMPLES] * 40
    resp = client.post("/predict", json={"instances": rows})
    body = resp.get_json()
    assert resp.status_code == 200 and body["model_version"] == STABLE and body["fallback"] is False
    assert [p["species"] for p in body["predictions"]] == [s for _, s in SEED_EXAMPLES] * 40


def test_large_batch_goes_through_xgboost_and_agrees(client):
    rows = [r for r, _ in SEED_EXAMPLES] * 3334
    resp = client.post("/predict", json={"instances": rows[:10_000]})
    assert resp.status_code == 200
    assert [p["species"] for p in resp.get_json()["predictions"][:3]] == [s for _, s in SEED_EXAMPLES]


@pytest.mark.parametrize("size", [1, 16, 64, 1000])  # generated Python, Python, the NumPy walk, XGBoost
def test_every_batch_size_answers_alike(client, size):
    rows = [r for r, _ in SEED_EXAMPLES] * (size // 3 + 1)
    body = client.post("/predict", json={"instances": rows[:size]}).get_json()
    single = [client.post("/predict", json=r).get_json() for r, _ in SEED_EXAMPLES]
    for i, answer in enumerate(body["predictions"]):
        alone = single[i % 3]
        assert answer["species"] == alone["species"] and answer.keys() == alone.keys()
        assert answer["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-5)
        assert all(round(v, 6) == v for v in answer["probabilities"].values())


@pytest.mark.parametrize("labels", [("no", "yes"), ("a", "b", "c", "d", "e"), ("only",)])
def test_answers_for_any_number_of_labels(labels):
    rng = np.random.default_rng(len(labels))
    proba = rng.random((20, len(labels)))
    proba /= proba.sum(axis=1, keepdims=True)
    warnings = [()] * 19 + [["a warning"]]
    contract = FeatureContract((NumericFeature("x", 0.0, 1.0, 0.0, 1.0),), (), Target("species", "multiclass", labels))
    model = ServingModel("m", "v1", {}, contract, None, "store")
    for result in (Probabilities(proba.tolist()), Probabilities(array=proba)):
        answers = format_predictions(Inference(model, Choice(model, True, "fallback"), result, warnings, None, "r"))
        assert [a["id"] for a in answers] == [f"r-{i}" for i in range(20)]
        assert [a["species"] for a in answers] == [labels[i] for i in proba.argmax(axis=1)]
        assert [list(a["probabilities"]) for a in answers] == [list(labels)] * 20
        np.testing.assert_allclose([list(a["probabilities"].values()) for a in answers], proba, atol=1e-6)
        assert answers[-1]["warnings"] == ["a warning"] and answers[0]["model_version"] == "v1"
        assert all(a["fallback"] is True for a in answers)


def test_out_of_training_range_predicts_with_warning(client):
    resp = client.post("/predict", json={**SEED, "body_mass_g": 9000})
    assert resp.status_code == 200 and "body_mass_g" in resp.get_json()["warnings"][0]


def test_validation_names_every_field(client):
    body = _error(client.post("/predict", json={**SEED, "bill_length_mm": -1, "island": "Mars", "extra": 1}), 400)
    fields = {v["field"] for v in body["details"][0]["fieldViolations"]}
    assert fields == {"bill_length_mm", "island", "extra"}


def test_batch_errors_are_indexed(client):
    rows = [SEED, {**SEED, "body_mass_g": "heavy"}, SEED, {**SEED, "sex": "unknown"}]
    body = _error(client.post("/predict", json={"instances": rows}), 400)
    fields = [v["field"] for v in body["details"][0]["fieldViolations"]]
    assert fields == ["instances[1].body_mass_g", "instances[3].sex"]


@pytest.mark.parametrize("raw", [
    b"{not json", b"NaN", b'{"bill_length_mm": Infinity}', b"\xff\xfe\x00garbage", b"[" * 100_000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000, b'"just a string"', b"[1, 2, 3]", b"null", b"",
    b'{"instances": "many"}', b'{"instances": []}', b'{"instances": [1, 2]}', b'{"instances": [], "x": 1}',
    b'{"bill_length_mm": 1' + b"0" * 5000 + b"}",
])
def test_hostile_bodies_get_400(client, raw):
    _error(client.post("/predict", data=raw, content_type="application/json"), 400)


def test_body_too_large_is_413(client):
    _error(client.post("/predict", data=b" " * (20 * 1024 * 1024), content_type="application/json"), 413)


def test_batch_too_large_is_413(client):
    _error(client.post("/predict", json={"instances": [SEED] * 10_001}), 413)


def test_not_json_is_415(client):
    _error(client.post("/predict", data=json.dumps(SEED), content_type="text/plain"), 415)


def test_unknown_path_is_404_and_wrong_method_405(client):
    _error(client.get(NOT_A_ROUTE), 404)
    resp = client.get("/predict")
    _error(resp, 405)
    assert resp.headers["Allow"] == "POST"
    _error(client.delete("/health"), 405)


@pytest.mark.parametrize(("path", "body"), [
    ("/predict", {**SEED, "bill_length_mm": -1}),
    ("/v2/models/penguins/infer", {"inputs": [{"name": "input-0", "shape": [1, 9], "datatype": "FP32",
                                               "data": [-1.0] * 9}]}),
])
def test_a_bad_request_that_loaded_the_model_says_so(client, path, body):
    """Load tests report requests that waited for a model load apart: a 400 that did is marked cold too."""
    first = client.post(path, json=body)
    assert first.status_code == 400 and first.headers["X-Model-Load"] == "cold"
    again = client.post(path, json=body)
    assert again.status_code == 400 and "X-Model-Load" not in again.headers


def test_health_model_and_openapi(client):
    first = client.get("/health")  # the first request of a process loads the model, and says so
    health = first.get_json()
    assert health["status"] == "ok" and health["ready"] and health["model_version"] == STABLE
    assert first.headers["X-Model-Load"] == "cold" and "X-Model-Load" not in client.get("/health").headers
    model = client.get("/model").get_json()
    assert model["model_version"] == STABLE and model["manifest"]["contract"]["target"]["labels"] == [
        "Adelie", "Chinstrap", "Gentoo"]
    assert "libraries" not in model["manifest"]
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and "/predict" in doc["paths"]
    instance = doc["components"]["schemas"]["PenguinsInstance"]
    assert set(instance["required"]) == {"bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g",
                                         "island"}
    length = instance["properties"]["bill_length_mm"]
    assert length["minimum"] == 5 and length["exclusiveMinimum"] is True and length["maximum"] == 200


def test_no_model_anywhere_is_503_with_retry_after(make_client, tmp_path):
    client = make_client(MODEL_STORE=tmp_path / "empty", SHIPPED_MODEL_DIR=tmp_path / "no-shipped-model")
    resp = client.post("/predict", json=SEED)
    _error(resp, 503)
    assert int(resp.headers["Retry-After"]) > 0
    assert client.get("/health").status_code == 503


def test_a_request_leaves_no_reference_cycle_for_the_collector(published, settings):
    """Garbage in cycles reaches the collector's full passes over the whole heap (numpy, XGBoost, the models):
    a ~10-20 ms stall at p99. Answering a request must leave none."""
    import gc

    from werkzeug.test import EnvironBuilder

    from function.serving.factory import build_app

    app = build_app(replace(settings, models=("penguins",), default_model="penguins"))
    body = json.dumps(SEED).encode()

    def ask() -> None:
        environ = EnvironBuilder(path="/predict", method="POST", data=body,
                                 headers={"Content-Type": "application/json"}).get_environ()
        b"".join(app.wsgi(environ, lambda status, headers: None))

    ask()  # the model loads
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            ask()
        assert gc.collect() == 0
    finally:
        gc.enable()
