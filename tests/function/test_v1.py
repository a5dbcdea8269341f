"""Our JSON and Vertex AI's shape: `parameters`, Vertex's answer fields, request and prediction ids, trace fields."""
from __future__ import annotations

import json

import pytest

from function.serving import logs
from shared.spec import load_spec
from tests.support.bundles import STABLE, publish
from tests.support.examples import SEED_EXAMPLES

ROWS = [r for r, _ in SEED_EXAMPLES]
TRACE_ID, SPAN_HEX = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.fixture
def logged_client(make_client, published):
    """A client whose request lines land in the local store's sink, and a reader of those lines."""
    app_client = make_client(MODEL_STORE=published.root, MODELS="penguins", LOG_TO_STORE=1,
                             GOOGLE_CLOUD_PROJECT="my-project")

    def lines() -> list[dict]:
        logs.flush()
        return [json.loads(line)["jsonPayload"] for f in sorted((published.root / "logs").rglob("*.json"))
                for line in f.read_text().splitlines()]
    return app_client, lines


def test_vertex_request_with_parameters_answers_with_vertex_fields_beside_ours(client):
    body = client.post("/v1/models/penguins:predict", json={"instances": ROWS, "parameters": {}}).get_json()
    assert [p["species"] for p in body["predictions"]] == [s for _, s in SEED_EXAMPLES]
    assert body["deployedModelId"] == body["modelDisplayName"] == "penguins"
    assert body["modelVersionId"] == body["model_version"] == STABLE and body["fallback"] is False
    assert "explanations" not in body


@pytest.mark.parametrize(("parameters", "field", "problem"), [
    ({"temperature": 1}, "parameters.temperature", "unknown parameter"),
    ({"explain": "yes"}, "parameters.explain", "must be a bool"),
    ([1], "parameters", "must be a JSON object"),
])
def test_bad_parameters_are_named(client, parameters, field, problem):
    resp = client.post("/predict", json={"instances": ROWS, "parameters": parameters})
    assert resp.status_code == 400
    violations = resp.get_json()["error"]["details"][0]["fieldViolations"]
    assert any(v["field"] == field and problem in v["description"] for v in violations), violations


def test_request_id_is_echoed_and_each_row_gets_a_prediction_id_from_it(client):
    resp = client.post("/predict", json={"instances": ROWS}, headers={"X-Request-Id": "order-42.a:b_c"})
    body = resp.get_json()
    assert resp.headers["X-Request-Id"] == body["request_id"] == "order-42.a:b_c"
    assert [p["id"] for p in body["predictions"]] == ["order-42.a:b_c-0", "order-42.a:b_c-1", "order-42.a:b_c-2"]
    single = client.post("/predict", json=ROWS[0], headers={"X-Request-Id": "one"})
    assert single.get_json()["id"] == "one-0" and single.headers["X-Request-Id"] == "one"


def test_a_generated_request_id_differs_per_request(client):
    first, second = (client.post("/predict", json=ROWS[0]) for _ in range(2))
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]
    assert first.get_json()["id"] == first.headers["X-Request-Id"] + "-0"


@pytest.mark.parametrize("bad", ["", "x" * 129, "has space", "semi;colon", "ünï"])
def test_a_malformed_request_id_is_a_400_naming_the_header(client, bad):
    resp = client.post("/predict", json=ROWS[0], headers={"X-Request-Id": bad.encode().decode("latin-1")})
    assert resp.status_code == 400
    violation = resp.get_json()["error"]["details"][0]["fieldViolations"][0]
    assert violation["field"] == "X-Request-Id" and "128" in violation["description"]
    assert resp.headers["X-Request-Id"] != bad  # the answer still carries an id, a generated one


def test_traceparent_becomes_cloud_loggings_trace_fields(logged_client):
    client, lines = logged_client
    resp = client.post("/predict", json=ROWS[0], headers={"traceparent": f"00-{TRACE_ID}-{SPAN_HEX}-01",
                                                          "X-Request-Id": "traced"})
    assert resp.status_code == 200
    line = next(entry for entry in lines() if entry.get("request_id") == "traced")
    assert line["logging.googleapis.com/trace"] == f"projects/my-project/traces/{TRACE_ID}"
    assert line["logging.googleapis.com/spanId"] == SPAN_HEX
    assert line["logging.googleapis.com/trace_sampled"] is True
    stages = {k for k in line if k.endswith("_ms")}
    assert {"parse_ms", "validate_ms", "predict_ms", "format_ms", "inference_ms", "latency_ms"} <= stages
    assert line["inference_ms"] == pytest.approx(line["validate_ms"] + line["predict_ms"], abs=0.002)


def test_x_cloud_trace_context_is_read_when_there_is_no_traceparent(logged_client):
    client, lines = logged_client
    client.post("/predict", json=ROWS[0], headers={"X-Cloud-Trace-Context": f"{TRACE_ID}/123;o=0",
                                                   "X-Request-Id": "cloud"})
    line = next(entry for entry in lines() if entry.get("request_id") == "cloud")
    assert line["logging.googleapis.com/trace"].endswith(TRACE_ID)
    assert line["logging.googleapis.com/spanId"] == f"{123:016x}"
    assert line["logging.googleapis.com/trace_sampled"] is False


@pytest.mark.parametrize("headers", [
    {"traceparent": "garbage"}, {"traceparent": f"00-{'0' * 32}-{SPAN_HEX}-01"},
    {"traceparent": f"00-{TRACE_ID}-{SPAN_HEX}-01-extra"}, {"X-Cloud-Trace-Context": "nothex/12;o=1"},
    {"X-Cloud-Trace-Context": f"{TRACE_ID}/99999999999999999999999"},
])
def test_malformed_trace_headers_are_ignored(logged_client, headers):
    client, lines = logged_client
    resp = client.post("/predict", json=ROWS[0], headers={**headers, "X-Request-Id": "ignored"})
    assert resp.status_code == 200
    line = next(entry for entry in lines() if entry.get("request_id") == "ignored")
    assert not [k for k in line if k.startswith("logging.googleapis.com/")]


@pytest.fixture
def both(make_client, local_store, trained_bundle, co2_bundle):
    publish(local_store, trained_bundle, STABLE)
    publish(local_store, co2_bundle, STABLE, model="co2")
    return make_client(MODEL_STORE=local_store.root, POINTER_TTL_S=60)


def _check_attributions(answer: dict, explanation: dict, outputs: dict[str, float]) -> None:
    """Each output's attributions add up, in both spaces (as far as the answer's 6 significant digits allow),
    and name every original feature."""
    for attribution in explanation["attributions"]:
        name = attribution["outputDisplayName"]
        assert attribution["instanceOutputValue"] == pytest.approx(outputs[name], abs=2e-6, rel=1e-5)
        total = sum(attribution["featureAttributions"].values())
        assert total == pytest.approx(attribution["instanceOutputValue"] - attribution["baselineOutputValue"],
                                      abs=1e-4, rel=1e-5)
        margin = attribution["margin"]
        assert sum(margin["featureAttributions"].values()) == pytest.approx(
            margin["outputValue"] - margin["baseValue"], abs=1e-4)
        assert not any("=" in feature for feature in attribution["featureAttributions"])  # one-hot summed back


@pytest.mark.parametrize("how", ["verb", "parameter"])
def test_a_penguin_explained_through_either_door(both, how):
    path, body = ("/v1/models/penguins:explain", {"instances": ROWS}) if how == "verb" else (
        "/predict", {"instances": ROWS, "parameters": {"explain": True}})
    resp = both.post(path, json=body)
    assert resp.status_code == 200, resp.get_json()
    answer = resp.get_json()
    assert len(answer["explanations"]) == len(ROWS) == len(answer["predictions"])
    for prediction, explanation in zip(answer["predictions"], answer["explanations"]):
        assert [a["outputDisplayName"] for a in explanation["attributions"]] == ["Adelie", "Chinstrap", "Gentoo"]
        assert set(explanation["attributions"][0]["featureAttributions"]) == {
            "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "island", "sex"}
        _check_attributions(prediction, explanation, prediction["probabilities"])


def test_a_car_explained_in_grams_per_km(both):
    car = load_spec("co2").examples()[0]["request"]
    resp = both.post("/v1/models/co2:explain", json={"instances": [car]})
    assert resp.status_code == 200, resp.get_json()
    prediction, explanation = resp.get_json()["predictions"][0], resp.get_json()["explanations"][0]
    (attribution,) = explanation["attributions"]
    _check_attributions(prediction, explanation, {attribution["outputDisplayName"]: prediction[
        "co2_emissions_g_per_km"]})


def test_explain_is_post_only_and_names_its_route(both):
    assert both.get("/v1/models/penguins:explain").status_code == 405
    assert both.post("/v1/models/penguins:explode", json={"instances": ROWS}).status_code == 404
