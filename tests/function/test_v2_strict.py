"""The Open Inference Protocol's strictness in process (Functions Framework's test client), where a warning
can be made an error: values beyond their datatype's range are refused without NumPy's overflow warning."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from function.serving import v2
from function.serving.errors import ApiError
from tests.support.oip import validate

ROW = {"bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181, "body_mass_g": 3750, "sex": "male",
       "island": "Torgersen"}
NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")


def _per_feature(**datatypes: str) -> list[dict]:
    return [{"name": k, "shape": [1], "datatype": datatypes.get(k, "FP64" if k in NUMERIC else "BYTES"), "data": [v]}
            for k, v in ROW.items()]


def _infer(client, body: dict) -> tuple[int, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning (NumPy's overflow in a cast) fails the request
        resp = client.post("/v2/models/penguins/infer", json=body)
    answer = resp.get_json()
    validate("inference_response" if resp.status_code == 200 else "inference_error_response", answer)
    return resp.status_code, answer


def test_the_valid_row_is_answered_with_warnings_as_errors(client):
    status, body = _infer(client, {"inputs": _per_feature()})
    assert status == 200 and body["outputs"][0]["data"] == ["Adelie"], body


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_1e39_is_refused_without_a_warning(client, datatype):
    inputs = _per_feature(bill_length_mm=datatype)
    inputs[0]["data"] = [1e39]
    status, body = _infer(client, {"inputs": inputs})
    assert status == 400 and "bill_length_mm" in body["error"] and "row 0" in body["error"], body
    metadata = client.get("/v2/models/penguins").get_json()
    columns = metadata["parameters"]["tensor_input"]["columns"]
    data = [ROW.get(c, 0.0) for c in columns]
    data[columns.index("sex=male")] = data[columns.index("island=Torgersen")] = 1.0
    ok = {"name": "input-0", "shape": [1, len(columns)], "datatype": datatype, "data": data}
    assert _infer(client, {"inputs": [ok]})[0] == 200
    status, body = _infer(client, {"inputs": [{**ok, "data": [1e39, *data[1:]]}]})
    assert status == 400 and "input-0" in body["error"] and "FP32" in body["error"], body


def test_int8_holding_3750_fp32_holding_a_category_and_bytes_holding_numbers(client):
    for inputs, named in ((_per_feature(body_mass_g="INT8"), ["body_mass_g", "INT8"]),
                          (_per_feature(sex="FP32"), ["sex", "FP32", "'male'"]),
                          ([{**t, "datatype": "BYTES"} if t["name"] == "body_mass_g" else t for t in _per_feature()],
                           ["body_mass_g", "BYTES"])):
        status, body = _infer(client, {"inputs": inputs})
        assert status == 400 and all(n in body["error"] for n in named), body


def test_the_binary_decoders():
    assert v2._byte_strings("x", [2], b"\x01\x00\x00\x00a\x02\x00\x00\x00\xc3\xa9") == ["a", "é"]
    for chunk in (b"\x01\x00\x00", b"\x05\x00\x00\x00abc", b"\x01\x00\x00\x00a\x00"):
        with pytest.raises(ApiError) as caught:
            v2._byte_strings("x", [1], chunk)
        assert caught.value.code == 400 and "'x'" in caught.value.message
    assert v2._binary_input("x", [3], "BOOL", bytes([1, 0, 1])).tolist() == [True, False, True]
    assert v2._binary_input("x", [2], "INT16", np.asarray([-3, 300], "<i2").tobytes()).tolist() == [-3, 300]
    assert v2._plain(np.asarray([1.5, np.nan])) == [1.5, None]
    assert v2._to_bytes(["ab"], "BYTES") == b"\x02\x00\x00\x00ab"
    assert v2._to_bytes([True, False], "BOOL") == b"\x01\x00"
    assert v2._to_bytes(np.asarray([1.0]), "FP64") == np.asarray([1.0], "<f8").tobytes()
