"""Cloud Function entry point: `predict` hands every request to the serving app, built on first use."""
from __future__ import annotations

import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
# Functions Framework puts only this folder on sys.path. The deployed bundle has shared/ copied in
# here; in the repository it sits one level up.
for _path in (_here, _here.parent):
    if (_path / "shared").is_dir() and str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
        break

import functions_framework  # noqa: E402
from serving.factory import get_app  # noqa: E402


@functions_framework.http
def predict(request):
    """HTTP target: POST /predict, GET /health, GET /model, GET /openapi.json."""
    return get_app()(request)
