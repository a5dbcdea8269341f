"""Cloud Function entry point: `predict` hands every request to the serving app, built on first use.

Imports resolve through the installed distribution (`pip install -e .`) in the repository, and through
the packages copied beside this file in the deployed source bundle (`scripts/rollout.py build-source`).
"""
from __future__ import annotations

import functions_framework

from function.serving.factory import get_app


@functions_framework.http
def predict(request):
    """HTTP target: POST /predict, GET /health, GET /model, GET /openapi.json."""
    return get_app()(request)
