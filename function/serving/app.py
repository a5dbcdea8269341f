"""HTTP routing and responses: parse the request, call the core, format the answer, log one line.

Nothing here raises to the framework: every failure becomes a JSON error in the Google API shape.
"""
from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from functools import lru_cache

import orjson
from werkzeug.wrappers import Request, Response

from function.serving.errors import ApiError, bad_request, field_violations
from function.serving.loader import Choice, ModelLoader, NoModel, Registry
from function.serving.logs import MAX_LOGGED_ROWS, RequestLog
from shared.model import ServingModel
from shared.predictor import Estimates, Probabilities
from shared.settings import Settings
from shared.validation import InvalidRows, build_batch

log = logging.getLogger(__name__)
# fixed paths and their methods; `/v1/models/{name}` and `/v1/models/{name}:predict` are matched apart
ROUTES = {"/predict": "POST", "/": "POST", "/health": "GET", "/model": "GET", "/openapi.json": "GET"}
V1_PREFIX = "/v1/models/"
RETRY_AFTER_S = "5"
HIDDEN_MANIFEST_SECTIONS = ("libraries",)  # responses never reveal library versions
PROBABILITY_DIGITS = 6  # answers round probabilities to this many decimals
VALUE_DIGITS = 3  # and a regressor's values and intervals to this many


class ServingApp:
    """The whole HTTP surface of the function, framework-agnostic apart from werkzeug's Request."""

    def __init__(self, settings: Settings, registry: Registry, request_log: RequestLog) -> None:
        self.settings = settings
        self.registry = registry
        self.request_log = request_log
        self._canary_environ_key = "HTTP_" + settings.canary_header.upper().replace("-", "_")

    def __call__(self, request: Request) -> Response:
        """Answer one request; never raises."""
        started = time.perf_counter()
        log_fields: dict = {}
        try:
            status, body, headers = self._route(request, log_fields)
        except ApiError as err:
            status, body, headers = err.code, err.body(), err.headers
            log_fields["error"] = err.message
        except Exception:  # a bug must not become a stack trace or a dead worker
            log.exception("unhandled error")
            err = ApiError(500, "internal error")
            status, body, headers = 500, err.body(), {}
        payload = orjson.dumps(body)
        self._log(request, status, started, len(payload), log_fields)
        return Response(payload, status=status, headers=headers, content_type="application/json")

    def _route(self, request: Request, log_fields: dict) -> tuple[int, dict, dict]:
        path = request.path
        if path.startswith(V1_PREFIX):
            name, _, verb = path[len(V1_PREFIX):].partition(":")
            loader = self.registry.get(name)
            if loader is None or verb not in ("", "predict"):
                raise ApiError(404, f"no such model or method; models: {', '.join(self.registry.names)}")
            method = "POST" if verb else "GET"
            if request.method != method:
                raise ApiError(405, f"{path} accepts {method} only", headers={"Allow": method})
            return self._predict(request, loader, log_fields, batch_answer=True) if verb else self._describe(loader)
        method = ROUTES.get(path)
        if method is None:
            raise ApiError(404, f"no such path; try {', '.join(p for p in ROUTES if p != '/')}, "
                                f"{V1_PREFIX}{{model}}[:predict]")
        if request.method != method:
            raise ApiError(405, f"{path} accepts {method} only", headers={"Allow": method})
        default = self.registry.get(self.settings.default_model)
        if path == "/health":
            return self._health()
        if path == "/model":
            return self._describe(default)
        if path == "/openapi.json":
            from function.serving.openapi import openapi_document  # noqa: PLC0415 - Marshmallow stays out of cold starts

            served = tuple((name, self._choose(self.registry.get(name), 0).model.contract)
                           for name in self.registry.names)
            return 200, openapi_document(served, self.settings), {}
        return self._predict(request, default, log_fields, batch_answer=False)

    def _describe(self, loader: ModelLoader) -> tuple[int, dict, dict]:
        choice = self._choose(loader, 0)
        manifest = {k: v for k, v in choice.model.manifest.items() if k not in HIDDEN_MANIFEST_SECTIONS}
        return 200, {"name": loader.name, "model_version": choice.model.version, "fallback": choice.fallback,
                     "manifest": manifest}, {}

    def _health(self) -> tuple[int, dict, dict]:
        """Every served model's state; 503 while the default model has none, degraded if any is not as it should be."""
        models, cold = {}, False
        for name in self.registry.names:
            loader = self.registry.get(name)
            try:
                cold = loader.choose(0).cold or cold
            except NoModel:
                pass
            models[name] = loader.status()
        default = models[self.settings.default_model]
        if not default["ready"]:
            return 503, {"status": "unavailable", **default, "models": models}, {"Retry-After": RETRY_AFTER_S}
        degraded = any(not m["ready"] or m["fallback"] for m in models.values())
        headers = {"X-Model-Load": "cold"} if cold else {}
        return 200, {"status": "degraded" if degraded else "ok", **default, "models": models}, headers

    def _choose(self, loader: ModelLoader, key: int) -> Choice:
        try:
            return loader.choose(key)
        except NoModel:
            raise ApiError(503, f"no {loader.name} model can be loaded right now; retry later",
                           headers={"Retry-After": RETRY_AFTER_S}) from None

    def _predict(self, request: Request, loader: ModelLoader, log_fields: dict,
                 batch_answer: bool) -> tuple[int, dict, dict]:
        raw = self._read_json_body(request)
        rows, single = self._parse_rows(raw)
        key = request.environ.get(self._canary_environ_key)
        choice = self._choose(loader, zlib.crc32(key.encode() if key else raw) % 10_000)
        model = choice.model
        try:
            batch = build_batch(model.contract, rows)
        except InvalidRows as exc:
            violations = field_violations(exc.errors[0] if single else {"instances": exc.errors})
            log_fields["error_fields"] = sorted({v["field"].split(".")[-1] for v in violations})[:20]
            raise bad_request(f"{len(violations)} invalid field(s)", violations) from None
        predictions = format_predictions(model, model.predictor.predict(batch), batch.warnings, choice.fallback)
        target = model.contract.target.name
        predicted = [p[target] for p in predictions[:MAX_LOGGED_ROWS]]
        log_fields.update(model=model.name, model_version=model.version, role=choice.role, fallback=choice.fallback,
                          rows=len(rows), prediction=predicted[0] if single else "batch", predicted=predicted,
                          instances=rows[:MAX_LOGGED_ROWS],  # validated: only contract and passthrough fields
                          out_of_range=sum(1 for w in batch.warnings if w))
        headers = {"X-Model-Load": "cold"} if choice.cold else {}
        if choice.cold:
            log_fields["cold"] = True
        if single and not batch_answer:
            return 200, predictions[0], headers
        return 200, {"predictions": predictions, "model_version": model.version, "fallback": choice.fallback}, headers

    def _parse_rows(self, raw: bytes) -> tuple[list, bool]:
        """The request's rows and whether it was a single object; 400/413 for anything else."""
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"body is not valid JSON: {exc.msg}",
                              [{"field": "body", "description": exc.msg}]) from None
        if not isinstance(body, dict):
            raise bad_request("body must be a JSON object", [{"field": "body", "description": "must be a JSON object"}])
        if "instances" not in body:
            return [body], True
        rows = body["instances"]
        extra = set(body) - {"instances"}
        if extra:
            raise bad_request("unknown top-level field",
                              [{"field": k, "description": "unknown field"} for k in sorted(extra)])
        if not isinstance(rows, list) or not rows:
            raise bad_request("instances must be a non-empty list",
                              [{"field": "instances", "description": "must be a non-empty list of objects"}])
        if len(rows) > self.settings.max_batch_rows:
            raise ApiError(413, f"batch of {len(rows)} rows exceeds the limit of {self.settings.max_batch_rows}")
        return rows, False

    def _read_json_body(self, request: Request) -> bytes:
        # straight from the WSGI environ: werkzeug's lazy properties cost more than the prediction
        environ = request.environ
        limit = self.settings.max_body_bytes
        length = environ.get("CONTENT_LENGTH")
        size = int(length) if length and length.isdigit() else None
        if size is not None and size > limit:
            raise ApiError(413, f"body exceeds {limit} bytes")
        mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        if mimetype != "application/json" and not mimetype.endswith("+json"):
            raise ApiError(415, "send the body as application/json")
        if size is not None:
            # cached: Functions Framework calls get_data() again after every request to drain the body
            return request.get_data(cache=True)
        raw = request.stream.read(limit + 1)  # chunked, no declared length: read at most the limit
        if len(raw) > limit:
            raise ApiError(413, f"body exceeds {limit} bytes")
        return raw

    def _log(self, request: Request, status: int, started: float, size: int, fields: dict) -> None:
        latency = time.perf_counter() - started
        event = "prediction" if status == 200 and "rows" in fields else "request"
        self.request_log.emit({
            "severity": "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO",
            "message": f"{request.method} {request.path} {status}",
            "event": event,
            "status": status,
            "latency_ms": round(latency * 1000, 3),
            "httpRequest": {"requestMethod": request.method, "requestUrl": request.path, "status": status,
                            "responseSize": str(size), "latency": f"{latency:.6f}s"},
            **fields,
        })


def format_predictions(model: ServingModel, out: Probabilities | Estimates, warnings: list,
                       fallback: bool) -> list[dict]:
    """One answer object per row, the same whichever evaluator computed it: the prediction under the target's
    name, then class probabilities or the prediction interval."""
    target, version = model.contract.target.name, model.version
    if isinstance(out, Estimates):
        level = model.contract.target.interval
        return [{target: round(v, VALUE_DIGITS),
                 "interval": {"lower": round(lo, VALUE_DIGITS), "upper": round(hi, VALUE_DIGITS), "level": level},
                 "model_version": version, "fallback": fallback, "warnings": w}
                for v, lo, hi, w in zip(out.values, out.lower, out.upper, warnings)]
    labels = model.labels
    predicted, rounded = out.labels_and_rows(labels, PROBABILITY_DIGITS)
    return [{target: s, "probabilities": p, "model_version": version, "fallback": fallback, "warnings": w}
            for s, p, w in zip(predicted, _by_label(labels)(rounded), warnings)]


@lru_cache(maxsize=8)
def _by_label(labels: tuple[str, ...]) -> Callable[[list[list[float]]], list[dict[str, float]]]:
    """For these labels, a function from rows of probabilities to one {label: probability} dict per row.

    Generated as a comprehension over one dict display sized to the model's labels, whatever their number:
    a display is built by a few bytecodes, where dict(zip(labels, row)) makes two calls and an iterator
    per row, which a large batch pays thousands of times. Only indices reach the source; the labels
    themselves are passed in as values.
    """
    names = [f"p{i}" for i in range(len(labels))]
    params = ", ".join(f"l{i}" for i in range(len(labels)))
    display = ", ".join(f"l{i}: {name}" for i, name in enumerate(names))
    source = f"def by_label({params}):\n    return lambda rows: [{{{display}}} for {', '.join(names)}, in rows]"
    namespace: dict = {}
    exec(compile(source, "<labels>", "exec"), namespace)  # noqa: S102 - indices only, see docstring
    return namespace["by_label"](*labels)
