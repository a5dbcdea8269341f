"""Where a request's time goes inside the function: the serving app called in process, no HTTP, no peers.

Usage: .venv-function/bin/python -m bench.stages [--repeat 2000]   (or `make stages`)

Serves the shipped bundles (function/shipped_model) from a local store and prints, as Markdown: single
requests (median microseconds per request, werkzeug's request object included), the stages each 10,000-row
batch's log line records (parse, validate, predict, format of the answer, and the whole latency), and
TreeSHAP per row in NumPy against XGBoost's pred_contribs. `make bench` measures the same paths over HTTP
against the peers; this says which stage to work on, and shows an optimisation's effect before and after.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from function.serving.app import ServingApp
from function.serving.factory import tune_gc
from function.serving.loader import Registry
from function.serving.logs import RequestLog
from shared.settings import FUNCTION, Settings
from shared.spec import load_spec
from shared.validation import build_batch

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "function" / "shipped_model"
BATCH_ROWS = 10_000
STAGES = ("parse_ms", "validate_ms", "predict_ms", "format_ms", "latency_ms")


class RecordingLog(RequestLog):
    """The request log, keeping each request's first entry for its stage times."""

    def __init__(self) -> None:
        super().__init__(None)
        self.entries: list[dict] = []

    def emit(self, payload: dict, *args, **kwargs) -> None:
        self.entries.append(payload)
        super().emit(payload, *args, **kwargs)


def _request(path: str, body: bytes) -> Callable[[], Request]:
    environ = EnvironBuilder(path=path, method="POST", data=body, content_type="application/json").get_environ()

    def make() -> Request:
        return Request({**environ, "wsgi.input": io.BytesIO(body)})
    return make


def per_request_us(app: ServingApp, path: str, body: bytes, repeat: int) -> float:
    """Median microseconds of one request through the app, over 7 runs of `repeat` requests."""
    make = _request(path, body)
    assert app(make()).status_code == 200, app(make()).get_data()[:200]
    for _ in range(repeat // 4):
        app(make())
    runs = []
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(repeat):
            app(make())
        runs.append((time.perf_counter() - started) / repeat * 1e6)
    return statistics.median(runs)


def batch_stages(app: ServingApp, log: RecordingLog, path: str, body: bytes) -> dict[str, float]:
    """Median stage milliseconds of 7 requests of a batch (after 2 to warm up), as the log line records them."""
    make = _request(path, body)
    entries = []
    for i in range(9):
        del log.entries[:]
        assert app(make()).status_code == 200
        if i >= 2:
            entries.append(log.entries[0])
    return {k: statistics.median(e.get(k, 0.0) for e in entries) for k in STAGES}


def shap_us(model) -> list[tuple[str, float, float]]:
    """Per member: microseconds of one row's TreeSHAP in NumPy and through XGBoost."""
    rows = [dict(e["request"]) for e in load_spec(model.name).examples()]
    x = build_batch(model.contract, rows).matrix[:1]
    routed = [("all", model.predictor)] if model.contract.is_classifier else \
        [(m.name, m.predictor) for m in model.predictor.members]
    out = []
    for name, predictor in routed:
        timings = []
        for contributions in (predictor.fast.contributions, predictor.booster.contributions):
            contributions(x)
            runs = []
            for _ in range(5):
                started = time.perf_counter()
                for _ in range(200):
                    contributions(x)
                runs.append((time.perf_counter() - started) / 200 * 1e6)
            timings.append(statistics.median(runs))
        out.append((name, *timings))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=2000, help="requests per timed run of a single request")
    args = p.parse_args()
    # the function's log lines go to file descriptor 1, as in production; the report to the original stdout
    report = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    out = partial(print, file=report)
    os.environ["MODEL_STORE"] = str(SHIPPED)
    settings = Settings.from_env(reader=FUNCTION)
    log = RecordingLog()
    app = ServingApp(settings, Registry(settings), log)
    tune_gc()  # as the function does
    penguin = [dict(e["request"]) for e in load_spec("penguins").examples()]
    cars = [dict(e["request"]) for e in load_spec("co2").examples()]

    out("| single request, in process | us |\n|---|---|")
    for label, path, body in (
            ("penguins `POST /predict`, one object", "/predict", penguin[0]),
            ("co2 `:predict`, one car in `instances`", "/v1/models/co2:predict", {"instances": [cars[0]]}),
            ("penguins `:explain`, one row", "/v1/models/penguins:explain", {"instances": [penguin[0]]}),
            ("co2 `:explain`, one car", "/v1/models/co2:explain", {"instances": [cars[0]]})):
        out(f"| {label} | {per_request_us(app, path, orjson.dumps(body), args.repeat):.1f} |")

    v2 = app.dataplane.choose("penguins").model.contract
    columns = [{"name": name, "shape": [BATCH_ROWS], "datatype": "FP64" if name in {f.name for f in v2.numeric}
                else "BYTES", "data": [penguin[i % len(penguin)].get(name) for i in range(BATCH_ROWS)]}
               for name in v2.field_names]
    out(f"\n| {BATCH_ROWS:,}-row batch, in process (ms) | " + " | ".join(STAGES) + " |")
    out("|---|" + "---|" * len(STAGES))
    for label, path, body in (
            ("penguins `instances`", "/v1/models/penguins:predict",
             {"instances": [penguin[i % len(penguin)] for i in range(BATCH_ROWS)]}),
            ("penguins OIP columns", "/v2/models/penguins/infer", {"inputs": columns}),
            ("co2 `instances`", "/v1/models/co2:predict",
             {"instances": [cars[i % len(cars)] for i in range(BATCH_ROWS)]})):
        stages = batch_stages(app, log, path, orjson.dumps(body))
        out(f"| {label} | " + " | ".join(f"{stages[k]:.2f}" for k in STAGES) + " |")

    out("\n| TreeSHAP of one row (us) | NumPy (compiled trees) | XGBoost pred_contribs |\n|---|---|---|")
    for name in ("penguins", "co2"):
        for member, ours, xgb in shap_us(app.dataplane.choose(name).model):
            out(f"| {name} / {member} | {ours:.0f} | {xgb:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
