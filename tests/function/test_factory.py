"""The process-wide app: built once, lean on its cold path, and the garbage collector tuned for batches."""
from __future__ import annotations

import gc
import json
import os
import subprocess

from function.serving import factory
from testbed.servers import FN_VENV_BIN

FRESH_WORKER = """
import json, sys
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request
from function.serving.factory import get_app
from tests.support.examples import SEED_EXAMPLES

def post(body):
    environ = EnvironBuilder(method="POST", path="/predict", json=body).get_environ()
    return get_app()(Request(environ)).status_code

heavy = ("marshmallow", "xgboost", "pandas", "sklearn")
statuses = [post(SEED_EXAMPLES[0][0]), post({"instances": [row for row, _ in SEED_EXAMPLES] * 4})]
valid_loaded = [name for name in heavy if name in sys.modules]
statuses.append(post({**SEED_EXAMPLES[0][0], "bill_length_mm": "long"}))
print(json.dumps({"statuses": statuses, "valid_loaded": valid_loaded,
                  "invalid_loaded": [name for name in heavy if name in sys.modules]}), file=sys.stderr)
"""


def test_valid_requests_in_a_fresh_worker_import_no_heavy_library(published):
    env = {**os.environ, "MODEL_STORE": str(published.root)}
    run = subprocess.run([str(FN_VENV_BIN / "python"), "-c", FRESH_WORKER], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60, check=True)
    result = json.loads(run.stderr.strip().splitlines()[-1])
    assert result["statuses"] == [200, 200, 400]
    assert result["valid_loaded"] == []  # Marshmallow judges only bad input; 12 rows stay off XGBoost
    assert result["invalid_loaded"] == ["marshmallow"]


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
