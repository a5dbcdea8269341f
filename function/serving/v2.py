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
"""
from __future__ import annotations

import math
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
PARAMETERS = {"explain": bool}  # request parameters we act on; OIP clients send others (content_type...), ignored
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

    def handle(self, call) -> tuple[int, dict, dict]:
        """Answer one call (see `app.Call`) under /v2; raises ApiError."""
        parts = call.path[len(PREFIX):].strip("/").split("/")
        if parts == [""]:
            call.allow("GET")
            return 200, {"name": SERVER_NAME, "version": _server_version(), "extensions": []}, {}
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

    def _infer(self, call, name: str, version: str | None) -> tuple[int, dict, dict]:
        if call.header("HTTP_INFERENCE_HEADER_CONTENT_LENGTH") is not None:
            raise ApiError(415, "the binary tensor data extension is not supported; send the tensors as JSON")
        raw = call.json_body(any_type=True)  # as Triton and MLServer: clients (Triton's, curl) rarely type it
        body = call.parsed_json(raw)
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
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise ApiError(400, "`parameters` must be an object")
        explain = params.get("explain", False)
        if type(explain) is not bool:
            raise ApiError(400, "parameter 'explain' must be a boolean")
        tensors = [_tensor(t, self.settings.max_batch_rows) for t in inputs]
        encoded = len(tensors) == 1 and len(tensors[0][1]) == 2
        model_inputs = self._encoded(tensors[0]) if encoded else self._columns(tensors)
        wanted = _requested_outputs(body.get("outputs"))
        explain = explain or "explanation" in (wanted or ())
        try:
            inference = self.dataplane.infer(
                InferenceRequest(name, model_inputs, call.request_id, raw, version, explain),
                call.timings)
        except InvalidInput as exc:
            raise ApiError(400, _describe_errors(exc.errors, tensors[0][0] if encoded else None,
                                                 tensors[0][1][0]), headers=exc.headers) from None
        outputs, predicted = _format_outputs(inference, wanted)
        call.log_inference(inference, predicted, {"columns": _logged_columns(model_inputs, inference.model.contract)},
                           single=False)
        parameters = {"fallback": inference.choice.fallback}
        threshold = inference.model.threshold
        if threshold is not None:
            parameters["threshold"] = threshold
        response = {"model_name": name, "model_version": inference.model.version, "id": inference.request_id,
                    "parameters": parameters, "outputs": outputs}
        return 200, response, COLD_HEADERS if inference.choice.cold else {}

    def _columns(self, tensors: list[tuple[str, list[int], str, list]]) -> Columns:
        names = [t[0] for t in tensors]
        if len(set(names)) != len(names):
            raise ApiError(400, f"input {next(n for n in names if names.count(n) > 1)!r} is given twice")
        n = tensors[0][1][0]
        columns = {}
        for name, shape, datatype, data in tensors:
            if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
                raise ApiError(400, f"input {name!r}: shape {shape} must be [N] (one value per row)")
            if shape[0] != n:
                raise ApiError(400, f"input {name!r}: shape {shape} has {shape[0]} rows, input {names[0]!r} {n}")
            if "INT" in datatype and not set(map(type, data)) <= {int, type(None)}:
                bad = next(i for i, v in enumerate(data) if type(v) not in (int, type(None)))
                raise ApiError(400, f"input {name!r} row {bad}: datatype {datatype} needs integers, not {data[bad]!r}")
            columns[name] = data if datatype != "BOOL" else [bool(v) if v is not None else None for v in data]
        return Columns(columns, n)

    def _encoded(self, tensor: tuple[str, list[int], str, list]) -> Encoded:
        name, shape, datatype, data = tensor
        if datatype not in NUMERIC_TYPES or datatype == "BOOL":
            raise ApiError(400, f"input {name!r}: an encoded tensor must hold numbers (FP32), not {datatype}")
        if not set(map(type, data)) <= {int, float, type(None)}:
            bad = next(i for i, v in enumerate(data) if type(v) not in (int, float, type(None)))
            raise ApiError(400, f"input {name!r} row {bad // shape[1]} column {bad % shape[1]}: "
                                f"must be a number or null, not {data[bad]!r}")
        try:
            matrix = np.array(data, dtype=np.float32).reshape(shape)
        except (OverflowError, ValueError):
            raise ApiError(400, f"input {name!r}: its data must be numbers within FP32 range") from None
        return Encoded(matrix, name)


def _tensor(given: object, max_rows: int) -> tuple[str, list[int], str, list]:
    """(name, shape, datatype, flat data) of one request input, checked against itself; 400/413 otherwise."""
    if not isinstance(given, dict):
        raise ApiError(400, "each input must be an object with name, shape, datatype and data")
    name = given.get("name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "each input needs a `name` string")
    shape, datatype, data = given.get("shape"), given.get("datatype"), given.get("data")
    if not isinstance(shape, list) or not shape or not all(type(d) is int and d >= 0 for d in shape):
        raise ApiError(400, f"input {name!r}: shape must be a list of non-negative integers")
    if datatype not in DATATYPES:
        raise ApiError(400, f"input {name!r}: unknown datatype {datatype!r}; one of {', '.join(sorted(DATATYPES))}")
    if shape[0] > max_rows:
        raise ApiError(413, f"input {name!r}: {shape[0]} rows exceed the limit of {max_rows}")
    if not isinstance(data, list):
        raise ApiError(400, f"input {name!r}: data must be a list")
    if data and isinstance(data[0], list):  # row-major nested data: flatten
        if not all(isinstance(row, list) for row in data):
            raise ApiError(400, f"input {name!r}: nested data must be a list of lists")
        data = list(chain.from_iterable(data))
    expected = math.prod(shape)
    if expected != len(data):
        raise ApiError(400, f"input {name!r}: shape {shape} holds {expected} values but data has {len(data)}")
    if expected == 0:
        raise ApiError(400, f"input {name!r}: shape {shape} holds no rows")
    return name, shape, datatype, data


def _requested_outputs(given: object) -> list[str] | None:
    if given is None:
        return None
    if not isinstance(given, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in given):
        raise ApiError(400, "`outputs` must be a list of objects with a `name`")
    return [o["name"] for o in given]


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
