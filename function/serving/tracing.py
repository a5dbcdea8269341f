"""Trace correlation: the caller's trace from its headers, Cloud Logging's trace fields, optional spans.

A request's log line joins its trace in Cloud Logging through `logging.googleapis.com/trace`, taken from
a W3C `traceparent` or Google's `X-Cloud-Trace-Context`; a malformed header is ignored. With the TRACING
setting on, `Tracer` also records one span per request and one per stage (parse, validate, predict,
explain, format) from the timings the request measured anyway, and exports them to Cloud Trace. With it
off, OpenTelemetry is never imported.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from function.serving.dataplane import Timings

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_CLOUD_TRACE = re.compile(r"([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([01]))?")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


@dataclass(frozen=True)
class TraceContext:
    """The caller's trace: 32 hex digits of trace id, 16 of span id (if any), and whether it is sampled."""

    trace_id: str
    span_id: str | None
    sampled: bool

    def log_fields(self, project: str) -> dict:
        """The LogEntry fields Cloud Logging joins to the trace."""
        fields = {"logging.googleapis.com/trace": f"projects/{project}/traces/{self.trace_id}",
                  "logging.googleapis.com/trace_sampled": self.sampled}
        if self.span_id is not None:
            fields["logging.googleapis.com/spanId"] = self.span_id
        return fields


def trace_context(environ: dict) -> TraceContext | None:
    """The trace of a request from `traceparent`, else `X-Cloud-Trace-Context`; None if absent or malformed."""
    header = environ.get("HTTP_TRACEPARENT")
    if header is not None:
        match = _TRACEPARENT.fullmatch(header.strip())
        if match and match[1] != _ZERO_TRACE and match[2] != _ZERO_SPAN:
            return TraceContext(match[1], match[2], bool(int(match[3], 16) & 1))
    header = environ.get("HTTP_X_CLOUD_TRACE_CONTEXT")
    if header is not None:
        match = _CLOUD_TRACE.fullmatch(header.strip())
        if match and match[1] != _ZERO_TRACE:
            span = int(match[2]) if match[2] else 0
            span_id = f"{span:016x}" if 0 < span < 2**64 else None
            return TraceContext(match[1].lower(), span_id, match[3] == "1")
    return None


class Tracer:
    """Spans of each request and its stages, built after the answer from its measured timings."""

    def __init__(self, project: str | None, exporter: object | None = None) -> None:
        from opentelemetry import trace  # noqa: PLC0415 - only when TRACING is on
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor  # noqa: PLC0415

        if exporter is None:
            from opentelemetry.exporter.cloud_trace import CloudTraceSpanExporter  # noqa: PLC0415

            exporter = CloudTraceSpanExporter(project_id=project)
            processor = BatchSpanProcessor(exporter)
        else:
            processor = SimpleSpanProcessor(exporter)
        self.provider = TracerProvider(resource=Resource.create({"service.name": "tabular-xgb-function"}))
        self.provider.add_span_processor(processor)
        self._tracer = self.provider.get_tracer(__name__)
        self._trace = trace

    def record(self, method: str, path: str, status: int, request_id: str, *, caller: TraceContext | None,
               started: float, timings: Timings) -> None:
        """One server span from `started` (perf_counter seconds) to now, with a child per stage."""
        trace = self._trace
        offset_ns = time.time_ns() - int(time.perf_counter() * 1e9)  # perf_counter -> epoch nanoseconds
        parent = None
        if caller is not None and caller.span_id is not None:
            remote = trace.SpanContext(int(caller.trace_id, 16), int(caller.span_id, 16), is_remote=True,
                                       trace_flags=trace.TraceFlags(1 if caller.sampled else 0))
            parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        span = self._tracer.start_span(f"{method} {path}", context=parent, kind=trace.SpanKind.SERVER,
                                       start_time=offset_ns + int(started * 1e9),
                                       attributes={"http.request.method": method, "url.path": path,
                                                   "http.response.status_code": status, "request_id": request_id})
        inside = trace.set_span_in_context(span)
        for stage, start, end in timings.marks:
            child = self._tracer.start_span(stage, context=inside, start_time=offset_ns + int(start * 1e9))
            child.end(end_time=offset_ns + int(end * 1e9))
        span.end()

    def shutdown(self) -> None:
        """Export what is pending (at exit)."""
        self.provider.shutdown()
