"""Hostile input against the real app: arbitrary JSON, field types and bytes never produce a 5xx."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.spec import load_spec
from tests.support.bundles import STABLE, publish
from tests.support.examples import SEED_EXAMPLES

SEED = SEED_EXAMPLES[0][0]
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)
field_values = st.one_of(json_values, st.integers(min_value=-10**40, max_value=10**40),
                         st.sampled_from([float("inf"), -0.0, 1e308, 5e-324, "39.1", "NaN", True, [], {}]))


def _probe(client, tally, case: str, data: bytes | str, content_type: str = "application/json",
           path: str = "/predict") -> None:
    """POST one hostile body; it must get a 2xx or a documented 4xx JSON error, and leak nothing."""
    resp = client.post(path, data=data, content_type=content_type)
    text = resp.get_data(as_text=True)
    held = resp.status_code < 500 and resp.content_type == "application/json"
    if held and resp.status_code >= 400:
        error = json.loads(text)["error"]
        held = set(error) == {"code", "status", "message", "details"} and error["code"] == resp.status_code
    held = held and not any(leak in text for leak in ("Traceback", "/work/", "site-packages", 'File "'))
    tally.add("hostile input", case, 1, int(held))
    assert held, (resp.status_code, text[:300])


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(json_values)
def test_arbitrary_json_bodies(client, tally, body):
    _probe(client, tally, "arbitrary JSON bodies", json.dumps(body))


@SETTINGS
@given(st.dictionaries(st.sampled_from([*SEED, "species", "x" * 100]), field_values, max_size=8), st.booleans())
def test_arbitrary_field_values_single_and_batch(client, tally, overrides, as_batch):
    row = {**SEED, **overrides}
    body = {"instances": [SEED, row] * 10} if as_batch else row
    # stdlib json: it writes huge integers and (invalid) Infinity/NaN literals, both worth sending
    _probe(client, tally, "arbitrary field values", json.dumps(body))


@pytest.fixture(scope="module", params=["penguins", "co2"])
def any_model(request):
    """Each model's name and first example request."""
    return request.param, load_spec(request.param).examples()[0]["request"]


@pytest.fixture
def both_models_client(make_client, local_store, trained_bundle, co2_bundle):
    """The function serving both models, each published in a local store."""
    publish(local_store, trained_bundle, STABLE)
    publish(local_store, co2_bundle, STABLE, model="co2")
    return make_client(MODEL_STORE=local_store.root, POINTER_TTL_S=60)


@SETTINGS
@given(st.data(), st.booleans())
def test_arbitrary_field_values_every_model(both_models_client, tally, any_model, data, as_batch):
    name, example = any_model
    overrides = data.draw(st.dictionaries(st.sampled_from([*example, "x" * 100]), field_values, max_size=6))
    row = {**example, **overrides}
    body = {"instances": [example, row] * 10 if as_batch else [row]}
    _probe(both_models_client, tally, f"arbitrary field values, {name} (V1 path)", json.dumps(body),
           path=f"/v1/models/{name}:predict")


@SETTINGS
@given(st.binary(max_size=2000), st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                                 "application/json; charset=latin-1", ""]))
def test_arbitrary_bytes_and_content_types(client, tally, raw, content_type):
    _probe(client, tally, "arbitrary bytes and content types", raw, content_type)


def test_limits_are_enforced_before_heavy_work(client, tally):
    cases = {
        "body over 8 MiB": (client.post("/predict", data=b"[" * (9 * 1024 * 1024), content_type="application/json"),
                            413),
        "10,001 rows": (client.post("/predict", json={"instances": [SEED] * 10_001}), 413),
        "nesting 100,000 deep": (client.post("/predict", data=b"[" * 100_000 + b"]" * 100_000,
                                             content_type="application/json"), 400),
        "nested value in a field": (client.post("/predict", json={**SEED, "island": [[[[["Dream"]]]]]}), 400),
        "64 KiB island name": (client.post("/predict", json={**SEED, "island": "D" * 65536}), 400),
        "1,000-digit number": (client.post("/predict", data=b'{"bill_length_mm": 1' + b"0" * 1000 + b"}",
                                           content_type="application/json"), 400),
        "invalid UTF-8": (client.post("/predict", data=b'{"island": "\xff\xfe"}', content_type="application/json"),
                          400),
    }
    held = 0
    for name, (resp, expected) in cases.items():
        assert resp.status_code == expected, (name, resp.status_code)
        held += 1
    tally.add("hostile input", "size, depth and length limits", len(cases), held)


def _probe_v2(client, tally, case: str, body: object, path: str) -> None:
    """POST one hostile Open Inference Protocol body: a 2xx or a 4xx `{"error": str}`, leaking nothing."""
    resp = client.post(path, data=json.dumps(body), content_type="application/json")
    text = resp.get_data(as_text=True)
    held = resp.status_code < 500 and resp.content_type == "application/json"
    if held and resp.status_code >= 400:
        answer = json.loads(text)
        held = set(answer) == {"error"} and isinstance(answer["error"], str) and answer["error"]
    held = held and not any(leak in text for leak in ("Traceback", "/work/", "site-packages", 'File "'))
    tally.add("hostile input", case, 1, int(bool(held)))
    assert held, (resp.status_code, text[:300])


datatypes = st.sampled_from(["FP32", "FP64", "INT64", "INT8", "UINT64", "BOOL", "BYTES", "FP16", "FP99", "", None, 3])
shapes = st.lists(st.integers(min_value=-2, max_value=2**63), max_size=3) | st.sampled_from([[10**12], [3, 10**9]])
tensors = st.fixed_dictionaries({"name": st.text(max_size=20) | st.none(), "shape": shapes | json_values,
                                 "datatype": datatypes, "data": st.lists(field_values, max_size=30) | json_values})


def _feature_inputs(example: dict) -> list[dict]:
    return [{"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64", "data": [v]}
            for k, v in example.items()]


@SETTINGS
@given(st.data())
def test_arbitrary_v2_inputs_every_model(both_models_client, tally, any_model, data):
    name, example = any_model
    inputs = _feature_inputs(example)
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(inputs)), tensors), max_size=3))
    for index, tensor in edits:  # replace an input (or add one) with a hostile tensor
        inputs[index:index + 1] = [tensor]
    body = {"inputs": inputs, **data.draw(st.fixed_dictionaries({}, optional={
        "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=20)}), max_size=3) | json_values,
        "parameters": st.fixed_dictionaries({}, optional={"explain": json_values}) | json_values,
        "id": json_values}))}
    _probe_v2(both_models_client, tally, f"arbitrary V2 inputs, {name}", body, f"/v2/models/{name}/infer")


@SETTINGS
@given(st.lists(field_values, max_size=60), shapes, datatypes)
def test_arbitrary_v2_encoded_tensors(both_models_client, tally, data, shape, datatype):
    body = {"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}]}
    _probe_v2(both_models_client, tally, "arbitrary V2 encoded tensors", body, "/v2/models/penguins/infer")


@SETTINGS
@given(json_values)
def test_arbitrary_v2_bodies(both_models_client, tally, body):
    _probe_v2(both_models_client, tally, "arbitrary V2 bodies", body, "/v2/models/co2/infer")
