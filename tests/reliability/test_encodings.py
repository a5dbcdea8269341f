"""Content-Encoding and Content-Type at the edge, over real HTTP against the function under gunicorn.

Every route that reads a body decodes a gzip or deflate body (what tritonclient's
`request_compression_algorithm` sends) to the same answer as the plain one, holds the decoded size to
MAX_BODY_BYTES (413 beyond), answers 400 for a body that is not what its Content-Encoding says, and 415 naming
an encoding it does not decode: an encoding is never ignored. /v2 takes what Open Inference Protocol clients
send (no Content-Type, JSON, curl's `-d` default, octet-stream with the binary tensor data extension) and
refuses other types with a 415, as /v1 does.
"""
from __future__ import annotations

import gzip
import http.client
import json
import zlib

import numpy as np
import pytest
import tritonclient.http as httpclient

from shared.spec import load_spec
from testbed.servers import FunctionServer

SECTION = "edge"
MAX_BODY = 64 * 1024
EXAMPLE = load_spec("penguins").examples()[0]["request"]
V2_BODY = {"inputs": [
    {"name": "bill_length_mm", "shape": [1], "datatype": "FP64", "data": [39.1]},
    {"name": "bill_depth_mm", "shape": [1], "datatype": "FP64", "data": [18.7]},
    {"name": "flipper_length_mm", "shape": [1], "datatype": "FP64", "data": [181]},
    {"name": "body_mass_g", "shape": [1], "datatype": "FP64", "data": [3750]},
    {"name": "sex", "shape": [1], "datatype": "BYTES", "data": ["male"]},
    {"name": "island", "shape": [1], "datatype": "BYTES", "data": ["Torgersen"]}]}
# every route that reads a body, with a body it answers
ROUTES = {
    "/predict": EXAMPLE,
    "/v1/models/penguins:predict": {"instances": [EXAMPLE]},
    "/v1/models/penguins:explain": {"instances": [EXAMPLE]},
    "/feedback": {"model": "penguins", "source": "field-team", "instances": [{"id": "penguin-7-0", "truth": "Adelie"}]},
    "/v2/models/penguins/infer": V2_BODY,
}
ENCODERS = {"gzip": gzip.compress, "x-gzip": gzip.compress, "deflate": zlib.compress}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The function with an empty store (its shipped penguin model) and a small MAX_BODY_BYTES."""
    function = FunctionServer({"MODEL_STORE": str(tmp_path_factory.mktemp("empty") / "bucket"),
                               "MODELS": "penguins", "MAX_BODY_BYTES": str(MAX_BODY)}, threads=4).start()
    yield function
    function.stop()


def send(server, path: str, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
    """POST `body` with exactly `headers` (none added): (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, dict(resp.headers), resp.read()
    finally:
        conn.close()


def without_ids(answer: dict) -> dict:
    """The answer without what differs between two requests (ids, timings)."""
    drop = {"request_id", "id", "prediction_id", "prediction_ids", "latency_ms"}
    if isinstance(answer, dict):
        return {k: without_ids(v) for k, v in answer.items() if k not in drop}
    if isinstance(answer, list):
        return [without_ids(v) for v in answer]
    return answer


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("coding", list(ENCODERS))
@pytest.mark.parametrize("path", list(ROUTES))
def test_an_encoded_body_is_answered_as_the_plain_one(server, path, coding, tally):
    plain = json.dumps(ROUTES[path]).encode()
    status, _, answer = send(server, path, plain, JSON)
    encoded_status, _, encoded_answer = send(server, path, ENCODERS[coding](plain),
                                             {**JSON, "Content-Encoding": coding})
    assert status in (200, 202), answer  # the plain body is answered, so the comparison means something
    held = encoded_status == status and without_ids(json.loads(encoded_answer)) == without_ids(json.loads(answer))
    tally.add(SECTION, "gzip or deflate body answered as the plain one", 1, held)
    assert encoded_status == status, encoded_answer
    assert without_ids(json.loads(encoded_answer)) == without_ids(json.loads(answer))


def test_encodings_are_never_ignored(server, tally):
    plain = json.dumps(EXAMPLE).encode()
    bomb = gzip.compress(b" " * (MAX_BODY + 1))  # a few hundred bytes that decode past the limit
    two_members = gzip.compress(plain[:10]) + gzip.compress(plain[10:])  # gzip allows concatenated members
    cases = {
        "plain JSON labelled gzip": (plain, "gzip", 400, "not valid gzip"),
        "truncated gzip": (gzip.compress(plain)[:-12], "gzip", 400, "ends before"),
        "gzip then junk": (gzip.compress(plain) + b"junk", "gzip", 400, "gzip"),
        "deflate then junk": (zlib.compress(plain) + b"junk", "deflate", 400, "after the end"),
        "decodes past MAX_BODY_BYTES": (bomb, "gzip", 413, f"exceeds {MAX_BODY} bytes once decoded"),
        "brotli": (plain, "br", 415, "'br'"),
        "zstd": (plain, "zstd", 415, "'zstd'"),
        "two codings, one unknown": (gzip.compress(plain), "compress, gzip", 415, "'compress'"),
        "identity": (plain, "identity", 200, ""),
        "GZIP in capitals": (gzip.compress(plain), "GZIP", 200, ""),
        "gzip twice": (gzip.compress(gzip.compress(plain)), "gzip, gzip", 200, ""),
        "gzip of two members": (two_members, "gzip", 200, ""),
    }
    outcomes = {}
    for case, (body, coding, expected, _) in cases.items():
        status, headers, answer = send(server, "/predict", body, {**JSON, "Content-Encoding": coding})
        message = json.loads(answer).get("error", {}).get("message", "")
        outcomes[case] = (status, message)
        if expected == 415:
            assert headers.get("Accept-Encoding") == "gzip, deflate", case
    held = sum(outcomes[c][0] == e and s in outcomes[c][1] for c, (_, _, e, s) in cases.items())
    tally.add(SECTION, "bad, unknown or oversized Content-Encoding: 400, 415 or 413", len(cases), held)
    for case, (_, _, expected, says) in cases.items():
        assert outcomes[case][0] == expected and says in outcomes[case][1], (case, outcomes[case])


def test_v2_content_types_are_those_oip_clients_send(server, tally):
    body = json.dumps(V2_BODY).encode()
    binary = {"Inference-Header-Content-Length": str(len(body))}  # the extension with no binary input
    cases = {
        "none (tritonclient)": ({}, 200),
        "application/json": (JSON, 200),
        "application/json; charset=utf-8": ({"Content-Type": "application/json; charset=utf-8"}, 200),
        "curl -d's form type, as /v1 refuses it": ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        "octet-stream, binary extension": ({"Content-Type": "application/octet-stream", **binary}, 200),
        "octet-stream without the extension": ({"Content-Type": "application/octet-stream"}, 415),
        "text/plain": ({"Content-Type": "text/plain"}, 415),
        "multipart/form-data": ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
        "application/xml": ({"Content-Type": "application/xml"}, 415),
    }
    outcomes = {case: send(server, "/v2/models/penguins/infer", body, headers)[0]
                for case, (headers, _) in cases.items()}
    v1_text = send(server, "/v1/models/penguins:predict", json.dumps({"instances": [EXAMPLE]}).encode(),
                   {"Content-Type": "text/plain"})[0]
    held = sum(outcomes[c] == e for c, (_, e) in cases.items()) + (v1_text == 415)
    tally.add(SECTION, "/v2 Content-Type: OIP clients' accepted, others 415 as /v1", len(cases) + 1, held)
    assert outcomes == {case: expected for case, (_, expected) in cases.items()}
    assert v1_text == 415


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_tritonclient_with_request_compression(server, compression, binary, tally):
    triton = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=30)
    try:
        inputs = []
        for spec in V2_BODY["inputs"]:
            kind = "BYTES" if spec["datatype"] == "BYTES" else "FP64"
            tensor = httpclient.InferInput(spec["name"], spec["shape"], kind)
            tensor.set_data_from_numpy(np.array(spec["data"], dtype=object if kind == "BYTES" else np.float64),
                                       binary_data=binary)
            inputs.append(tensor)
        result = triton.infer("penguins", inputs, request_compression_algorithm=compression)
        predicted = result.as_numpy("predict").tolist()
    finally:
        triton.close()
    tally.add(SECTION, "tritonclient with request compression", 1, predicted in ([b"Adelie"], ["Adelie"]))
    assert predicted in ([b"Adelie"], ["Adelie"])
