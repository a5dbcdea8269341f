"""A binary classifier and a plain (identity-scale) regressor served over real HTTP, through every door.

The function runs under gunicorn against a local store holding the synthetic bundles of `tests/support/kinds.py`,
published under the served model names (MODELS accepts only names with a spec): the binary classifier as
"penguins", the identity-scale regressor as "co2". It proves the threshold decides the label (V1, Vertex's
shape, the Open Inference Protocol through Triton's client, and the prediction log), that the answers carry the
new fields, that identity intervals are value -/+ q, that a row beyond the training ranges is flagged with
the widest interval, and that explanations add up.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import tritonclient.http as httpclient

from shared.model import load_model
from shared.store import LocalStore
from shared.validation import build_batch
from testbed.servers import FunctionServer
from tests.support.bundles import publish
from tests.support.http import get, post
from tests.support.kinds import BINARY_VERSION, LABELS, PLAIN_VERSION, THRESHOLD, binary_bundle, plain_bundle, rows
from tests.support.logged import field_of, rows_of
from tests.support.oip import triton_client, validate

BINARY, PLAIN = "penguins", "co2"  # the served names the synthetic bundles are published under


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> LocalStore:
    store = LocalStore(tmp_path_factory.mktemp("kinds") / "bucket")
    publish(store, binary_bundle(), BINARY_VERSION, model=BINARY)
    publish(store, plain_bundle(), PLAIN_VERSION, model=PLAIN)
    return store


@pytest.fixture(scope="module")
def server(store):
    function = FunctionServer({"MODEL_STORE": str(store.root), "POINTER_TTL_S": "60", "MODELS": f"{BINARY},{PLAIN}",
                               "DEFAULT_MODEL": BINARY, "LOG_TO_STORE": "1"}).start()
    yield function
    function.stop()


@pytest.fixture(scope="module")
def client(server):
    with triton_client(server.url) as triton:
        yield triton


@pytest.fixture(scope="module")
def binary_cases() -> tuple[list[dict], np.ndarray]:
    """Rows of each kind, in order: P(yes) below the threshold, in [threshold, 0.5) (argmax would say "no"),
    and at least 0.5; with XGBoost's P(yes) of each."""
    model = load_model(BINARY, binary_bundle(), "store", 0)  # XGBoost answers every batch
    candidates = rows(600, seed=61)
    p = model.predictor.predict(build_batch(model.contract, candidates)).array[:, 1]
    picks = [np.flatnonzero(p < THRESHOLD)[:3], np.flatnonzero((p >= THRESHOLD) & (p < 0.5))[:3],
             np.flatnonzero(p >= 0.5)[:3]]
    chosen = np.concatenate(picks)
    assert len(chosen) == 9
    return [candidates[i] for i in chosen], p[chosen]


def _expected_labels(p: np.ndarray) -> list[str]:
    return [LABELS[1] if v >= THRESHOLD else LABELS[0] for v in p]


def _logged(store: LocalStore, request_id: str, timeout: float = 10.0) -> dict:
    """The prediction log line of a request, once the server's background writer has put it in the local sink."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted((store.root / "logs").rglob("*.json")) if (store.root / "logs").exists() else ():
            for line in path.read_text().splitlines():
                payload = json.loads(line)["jsonPayload"]
                if payload.get("request_id") == request_id and payload.get("event") == "prediction":
                    return payload
        time.sleep(0.05)
    raise AssertionError(f"no log line for {request_id}")


# ---------------------------------------------------------------------------------------------- binary

def test_v1_labels_follow_the_threshold_and_answers_say_it(server, store, binary_cases):
    instances, p = binary_cases
    status, body, _ = post(f"{server.url}/v1/models/{BINARY}:predict", {"instances": instances},
                           headers={"X-Request-Id": "binary-v1"})
    assert status == 200, body
    answers = body["predictions"]
    assert [a["approved"] for a in answers] == _expected_labels(p)
    assert [a["approved"] for a in answers[3:6]] == ["yes"] * 3  # P(yes) < 0.5, yet over the threshold
    for answer, probability in zip(answers, p):
        assert list(answer) == ["id", "approved", "probabilities", "probability", "threshold", "model_version",
                                "fallback", "warnings"]
        assert answer["threshold"] == THRESHOLD and answer["model_version"] == BINARY_VERSION
        assert list(answer["probabilities"]) == list(LABELS)
        assert answer["probability"] == answer["probabilities"]["yes"] == pytest.approx(probability, abs=2e-6)
        assert answer["probabilities"]["no"] == pytest.approx(1 - probability, abs=2e-6)
    line = _logged(store, "binary-v1")
    logged = rows_of(line)
    assert [r["predicted"] for r in logged] == _expected_labels(p) and line["threshold"] == THRESHOLD
    assert line["labels"] == list(LABELS) and np.asarray([r["probabilities"] for r in logged]).shape == (len(p), 2)
    assert [r["probability"] for r in logged] == [r["probabilities"][LABELS.index(r["predicted"])] for r in logged]


def test_the_default_route_answers_one_row_by_the_threshold(server, store, binary_cases):
    instances, p = binary_cases
    for i in (0, 3, 6):  # each kind alone: the single-row path (generated Python)
        status, answer, _ = post(f"{server.url}/predict", instances[i], headers={"X-Request-Id": f"binary-one-{i}"})
        assert status == 200, answer
        assert answer["approved"] == _expected_labels(p[i:i + 1])[0] and answer["threshold"] == THRESHOLD
        assert answer["probability"] == pytest.approx(p[i], abs=2e-6)
        assert _logged(store, f"binary-one-{i}")["prediction"] == answer["approved"]


def test_v2_predict_is_thresholded_and_the_threshold_is_stated(server, client, binary_cases):
    instances, p = binary_cases
    assert any("x2" not in row for row in instances)  # a missing value, sent as null
    result = _raw_v2(server, instances)
    validate("inference_response", result)
    outputs = {o["name"]: o for o in result["outputs"]}
    assert list(outputs) == ["predict", "predict_proba"]
    assert outputs["predict"]["data"] == _expected_labels(p)
    proba = np.array(outputs["predict_proba"]["data"]).reshape(outputs["predict_proba"]["shape"])
    np.testing.assert_allclose(proba[:, 1], p, rtol=0, atol=1e-6)
    assert result["parameters"] == {"fallback": False, "threshold": THRESHOLD}
    metadata = client.get_model_metadata(BINARY)
    validate("metadata_model_response", metadata)
    assert metadata["parameters"]["threshold"] == THRESHOLD and metadata["parameters"]["positive_label"] == "yes"
    assert metadata["parameters"]["threshold_rule"] == "best_f1"
    status, raw, _ = get(f"{server.url}/v2/models/{BINARY}")
    assert status == 200 and raw == metadata


def _raw_v2(server, instances: list[dict], model: str = BINARY, body: dict | None = None) -> dict:
    """A per-feature V2 request as raw JSON (a missing value as null, which the client's numpy cannot send)."""
    inputs = [{"name": "x1", "shape": [len(instances)], "datatype": "FP64", "data": [r["x1"] for r in instances]},
              {"name": "x2", "shape": [len(instances)], "datatype": "FP64", "data": [r.get("x2") for r in instances]},
              {"name": "colour", "shape": [len(instances)], "datatype": "BYTES",
               "data": [r["colour"] for r in instances]}]
    status, answer, _ = post(f"{server.url}/v2/models/{model}/infer", {"inputs": inputs, **(body or {})})
    assert status == 200, answer
    return answer


def test_v2_through_tritons_client_with_every_value_present(client, binary_cases):
    instances, p = binary_cases
    present = [(row, v) for row, v in zip(instances, p) if "x2" in row]
    x = build_batch(binary_bundle().contract, [row for row, _ in present]).matrix
    tensor = httpclient.InferInput("input-0", list(x.shape), "FP32").set_data_from_numpy(x, binary_data=False)
    result = client.infer(BINARY, [tensor], request_id="triton-binary")
    body = result.get_response()
    validate("inference_response", body, binary=True)  # the client asks for binary outputs by default
    assert [v.decode() for v in result.as_numpy("predict")] == _expected_labels(np.array([v for _, v in present]))
    assert result.as_numpy("predict_proba").shape == (len(present), 2)
    assert body["parameters"]["threshold"] == THRESHOLD and body["id"] == "triton-binary"


def test_a_binary_answer_is_explained_as_the_positive_class(server, binary_cases):
    instances, _ = binary_cases
    status, body, _ = post(f"{server.url}/v1/models/{BINARY}:explain", {"instances": instances})
    assert status == 200, body
    for answer, explanation in zip(body["predictions"], body["explanations"]):
        (a,) = explanation["attributions"]
        assert a["outputDisplayName"] == "yes" and a["outputIndex"] == [1]
        assert a["instanceOutputValue"] == pytest.approx(answer["probability"], abs=2e-6)
        assert sum(a["featureAttributions"].values()) == pytest.approx(
            a["instanceOutputValue"] - a["baselineOutputValue"], abs=1e-5)
        margin = a["margin"]
        assert sum(margin["featureAttributions"].values()) == pytest.approx(
            margin["outputValue"] - margin["baseValue"], abs=1e-4)
        assert 1 / (1 + np.exp(-margin["outputValue"])) == pytest.approx(answer["probability"], abs=1e-5)
    answer = _raw_v2(server, instances[:2], body={"parameters": {"explain": True}})
    validate("inference_response", answer)
    texts = next(o for o in answer["outputs"] if o["name"] == "explanation")["data"]
    assert [json.loads(t)["attributions"][0]["outputDisplayName"] for t in texts] == ["yes", "yes"]


def test_openapi_describes_the_new_fields(server):
    status, doc, _ = get(f"{server.url}/openapi.json")
    assert status == 200
    schemas = doc["components"]["schemas"]
    binary, plain = schemas["PenguinsPrediction"], schemas["Co2Prediction"]
    assert {"approved", "probabilities", "probability", "threshold"} <= set(binary["required"])
    assert binary["properties"]["approved"]["enum"] == list(LABELS)
    assert {"delta", "interval", "extrapolation"} <= set(plain["required"])
    assert plain["properties"]["extrapolation"]["type"] == "boolean"


# ------------------------------------------------------------------------------------- plain regressor

def _within(row: dict) -> bool:
    contract = plain_bundle().contract
    return all(f.train_min <= row.get(f.name, f.train_min) <= f.train_max for f in contract.numeric)


@pytest.fixture(scope="module")
def plain_rows() -> tuple[list[dict], list[dict]]:
    """Rows within the training ranges (one of each colour at least), and the same rows moved beyond them."""
    inside = [r for r in rows(60, seed=71) if _within(r)][:12]
    assert {r["colour"] for r in inside} == {"blue", "green", "red"}
    beyond = [{**r, "x1": 10.5} if i % 2 else {**r, "x2": -6.0} for i, r in enumerate(inside)]
    return inside, beyond


def test_identity_intervals_are_the_value_minus_plus_q_per_level(server, store, plain_rows):
    inside, _ = plain_rows
    interval = plain_bundle().manifest["members"][0]["interval"]
    q = dict(zip(("blue", "green", "red"), interval["q"]))
    status, body, _ = post(f"{server.url}/v1/models/{PLAIN}:predict", {"instances": inside},
                           headers={"X-Request-Id": "plain-v1"})
    assert status == 200, body
    for row, answer in zip(inside, body["predictions"]):
        assert list(answer) == ["id", "delta", "interval", "extrapolation", "model_version", "fallback", "warnings"]
        assert answer["extrapolation"] is False and answer["warnings"] == []
        assert answer["interval"]["level"] == 0.9
        assert answer["interval"]["lower"] == pytest.approx(answer["delta"] - q[row["colour"]], abs=2e-3)
        assert answer["interval"]["upper"] == pytest.approx(answer["delta"] + q[row["colour"]], abs=2e-3)
    assert any(a["delta"] < 0 for a in body["predictions"]) or any(a["interval"]["lower"] < 0
                                                                   for a in body["predictions"])
    line = _logged(store, "plain-v1")
    logged = rows_of(line)
    assert [r["extrapolation"] for r in logged] == [False] * len(inside) and len(logged) == len(inside)
    assert all(len(r["interval"]) == 2 for r in logged)


def test_a_row_beyond_the_training_ranges_is_flagged_with_the_widest_interval(server, store, plain_rows):
    inside, beyond = plain_rows
    widest = max(*plain_bundle().manifest["members"][0]["interval"]["q"],
                 plain_bundle().manifest["members"][0]["interval"]["q_pooled"])
    status, body, _ = post(f"{server.url}/v1/models/{PLAIN}:predict", {"instances": inside + beyond},
                           headers={"X-Request-Id": "plain-beyond"})
    assert status == 200, body
    answers = body["predictions"]
    width = [a["interval"]["upper"] - a["interval"]["lower"] for a in answers]
    n = len(inside)
    assert [a["extrapolation"] for a in answers] == [False] * n + [True] * n
    assert all(a["warnings"] and "outside the training range" in a["warnings"][0] for a in answers[n:])
    assert min(width[n:]) >= max(width[:n]) - 2e-3  # never narrower than any in-range interval
    for w in width[n:]:
        assert w == pytest.approx(2 * widest, abs=2e-3)
    assert field_of(_logged(store, "plain-beyond"), "extrapolation") == [False] * n + [True] * n
    status, single, _ = post(f"{server.url}/v1/models/{PLAIN}:predict", {"instances": beyond[:1]})
    assert status == 200 and single["predictions"][0]["extrapolation"] is True  # the single-row path too


def test_v2_answers_extrapolation_as_a_bool_output(server, client, plain_rows):
    inside, beyond = plain_rows
    rows_ = inside[:3] + beyond[:3]
    answer = _raw_v2(server, rows_, model=PLAIN)
    validate("inference_response", answer)
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert list(outputs) == ["predict", "predict_interval", "extrapolation"]
    assert outputs["extrapolation"]["datatype"] == "BOOL" and outputs["extrapolation"]["shape"] == [6]
    assert outputs["extrapolation"]["data"] == [False] * 3 + [True] * 3
    assert "threshold" not in answer["parameters"]
    status, v1, _ = post(f"{server.url}/v1/models/{PLAIN}:predict", {"instances": rows_})
    np.testing.assert_allclose(outputs["predict"]["data"], [a["delta"] for a in v1["predictions"]], atol=1e-3)
    complete = [r for r in rows_ if "x2" in r]
    x = build_batch(plain_bundle().contract, complete).matrix
    tensor = httpclient.InferInput("input-0", list(x.shape), "FP32").set_data_from_numpy(x, binary_data=False)
    result = client.infer(PLAIN, [tensor])
    validate("inference_response", result.get_response(), binary=True)
    flags = result.as_numpy("extrapolation")
    assert flags.dtype == bool and flags.tolist() == [not _within(r) for r in complete]
    metadata = client.get_model_metadata(PLAIN)
    assert {"name": "extrapolation", "datatype": "BOOL", "shape": [-1]} in metadata["outputs"]


def test_a_plain_answer_is_explained_in_its_unit(server, plain_rows):
    inside, beyond = plain_rows
    status, body, _ = post(f"{server.url}/v1/models/{PLAIN}:explain", {"instances": inside[:3] + beyond[:1]})
    assert status == 200, body
    for answer, explanation in zip(body["predictions"], body["explanations"]):
        (a,) = explanation["attributions"]
        assert a["outputDisplayName"] == "delta" and "outputIndex" not in a
        assert a["instanceOutputValue"] == pytest.approx(answer["delta"], abs=2e-3)
        assert a["margin"]["outputValue"] == a["instanceOutputValue"]  # the identity scale: the margin is the answer
        assert sum(a["featureAttributions"].values()) == pytest.approx(
            a["instanceOutputValue"] - a["baselineOutputValue"], abs=1e-3)
