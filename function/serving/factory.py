"""The process-wide serving app, built once from the environment on first use (nothing heavy at import)."""
from __future__ import annotations

import threading
from pathlib import Path

from serving.app import ServingApp
from serving.loader import ModelLoader
from serving.logs import LocalSink, RequestLog
from shared.settings import Settings

_app: ServingApp | None = None
_lock = threading.Lock()


def build_app(settings: Settings) -> ServingApp:
    """Wire settings, loader and request log together."""
    sink = None
    if settings.log_to_store and not settings.model_store.startswith("gs://"):
        sink = LocalSink(Path(settings.model_store) / settings.log_prefix)  # the function never writes to GCS
    return ServingApp(settings, ModelLoader(settings), RequestLog(sink))


def get_app() -> ServingApp:
    """The app of this process (one per gunicorn worker, shared by its threads)."""
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                _app = build_app(Settings.from_env())
    return _app
