"""Cloud Function entry point: `predict` hands every request to the serving app, built on first use.

Importing this module first validates the function's settings (environment parsing only): Functions
Framework imports it before it builds its gunicorn server, so a bad value, WORKERS and THREADS included,
stops start-up with one line per bad variable on stderr and exit status 2, and the serving code, some of
which reads settings as it is imported, only ever sees valid ones.

Imports resolve through the installed distribution (`pip install -e .`) in the repository, and through
the packages copied beside this file in the deployed source bundle (`scripts/rollout.py build-source`).
"""
from __future__ import annotations

import functions_framework

from shared.settings import FUNCTION, configure_logging, exit_on_bad_settings

SETTINGS = exit_on_bad_settings("function", FUNCTION)
configure_logging(SETTINGS.log_level)
if SETTINGS.tracing:
    import importlib.util
    import sys

    if importlib.util.find_spec("opentelemetry") is None or importlib.util.find_spec("opentelemetry.sdk") is None:
        sys.stderr.write("function: bad setting TRACING=1: OpenTelemetry is not installed "
                         "(pip install -e .[function,tracing], or add the tracing extra to the lock)\n")
        raise SystemExit(2)

from function.serving.factory import get_app  # noqa: E402 - only once the settings are known to be valid


@functions_framework.http
def predict(request):
    """HTTP target: POST /predict, GET /health, GET /model, GET /openapi.json."""
    return get_app(SETTINGS)(request)
