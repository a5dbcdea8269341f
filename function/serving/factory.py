"""The process-wide serving app, built once from the environment on first use (nothing heavy at import)."""
from __future__ import annotations

import gc
import threading
from pathlib import Path

from function.serving.app import ServingApp
from function.serving.loader import ModelLoader
from function.serving.logs import LocalSink, RequestLog
from shared.settings import Settings

# A 10,000-row batch keeps ~50,000 dicts and lists alive until its response is written. At CPython's
# default first-generation threshold (700) the cyclic collector walks them, and in its full collections
# every imported module, dozens of times per request: 35-49 ms per 10,000 rows in process, 30 ms with
# these thresholds. Requests make no reference cycles worth collecting sooner.
GC_THRESHOLDS = (50_000, 20, 20)

_app: ServingApp | None = None
_lock = threading.Lock()


def build_app(settings: Settings) -> ServingApp:
    """Wire settings, loader and request log together."""
    sink = None
    if settings.log_to_store and not settings.model_store.startswith("gs://"):
        sink = LocalSink(Path(settings.model_store) / settings.log_prefix)  # the function never writes to GCS
    return ServingApp(settings, ModelLoader(settings), RequestLog(sink))


def tune_gc() -> None:
    """Run the cyclic garbage collector less often than CPython's default, see GC_THRESHOLDS."""
    gc.set_threshold(*GC_THRESHOLDS)


def get_app() -> ServingApp:
    """The app of this process (one per gunicorn worker, shared by its threads)."""
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                _app = build_app(Settings.from_env())
                tune_gc()
    return _app
