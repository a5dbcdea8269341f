"""Cloud Function entry point: `predict` hands every request to the serving app, built on first use.

Importing this module first validates the function's settings (environment parsing only): Functions
Framework imports it before it builds its gunicorn server, so a bad value, WORKERS and THREADS included,
stops start-up with one line per bad variable on stderr and exit status 2, and the serving code, some of
which reads settings as it is imported, only ever sees valid ones.

Functions Framework builds a Flask app around `predict` and imports this module inside that app's context:
the import swaps the app's WSGI callable for `Edge` (see `install_edge`), so gunicorn hands every request
straight to the serving app. Flask's routing (an HTML 404 for a path it cannot route, `%0a` in it say) and
Functions Framework's after-request hook (it reads every body to its end, however large, after we answered)
never run; `predict` stays the target Functions Framework looks up, and serves when no app context exists.

Imports resolve through the installed distribution (`pip install -e .`) in the repository, and through
the packages copied beside this file in the deployed source bundle (`scripts/rollout.py build-source`).
"""
from __future__ import annotations

import functions_framework

from shared.logline import log_policies
from shared.settings import FUNCTION, SettingError, configure_logging, exit_on_bad_settings, exit_on_setting_error

SETTINGS = exit_on_bad_settings("function", FUNCTION)
try:  # a spec that hashes a field needs the key before the first request is logged
    log_policies(SETTINGS, SETTINGS.models)
except SettingError as exc:
    exit_on_setting_error("function", exc)
configure_logging(SETTINGS.log_level, structured=True)
if SETTINGS.tracing:
    import importlib.util
    import sys

    if importlib.util.find_spec("opentelemetry") is None or importlib.util.find_spec("opentelemetry.sdk") is None:
        sys.stderr.write("function: bad setting TRACING=1: OpenTelemetry is not installed "
                         "(pip install -e .[function,tracing], or add the tracing extra to the lock)\n")
        raise SystemExit(2)

import flask  # noqa: E402

from function.serving.factory import get_app  # noqa: E402 - only once the settings are known to be valid


@functions_framework.http
def predict(request):
    """HTTP target: POST /predict, GET /health, GET /model, GET /openapi.json."""
    return get_app(SETTINGS)(request)


class Edge:
    """The WSGI application gunicorn calls: the serving app's own `wsgi`, built on the first request."""

    __slots__ = ("wsgi",)

    def __init__(self) -> None:
        self.wsgi = None

    def __call__(self, environ: dict, start_response):
        wsgi = self.wsgi
        if wsgi is None:
            wsgi = self.wsgi = get_app(SETTINGS).wsgi
        return wsgi(environ, start_response)


def install_edge() -> None:
    """Serve every request of the Flask app Functions Framework is building (whose context this import runs
    in) through `Edge`; outside such a context (a plain import) there is nothing to install."""
    if flask.has_app_context():
        flask.current_app.wsgi_app = Edge()


install_edge()
