"""The process-wide serving app, built once on first use from the validated settings (nothing heavy at import)."""
from __future__ import annotations

import atexit
import gc
import threading
from pathlib import Path

from function.serving.app import ServingApp
from function.serving.loader import Registry
from function.serving.logs import LocalSink, RequestLog
from shared.logline import log_policies
from shared.settings import FUNCTION, Settings

# Large batches keep tens of thousands of dicts and lists alive until their response is written. At CPython's
# default first-generation threshold the cyclic collector walks them (and, in its full collections, every
# imported module) dozens of times per request; requests make no reference cycles worth collecting sooner.
GC_THRESHOLDS = (50_000, 20, 20)

_app: ServingApp | None = None
_lock = threading.Lock()


def build_app(settings: Settings) -> ServingApp:
    """Wire settings, the served models' loaders and the request log together."""
    sink = None
    if settings.log_to_store and not settings.model_store.startswith("gs://"):
        sink = LocalSink(Path(settings.model_store) / settings.log_prefix)  # the function never writes to GCS
    tracer = None
    if settings.tracing:
        from function.serving.tracing import Tracer  # noqa: PLC0415 - OpenTelemetry only when asked for

        tracer = Tracer(settings.google_cloud_project)
        atexit.register(tracer.shutdown)
    return ServingApp(settings, Registry(settings), RequestLog(sink, log_policies(settings, settings.models)), tracer)


def tune_gc() -> None:
    """Run the cyclic garbage collector less often than CPython's default, see GC_THRESHOLDS."""
    gc.set_threshold(*GC_THRESHOLDS)


def get_app(settings: Settings | None = None) -> ServingApp:
    """The app of this process (one per gunicorn worker, shared by its threads), built on the first call.

    It is built from `settings` (function/main.py passes those it validated at import), else from the
    environment; later calls return the same app whatever they pass.
    """
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                _app = build_app(settings if settings is not None else Settings.from_env(reader=FUNCTION))
                tune_gc()
    return _app
