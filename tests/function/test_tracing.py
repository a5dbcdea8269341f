"""OpenTelemetry spans per stage when TRACING is on (an in-memory exporter), and no OpenTelemetry when off."""
from __future__ import annotations

import subprocess
import sys

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from werkzeug.test import Client

from function.serving.factory import build_app
from function.serving.tracing import TraceContext, Tracer, trace_context
from shared.settings import Settings
from tests.support.examples import SEED_EXAMPLES

TRACE_ID, SPAN_HEX = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def test_trace_context_from_either_header():
    unsampled = {"HTTP_TRACEPARENT": f"00-{TRACE_ID}-{SPAN_HEX}-00"}
    assert trace_context(unsampled) == TraceContext(TRACE_ID, SPAN_HEX, False)
    assert trace_context({"HTTP_X_CLOUD_TRACE_CONTEXT": TRACE_ID.upper()}) == TraceContext(TRACE_ID, None, False)
    both = {"HTTP_TRACEPARENT": "bad", "HTTP_X_CLOUD_TRACE_CONTEXT": f"{TRACE_ID}/1;o=1"}
    assert trace_context(both) == TraceContext(TRACE_ID, f"{1:016x}", True)
    assert trace_context({}) is None


def test_spans_per_stage_join_the_callers_trace(published):
    exporter = InMemorySpanExporter()
    settings = Settings(model_store=str(published.root), models=("penguins",), default_model="penguins")
    app = build_app(settings)
    app.tracer = Tracer("my-project", exporter)

    def wsgi(environ, start_response):
        from werkzeug.wrappers import Request  # noqa: PLC0415
        return app(Request(environ))(environ, start_response)

    resp = Client(wsgi).post("/predict", json=SEED_EXAMPLES[0][0],
                             headers={"traceparent": f"00-{TRACE_ID}-{SPAN_HEX}-01", "X-Request-Id": "spanned"})
    assert resp.status_code == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert {"POST /predict", "parse", "validate", "predict", "format"} <= set(spans)
    root = spans["POST /predict"]
    assert f"{root.context.trace_id:032x}" == TRACE_ID and f"{root.parent.span_id:016x}" == SPAN_HEX
    assert root.attributes["request_id"] == "spanned" and root.attributes["http.response.status_code"] == 200
    for stage in ("parse", "validate", "predict", "format"):
        child = spans[stage]
        assert child.parent.span_id == root.context.span_id
        assert root.start_time <= child.start_time <= child.end_time <= root.end_time


def test_with_tracing_off_nothing_of_opentelemetry_is_imported(published):
    code = ("import sys, os\n"
            "from werkzeug.test import Client\n"
            "from function.serving.factory import build_app\n"
            "from shared.settings import Settings\n"
            "from werkzeug.wrappers import Request\n"
            f"app = build_app(Settings(model_store={str(published.root)!r}, models=('penguins',), "
            "default_model='penguins'))\n"
            "wsgi = lambda e, s: app(Request(e))(e, s)\n"
            f"r = Client(wsgi).post('/predict', json={SEED_EXAMPLES[0][0]!r}, "
            f"headers={{'traceparent': '00-{TRACE_ID}-{SPAN_HEX}-01'}})\n"
            "assert r.status_code == 200, r.data\n"
            "print('OTEL', sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "OTEL []" in out.stdout.splitlines()
