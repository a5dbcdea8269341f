"""The protocol-independent core: choose a model version, validate, predict, explain; neutral results.

Every front door (`v1` for our JSON and Vertex AI's shape, `v2` for the Open Inference Protocol) only
translates its wire format to an `InferenceRequest` and an `Inference` back; none validates or predicts
on its own. Like Seldon MLServer's `handlers/dataplane.py` under its REST and gRPC layers.

Explanations (TreeSHAP) cost far more than predictions, so they are bounded twice: a request may ask for
at most `MAX_EXPLAIN_ROWS` rows (413 before any model work), and at most `EXPLAIN_CONCURRENCY` are
computed at once per worker; a request that finds no slot within `EXPLAIN_WAIT_S` is a 503 with
`Retry-After`, so a burst of explanations cannot hold every thread away from predictions and `/health`.
"""
from __future__ import annotations

import re
import threading
import time
import zlib
from dataclasses import dataclass

import numpy as np

from function.serving.errors import ApiError
from function.serving.loader import Choice, ModelLoader, NoModel, Registry
from function.serving.shadow import ShadowWork
from shared.model import ServingModel
from shared.predictor import Estimates, Probabilities
from shared.settings import Settings
from shared.validation import FeatureBatch, InvalidRows, build_batch, build_batch_from_columns, check_matrix
from shared.validation.rules import TargetRule, Violation

RETRY_AFTER_S = "5"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # a caller's request id; its rows' ids derive from it
REQUEST_ID_RULE = "must be 1 to 128 letters, digits, '.', '_', ':' or '-'"
PREDICTION_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}-[0-9]{1,9}")  # `<request id>-<row>`
PREDICTION_ID_RULE = "must be a prediction id: a request id, '-' and a row number (as answers give them)"
HIDDEN_MANIFEST_SECTIONS = ("libraries",)  # answers never reveal library versions
CANARY_BUCKETS = 10_000  # a request's canary key falls in [0, CANARY_BUCKETS)
EXPLAIN_WAIT_S = 0.5  # how long an explanation may wait for one of the EXPLAIN_CONCURRENCY slots
EXPLAIN_RETRY_AFTER_S = "1"


# on any answer to a request that waited for a model load, so load tests and clients can tell those apart
COLD_HEADERS = {"X-Model-Load": "cold"}


class InvalidInput(ApiError):
    """Rows that break the contract: `errors` maps row index to {field or column: [messages]}."""

    def __init__(self, errors: dict[int, dict], single: bool = False) -> None:
        super().__init__(400, "invalid input")
        self.errors = errors
        self.single = single


@dataclass(slots=True)  # not frozen: frozen dataclasses cost microseconds to build, on every request
class Rows:
    """Request-shaped rows: one dict per instance, fields named as in the contract."""

    rows: list


@dataclass(slots=True)
class Columns:
    """One list of `n` values per field, as the Open Inference Protocol's per-feature inputs carry them."""

    columns: dict[str, list]
    n: int


@dataclass(slots=True)
class Encoded:
    """The model's own float32 input matrix, columns in `contract.columns` order (NaN: missing)."""

    matrix: np.ndarray
    name: str = "input"  # what the caller called the tensor, for its errors


@dataclass(slots=True)
class InferenceRequest:
    """What any front door asks of the core."""

    model: str
    inputs: Rows | Columns | Encoded
    request_id: str
    routing_key: bytes  # hashed to pick stable or canary; the same key always gets the same answer
    version: str | None = None  # a pinned version (OIP's /versions/{v}); None: stable or canary
    explain: bool = False


class Timings:
    """When each stage of one request began and ended, for the log line and the trace spans."""

    __slots__ = ("marks",)
    KEYS = {"parse": "parse_ms", "validate": "validate_ms", "predict": "predict_ms", "explain": "explain_ms",
            "format": "format_ms"}
    INFERENCE = ("validate", "predict")  # the stages whose sum is a request's `inference_ms`

    def __init__(self) -> None:
        self.marks: list[tuple[str, float, float]] = []  # (stage, start, end) in perf_counter seconds

    def add(self, stage: str, start: float) -> float:
        """Record a stage that began at `start`; returns now, the start of the next one."""
        end = time.perf_counter()
        self.marks.append((stage, start, end))
        return end

    def as_ms(self) -> dict[str, float]:
        """Each stage's milliseconds under its log key, and `inference_ms` when there was inference."""
        out, inference = {}, 0.0
        keys, counted = self.KEYS, self.INFERENCE
        for stage, start, end in self.marks:
            out[keys[stage]] = int((end - start) * 1e6) / 1000  # whole microseconds: cheaper than round()
            if stage in counted:
                inference += end - start
        if inference:
            out["inference_ms"] = int(inference * 1e6) / 1000
        return out


@dataclass(slots=True)
class Inference:
    """A neutral answer: the outputs in their evaluator's form, for a layer to format."""

    model: ServingModel
    choice: Choice
    outputs: Probabilities | Estimates
    warnings: list
    explanation: object | None  # shared.explain.Explanation when asked for
    request_id: str
    shadow: ShadowWork | None = None  # set when the shadow version is to score this request too

    @property
    def rows(self) -> int:
        return len(self.warnings)

    def prediction_ids(self) -> list[str]:
        """One stable id per row, derived from the request id: what feedback joins on."""
        rid = self.request_id
        return [f"{rid}-{i}" for i in range(len(self.warnings))]


class DataPlane:
    """The operations every protocol offers, on the models of one registry."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self._explain_slots = threading.BoundedSemaphore(settings.explain_concurrency)

    @property
    def names(self) -> tuple[str, ...]:
        return self.registry.names

    def loader(self, name: str) -> ModelLoader:
        """The loader of a served model; 404 naming the served ones otherwise."""
        loader = self.registry.get(name)
        if loader is None:
            raise ApiError(404, f"no model {name!r}; models: {', '.join(self.registry.names)}")
        return loader

    def choose(self, name: str, key: int = 0, version: str | None = None) -> Choice:
        """The model answering `name` for canary key `key`, or its pinned `version`; 503 if none can load."""
        loader = self.loader(name)
        try:
            if version is None:
                return loader.choose(key)
            choice = loader.pinned(version)
        except NoModel:
            raise ApiError(503, f"no {name} model can be loaded right now; retry later",
                           headers={"Retry-After": RETRY_AFTER_S}) from None
        if choice is None:
            raise ApiError(404, f"model {name!r} has no served version {version!r}; "
                                f"versions: {', '.join(loader.versions())}")
        return choice

    def infer(self, request: InferenceRequest, timings: Timings) -> Inference:
        """Validate, predict and (if asked) explain one request; InvalidInput names every bad value."""
        if request.explain:
            self._check_explain_rows(request.inputs)
        start = time.perf_counter()
        choice = self.choose(request.model, zlib.crc32(request.routing_key) % CANARY_BUCKETS, request.version)
        model = choice.model
        try:
            batch = self.validate(model, request.inputs)
        except ApiError as exc:  # a bad request that loaded the model still says so
            if choice.cold:
                exc.headers = {**exc.headers, **COLD_HEADERS}
            raise
        start = timings.add("validate", start)
        outputs = model.predictor.predict(batch)
        start = timings.add("predict", start)
        explanation = None
        if request.explain:
            from shared.explain import explain  # noqa: PLC0415 - XGBoost's TreeSHAP, only when asked

            if not self._explain_slots.acquire(timeout=EXPLAIN_WAIT_S):
                raise ApiError(503, f"{self.settings.explain_concurrency} explanations are being computed "
                                    "(EXPLAIN_CONCURRENCY); retry later",
                               headers={"Retry-After": EXPLAIN_RETRY_AFTER_S})
            try:
                explanation = explain(model, batch)
            finally:
                self._explain_slots.release()
            timings.add("explain", start)
        shadow = None
        if request.version is None:
            chosen = self.registry.get(request.model).shadow_model(request.request_id)
            if chosen is not None and chosen[0].version != model.version:
                shadow = ShadowWork(chosen[0], chosen[1], model, batch, request.inputs, request.request_id)
        return Inference(model, choice, outputs, batch.warnings, explanation, request.request_id, shadow)

    def _check_explain_rows(self, inputs: Rows | Columns | Encoded) -> None:
        """413 naming MAX_EXPLAIN_ROWS when a request asks to explain more rows than that."""
        if isinstance(inputs, Rows):
            rows = len(inputs.rows)
        elif isinstance(inputs, Columns):
            rows = inputs.n
        else:
            rows = inputs.matrix.shape[0] if inputs.matrix.ndim else 1
        limit = self.settings.max_explain_rows
        if rows > limit:
            raise ApiError(413, f"{rows} rows to explain; at most {limit} per request (MAX_EXPLAIN_ROWS): "
                                "send them in smaller batches")

    @staticmethod
    def validate(model: ServingModel, inputs: Rows | Columns | Encoded) -> FeatureBatch:
        """The inputs checked against the model's contract; InvalidInput (or a 400 for a tensor's shape)."""
        try:
            if isinstance(inputs, Rows):
                return build_batch(model.contract, inputs.rows)
            if isinstance(inputs, Columns):
                return build_batch_from_columns(model.contract, inputs.columns, inputs.n)
            width = len(model.contract.columns)
            if inputs.matrix.ndim != 2 or inputs.matrix.shape[1] != width:
                raise ApiError(400, f"input {inputs.name!r}: shape {list(inputs.matrix.shape)} must be [N, {width}], "
                                    f"the model's encoded columns ({', '.join(model.contract.columns)})")
            return check_matrix(model.contract, inputs.matrix)
        except InvalidRows as exc:
            raise InvalidInput(exc.errors) from None

    def feedback(self, name: str, items: list) -> list[dict]:
        """Validated `{"id", "truth"}` items for a model: the truth in the target's terms (a known label in its
        spelling, or a number within the target's bounds); InvalidInput names every bad item's field."""
        target = self.choose(name).model.contract.target
        rule = TargetRule(target)
        accepted, errors = [], {}
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                errors[i] = {"_schema": ["must be an object with `id` and `truth`"]}
                continue
            problems: dict[str, list[str]] = {}
            unknown = set(item) - {"id", "truth"}
            for key in sorted(unknown, key=str):
                problems[str(key)] = ["unknown field"]
            pid = item.get("id")
            if not isinstance(pid, str) or not PREDICTION_ID_PATTERN.fullmatch(pid):
                problems["id"] = [PREDICTION_ID_RULE]
            if "truth" not in item:
                problems["truth"] = ["is required"]
            else:
                try:
                    truth = rule.parse(item["truth"])
                except Violation as exc:
                    problems["truth"] = [str(exc)]
            if problems:
                errors[i] = problems
            else:
                accepted.append({"id": pid, "truth": truth})
        if errors:
            raise InvalidInput(errors)
        return accepted

    def describe(self, name: str, version: str | None = None) -> tuple[Choice, dict]:
        """The model answering now (or the pinned version) and its manifest without hidden sections."""
        choice = self.choose(name, 0, version)
        manifest = {k: v for k, v in choice.model.manifest.items() if k not in HIDDEN_MANIFEST_SECTIONS}
        return choice, manifest

    def versions(self, name: str) -> list[str]:
        """The versions a model can answer with: stable, canary and the kept fallbacks."""
        self.choose(name)
        return self.loader(name).versions()

    def health(self) -> tuple[bool, bool, dict[str, dict]]:
        """(default model ready, any model cold-loaded by this call, every model's status)."""
        models, cold = {}, False
        for name in self.registry.names:
            loader = self.registry.get(name)
            try:
                cold = loader.choose(0).cold or cold
            except NoModel:
                pass
            models[name] = loader.status()
        return models[self.settings.default_model]["ready"], cold, models

    def ready(self, name: str | None = None) -> bool:
        """Whether a model (or every model) can answer now, loading it if it never was."""
        for each in (name,) if name else self.registry.names:
            try:
                self.loader(each).choose(0)
            except NoModel:
                return False
        return True
