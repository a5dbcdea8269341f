"""The HTTP edge: read the request, give it an id and its trace, hand it to a protocol layer, log one line.

Paths under `/v2` speak the Open Inference Protocol (`v2`); every other path our JSON and Vertex AI's
shape (`v1`). Both translate to and from the protocol-independent `DataPlane`. Nothing here raises to
the framework: every failure becomes a JSON error in the shape of the protocol that was asked.

`ServingApp.wsgi` is the WSGI entry gunicorn calls (function/main.py installs it in place of the Flask app
Functions Framework builds): every path, however odd, reaches our routing and gets our JSON errors, and
no framework hook reads a body we did not ask for. A body whose declared length is over `MAX_BODY_BYTES`
is a 413 before a byte of it is read; a body cut off before its declared length, or a chunked body with
a bad chunk, is a 400 at once. Both close the connection (what is left of the body is never read).
A gzip or deflate body (Content-Encoding) is decoded, to at most `MAX_BODY_BYTES` (413 beyond); one that is
not what its Content-Encoding says is a 400, any other encoding a 415 naming it. /v1 takes JSON bodies only;
/v2 also untyped ones and octet-stream with the binary tensor data extension (`OIP_TYPES`), as OIP clients send.
"""
from __future__ import annotations

import itertools
import os
import time
import traceback
import zlib
from dataclasses import dataclass, field

import orjson
from werkzeug.wrappers import Request, Response

from function.serving import v1, v2
from function.serving.dataplane import REQUEST_ID_PATTERN, REQUEST_ID_RULE, DataPlane, Inference, Timings
from function.serving.errors import ApiError
from function.serving.loader import Registry
from function.serving.logs import CONTINUED, CONTINUED_FIELDS, RequestLog, inference_rows
from function.serving.shadow import ShadowScorer, ShadowWork
from function.serving.tracing import TraceContext, Tracer, trace_context
from shared.logline import FeedbackRows, PredictionRows
from shared.settings import Settings

REQUEST_ID_HEADER = "X-Request-Id"
_JSON_TYPE = (("Content-Type", "application/json"),)
_BINARY_TYPE = (("Content-Type", "application/octet-stream"),)
CLOSE = {"Connection": "close"}  # on answers that leave a body unread or broken: the connection is not reused


@dataclass(slots=True)
class Call:
    """One request as the protocol layers see it: its body, id, trace, timings and log fields."""

    request: Request
    settings: Settings
    request_id: str
    trace: TraceContext | None
    timings: Timings
    started: float
    log_fields: dict = field(default_factory=dict)
    logged_rows: PredictionRows | FeedbackRows | None = None  # every row, logged as `data` (RequestLog.emit)
    shadow: ShadowWork | None = None  # the answered request, for the shadow version to score once it is logged

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def path(self) -> str:
        return self.request.path

    def header(self, environ_key: str) -> str | None:
        return self.request.environ.get(environ_key)

    def allow(self, method: str) -> None:
        """405 unless the request used `method`."""
        if self.request.method != method:
            raise ApiError(405, f"{self.request.path} accepts {method} only", headers={"Allow": method})

    def json_body(self, any_type: bool = False) -> bytes:
        """The raw JSON body, decoded from its Content-Encoding, within the size limit; 413, or 415 unless typed
        as JSON (or, with `any_type`, as an Open Inference Protocol request may be: see `OIP_TYPES`) or in an
        encoding we do not decode, or 400 when it ends before its declared length, its chunked encoding is
        broken or it does not decode."""
        # straight from the WSGI environ: werkzeug's lazy properties cost more than the prediction
        environ = self.request.environ
        limit = self.settings.max_body_bytes
        length = environ.get("CONTENT_LENGTH")
        size = int(length) if length and length.isdigit() else None
        if size is not None and size > limit:  # ServingApp.__call__ answers this first; kept for direct callers
            raise ApiError(413, f"body exceeds {limit} bytes", headers=CLOSE)
        mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        if mimetype != "application/json" and not mimetype.endswith("+json"):
            if not any_type:
                raise ApiError(415, "send the body as application/json")
            if mimetype not in OIP_TYPES or (mimetype == "application/octet-stream"
                                             and "HTTP_INFERENCE_HEADER_CONTENT_LENGTH" not in environ):
                raise ApiError(415, "send the body as application/json, or as application/octet-stream with "
                                    "Inference-Header-Content-Length (the binary tensor data extension)")
        codings = content_codings(environ.get("HTTP_CONTENT_ENCODING"))
        try:
            if size is not None:
                # Straight from the server's stream (werkzeug's wrappers around it cost more than the prediction),
                # and cached where werkzeug's get_data() looks, for anything reading it after us.
                raw = environ["wsgi.input"].read(size)
            else:
                raw = self.request.stream.read(limit + 1)  # chunked, no declared length: read at most the limit
        except Exception as exc:  # the server's reader: a bad chunk size, a chunked body cut off, a reset
            self.log_fields["body_error"] = type(exc).__name__
            raise ApiError(400, "body is malformed or was cut off before its end", headers=CLOSE) from None
        if size is not None and len(raw) < size:
            self.log_fields["body_error"] = "truncated"
            raise ApiError(400, f"body ends after {len(raw)} of the {size} bytes its Content-Length declares",
                           headers=CLOSE)
        if size is None and len(raw) > limit:
            raise ApiError(413, f"body exceeds {limit} bytes", headers=CLOSE)
        for coding in reversed(codings):  # the last coding applied is the first undone
            raw = decoded(raw, coding, limit, self.log_fields)
        self.request._cached_data = raw
        return raw

    def parsed_json(self, raw: bytes) -> object:
        """The body parsed, timed as the request's parse stage; 400 naming the problem otherwise."""
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"body is not valid JSON: {exc.msg}", field="body", problem=exc.msg) from None
        self.timings.add("parse", self.started)
        return body

    def log_feedback(self, model: str, source: str, items: list[dict]) -> None:
        """What the feedback log lines say: every accepted item, for the monitor to join to its prediction."""
        self.log_fields.update(event="feedback", model=model, source=source, rows=len(items))
        self.logged_rows = FeedbackRows(items)

    def log_inference(self, inference: Inference, predicted: list, inputs: dict, single: bool) -> None:
        """What the prediction log lines say about an answered inference: every row's inputs (`inputs`:
        `{"instances": rows}` or `{"columns": {field: values}}`), prediction (a binary classifier's decided by
        its `threshold`, logged beside its `labels`), and probabilities, or interval and extrapolation flag."""
        choice, model = inference.choice, inference.model
        self.log_fields.update(model=model.name, model_version=model.version, role=choice.role,
                               fallback=choice.fallback, rows=inference.rows,
                               prediction=str(predicted[0]) if single else "batch",
                               out_of_range=sum(1 for w in inference.warnings if w))
        fields, self.logged_rows = inference_rows(model, inference.outputs, self.request_id, predicted, inputs)
        if fields:
            self.log_fields.update(fields)
        if choice.cold:
            self.log_fields["cold"] = True
        self.shadow = inference.shadow


# Content-Types an Open Inference Protocol body may come with besides JSON: none (tritonclient's), curl's `-d`
# default (Triton's and KServe's curl examples, and ours in docs/protocols.md), and octet-stream (the binary tensor
# data extension, with its Inference-Header-Content-Length; checked in `Call.json_body`)
OIP_TYPES = frozenset({"", "application/octet-stream"})
# Content-Encodings a body may come in (tritonclient's request_compression_algorithm: gzip or deflate), as zlib's
# wbits: gzip's header and trailer, or deflate's zlib wrapper (RFC 9110 section 8.4.1)
DECODED = {"gzip": 31, "x-gzip": 31, "deflate": 15}
ENCODINGS_ACCEPTED = {"Accept-Encoding": "gzip, deflate"}


def content_codings(header: str | None) -> list[str]:
    """The codings a Content-Encoding header lists, in the order applied, identity left out; 415 naming any we
    do not decode (with the ones we do in Accept-Encoding, RFC 9110 section 12.5.3)."""
    if not header:
        return []
    codings = [c.strip().lower() for c in header.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    for coding in codings:
        if coding not in DECODED:
            raise ApiError(415, f"Content-Encoding {coding[:40]!r} is not supported: send the body unencoded, "
                                "or gzip or deflate", headers=ENCODINGS_ACCEPTED)
    return codings


def decoded(raw: bytes, coding: str, limit: int, log_fields: dict) -> bytes:
    """`raw` decoded from `coding` (gzip: every member), never more than `limit` bytes of it (413 beyond), 400
    when it is not that coding or ends early."""
    out = bytearray()
    rest = raw
    while True:
        inflater = zlib.decompressobj(DECODED[coding])
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error:
            log_fields["body_error"] = f"bad {coding}"
            raise ApiError(400, f"body is not valid {coding} data, as its Content-Encoding says") from None
        if len(out) > limit:
            raise ApiError(413, f"body exceeds {limit} bytes once decoded from {coding}")
        if not inflater.eof:
            log_fields["body_error"] = f"truncated {coding}"
            raise ApiError(400, f"body ends before the end of its {coding} data")
        rest = inflater.unused_data
        if not rest or coding == "deflate":
            break
    if rest:
        log_fields["body_error"] = f"trailing {coding}"
        raise ApiError(400, f"body has bytes after the end of its {coding} data")
    return bytes(out)


_ids: dict = {}


def _new_id_prefix() -> None:
    _ids.update(prefix=os.urandom(5).hex(), count=itertools.count())


_new_id_prefix()
os.register_at_fork(after_in_child=_new_id_prefix)  # each gunicorn worker its own prefix


def new_request_id() -> str:
    """A request id unique across processes: a random prefix per process, then a counter (no syscall per call)."""
    return f"{_ids['prefix']}{next(_ids['count']):06x}"


class ServingApp:
    """The whole HTTP surface of the function, framework-agnostic apart from werkzeug's Request."""

    def __init__(self, settings: Settings, registry: Registry, request_log: RequestLog,
                 tracer: Tracer | None = None) -> None:
        self.settings = settings
        self.dataplane = DataPlane(settings, registry)
        self.request_log = request_log
        self.shadow = ShadowScorer(request_log, settings.shadow_queue, DataPlane.validate)
        self.tracer = tracer
        self.v1 = v1.Handler(self.dataplane, settings)
        self.v2 = v2.Handler(self.dataplane, settings)
        self._trace_project = settings.google_cloud_project or "local"

    @property
    def registry(self) -> Registry:
        return self.dataplane.registry

    def wsgi(self, environ: dict, start_response):
        """The WSGI application: every request, whatever its path, answered by `__call__`."""
        try:
            return self(Request(environ))(environ, start_response)
        finally:
            # werkzeug's Request puts itself in its environ: a reference cycle per request that only the
            # collector frees, whose full passes over the whole heap were a ~10-20 ms tail at p99
            environ.pop("werkzeug.request", None)

    def __call__(self, request: Request) -> Response:
        """Answer one request; never raises."""
        started = time.perf_counter()
        layer = self.v2 if request.path.startswith(v2.PREFIX) else self.v1
        environ = request.environ
        given_id = environ.get("HTTP_X_REQUEST_ID")
        call = Call(request, self.settings, given_id or new_request_id(), trace_context(environ),
                    Timings(), started)
        try:
            length = environ.get("CONTENT_LENGTH")
            if length and length.isdigit() and int(length) > self.settings.max_body_bytes:
                # before any routing or reading: not a byte of the body is read, and the connection closes
                raise ApiError(413, f"body exceeds {self.settings.max_body_bytes} bytes", headers=CLOSE)
            if given_id is not None and not REQUEST_ID_PATTERN.fullmatch(given_id):
                call.request_id = new_request_id()
                raise ApiError(400, f"{REQUEST_ID_HEADER} {REQUEST_ID_RULE}", field=REQUEST_ID_HEADER,
                               problem=REQUEST_ID_RULE)
            status, body, headers = layer.handle(call)
        except ApiError as err:
            status, body, headers = err.code, layer.error_body(err), err.headers
            call.log_fields["error"] = err.message
            if err.violations:
                call.log_fields["error_fields"] = sorted({v["field"].split(".")[-1] for v in err.violations})[:20]
        except Exception as exc:  # a bug must not become a stack trace in the answer, a dead worker or a log
            err = ApiError(500, "internal error")  # of many lines: its trace goes in the request's one entry
            status, body, headers = 500, layer.error_body(err), {}
            call.log_fields.update(error="internal error", exception=f"{type(exc).__name__}: {exc}"[:1000],
                                   stack_trace="".join(traceback.format_exception(exc))[-8000:])
        start = time.perf_counter()
        if isinstance(body, v1.Page):  # a page for people (a model card): its own bytes and type
            payload, kind = body.content, (("Content-Type", body.content_type),)
        else:
            payload = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
            # headers as a list with the Content-Type in it: werkzeug then skips its mimetype handling; an OIP
            # answer with binary tensor data (a JSON header, then raw bytes) is octet-stream, as the extension says
            kind = _BINARY_TYPE if isinstance(body, orjson.Fragment) else _JSON_TYPE
        call.timings.add("format", start)
        response = Response(payload, status, [*kind, (REQUEST_ID_HEADER, call.request_id), *headers.items()])
        self._log(call, status, len(payload))
        return response

    def _log(self, call: Call, status: int, size: int) -> None:
        latency = time.perf_counter() - call.started
        fields = call.log_fields
        event = fields.pop("event", "prediction") if status < 300 and "rows" in fields else "request"
        entry = {
            "severity": "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO",
            "message": f"{call.method} {call.path} {status}",
            "event": event,
            "status": status,
            "request_id": call.request_id,
            "latency_ms": round(latency * 1000, 3),
            **call.timings.as_ms(),
            "httpRequest": {"requestMethod": call.method, "requestUrl": call.path, "status": status,
                            "responseSize": str(size), "latency": f"{latency:.6f}s"},
            **fields,
        }
        trace = call.trace
        if trace is not None:
            entry.update(trace.log_fields(self._trace_project))
        self.request_log.emit(entry, call.logged_rows, CONTINUED_FIELDS,
                              continued_event=None if event == "feedback" else CONTINUED)
        if call.shadow is not None and status < 300:
            self.shadow.submit(call.shadow)
        if self.tracer is not None:
            self.tracer.record(call.method, call.path, status, call.request_id, caller=trace, started=call.started,
                               timings=call.timings)
