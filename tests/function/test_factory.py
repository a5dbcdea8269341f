"""The process-wide app: built once, and the garbage collector tuned for large batches."""
from __future__ import annotations

import gc

from serving import factory


def test_app_is_built_once_and_tunes_the_collector(client):
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        factory._app = None
        assert client.get("/health").status_code == 200
        app = factory._app
        assert app is not None and gc.get_threshold() == factory.GC_THRESHOLDS
        assert client.get("/health").status_code == 200 and factory._app is app
    finally:
        gc.set_threshold(*before)
