"""The Open Inference Protocol (KServe V2) over real HTTP, spoken by Triton's own client.

One function server (module-scoped) serves both models from a local store: the penguin classifier with a kept
fallback version, and the CO2 regressor. Every V2 answer must equal the V1 answer to the same rows, and every
V2 body (success and error) must match KServe's published REST document (`tests/support/oip.py`; the health
bodies, which that document leaves without a schema, are checked against our contract directly). The client
runs with its defaults, the binary tensor data extension both ways (`WIRES`: "binary"), and with
`binary_data=False`, all JSON ("json"); both must answer alike.
"""
from __future__ import annotations

import json
import math
import re
import struct
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from shared.contract import FeatureContract
from shared.spec import load_spec
from shared.store import LocalStore
from shared.validation import build_batch
from testbed.servers import FunctionServer
from tests.support.bundles import STABLE, publish
from tests.support.http import get, post
from tests.support.oip import SCHEMA_NAMES, OipMismatch, _as_json_schema, triton_client, validate

FALLBACK = "20261001T000000Z-fallbk00"  # a kept fallback of penguins: served, so explicitly requestable
NOT_SERVED = "20250101T000000Z-notserve"  # never published
TENSOR = "input-0"
SPECS = {name: load_spec(name) for name in ("penguins", "co2")}


def _feature_rows(name: str, rows: list[dict]) -> list[dict]:
    """The rows without their passthrough fields (the V2 inputs are the features only)."""
    features = {f.name for f in SPECS[name].features}
    return [{k: v for k, v in row.items() if k in features} for row in rows]


PENGUIN_ROWS = _feature_rows("penguins", [e["request"] for e in SPECS["penguins"].examples()])
CO2_ROWS = _feature_rows("co2", [e["request"] for e in SPECS["co2"].examples()])  # row 1: no fuel consumption
CO2_RATED = [r for r in CO2_ROWS if "fuel_consumption_comb_l_per_100km" in r]
CO2_RATED = [*CO2_RATED, {**CO2_RATED[0], "make": "TOYOTA", "engine_size_l": 2.5}]
ROWS = {"penguins": PENGUIN_ROWS, "co2": CO2_RATED}  # rows with every feature: what numpy tensors can carry
MODELS = tuple(ROWS)
WIRES = ("binary", "json")  # tritonclient's defaults (binary tensor data both ways), or binary_data=False


# ---------------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def server(tmp_path_factory, trained_bundle, co2_bundle):
    store = LocalStore(tmp_path_factory.mktemp("v2") / "bucket")
    publish(store, trained_bundle, STABLE, FALLBACK)
    publish(store, co2_bundle, STABLE, model="co2")
    function = FunctionServer({"MODEL_STORE": str(store.root), "POINTER_TTL_S": "60",
                               "MODELS": "penguins,co2", "DEFAULT_MODEL": "penguins"}).start()
    yield function
    function.stop()


@pytest.fixture(scope="module")
def client(server):
    with triton_client(server.url) as triton:
        yield triton


@pytest.fixture(scope="module")
def contracts(trained_bundle, co2_bundle) -> dict[str, FeatureContract]:
    return {"penguins": trained_bundle.contract, "co2": co2_bundle.contract}


# ----------------------------------------------------------------------------------------------------- helpers

def _v1(server, model: str, rows: list[dict]) -> list[dict]:
    status, body, _ = post(f"{server.url}/v1/models/{model}:predict", {"instances": rows})
    assert status == 200, body
    return body["predictions"]


def _infer_path(model: str, version: str | None = None) -> str:
    return f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"


def _raw_infer(server, model: str, body, version: str | None = None) -> tuple[int, dict]:
    """POST a V2 inference body as JSON; the answer is validated against the document either way."""
    status, answer, _ = post(server.url + _infer_path(model, version), body)
    validate("inference_response" if status == 200 else "inference_error_response", answer)
    return status, answer


def _per_feature_json(contract: FeatureContract, rows: list[dict]) -> list[dict]:
    """One JSON input per feature: numbers FP64, categories BYTES, a missing value as null."""
    numeric = {f.name for f in contract.numeric}
    return [{"name": name, "shape": [len(rows)], "datatype": "FP64" if name in numeric else "BYTES",
             "data": [row.get(name) for row in rows]} for name in contract.field_names]


def _tensor_json(contract: FeatureContract, rows: list[dict]) -> dict:
    """The single FP32 [N, F] tensor of the encoded columns, NaN (missing) as null."""
    matrix = build_batch(contract, rows).matrix
    data = [None if math.isnan(v) else v for v in matrix.astype(np.float64).ravel().tolist()]
    return {"name": TENSOR, "shape": list(matrix.shape), "datatype": "FP32", "data": data}


def _set_data(tensor: httpclient.InferInput, array: np.ndarray, wire: str) -> httpclient.InferInput:
    """The array as the client's default sends it (binary), or as JSON."""
    if wire == "binary":
        return tensor.set_data_from_numpy(array)
    return tensor.set_data_from_numpy(array, binary_data=False)


def _per_feature_inputs(contract: FeatureContract, rows: list[dict],
                        wire: str = "binary") -> list[httpclient.InferInput]:
    """The client's inputs, one per feature: numbers as FP64 (a missing one NaN), categories as BYTES (numpy
    object arrays)."""
    numeric = {f.name for f in contract.numeric}
    inputs = []
    for name in contract.field_names:
        if name in numeric:
            values = [row.get(name) for row in rows]
            array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            datatype = "FP64"
        else:
            array, datatype = np.array([row[name] for row in rows], dtype=np.object_), "BYTES"
        inputs.append(_set_data(httpclient.InferInput(name, [len(rows)], datatype), array, wire))
    return inputs


def _tensor_input(contract: FeatureContract, rows: list[dict], wire: str = "binary") -> httpclient.InferInput:
    matrix = build_batch(contract, rows).matrix
    assert matrix.dtype == np.float32
    return _set_data(httpclient.InferInput(TENSOR, list(matrix.shape), "FP32"), matrix, wire)


def _requested(*names: str, wire: str = "binary") -> list[httpclient.InferRequestedOutput]:
    if wire == "binary":
        return [httpclient.InferRequestedOutput(name) for name in names]
    return [httpclient.InferRequestedOutput(name, binary_data=False) for name in names]


def _every_output(contract: FeatureContract, wire: str) -> list[httpclient.InferRequestedOutput] | None:
    """None (the client then asks every output as binary data), or every output asked as JSON."""
    if wire == "binary":
        return None
    names = ("predict", "predict_proba") if contract.is_classifier else ("predict", "predict_interval", "extrapolation")
    return _requested(*names, wire=wire)


def _binary_outputs(body: dict, wire: str) -> None:
    """The client's default asks every output as binary data; with binary_data=False none is."""
    for out in body["outputs"]:
        assert ("binary_data_size" in (out.get("parameters") or {})) == (wire == "binary"), out
        assert ("data" in out) == (wire == "json"), out


def _outputs(body: dict) -> dict[str, np.ndarray]:
    """A response's outputs as arrays of their shape (BYTES as str objects, BOOL as bool, FP64 as float64)."""
    arrays = {}
    for out in body["outputs"]:
        dtype = {"BYTES": np.object_, "BOOL": bool}.get(out["datatype"], np.float64)
        arrays[out["name"]] = np.array(out["data"], dtype=dtype).reshape(out["shape"])
    return arrays


def _output_tensors_are_as_documented(model: str, contract: FeatureContract, body: dict, n: int) -> None:
    """Each output's datatype and shape, per the contract of the V2 routes."""
    expected = ({"predict": ("BYTES", [n]), "predict_proba": ("FP64", [n, len(contract.labels)])}
                if contract.is_classifier else
                {"predict": ("FP64", [n]), "predict_interval": ("FP64", [n, 2]), "extrapolation": ("BOOL", [n])})
    expected["explanation"] = ("BYTES", [n])
    for out in body["outputs"]:
        assert out["name"] in expected, f"{model}: unexpected output {out['name']!r}"
        assert (out["datatype"], out["shape"]) == expected[out["name"]], out


def _same_as_v1(contract: FeatureContract, outputs: dict[str, np.ndarray], v1: list[dict]) -> None:
    """V2 arrays equal the V1 answers: labels equal, probabilities within 1e-6, values within 1e-3."""
    target = contract.target.name
    if contract.is_classifier:
        # the client decodes binary BYTES to bytes, JSON BYTES to str
        assert [_text(label) for label in outputs["predict"]] == [a[target] for a in v1]
        expected = np.array([[a["probabilities"][label] for label in contract.labels] for a in v1])
        assert outputs["predict_proba"].shape == expected.shape
        np.testing.assert_allclose(outputs["predict_proba"], expected, rtol=0, atol=1e-6)
        np.testing.assert_allclose(outputs["predict_proba"].sum(axis=1), 1.0, rtol=0, atol=1e-5)
    else:
        np.testing.assert_allclose(outputs["predict"], [a[target] for a in v1], rtol=0, atol=1e-3)
        bounds = [[a["interval"]["lower"], a["interval"]["upper"]] for a in v1]
        np.testing.assert_allclose(outputs["predict_interval"], bounds, rtol=0, atol=1e-3)
        assert outputs["extrapolation"].dtype == bool
        assert outputs["extrapolation"].tolist() == [a["extrapolation"] for a in v1]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _client_outputs(result: httpclient.InferResult) -> dict[str, np.ndarray]:
    """Every output of a client result, through the client's own decoding (`as_numpy`)."""
    return {out["name"]: result.as_numpy(out["name"]) for out in result.get_response()["outputs"]}


def _tensors(described: list[dict]) -> list[dict]:
    """Metadata tensors reduced to the protocol's fields (name, datatype, shape)."""
    return [{key: tensor.get(key) for key in ("name", "datatype", "shape")} for tensor in described]


def _error(status: int, body: dict, *, kind: str = "inference_error_response") -> str:
    """A 4xx in the protocol's error shape `{"error": str}`; returns the message."""
    validate(kind, body)
    assert 400 <= status < 500, (status, body)
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    return body["error"]


# ---------------------------------------------------------------------------------- the validator can fail

def test_the_protocol_validator_rejects_bodies_the_document_forbids():
    assert {"metadata_server_response", "metadata_model_response", "inference_response",
            "inference_error_response"} <= set(SCHEMA_NAMES)
    good = {"model_name": "m", "model_version": "1", "id": "42",
            "outputs": [{"name": "out", "shape": [2, 2], "datatype": "FP64", "data": [[1.0, 1.5], [2, "x"]]}]}
    validate("inference_response", good)
    validate("metadata_model_response", {"name": "m", "platform": "xgboost",
                                         "inputs": [{"name": "a", "datatype": "FP64", "shape": [-1]}]})
    wrong = [
        ("inference_response", {"outputs": []}, "'model_name' is a required property"),
        ("inference_response", {**good, "outputs": [{**good["outputs"][0], "shape": [2.5]}]}, "$.outputs[0].shape[0]"),
        ("inference_response", {**good, "outputs": [{**good["outputs"][0], "data": [None]}]}, "$.outputs[0].data[0]"),
        ("inference_response", {**good, "outputs": [{"name": "out", "shape": [1], "datatype": "FP64"}]}, "'data'"),
        ("metadata_model_response", {"name": "m", "platform": "x", "inputs": [{"name": "a", "shape": [-1]}]},
         "'datatype' is a required property"),
        ("metadata_server_response", {"name": "s", "version": "1", "extensions": "none"}, "is not of type 'array'"),
        ("inference_error_response", {"error": 42}, "is not of type 'string'"),
    ]
    for kind, body, hint in wrong:
        with pytest.raises(OipMismatch) as caught:
            validate(kind, body)
        assert hint in str(caught.value) and kind in str(caught.value)
    with pytest.raises(KeyError, match="inference_response"):
        validate("health", {"live": True})
    assert _as_json_schema({"type": "string", "nullable": True, "x-note": 1}) == {"type": ["string", "null"]}


# --------------------------------------------------------------------------------- health and metadata

def test_health_and_server_metadata(server, client):
    assert client.is_server_live() and client.is_server_ready()
    assert get(server.url + "/v2/health/live")[:2] == (200, {"live": True})
    assert get(server.url + "/v2/health/ready")[:2] == (200, {"ready": True})
    metadata = client.get_server_metadata()
    validate("metadata_server_response", metadata)
    assert metadata["name"] and metadata["version"] and metadata["extensions"] == ["binary_tensor_data"]
    status, raw, _ = get(server.url + "/v2")
    validate("metadata_server_response", raw)
    assert status == 200 and raw == metadata


@pytest.mark.parametrize("model", MODELS)
def test_model_metadata_lists_the_features_the_outputs_and_the_tensor_form(server, client, contracts, model):
    contract = contracts[model]
    metadata = client.get_model_metadata(model)
    validate("metadata_model_response", metadata)
    assert metadata["name"] == model and metadata["platform"] == "xgboost"
    assert set(metadata["versions"]) == ({STABLE, FALLBACK} if model == "penguins" else {STABLE})
    numeric = {f.name for f in contract.numeric}
    inputs = [{"name": name, "datatype": "FP64" if name in numeric else "BYTES", "shape": [-1]}
              for name in contract.field_names]
    assert _tensors(metadata["inputs"]) == inputs
    if contract.is_classifier:
        outputs = [{"name": "predict", "datatype": "BYTES", "shape": [-1]},
                   {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(contract.labels)]}]
    else:
        outputs = [{"name": "extrapolation", "datatype": "BOOL", "shape": [-1]},
                   {"name": "predict", "datatype": "FP64", "shape": [-1]},
                   {"name": "predict_interval", "datatype": "FP64", "shape": [-1, 2]}]
    assert sorted(_tensors(metadata["outputs"]), key=lambda o: o["name"]) == outputs
    assert metadata["parameters"]["tensor_input"] == {"name": TENSOR, "datatype": "FP32",
                                                      "shape": [-1, len(contract.columns)],
                                                      "columns": contract.columns}
    versioned = client.get_model_metadata(model, model_version=STABLE)
    validate("metadata_model_response", versioned)
    assert versioned["name"] == model and versioned["inputs"] == metadata["inputs"]
    assert client.is_model_ready(model)
    status, ready, _ = get(f"{server.url}/v2/models/{model}/ready")
    assert (status, ready) == (200, {"name": model, "ready": True})


def test_unknown_models_and_versions_are_404(server, client, contracts):
    for path in ("/v2/models/cars", f"/v2/models/penguins/versions/{NOT_SERVED}",
                 f"/v2/models/co2/versions/{FALLBACK}"):
        status, body, _ = get(server.url + path)
        assert status == 404, (path, status, body)
        _error(status, body, kind="metadata_model_error_response")
    assert not client.is_model_ready("cars")
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("cars")
    assert caught.value.status() == "404" and "cars" in caught.value.message()
    body = {"inputs": _per_feature_json(contracts["penguins"], PENGUIN_ROWS)}
    for model, version in (("cars", None), ("penguins", NOT_SERVED), ("co2", FALLBACK)):
        status, answer = _raw_infer(server, model, body, version)
        assert status == 404, (model, version, answer)
        _error(status, answer)


# ------------------------------------------------------------------------------------------------- inference

@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("model", MODELS)
def test_one_input_per_feature_answers_as_v1(server, client, contracts, model, wire):
    contract, rows = contracts[model], ROWS[model]
    result = client.infer(model, _per_feature_inputs(contract, rows, wire), outputs=_every_output(contract, wire))
    body = result.get_response()
    validate("inference_response", body, binary=wire == "binary")
    _binary_outputs(body, wire)
    assert body["model_name"] == model and body["model_version"] == STABLE
    _output_tensors_are_as_documented(model, contract, body, len(rows))
    outputs = _client_outputs(result)
    assert set(outputs) == ({"predict", "predict_proba"} if contract.is_classifier else
                            {"predict", "predict_interval", "extrapolation"})
    _same_as_v1(contract, outputs, _v1(server, model, rows))


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("model", MODELS)
def test_the_single_encoded_tensor_answers_as_v1(server, client, contracts, model, wire):
    contract, rows = contracts[model], ROWS[model]
    metadata = client.get_model_metadata(model)
    assert metadata["parameters"]["tensor_input"]["columns"] == contract.columns  # the client encodes in this order
    result = client.infer(model, [_tensor_input(contract, rows, wire)], outputs=_every_output(contract, wire))
    body = result.get_response()
    validate("inference_response", body, binary=wire == "binary")
    _binary_outputs(body, wire)
    assert body["model_name"] == model and body["model_version"] == STABLE
    _output_tensors_are_as_documented(model, contract, body, len(rows))
    _same_as_v1(contract, _client_outputs(result), _v1(server, model, rows))


def test_the_client_defaults_and_json_answer_alike_with_a_missing_value(server, client, contracts):
    """co2's optional fuel consumption missing: NaN in the client's FP64 array, sent as binary or as a bare JSON
    `NaN` token (tritonclient's JSON encoder), and NaN in the encoded tensor; all answer as V1's missing value."""
    contract = contracts["co2"]
    assert any(r.get("fuel_consumption_comb_l_per_100km") is None for r in CO2_ROWS)
    v1 = _v1(server, "co2", CO2_ROWS)
    for wire in WIRES:
        for inputs in (_per_feature_inputs(contract, CO2_ROWS, wire), [_tensor_input(contract, CO2_ROWS, wire)]):
            result = client.infer("co2", inputs, outputs=_every_output(contract, wire))
            body = result.get_response()
            validate("inference_response", body, binary=wire == "binary")
            _same_as_v1(contract, _client_outputs(result), v1)


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("model", MODELS)
def test_requested_outputs_select_and_the_request_id_comes_back(client, contracts, model, wire):
    contract, rows = contracts[model], ROWS[model]
    only = "predict_proba" if contract.is_classifier else "predict_interval"
    result = client.infer(model, _per_feature_inputs(contract, rows, wire), outputs=_requested(only, wire=wire),
                          request_id="req-42")
    body = result.get_response()
    validate("inference_response", body, binary=wire == "binary")
    _binary_outputs(body, wire)
    assert body["id"] == "req-42" and [o["name"] for o in body["outputs"]] == [only]
    assert result.as_numpy(only).shape[0] == len(rows) and result.as_numpy("predict") is None
    result = client.infer(model, [_tensor_input(contract, rows, wire)], outputs=_requested("predict", wire=wire))
    body = result.get_response()
    validate("inference_response", body, binary=wire == "binary")
    assert [o["name"] for o in body["outputs"]] == ["predict"]
    assert isinstance(body["id"], str) and body["id"]  # no id sent: the generated request id
    other = client.infer(model, [_tensor_input(contract, rows, wire)], outputs=_requested("predict", wire=wire))
    assert other.get_response()["id"] != body["id"]


@pytest.mark.parametrize("model", MODELS)
def test_explain_adds_one_json_explanation_per_row(client, contracts, model):
    contract, rows = contracts[model], ROWS[model]
    result = client.infer(model, _per_feature_inputs(contract, rows), parameters={"explain": True})
    body = result.get_response()
    validate("inference_response", body, binary=True)
    _output_tensors_are_as_documented(model, contract, body, len(rows))
    assert {o["name"] for o in body["outputs"]} >= {"predict", "explanation"}
    explanations = result.as_numpy("explanation")
    assert explanations.shape == (len(rows),)
    for text in explanations:
        attributions = json.loads(text)
        assert isinstance(attributions, dict | list) and attributions, text
    plain = client.infer(model, _per_feature_inputs(contract, rows)).get_response()
    assert "explanation" not in {o["name"] for o in plain["outputs"]}


def test_a_kept_fallback_version_is_served_when_asked_for(client, contracts):
    contract = contracts["penguins"]
    for version in (STABLE, FALLBACK):
        result = client.infer("penguins", _per_feature_inputs(contract, PENGUIN_ROWS), model_version=version)
        body = result.get_response()
        validate("inference_response", body, binary=True)
        assert body["model_version"] == version
        assert list(map(_text, result.as_numpy("predict"))) == [e["expected"] for e in SPECS["penguins"].examples()]


def test_missing_optional_values_as_null_and_other_numeric_datatypes(server, contracts):
    """Raw JSON (the client cannot put null in a numeric tensor): nulls, and FP32/INT64 numbers, answer as V1."""
    co2 = contracts["co2"]
    assert any(r.get("fuel_consumption_comb_l_per_100km") is None for r in CO2_ROWS)
    v1 = _v1(server, "co2", CO2_ROWS)
    for inputs in (_per_feature_json(co2, CO2_ROWS), [_tensor_json(co2, CO2_ROWS)]):
        status, body = _raw_infer(server, "co2", {"inputs": inputs})
        assert status == 200, body
        _output_tensors_are_as_documented("co2", co2, body, len(CO2_ROWS))
        _same_as_v1(co2, _outputs(body), v1)
    penguins = contracts["penguins"]
    rows = [PENGUIN_ROWS[0], {k: v for k, v in PENGUIN_ROWS[1].items() if k != "sex"}, PENGUIN_ROWS[2]]
    inputs = _per_feature_json(penguins, rows)
    for tensor in inputs:
        if tensor["name"] == "bill_length_mm":
            tensor["datatype"] = "FP32"
        if tensor["name"] in ("flipper_length_mm", "body_mass_g"):
            tensor["datatype"], tensor["data"] = "INT64", [int(v) for v in tensor["data"]]
    assert inputs[-1]["name"] == "sex" and inputs[-1]["data"][1] is None
    status, body = _raw_infer(server, "penguins", {"id": "raw-1", "inputs": inputs})
    assert status == 200 and body["id"] == "raw-1", body
    _same_as_v1(penguins, _outputs(body), _v1(server, "penguins", rows))


# -------------------------------------------------------------------------------------------------- errors

def _set(name: str, **changes):
    """A change to the penguin body: the named input's fields replaced (or the input dropped when None)."""
    def change(body: dict) -> dict:
        inputs = []
        for tensor in body["inputs"]:
            if tensor["name"] != name:
                inputs.append(tensor)
            elif changes:
                inputs.append({**tensor, **changes})
        return {**body, "inputs": inputs}
    return change


def _data(name: str, row: int, value):
    def change(body: dict) -> dict:
        for tensor in body["inputs"]:
            if tensor["name"] == name:
                tensor["data"][row] = value
        return body
    return change


def _add(tensor: dict):
    return lambda body: {**body, "inputs": [*body["inputs"], tensor]}


def _tensor_only(**changes):
    """The body as the single encoded tensor of the same rows, its fields replaced; a replacement may be a
    function of (F, the valid flat data)."""
    def change(body: dict) -> dict:
        tensor = body["tensor"]
        width, data = tensor["shape"][1], tensor["data"]
        return {"inputs": [{**tensor, **{k: v(width, data) if callable(v) else v for k, v in changes.items()}}]}
    return change


# (id, change to the valid penguin body, strings the message must contain; "row i" is 0-based, as V1's instances[i])
BAD_REQUESTS = [
    ("string-in-numeric-input", _data("bill_length_mm", 1, "forty"), ["bill_length_mm", "row 1"]),
    ("value-out-of-bounds", _data("bill_length_mm", 2, 1000.0), ["bill_length_mm", "row 2"]),
    ("null-in-required-input", _data("island", 1, None), ["island", "row 1"]),
    ("unseen-category", _data("island", 2, "Atlantis"), ["island", "row 2"]),
    ("integer-datatype-with-fractions", _set("bill_length_mm", datatype="INT64"), ["bill_length_mm"]),
    ("category-as-numbers", _set("island", datatype="FP64", data=[1.0, 2.0, 3.0]), ["island"]),
    ("number-declared-bytes", _set("body_mass_g", datatype="BYTES", data=["3750", "6050", "3500"]), ["body_mass_g"]),
    ("unknown-datatype", _set("bill_depth_mm", datatype="FP99"), ["bill_depth_mm"]),
    ("shape-data-mismatch", _set("flipper_length_mm", shape=[3], data=[181, 230]), ["flipper_length_mm"]),
    ("inputs-of-another-length", _set("island", shape=[2], data=["Torgersen", "Biscoe"]), ["island"]),
    ("negative-shape", _set("bill_length_mm", shape=[-3]), ["bill_length_mm"]),
    ("huge-shape", _set("bill_length_mm", shape=[10**12]), ["bill_length_mm"]),
    ("non-list-data", _set("bill_depth_mm", data="18.7"), ["bill_depth_mm"]),
    ("object-data", _set("bill_depth_mm", data={"0": 18.7}), ["bill_depth_mm"]),
    ("missing-input", _set("bill_depth_mm"), ["bill_depth_mm"]),
    ("unknown-input", _add({"name": "wingspan_mm", "shape": [3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}),
     ["wingspan_mm"]),
    ("unknown-output", lambda body: {**body, "outputs": [{"name": "species_logits"}]},
     ["species_logits", "predict, predict_proba"]),
    # a datatype must fit its values (the old code let each of these through to the model)
    ("int8-holding-3750", _set("body_mass_g", datatype="INT8", data=[3750, 6050, 3500]),
     ["body_mass_g", "row 0", "INT8", "3750"]),
    ("uint16-holding-a-negative", _set("flipper_length_mm", datatype="UINT16", data=[181, -230, 192]),
     ["flipper_length_mm", "row 1", "UINT16"]),
    ("fp32-holding-a-category", _set("sex", datatype="FP32"), ["sex", "row 0", "FP32", "'male'"]),
    ("bytes-holding-numbers", _set("body_mass_g", datatype="BYTES", data=[3750, 6050, 3500]),
     ["body_mass_g", "row 0", "BYTES"]),
    ("bytes-category-holding-numbers", _set("island", data=[1, 2, 3]), ["island", "row 0", "BYTES"]),
    ("bool-holding-numbers", _set("bill_depth_mm", datatype="BOOL", data=[1, 0, 1]), ["bill_depth_mm", "BOOL"]),
    ("fp32-beyond-its-range", _set("bill_length_mm", datatype="FP32", data=[39.1, 1e39, 46.5]),
     ["bill_length_mm", "row 1", "FP32", "1e+39"]),
    ("fp16-beyond-its-range", _set("body_mass_g", datatype="FP16", data=[3750, 6050, 70000]),
     ["body_mass_g", "row 2", "FP16"]),
    ("tensor-beyond-fp32", _tensor_only(data=lambda f, d: [*d[:f], 1e39, *d[f + 1:]]), [TENSOR, "row 1", "FP32"]),
    ("tensor-fp64-beyond-fp32", _tensor_only(datatype="FP64", data=lambda f, d: [*d[:f], -1e39, *d[f + 1:]]),
     [TENSOR, "row 1", "FP32"]),
    ("tensor-int8-beyond-its-range", _tensor_only(datatype="INT8", data=lambda f, d: [int(v) for v in d]),
     [TENSOR, "INT8"]),
    # parameters: an object of at most 64 strings, numbers or booleans
    ("parameters-a-list", lambda body: {**body, "parameters": []}, ["parameters", "a list"]),
    ("parameters-a-string", lambda body: {**body, "parameters": "explain"}, ["parameters"]),
    ("parameters-nested", lambda body: {**body, "parameters": {"deep": {"a": {"b": {"c": [1]}}}}},
     ["parameters", "deep", "an object"]),
    ("parameters-too-many", lambda body: {**body, "parameters": {f"p{i}": i for i in range(65)}},
     ["parameters", "65", "64"]),
    ("parameter-too-long", lambda body: {**body, "parameters": {"content_type": "x" * 2000}},
     ["parameters", "content_type"]),
    ("parameter-null", lambda body: {**body, "parameters": {"content_type": None}}, ["content_type", "null"]),
    ("explain-not-a-boolean", lambda body: {**body, "parameters": {"explain": "yes"}}, ["explain", "boolean"]),
    ("binary-data-output-not-a-boolean", lambda body: {**body, "parameters": {"binary_data_output": 1}},
     ["binary_data_output", "boolean"]),
    ("input-parameters-nested", _set("island", parameters={"content_type": ["str", {"a": 1}]}),
     ["island", "content_type", "a list"]),
    ("input-parameters-junk", _set("island", parameters="str"), ["island", "parameters"]),
    ("output-parameters-nested", lambda body: {**body, "outputs": [{"name": "predict", "parameters": {"x": {}}}]},
     ["predict", "'x'"]),
    ("output-binary-data-not-a-boolean",
     lambda body: {**body, "outputs": [{"name": "predict", "parameters": {"binary_data": "yes"}}]},
     ["predict", "binary_data"]),
    ("output-asked-twice", lambda body: {**body, "outputs": [{"name": "predict"}, {"name": "predict"}]},
     ["predict", "twice"]),
    ("binary-size-without-the-header", _set("island", parameters={"binary_data_size": 10}),
     ["island", "Inference-Header-Content-Length"]),
    ("no-inputs", lambda body: {"inputs": []}, []),
    ("inputs-not-a-list", lambda body: {"inputs": {"bill_length_mm": [39.1]}}, []),
    ("body-not-an-object", lambda body: [body], []),
    ("tensor-wrong-width", _tensor_only(shape=[3, 99], data=lambda f, d: (d * 99)[:3 * 99]), [TENSOR]),
    ("tensor-one-column-short", _tensor_only(shape=lambda f, d: [3, f - 1],
                                             data=lambda f, d: [v for i, v in enumerate(d) if i % f != f - 1]),
     [TENSOR]),
    ("tensor-short-rows", _tensor_only(data=lambda f, d: [d[i * f:i * f + f - 1] for i in range(3)]), [TENSOR]),
    ("tensor-shape-data-mismatch", _tensor_only(data=lambda f, d: d[:2 * f]), [TENSOR]),
    ("tensor-string-in-row", _tensor_only(data=lambda f, d: [*d[:f], "x", *d[f + 1:]]), [TENSOR, "row 1"]),
    ("tensor-bytes-datatype", _tensor_only(datatype="BYTES", data=lambda f, d: [str(v) for v in d]), [TENSOR]),
    ("tensor-one-dimensional", _tensor_only(shape=lambda f, d: [len(d)]), [TENSOR]),
    ("tensor-huge-shape", _tensor_only(shape=lambda f, d: [10**12, f]), [TENSOR]),
]


@pytest.fixture(scope="module")
def penguin_body(contracts) -> dict:
    """The valid per-feature body of the three penguin rows, and (under "tensor") their encoded tensor."""
    return {"inputs": _per_feature_json(contracts["penguins"], PENGUIN_ROWS),
            "tensor": _tensor_json(contracts["penguins"], PENGUIN_ROWS)}


def test_the_valid_penguin_body_is_answered(server, penguin_body):
    status, body = _raw_infer(server, "penguins", {"inputs": penguin_body["inputs"]})
    assert status == 200 and [str(v) for v in _outputs(body)["predict"]] == ["Adelie", "Gentoo", "Chinstrap"], body
    status, body = _raw_infer(server, "penguins", {"inputs": [penguin_body["tensor"]]})
    assert status == 200 and [str(v) for v in _outputs(body)["predict"]] == ["Adelie", "Gentoo", "Chinstrap"], body


@pytest.mark.parametrize(("change", "named"), [case[1:] for case in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_a_bad_request_is_a_4xx_naming_the_input_and_row(server, penguin_body, change, named):
    valid = json.loads(json.dumps({"inputs": penguin_body["inputs"], "tensor": penguin_body["tensor"]}))
    body = change(valid)
    if isinstance(body, dict):
        body.pop("tensor", None)
    status, answer = _raw_infer(server, "penguins", body)
    message = _error(status, answer)
    for part in named:
        pattern = rf"\b{re.escape(part)}\b" if part.startswith("row ") else re.escape(part)
        assert re.search(pattern, message), f"{part!r} not named in {message!r}"


def test_the_client_raises_the_servers_error(client, contracts):
    contract = contracts["penguins"]
    with pytest.raises(InferenceServerException) as caught:
        client.infer("penguins", _per_feature_inputs(contract, PENGUIN_ROWS), outputs=_requested("species_logits"))
    assert caught.value.status() == "400" and "species_logits" in caught.value.message()
    assert client.is_server_live()  # nothing above broke the worker


def test_ready_is_503_while_a_served_model_cannot_answer(serve, published, tmp_path):
    """Penguins published, co2 served but with no bundle anywhere (no shipped model either)."""
    function = serve({"MODEL_STORE": str(published.root), "MODELS": "penguins,co2",
                      "SHIPPED_MODEL_DIR": str(tmp_path / "no-shipped-model")})
    triton = httpclient.InferenceServerClient(url=function.url.removeprefix("http://"))
    try:
        assert triton.is_server_live() and not triton.is_server_ready()
        assert get(function.url + "/v2/health/ready")[0] == 503
        assert triton.is_model_ready("penguins") and not triton.is_model_ready("co2")
    finally:
        triton.close()


# ----------------------------------------------------------------------------- NaN, and the binary extension

def _post_bytes(server, model: str, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
    """POST raw bytes; (status, response headers, response body)."""
    req = urllib.request.Request(server.url + _infer_path(model), data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _binary_body(header: dict, *chunks: bytes) -> tuple[bytes, dict]:
    """A binary extension request: the JSON header, then the chunks; and its headers, as tritonclient sends them."""
    text = json.dumps(header).encode()
    return text + b"".join(chunks), {"Inference-Header-Content-Length": str(len(text)),
                                     "Content-Type": "application/octet-stream"}


def _length_prefixed(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def _split(headers: dict, body: bytes) -> tuple[dict, bytes]:
    size = int({k.lower(): v for k, v in headers.items()}["inference-header-content-length"])
    return json.loads(body[:size]), body[size:]


def test_a_bare_nan_is_a_missing_value_and_infinity_is_refused(server, contracts):
    """tritonclient's JSON encoder writes a NumPy NaN as a bare `NaN` token: a missing value on /v2 (as null),
    answered as V1 answers the row without it; a required feature's NaN is refused as its null is, and
    `Infinity` is never a number."""
    contract = contracts["co2"]
    fuel = "fuel_consumption_comb_l_per_100km"
    rows = [CO2_RATED[0], {k: v for k, v in CO2_RATED[0].items() if k != fuel}]
    text = json.dumps({"inputs": _per_feature_json(contract, rows)})
    assert text.count("null") == 1
    status, headers, raw = _post_bytes(server, "co2", text.replace("null", "NaN").encode(),
                                       {"Content-Type": "application/json"})
    assert status == 200, raw
    body = json.loads(raw)
    validate("inference_response", body)
    _same_as_v1(contract, _outputs(body), _v1(server, "co2", rows))
    for token in ("Infinity", "-Infinity"):
        status, _, raw = _post_bytes(server, "co2", text.replace("null", token).encode(),
                                     {"Content-Type": "application/json"})
        assert token in _error(status, json.loads(raw))
    beyond = text.replace("null", "NaN").replace("2.0", "1e400", 1)  # the standard library's reading: still finite
    status, _, raw = _post_bytes(server, "co2", beyond.encode(), {"Content-Type": "application/json"})
    assert "1e400" in _error(status, json.loads(raw))
    required = json.dumps({"inputs": _per_feature_json(contract, CO2_RATED[:1])}).replace("2.0", "NaN", 1)
    assert "NaN" in required
    status, _, raw = _post_bytes(server, "co2", required.encode(), {"Content-Type": "application/json"})
    message = _error(status, json.loads(raw))
    assert "engine_size_l" in message and re.search(r"\brow 0\b", message), message


def test_a_hand_built_binary_request_and_response_follow_the_extension(server, contracts):
    """Triton's extension_binary_data.md, byte for byte: inputs' bytes after the JSON header in input order
    (FP64 little-endian, BYTES 4-byte-length-prefixed UTF-8), outputs asked one by one (`binary_data`), the rest
    as JSON, the response's Inference-Header-Content-Length the length of its JSON header."""
    contract = contracts["penguins"]
    numeric = {f.name for f in contract.numeric}
    inputs, chunks = [], []
    for name in contract.field_names:
        values = [row[name] for row in PENGUIN_ROWS]
        if name in numeric:
            chunk, datatype = np.asarray(values, dtype="<f8").tobytes(), "FP64"
        else:
            chunk, datatype = _length_prefixed(values), "BYTES"
        inputs.append({"name": name, "shape": [3], "datatype": datatype,
                       "parameters": {"binary_data_size": len(chunk)}})
        chunks.append(chunk)
    outputs = [{"name": "predict", "parameters": {"binary_data": True}}, {"name": "predict_proba"}]
    body, headers = _binary_body({"inputs": inputs, "outputs": outputs}, *chunks)
    status, answer_headers, raw = _post_bytes(server, "penguins", body, headers)
    assert status == 200, raw
    header, tail = _split(answer_headers, raw)
    validate("inference_response", header, binary=True)
    predict, proba = header["outputs"]
    assert predict["parameters"] == {"binary_data_size": len(tail)} and "data" not in predict
    labels, pos = [], 0
    while pos < len(tail):
        (size,) = struct.unpack_from("<I", tail, pos)
        labels.append(tail[pos + 4:pos + 4 + size].decode())
        pos += 4 + size
    assert labels == ["Adelie", "Gentoo", "Chinstrap"]
    v1 = _v1(server, "penguins", PENGUIN_ROWS)
    expected = [[a["probabilities"][label] for label in contract.labels] for a in v1]
    np.testing.assert_allclose(np.array(proba["data"]).reshape(proba["shape"]), expected, rtol=0, atol=1e-6)
    # every output binary (binary_data_output), unless one says otherwise; FP64 and BOOL of co2
    co2 = contracts["co2"]
    matrix = build_batch(co2, CO2_RATED).matrix
    tensor = {"name": TENSOR, "shape": list(matrix.shape), "datatype": "FP32",
              "parameters": {"binary_data_size": matrix.nbytes}}
    body, headers = _binary_body({"inputs": [tensor], "parameters": {"binary_data_output": True},
                                  "outputs": [{"name": "predict"}, {"name": "extrapolation"},
                                              {"name": "predict_interval", "parameters": {"binary_data": False}}]},
                                 matrix.astype("<f4").tobytes())
    status, answer_headers, raw = _post_bytes(server, "co2", body, headers)
    assert status == 200, raw
    header, tail = _split(answer_headers, raw)
    predict, extrapolation, interval = header["outputs"]
    n = len(CO2_RATED)
    assert predict["parameters"]["binary_data_size"] == 8 * n and extrapolation["parameters"]["binary_data_size"] == n
    assert "data" in interval and "parameters" not in interval and len(tail) == 9 * n
    v1 = _v1(server, "co2", CO2_RATED)
    np.testing.assert_allclose(np.frombuffer(tail[:8 * n], "<f8"), [a[co2.target.name] for a in v1], atol=1e-3)
    assert np.frombuffer(tail[8 * n:], np.uint8).tolist() == [int(a["extrapolation"]) for a in v1]
    # JSON outputs only: no binary data, no header
    body, headers = _binary_body({"inputs": [tensor]}, matrix.astype("<f4").tobytes())
    status, answer_headers, raw = _post_bytes(server, "co2", body, headers)
    assert status == 200 and "inference-header-content-length" not in {k.lower() for k in answer_headers}
    validate("inference_response", json.loads(raw))


def _penguin_binary(contract: FeatureContract, **replace: tuple[dict, bytes]) -> tuple[list[dict], list[bytes]]:
    """The penguin rows as binary inputs; `replace` maps an input's name to its (changed fields, bytes)."""
    numeric = {f.name for f in contract.numeric}
    inputs, chunks = [], []
    for name in contract.field_names:
        values = [row[name] for row in PENGUIN_ROWS]
        chunk = np.asarray(values, dtype="<f8").tobytes() if name in numeric else _length_prefixed(values)
        tensor = {"name": name, "shape": [3], "datatype": "FP64" if name in numeric else "BYTES",
                  "parameters": {"binary_data_size": len(chunk)}}
        if name in replace:
            changes, chunk = replace[name]
            parameters = {"binary_data_size": len(chunk), **changes.get("parameters", {})}
            tensor = {**tensor, **changes, "parameters": parameters}
        inputs.append(tensor)
        chunks.append(chunk)
    return inputs, chunks


BAD_BINARY = [
    ("fp64-infinity", {"bill_length_mm": ({}, np.asarray([39.1, np.inf, 46.5], "<f8").tobytes())},
     ["bill_length_mm", "row 1", "inf"]),
    ("fp32-nan-in-a-required-feature", {"bill_length_mm": ({"datatype": "FP32"},
                                                           np.asarray([39.1, np.nan, 46.5], "<f4").tobytes())},
     ["bill_length_mm", "row 1"]),
    ("size-not-the-shape", {"bill_depth_mm": ({}, np.asarray([18.7, 15.2], "<f8").tobytes())},
     ["bill_depth_mm", "binary_data_size"]),
    ("bool-byte-2", {"bill_depth_mm": ({"datatype": "BOOL"}, bytes([1, 2, 0]))}, ["bill_depth_mm", "row 1", "BOOL"]),
    ("bytes-short", {"island": ({}, _length_prefixed(["Torgersen", "Biscoe"]))}, ["island", "BYTES"]),
    ("bytes-not-utf8", {"island": ({}, _length_prefixed(["Torgersen", "Biscoe"]) + b"\x02\x00\x00\x00\xff\xfe")},
     ["island", "row 2", "UTF-8"]),
    ("bytes-numbers-for-a-numeric-feature", {"body_mass_g": ({"datatype": "BYTES"}, _length_prefixed(["3750"] * 3))},
     ["body_mass_g"]),
    ("int8-for-a-category", {"island": ({"datatype": "INT8"}, bytes([1, 2, 3]))}, ["island"]),
    ("negative-size", {"island": ({"parameters": {"binary_data_size": -1}}, b"")}, ["island", "binary_data_size"]),
    ("data-and-size", {"island": ({"data": ["Torgersen", "Biscoe", "Dream"]}, _length_prefixed(["a", "b", "c"]))},
     ["island", "data", "binary_data_size"]),
]


@pytest.mark.parametrize(("replace", "named"), [c[1:] for c in BAD_BINARY], ids=[c[0] for c in BAD_BINARY])
def test_bad_binary_inputs_are_a_400_naming_the_input(server, contracts, replace, named):
    inputs, chunks = _penguin_binary(contracts["penguins"], **replace)
    body, headers = _binary_body({"inputs": inputs}, *chunks)
    status, _, raw = _post_bytes(server, "penguins", body, headers)
    message = _error(status, json.loads(raw))
    for part in named:
        pattern = rf"\b{re.escape(part)}\b" if part.startswith("row ") else re.escape(part)
        assert re.search(pattern, message), f"{part!r} not named in {message!r}"


def test_a_binary_body_must_add_up(server, contracts):
    inputs, chunks = _penguin_binary(contracts["penguins"])
    body, headers = _binary_body({"inputs": inputs}, *chunks)
    status, _, raw = _post_bytes(server, "penguins", body, headers)
    assert status == 200, raw
    length = "Inference-Header-Content-Length"
    for headers_, body_, named in (
            ({**headers, length: str(len(body) + 1)}, body, length),
            ({**headers, length: "0"}, body, length),
            ({**headers, length: "x"}, body, length),
            (headers, body + b"\x00", "binary_data_size"),  # a byte no input claims
            (headers, body[:-1], "runs past")):
        status, _, raw = _post_bytes(server, "penguins", body_, headers_)
        assert named in _error(status, json.loads(raw))


def test_no_runtime_warning_reached_the_log(server):
    """FP32 values of 1e39 (above, in BAD_REQUESTS) were refused without NumPy's overflow warning."""
    assert not [line for line in server.log_lines() if "Warning" in line]
