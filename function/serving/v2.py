"""The Open Inference Protocol (V2 REST), as KServe, Triton and MLServer speak it: translation only.

Inputs come either one per original feature (`name` = the feature, `shape` [N]; numbers in any numeric
datatype, categories as BYTES, a missing value as null), as MLServer's pandas codec sends columns, or
as one FP32 tensor [N, F] of the model's encoded columns in the order `GET /v2/models/{name}` states
(`parameters.tensor_input.columns`), as MLServer's XGBoost runtime takes it. Outputs are named as
MLServer's XGBoost and scikit-learn runtimes name them: `predict`, `predict_proba` (classifiers),
`predict_interval` and `extrapolation` (regressors: BOOL, true for a row with a numeric input outside its
training range, whose interval is then the model's widest), plus `explanation` when asked. A binary
classifier's `predict` is decided by its threshold on P(positive) (the last `predict_proba` column), which
the response's and the model metadata's `parameters` state (`threshold`, a number, as OIP parameters are).
Errors are `{"error": "..."}`.

As strict as `v1`: a tensor's data must fit its datatype (BYTES: strings; BOOL: true/false; INT*/UINT*: integers
within the type's range; FP*: numbers within it), `parameters` (of the request, an input or an output) are an
object of at most `MAX_PARAMETERS` strings, numbers or booleans, and requested outputs are known and asked once.
A bare `NaN` token (tritonclient's JSON for a NumPy NaN) is a missing value (null); `Infinity` is refused.

The binary tensor data extension (Triton's `extension_binary_data.md`, what tritonclient sends by default):
with an `Inference-Header-Content-Length` header, the body is that many bytes of JSON, then the raw data of
each input whose `parameters.binary_data_size` says so, in input order (little-endian, row-major; BOOL one
byte; BYTES each a 4-byte little-endian length then its UTF-8 bytes). Outputs asked with
`parameters.binary_data: true`, or all of them with the request's `binary_data_output: true`, are answered
the same way: the JSON header (their `parameters.binary_data_size`, no `data`), then their bytes, the
response's `Inference-Header-Content-Length` giving the header's length.
"""
from __future__ import annotations

import json
import math
import struct
import sys
from functools import lru_cache
from itertools import chain

import numpy as np
import orjson

from function.serving.dataplane import (
    COLD_HEADERS,
    REQUEST_ID_PATTERN,
    REQUEST_ID_RULE,
    Columns,
    DataPlane,
    Encoded,
    Inference,
    InferenceRequest,
    InvalidInput,
)
from function.serving.errors import ApiError
from shared.contract import FeatureContract
from shared.predictor import Estimates
from shared.settings import Settings

PREFIX = "/v2"
SERVER_NAME = "tabular-xgb-platform"
PLATFORM = "xgboost"
TENSOR_INPUT = "input-0"  # the name MLServer's clients give a single unnamed tensor; any name is accepted
NUMERIC_TYPES = frozenset({"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                           "FP16", "FP32", "FP64"})
DATATYPES = NUMERIC_TYPES | {"BYTES"}
# request parameters we act on: `explain`, `binary_data_output` (booleans); OIP clients send others (content_type,
# priority...), which are checked as every parameter is and then ignored
MAX_PARAMETERS = 64  # an object of parameters has at most this many
MAX_PARAMETER_CHARS = 1024  # a parameter's name or string value at most this long
MAX_OUTPUTS = 16  # requested outputs (a model has at most 4)
HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data"]
_INT_RANGES = {f"{'U' if unsigned else ''}INT{bits}": ((0, 2 ** bits - 1) if unsigned else
                                                       (-2 ** (bits - 1), 2 ** (bits - 1) - 1))
               for bits in (8, 16, 32, 64) for unsigned in (False, True)}
_FP32_MAX = float(np.finfo(np.float32).max)
_FLOAT_RANGES = {"FP16": (-65504.0, 65504.0), "FP32": (-_FP32_MAX, _FP32_MAX),
                 "FP64": (-sys.float_info.max, sys.float_info.max)}
_RANGES = {**_INT_RANGES, "FP16": _FLOAT_RANGES["FP16"], "FP32": _FLOAT_RANGES["FP32"]}  # any JSON number fits FP64
_HOLDS = {"BYTES": ("strings", frozenset({str, type(None)})), "BOOL": ("true or false", frozenset({bool, type(None)})),
          **{t: ("integers", frozenset({int, type(None)})) for t in _INT_RANGES},
          **{t: ("numbers", frozenset({int, float, type(None)})) for t in _FLOAT_RANGES}}
# the binary extension's element types: little-endian, BOOL one byte of 0 or 1
_WIRE = {"BOOL": "u1", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "i1", "INT16": "<i2",
         "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
UNKNOWN_FIELD = "Unknown field."  # Marshmallow's message for a field the contract does not have
MAX_REPORTED = 5  # an error message names at most this many bad values
SMALL_LOG = 16  # up to this many encoded rows are decoded for the log in plain Python


class Handler:
    """Routes `/v2` paths to the dataplane and formats its neutral answers as OIP responses."""

    def __init__(self, dataplane: DataPlane, settings: Settings) -> None:
        self.dataplane = dataplane
        self.settings = settings

    @staticmethod
    def error_body(err: ApiError) -> dict:
        return {"error": err.message}

    def handle(self, call) -> tuple[int, dict | orjson.Fragment, dict]:
        """Answer one call (see `app.Call`) under /v2; raises ApiError."""
        parts = call.path[len(PREFIX):].strip("/").split("/")
        if parts == [""]:
            call.allow("GET")
            return 200, {"name": SERVER_NAME, "version": _server_version(), "extensions": EXTENSIONS}, {}
        if parts[0] == "health" and len(parts) == 2 and parts[1] in ("live", "ready"):
            call.allow("GET")
            if parts[1] == "live":
                return 200, {"live": True}, {}
            ready = self.dataplane.ready()
            return (200 if ready else 503), {"ready": ready}, {}
        if parts[0] != "models" or len(parts) < 2:
            raise ApiError(404, f"no such path {call.path}; try /v2, /v2/health/ready, /v2/models/{{model}}[/infer]")
        name, rest = parts[1], parts[2:]
        version = None
        if rest[:1] == ["versions"]:
            if len(rest) < 2:
                raise ApiError(404, "a version path needs the version: /v2/models/{model}/versions/{version}")
            version, rest = rest[1], rest[2:]
        self.dataplane.loader(name)
        if rest == []:
            call.allow("GET")
            return 200, self._metadata(name, version), {}
        if rest == ["ready"]:
            call.allow("GET")
            ready = self.dataplane.ready(name)
            if ready and version is not None:
                self.dataplane.choose(name, 0, version)
            return (200 if ready else 503), {"name": name, "ready": ready}, {}
        if rest == ["infer"]:
            call.allow("POST")
            return self._infer(call, name, version)
        raise ApiError(404, f"no such path {call.path}")

    def _metadata(self, name: str, version: str | None) -> dict:
        choice, _ = self.dataplane.describe(name, version)
        model = choice.model
        contract = model.contract
        parameters = {"model_version": model.version,
                      "tensor_input": {"name": TENSOR_INPUT, "datatype": "FP32",
                                       "shape": [-1, len(contract.columns)], "columns": contract.columns}}
        if model.threshold is not None:  # a binary classifier: how `predict` is decided
            parameters.update(threshold=model.threshold, positive_label=contract.labels[-1])
            if model.threshold_rule is not None:
                parameters["threshold_rule"] = model.threshold_rule
        return {"name": name, "versions": self.dataplane.versions(name), "platform": PLATFORM,
                "inputs": _inputs(contract), "outputs": _outputs(contract), "parameters": parameters}

    def _infer(self, call, name: str, version: str | None) -> tuple[int, dict | orjson.Fragment, dict]:
        raw = call.json_body(any_type=True)  # as Triton and MLServer: clients (Triton's, curl) rarely type it
        header = call.header("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
        blob = None
        if header is None:
            body = _parsed(call, raw)
        else:  # the binary tensor data extension: a JSON header, then the inputs' bytes
            size = int(header) if header.isascii() and header.isdigit() else -1
            if not 0 < size <= len(raw):
                raise ApiError(400, f"{HEADER_LENGTH} {header[:40]!r} must be the length of the JSON header: "
                                    f"a whole number from 1 to the body's {len(raw)} bytes")
            body, blob = _parsed(call, raw[:size]), raw[size:]
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object with `inputs`")
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise ApiError(400, "`inputs` must be a non-empty list of tensors")
        request_id = body.get("id")
        if request_id is not None:  # the request's id from now on: its rows' prediction ids derive from it
            if not isinstance(request_id, str) or not REQUEST_ID_PATTERN.fullmatch(request_id):
                raise ApiError(400, f"`id` {REQUEST_ID_RULE}")
            call.request_id = request_id
        params = _parameters(body.get("parameters"), "`parameters`")
        explain = _flag(params, "explain", "`parameters`")
        binary_output = _flag(params, "binary_data_output", "`parameters`")
        tensors = _tensors(inputs, self.settings.max_batch_rows, blob)
        encoded = len(tensors) == 1 and len(tensors[0][1]) == 2
        model_inputs = self._encoded(tensors[0]) if encoded else self._columns(tensors)
        wanted = _requested_outputs(body.get("outputs"))
        names = None if wanted is None else list(wanted)
        explain = explain or "explanation" in (wanted or ())
        try:
            inference = self.dataplane.infer(
                InferenceRequest(name, model_inputs, call.request_id, raw, version, explain),
                call.timings)
        except InvalidInput as exc:
            raise ApiError(400, _describe_errors(exc.errors, tensors[0][0] if encoded else None,
                                                 tensors[0][1][0]), headers=exc.headers) from None
        outputs, predicted = _format_outputs(inference, names)
        call.log_inference(inference, predicted, {"columns": _logged_columns(model_inputs, inference.model.contract)},
                           single=False)
        parameters = {"fallback": inference.choice.fallback}
        threshold = inference.model.threshold
        if threshold is not None:
            parameters["threshold"] = threshold
        response = {"model_name": name, "model_version": inference.model.version, "id": inference.request_id,
                    "parameters": parameters, "outputs": outputs}
        headers = COLD_HEADERS if inference.choice.cold else {}
        binary = [binary_output if wanted is None or wanted[o["name"]] is None else wanted[o["name"]]
                  for o in outputs]
        if not any(binary):
            return 200, response, headers
        return 200, *_binary_response(response, binary, headers)

    def _columns(self, tensors: list[tuple[str, list[int], str, list | np.ndarray]]) -> Columns:
        names = [t[0] for t in tensors]
        if len(set(names)) != len(names):
            raise ApiError(400, f"input {next(n for n in names if names.count(n) > 1)!r} is given twice")
        n = tensors[0][1][0]
        columns = {}
        for name, shape, _, given in tensors:
            if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
                raise ApiError(400, f"input {name!r}: shape {shape} must be [N] (one value per row)")
            if shape[0] != n:
                raise ApiError(400, f"input {name!r}: shape {shape} has {shape[0]} rows, input {names[0]!r} {n}")
            columns[name] = _plain(given) if isinstance(given, np.ndarray) else given
        return Columns(columns, n)

    def _encoded(self, tensor: tuple[str, list[int], str, list | np.ndarray]) -> Encoded:
        name, shape, datatype, data = tensor
        if datatype not in NUMERIC_TYPES or datatype == "BOOL":
            raise ApiError(400, f"input {name!r}: an encoded tensor must hold numbers (FP32), not {datatype}")
        if datatype != "FP64":  # within FP32's range already (its datatype's, checked)
            return Encoded(np.array(data, dtype=np.float32).reshape(shape), name)
        wide = np.array(data, dtype=np.float64)  # null: NaN
        beyond = np.abs(wide) > _FP32_MAX  # NaN compares False: a missing value
        if beyond.any():
            bad = int(beyond.argmax())
            raise ApiError(400, f"input {name!r} {_where(bad, shape)}: {wide[bad]!r} is beyond FP32's range, "
                                f"the model's (+-{_FP32_MAX:.7g})")
        return Encoded(wide.astype(np.float32).reshape(shape), name)


def _parsed(call, raw: bytes) -> object:
    """The JSON body; a bare `NaN` token (tritonclient's JSON for a NumPy NaN) as null, any other constant a 400."""
    try:
        return call.parsed_json(raw)
    except ApiError:
        if b"NaN" not in raw and b"Infinity" not in raw:
            raise
    try:  # rare: orjson refuses NaN, the standard library reads it (and says why Infinity is refused)
        body = json.loads(raw, parse_constant=_nan_only, parse_float=_finite, parse_int=_finite_int)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the interpreter's stack
        raise ApiError(400, f"body is not valid JSON: {exc}"[:300]) from None
    call.timings.add("parse", call.started)
    return body


def _nan_only(token: str) -> None:
    if token != "NaN":
        raise ValueError(f"{token} is not a number this protocol accepts (NaN, a missing value, is)")


def _finite(text: str) -> float:
    """A JSON number as orjson reads it: a float, never infinite (1e400 is refused, as orjson refuses it)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is beyond FP64's range")
    return value


def _finite_int(text: str) -> int | float:
    """A JSON integer as orjson reads it: beyond 64 bits, a float (refused if infinite)."""
    if len(text) > 400:  # beyond any float (and Python's int() refuses over 4300 digits)
        raise ValueError(f"number {text[:40]}... is beyond FP64's range")
    value = int(text)
    return value if -2 ** 63 <= value < 2 ** 64 else _finite(text)


def _parameters(given: object, where: str) -> dict:
    """An object of parameters (OIP's: each a string, number or boolean), within bounds; 400 naming a bad one."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise ApiError(400, f"{where} must be an object of parameters, not {_kind(given)}")
    if len(given) > MAX_PARAMETERS:
        raise ApiError(400, f"{where}: {len(given)} parameters exceed the limit of {MAX_PARAMETERS}")
    for key, value in given.items():
        kind = type(value)
        if kind is bool or kind is int or (kind is str and len(value) <= MAX_PARAMETER_CHARS) or (
                kind is float and abs(value) != math.inf):
            if len(key) <= MAX_PARAMETER_CHARS:
                continue
            raise ApiError(400, f"{where}: a parameter name {key[:40]!r}... is over {MAX_PARAMETER_CHARS} characters")
        raise ApiError(400, f"{where} {key[:100]!r}: a parameter must be a string (at most {MAX_PARAMETER_CHARS} "
                            f"characters), a finite number or a boolean, not {_kind(value)}")
    return given


def _flag(params: dict, key: str, where: str) -> bool:
    value = params.get(key, False)
    if type(value) is not bool:
        raise ApiError(400, f"{where} {key!r} must be a boolean, not {_kind(value)}")
    return value


def _kind(value: object) -> str:
    """What a JSON value is, for an error message (long values cut short)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string of {len(value)} characters" if len(value) > 40 else repr(value)
    return repr(value)


def _where(index: int, shape: list[int]) -> str:
    """'row r' of a flat index, or 'row r column c' in a tensor of more than one column."""
    width = math.prod(shape[1:])
    return f"row {index}" if width == 1 else f"row {index // width} column {index % width}"


def _tensors(inputs: list, max_rows: int, blob: bytes | None) -> list[tuple[str, list[int], str, list | np.ndarray]]:
    """Every input checked against itself; binary inputs read from `blob` (the body after the JSON header)."""
    tensors, offset = [], 0
    for given in inputs:
        tensor, size = _tensor(given, max_rows, blob, offset)
        tensors.append(tensor)
        offset += size
    if blob is not None and offset != len(blob):
        raise ApiError(400, f"the body has {len(blob)} bytes after its JSON header, but the inputs' "
                            f"binary_data_size add up to {offset}")
    return tensors


def _tensor(given: object, max_rows: int, blob: bytes | None = None,
            offset: int = 0) -> tuple[tuple[str, list[int], str, list | np.ndarray], int]:
    """(name, shape, datatype, flat data) of one request input, checked against itself, and the bytes of the
    binary data it took; 400/413 otherwise. Binary data comes as an array (BYTES: a list of strings)."""
    if not isinstance(given, dict):
        raise ApiError(400, "each input must be an object with name, shape, datatype and data")
    name = given.get("name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "each input needs a `name` string")
    shape, datatype = given.get("shape"), given.get("datatype")
    if not isinstance(shape, list) or not shape or not all(type(d) is int and d >= 0 for d in shape):
        raise ApiError(400, f"input {name!r}: shape must be a list of non-negative integers")
    if datatype not in DATATYPES:
        raise ApiError(400, f"input {name!r}: unknown datatype {datatype!r}; one of {', '.join(sorted(DATATYPES))}")
    if shape[0] > max_rows:
        raise ApiError(413, f"input {name!r}: {shape[0]} rows exceed the limit of {max_rows}")
    expected = math.prod(shape)
    if expected == 0:
        raise ApiError(400, f"input {name!r}: shape {shape} holds no rows")
    params = given.get("parameters")
    size = _parameters(params, f"input {name!r} parameters").get("binary_data_size") if params is not None else None
    if size is not None:
        if type(size) is not int or size < 0:
            raise ApiError(400, f"input {name!r}: parameter binary_data_size must be a whole number of bytes")
        if blob is None:
            raise ApiError(400, f"input {name!r}: binary_data_size needs the {HEADER_LENGTH} header "
                                "(the length of the JSON before the binary data)")
        if "data" in given:
            raise ApiError(400, f"input {name!r}: give either data or binary_data_size, not both")
        if offset + size > len(blob):
            raise ApiError(400, f"input {name!r}: binary_data_size {size} runs past the body's end "
                                f"({len(blob) - offset} bytes left)")
        return (name, shape, datatype, _binary_input(name, shape, datatype, blob[offset:offset + size])), size
    data = given.get("data")
    if not isinstance(data, list):
        raise ApiError(400, f"input {name!r}: data must be a list")
    if data and isinstance(data[0], list):  # row-major nested data: flatten
        if not all(isinstance(row, list) for row in data):
            raise ApiError(400, f"input {name!r}: nested data must be a list of lists")
        data = list(chain.from_iterable(data))
    if expected != len(data):
        raise ApiError(400, f"input {name!r}: shape {shape} holds {expected} values but data has {len(data)}")
    need, allowed = _HOLDS[datatype]
    kinds = set(map(type, data))
    if not kinds <= allowed:
        bad = next(i for i, v in enumerate(data) if type(v) not in allowed)
        raise ApiError(400, f"input {name!r} {_where(bad, shape)}: datatype {datatype} holds {need}, "
                            f"not {_kind(data[bad])}")
    bounds = _RANGES.get(datatype)
    if bounds is not None:
        low, high = bounds
        given_values = [v for v in data if v is not None] if type(None) in kinds else data
        if given_values and (min(given_values) < low or max(given_values) > high):
            bad = next(i for i, v in enumerate(data) if v is not None and not low <= v <= high)
            raise ApiError(400, f"input {name!r} {_where(bad, shape)}: {data[bad]!r} is beyond {datatype}'s range "
                                f"[{low:.7g}, {high:.7g}]")
    return (name, shape, datatype, data), 0


def _binary_input(name: str, shape: list[int], datatype: str, chunk: bytes) -> np.ndarray | list[str]:
    """The flat values of an input sent as binary data (`chunk`, its binary_data_size bytes)."""
    count, size = math.prod(shape), len(chunk)
    if datatype == "BYTES":
        return _byte_strings(name, shape, chunk)
    wire = np.dtype(_WIRE[datatype])
    if size != count * wire.itemsize:
        raise ApiError(400, f"input {name!r}: binary_data_size {size} is not the {count} {datatype} values of "
                            f"shape {shape} ({count * wire.itemsize} bytes)")
    array = np.frombuffer(chunk, dtype=wire)
    if datatype == "BOOL":
        if array.max() > 1:
            bad = int((array > 1).argmax())
            raise ApiError(400, f"input {name!r} {_where(bad, shape)}: a BOOL byte must be 0 or 1, not {array[bad]}")
        return array.view(bool)
    if wire.kind == "f":
        infinite = np.isinf(array)
        if infinite.any():
            bad = int(infinite.argmax())
            raise ApiError(400, f"input {name!r} {_where(bad, shape)}: {array[bad]} is not a number this protocol "
                                "accepts (NaN, a missing value, is)")
    return array


def _plain(array: np.ndarray) -> list:
    """Binary data as the plain values of a JSON tensor: NaN (a missing value) as null."""
    values = array.tolist()
    if array.dtype.kind == "f" and np.isnan(array).any():
        return [None if math.isnan(v) else v for v in values]
    return values


def _byte_strings(name: str, shape: list[int], chunk: bytes) -> list[str]:
    """A BYTES tensor's elements: each a 4-byte little-endian length, then that many bytes of UTF-8."""
    values, pos, end = [], 0, len(chunk)
    unpack = struct.unpack_from
    for i in range(math.prod(shape)):
        length = unpack("<I", chunk, pos)[0] if pos + 4 <= end else end
        pos += 4
        if pos + length > end:
            raise ApiError(400, f"input {name!r}: its binary data holds fewer than the {math.prod(shape)} "
                                f"length-prefixed BYTES elements of shape {shape}")
        try:
            values.append(chunk[pos:pos + length].decode())
        except UnicodeDecodeError:
            raise ApiError(400, f"input {name!r} {_where(i, shape)}: not UTF-8 text") from None
        pos += length
    if pos != end:
        raise ApiError(400, f"input {name!r}: {end - pos} bytes left after its {math.prod(shape)} BYTES elements")
    return values


def _requested_outputs(given: object) -> dict[str, bool | None] | None:
    """The outputs asked for, in order, each with its `binary_data` parameter (None: not given)."""
    if given is None:
        return None
    if not isinstance(given, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in given):
        raise ApiError(400, "`outputs` must be a list of objects with a `name`")
    if len(given) > MAX_OUTPUTS:
        raise ApiError(400, f"`outputs`: {len(given)} requested outputs exceed the limit of {MAX_OUTPUTS}")
    wanted: dict[str, bool | None] = {}
    for output in given:
        name = output["name"]
        if name in wanted:
            raise ApiError(400, f"output {name[:100]!r} is requested twice")
        where = f"output {name[:100]!r} parameters"
        params = _parameters(output.get("parameters"), where)
        wanted[name] = _flag(params, "binary_data", where) if "binary_data" in params else None
    return wanted


def _binary_response(response: dict, binary: list[bool], headers: dict) -> tuple[orjson.Fragment, dict]:
    """The response as the binary extension sends it: the JSON header, then the bytes of each binary output."""
    chunks = []
    for output, as_binary in zip(response["outputs"], binary, strict=True):
        if as_binary:
            data = _to_bytes(output.pop("data"), output["datatype"])
            output["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    return orjson.Fragment(header + b"".join(chunks)), {**headers, HEADER_LENGTH: str(len(header))}


def _to_bytes(data, datatype: str) -> bytes:
    """An output's data as the binary extension sends it."""
    if datatype == "BYTES":
        pack = struct.Struct("<I").pack
        return b"".join(pack(len(b)) + b for b in (str(v).encode() for v in data))
    return np.asarray(data, dtype=_WIRE[datatype] if datatype != "BOOL" else bool).tobytes()


def _format_outputs(inference: Inference, wanted: list[str] | None) -> tuple[list[dict], list]:
    """The response tensors, in the order asked for (default: every output of the model), and the predictions."""
    out = inference.outputs
    n = inference.rows
    if isinstance(out, Estimates):
        available = {"predict": lambda: _tensor_out("predict", "FP64", [n], out.values),
                     "predict_interval": lambda: _tensor_out("predict_interval", "FP64", [n, 2],
                                                             _flat(out.intervals())),
                     "extrapolation": lambda: _tensor_out("extrapolation", "BOOL", [n], out.flags())}
    else:
        labels = inference.model.labels
        predicted = out.labels(labels)  # a binary classifier's by its threshold
        proba = list(chain.from_iterable(out.rows)) if out.rows is not None else out.array.ravel()
        available = {"predict": lambda: _tensor_out("predict", "BYTES", [n], predicted),
                     "predict_proba": lambda: _tensor_out("predict_proba", "FP64", [n, len(labels)], proba)}
    if inference.explanation is not None:
        available["explanation"] = lambda: _tensor_out(
            "explanation", "BYTES", [n], [orjson.dumps(e).decode() for e in inference.explanation.to_vertex()])
    names = wanted if wanted is not None else list(available)
    unknown = [w for w in names if w not in available]
    if unknown:
        raise ApiError(400, f"unknown output {unknown[0]!r}; outputs: {', '.join(available)}")
    predicted = out.values if isinstance(out, Estimates) else predicted
    return [available[w]() for w in names], predicted


def _flat(rows: list | np.ndarray) -> list | np.ndarray:
    """Row-major data of a tensor given by rows."""
    return rows.ravel() if isinstance(rows, np.ndarray) else list(chain.from_iterable(rows))


def _tensor_out(name: str, datatype: str, shape: list[int], data) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def _describe_errors(errors: dict[int, dict], tensor: str | None, n: int) -> str:
    """'input 'x' row 3: must be ...' for the first few problems (columns of an encoded tensor named too);
    a problem of every row (a missing or unknown input) is said once, before the others."""
    rows_of: dict[tuple[str, str], list[int]] = {}
    for row, fields in errors.items():
        for field, messages in fields.items():
            for message in messages:
                rows_of.setdefault((field, message), []).append(row)
    parts = []
    # an unknown input first: it is usually why the others are missing
    for (field, message), rows in sorted(rows_of.items(), key=lambda i: (i[0][1] != UNKNOWN_FIELD, len(i[1]) < n)):
        where = f"input {tensor!r} column {field!r}" if tensor else f"input {field!r}"
        if len(rows) == n and n > 1:
            parts.append(f"{where}: {message} (every row)")
        else:
            more = f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else ""
            parts.append(f"{where} row {rows[0]}: {message}{more}")
    shown = "; ".join(parts[:MAX_REPORTED])
    return shown + (f"; and {len(parts) - MAX_REPORTED} more" if len(parts) > MAX_REPORTED else "")


def _logged_columns(inputs: Columns | Encoded, contract: FeatureContract) -> dict:
    """The request's fields as columns for the log (an encoded tensor decoded back to its features)."""
    if isinstance(inputs, Columns):
        return inputs.columns
    x = inputs.matrix
    if x.shape[0] <= SMALL_LOG:  # a few rows: plain Python, NumPy's cost per call would outweigh them
        rows = x.tolist()
        columns = {f.name: [None if math.isnan(r[j]) else r[j] for r in rows] for j, f in enumerate(contract.numeric)}
        col = len(contract.numeric)
        for c in contract.categorical:
            blocks = [r[col:col + len(c.levels)] for r in rows]
            columns[c.name] = [c.levels[b.index(1.0)] if 1.0 in b else None for b in blocks]
            col += len(c.levels)
        return columns
    columns = {f.name: np.ascontiguousarray(x[:, j]) for j, f in enumerate(contract.numeric)}  # NaN: null
    col = len(contract.numeric)
    for c in contract.categorical:
        block = x[:, col:col + len(c.levels)]
        levels = np.asarray([*c.levels, None], dtype=object)
        chosen = np.where(block.max(axis=1) == 1.0, block.argmax(axis=1), len(c.levels))  # NaN rows: None
        columns[c.name] = levels[chosen].tolist()
        col += len(c.levels)
    return columns


def _inputs(contract: FeatureContract) -> list[dict]:
    numeric = [{"name": f.name, "datatype": "FP64", "shape": [-1]} for f in contract.numeric]
    categorical = [{"name": c.name, "datatype": "BYTES", "shape": [-1]} for c in contract.categorical]
    return numeric + categorical


def _outputs(contract: FeatureContract) -> list[dict]:
    if contract.is_classifier:
        return [{"name": "predict", "datatype": "BYTES", "shape": [-1]},
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(contract.labels)]}]
    return [{"name": "predict", "datatype": "FP64", "shape": [-1]},
            {"name": "predict_interval", "datatype": "FP64", "shape": [-1, 2]},
            {"name": "extrapolation", "datatype": "BOOL", "shape": [-1]}]


@lru_cache(maxsize=1)
def _server_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - metadata requests only

    try:
        return version(SERVER_NAME)
    except PackageNotFoundError:  # the deployed source bundle is copied, not installed
        return "unknown"
