"""Our JSON and Vertex AI's prediction shape: translation to and from the dataplane, nothing else.

`POST /predict` (or `POST /`) answers the default model: one instance object, or `{"instances": [...],
"parameters": {...}}` as Vertex AI sends to a custom container. `GET /v1/models/{name}` describes a model
(with KServe V1's `ready`), `:predict` and `:explain` (KServe's V1 verbs) answer it, `/card` (HTML) and `/card.json`
are the model card of the version answering (written beside its bundle by the job); `GET /` is KServe V1's
liveness, `{"status": "alive"}`, what KServe's `InferenceRESTClient.is_server_live` reads (it loads no model).
`/health`, `/model` and `/openapi.json` describe the service. Errors are in the Google API shape
(`errors.ApiError.body`).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

import orjson

from function.serving.dataplane import (
    CANARY_BUCKETS,
    COLD_HEADERS,
    DataPlane,
    Inference,
    InferenceRequest,
    InvalidInput,
    Rows,
)
from function.serving.errors import ApiError, bad_request, field_violations
from shared.predictor import Estimates
from shared.settings import Settings
from shared.store import NotFound, StoreUnavailable

# fixed paths and their methods (`/` has two: GET is liveness, POST a prediction); `/v1/models/{name}[:verb]`
# are matched apart
ROUTES = {"/predict": "POST", "/": "GET, POST", "/feedback": "POST", "/health": "GET", "/model": "GET",
          "/openapi.json": "GET"}
LIVE = {"status": "alive"}  # KServe V1's liveness answer at GET /
SOURCE_PATTERN = re.compile(r"[A-Za-z0-9._:@/-]{1,64}")  # who sent feedback: a team, a pipeline, a user id
SOURCE_RULE = "must be 1 to 64 letters, digits or . _ : @ / -"
FEEDBACK_FIELDS = ("model", "source")  # beside the items of a feedback body
PREFIX = "/v1/models/"
VERBS = {"": "GET", "predict": "POST", "explain": "POST"}
PARAMETERS = {"explain": bool}  # what `parameters` may hold, and the type of each
# a model's pages beside its verbs, and the file of the version's folder each one is (retrain_job/card/store.py
# writes them)
CARD_PAGES = {"card": "card.html", "card.json": "card.json"}
HTML_TYPE = "text/html; charset=utf-8"
PROBABILITY_DIGITS = 6  # answers round probabilities to this many decimals
VALUE_DIGITS = 3  # and a regressor's values and intervals to this many


class Page(NamedTuple):
    """An answer that is not JSON: its bytes and Content-Type."""

    content: bytes
    content_type: str


class Handler:
    """Routes our paths to the dataplane and formats its neutral answers as JSON objects."""

    def __init__(self, dataplane: DataPlane, settings: Settings) -> None:
        self.dataplane = dataplane
        self.settings = settings
        self._canary_environ_key = "HTTP_" + settings.canary_header.upper().replace("-", "_")

    @staticmethod
    def error_body(err: ApiError) -> dict:
        return err.body()

    def handle(self, call) -> tuple[int, dict, dict]:
        """Answer one call (see `app.Call`) on our paths; raises ApiError."""
        path = call.path
        if path.startswith(PREFIX):
            name, _, verb = path[len(PREFIX):].partition(":")
            name, slash, page = name.partition("/")
            if verb not in VERBS or (slash and (verb or page not in CARD_PAGES)):
                raise ApiError(404, f"no method {verb or page!r}; try {PREFIX}{{model}}[:predict|:explain|/card"
                                    "|/card.json]")
            self.dataplane.loader(name)
            call.allow(VERBS[verb])
            if slash:
                return self._card(name, page)
            if not verb:
                return self._describe(name)
            return self._predict(call, name, batch_answer=True, explain=verb == "explain")
        method = ROUTES.get(path)
        if method is None:
            raise ApiError(404, f"no such path; try {', '.join(p for p in ROUTES if p != '/')}, "
                                f"{PREFIX}{{model}}[:predict|:explain], /v2")
        if path == "/":
            if call.method == "GET":
                return 200, dict(LIVE), {}
            if call.method != "POST":
                raise ApiError(405, f"/ accepts {method} only", headers={"Allow": method})
        else:
            call.allow(method)
        default = self.settings.default_model
        if path == "/health":
            return self._health()
        if path == "/model":
            return self._describe(default)
        if path == "/feedback":
            return self._feedback(call)
        if path == "/openapi.json":
            from function.serving.openapi import openapi_document  # noqa: PLC0415 - Marshmallow stays out of cold starts

            served = tuple((name, self.dataplane.choose(name).model.contract) for name in self.dataplane.names)
            return 200, openapi_document(served, self.settings), {}
        return self._predict(call, default, batch_answer=False, explain=False)

    def _describe(self, name: str) -> tuple[int, dict, dict]:
        """The model's version and manifest, and KServe V1's `ready` (always true: a model that cannot answer is
        a 503, which KServe's client reads as not ready)."""
        choice, manifest = self.dataplane.describe(name)
        return 200, {"name": name, "ready": True, "model_version": choice.model.version, "fallback": choice.fallback,
                     "card": f"{PREFIX}{name}/card", "manifest": manifest}, {}

    def _card(self, name: str, page: str) -> tuple[int, dict | Page, dict]:
        """The model card of the version answering: HTML for people, JSON for tools; 404 when it has none."""
        model = self.dataplane.choose(name, CANARY_BUCKETS - 1).model  # the last key: stable's unless all is canary
        if model.source != "store":
            raise ApiError(404, f"{name} answers with its {model.source} model, which has no model card")
        try:
            content = self.dataplane.loader(name).read_beside(model.version, CARD_PAGES[page])
        except NotFound:
            raise ApiError(404, f"version {model.version} of {name} has no model card") from None
        except StoreUnavailable:
            raise ApiError(503, "the model store is unreachable; try again", headers={"Retry-After": "5"}) from None
        if page == "card":
            return 200, Page(content, HTML_TYPE), {}
        return 200, orjson.loads(content), {}

    def _health(self) -> tuple[int, dict, dict]:
        """Every served model's state; 503 while the default model has none, degraded if any is not as it should be."""
        ready, cold, models = self.dataplane.health()
        default = models[self.settings.default_model]
        if not ready:
            return 503, {"status": "unavailable", **default, "models": models}, {"Retry-After": "5"}
        degraded = any(not m["ready"] or m["fallback"] for m in models.values())
        headers = COLD_HEADERS if cold else {}
        return 200, {"status": "degraded" if degraded else "ok", **default, "models": models}, headers

    def _predict(self, call, name: str, batch_answer: bool, explain: bool) -> tuple[int, dict, dict]:
        raw = call.json_body()
        rows, single, parameters = self._parse(call.parsed_json(raw))
        key = call.header(self._canary_environ_key)
        explain = explain or parameters.get("explain", False)
        try:
            inference = self.dataplane.infer(
                InferenceRequest(name, Rows(rows), call.request_id, key.encode() if key else raw, explain=explain),
                call.timings)
        except InvalidInput as exc:
            violations = field_violations(exc.errors[0] if single else {"instances": exc.errors})
            raise bad_request(f"{len(violations)} invalid field(s)", violations, exc.headers) from None
        model, choice = inference.model, inference.choice
        predictions = format_predictions(inference)
        target = model.contract.target.name
        # validated: the rows hold only contract and passthrough fields
        call.log_inference(inference, [p[target] for p in predictions], {"instances": rows}, single)
        headers = COLD_HEADERS if choice.cold else {}
        if single and not batch_answer and not explain:
            return 200, predictions[0], headers
        body = {"predictions": predictions, "model_version": model.version, "fallback": choice.fallback,
                "request_id": inference.request_id,
                # Vertex AI's names for the same facts, so its clients find them where they look
                "deployedModelId": model.name, "modelDisplayName": model.name, "modelVersionId": model.version}
        if inference.explanation is not None:
            body["explanations"] = inference.explanation.to_vertex()
        return 200, body, headers

    def _feedback(self, call) -> tuple[int, dict, dict]:
        """Accept true outcomes for earlier predictions: logged (never looked up) for the monitor to join."""
        body = call.parsed_json(call.json_body())
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object", field="body", problem="must be a JSON object")
        name = body.get("model", self.settings.default_model)
        if not isinstance(name, str):
            raise ApiError(400, "model must be a served model's name", field="model", problem="must be a string")
        source = body.get("source", "unknown")
        if not isinstance(source, str) or not SOURCE_PATTERN.fullmatch(source):
            raise ApiError(400, f"source {SOURCE_RULE}", field="source", problem=SOURCE_RULE)
        single = "instances" not in body
        items = [{k: v for k, v in body.items() if k not in FEEDBACK_FIELDS}] if single else \
            self._instances(body, FEEDBACK_FIELDS, "{id, truth} objects")
        self.dataplane.loader(name)
        try:
            accepted = self.dataplane.feedback(name, items)
        except InvalidInput as exc:
            violations = field_violations(exc.errors[0] if single else {"instances": exc.errors})
            raise bad_request(f"{len(violations)} invalid field(s)", violations) from None
        call.log_feedback(name, source, accepted)
        return 202, {"accepted": len(accepted), "model": name, "request_id": call.request_id}, {}

    def _parse(self, body: object) -> tuple[list, bool, dict]:
        """The request's rows, whether it was a single object, and its parameters; 400/413 for anything else."""
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object", field="body", problem="must be a JSON object")
        if "instances" not in body:
            return [body], True, {}
        return self._instances(body, ("parameters",), "objects"), False, parameters(body.get("parameters"))

    def _instances(self, body: dict, beside: tuple[str, ...], of: str) -> list:
        """`body["instances"]`: a non-empty list within the batch limit, with only `beside` next to it."""
        extra = set(body) - {"instances", *beside}
        if extra:
            raise bad_request("unknown top-level field",
                              [{"field": k, "description": "unknown field"} for k in sorted(extra)])
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise ApiError(400, "instances must be a non-empty list", field="instances",
                           problem=f"must be a non-empty list of {of}")
        if len(rows) > self.settings.max_batch_rows:
            raise ApiError(413, f"batch of {len(rows)} rows exceeds the limit of {self.settings.max_batch_rows}")
        return rows


def parameters(given: object) -> dict:
    """Validated request parameters: only those in PARAMETERS, each of its type; 400 naming any other."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise ApiError(400, "parameters must be an object", field="parameters", problem="must be a JSON object")
    violations = [{"field": f"parameters.{k}", "description": f"unknown parameter; known: {', '.join(PARAMETERS)}"}
                  for k in given if k not in PARAMETERS]
    violations += [{"field": f"parameters.{k}", "description": f"must be a {kind.__name__}"}
                   for k, kind in PARAMETERS.items() if k in given and type(given[k]) is not kind]
    if violations:
        raise bad_request(f"{len(violations)} invalid parameter(s)", violations)
    return given


def format_predictions(inference: Inference) -> list[dict]:
    """One answer object per row, the same whichever evaluator computed it: its prediction id, the prediction
    under the target's name, then class probabilities (and a binary classifier's P(positive), `probability`,
    and the `threshold` that decided its label), or the prediction interval and whether the row is an
    `extrapolation` (a numeric input outside its training range: the interval is then the model's widest)."""
    model, out, warnings = inference.model, inference.outputs, inference.warnings
    target, version, fallback = model.contract.target.name, model.version, inference.choice.fallback
    ids = inference.prediction_ids()
    if isinstance(out, Estimates):
        level = model.contract.target.interval
        values, lower, upper = out.rounded(VALUE_DIGITS)
        return [{"id": i, target: v, "interval": {"lower": lo, "upper": hi, "level": level}, "extrapolation": x,
                 "model_version": version, "fallback": fallback, "warnings": w}
                for i, v, lo, hi, x, w in zip(ids, values, lower, upper, out.flags(), warnings)]
    labels = model.labels
    predicted, rounded = out.labels_and_rows(labels, PROBABILITY_DIGITS)
    threshold = out.threshold
    if threshold is not None:  # a binary classifier: P(positive) is the last column
        return [{"id": i, target: s, "probabilities": p, "probability": r[1], "threshold": threshold,
                 "model_version": version, "fallback": fallback, "warnings": w}
                for i, s, p, r, w in zip(ids, predicted, _by_label(labels)(rounded), rounded, warnings)]
    return [{"id": i, target: s, "probabilities": p, "model_version": version, "fallback": fallback, "warnings": w}
            for i, s, p, w in zip(ids, predicted, _by_label(labels)(rounded), warnings)]


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
