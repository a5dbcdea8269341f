"""Drift reports from real synthetic traffic to each model: JSON against its schema, HTML rendered by Chromium."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
from PIL import Image

from retrain_job.drift.stats import DriftThresholds
from retrain_job.publish import promote, stage
from retrain_job.report import build_report, render_html
from scripts.send_traffic import send, synthetic_rows
from shared.store import LocalStore
from testbed.servers import REPO
from tests.retrain_job.monitor.test_run import binary_spec
from tests.support.bundles import publish
from tests.support.http import get
from tests.support.kinds import binary_bundle, rows

SCHEMA = json.loads((REPO / "retrain_job" / "report.schema.json").read_text())


@pytest.fixture
def serving_store(serve, local_store, trained_bundle):
    """A published local store and a function writing its prediction logs into it, as `make serve` does."""
    publish(local_store, trained_bundle, "20250101T000000Z-serving")
    server = serve({"MODEL_STORE": str(local_store.root), "LOG_TO_STORE": "1", "POINTER_TTL_S": "0.5"})
    return local_store, server


def _report(store: LocalStore, summary: dict) -> dict:
    report = json.loads(store.read(summary["drift"]["report"] + "report.json")[0])
    jsonschema.validate(report, SCHEMA)
    return report


def test_shifted_traffic_flags_body_mass_only(serving_store, job):
    store, server = serving_store
    assert send(server.url, synthetic_rows("penguins", 300, scale={"body_mass_g": 1.2})) == 300
    code, summary = job(str(store.root), "--dry-run")
    report = _report(store, summary)
    assert code == 0 and report["current"]["serving_rows"] == 300
    assert report["model"] == {"name": "penguins", "title": "Penguin species classifier", "task": "multiclass",
                               "target": "species"}
    assert summary["drift"]["report"].startswith("reports/penguins/drift/")
    assert report["drifted_features"] == ["body_mass_g"]
    assert summary["drift"]["drifted_features"] == ["body_mass_g"]


def test_island_mix_shift_flags_island(serving_store, job):
    store, server = serving_store
    assert send(server.url, synthetic_rows("penguins", 200, fixed={"island": "Torgersen"}), batch=50) == 200
    report = _report(store, job(str(store.root), "--dry-run")[1])
    assert "island" in report["drifted_features"] and "body_mass_g" not in report["drifted_features"]


def test_unshifted_traffic_flags_nothing(serving_store, job):
    store, server = serving_store
    assert send(server.url, synthetic_rows("penguins", 300)) == 300
    report = _report(store, job(str(store.root), "--dry-run")[1])
    assert report["status"] == "no_drift" and report["drifted_features"] == []
    assert report["prediction_drift"] is not None and not report["prediction_drift"]["drifted"]
    assert report["prediction_drift"]["kind"] == "categorical"
    assert len(json.dumps(report)) < 20_000  # histograms only, no raw rows


def test_too_little_traffic_is_not_a_verdict(serving_store, job):
    store, server = serving_store
    send(server.url, synthetic_rows("penguins", 10))
    report = _report(store, job(str(store.root), "--dry-run")[1])
    assert report["status"] == "not_enough_data" and report["features"] == []


def test_serving_picks_up_a_retrained_model_without_restart(serving_store, job):
    store, server = serving_store
    before = get(server.url + "/health")[1]["model_version"]
    code, summary = job(str(store.root))
    assert code == 0 and summary["decision"] == "promoted"
    import time
    deadline = time.monotonic() + 10
    while get(server.url + "/health")[1]["model_version"] == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert get(server.url + "/health")[1]["model_version"] == summary["candidate"]


def test_html_report_renders_in_headless_chromium(serving_store, job, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: run `make system-packages`"
    store, server = serving_store
    send(server.url, synthetic_rows("penguins", 120, scale={"body_mass_g": 1.2}))
    summary = job(str(store.root), "--dry-run")[1]
    html = Path(store.root) / summary["drift"]["report"] / "report.html"
    assert html.stat().st_size < 100_000
    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", "--window-size=1200,1400", f"--screenshot={shot}",
                        html.as_uri()], capture_output=True, timeout=90, check=True)
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    colours = image.getcolors(maxcolors=1_000_000)
    assert image.size == (1200, 1400) and len(colours) > 50  # text, bars and panels, not a blank page
    orange = sum(count for count, rgb in colours if rgb[0] > 220 and 100 < rgb[1] < 160 and rgb[2] < 60)
    assert orange > 2000  # the current-data bars were drawn


def test_regressor_report_compares_its_own_features_and_predicted_values(serve, local_store, co2_bundle, job):
    stage(local_store, "co2", co2_bundle)
    promote(local_store, "co2", co2_bundle.version)
    server = serve({"MODEL_STORE": str(local_store.root), "LOG_TO_STORE": "1", "POINTER_TTL_S": "0.5"})
    rows = synthetic_rows("co2", 200, scale={"engine_size_l": 1.3})
    for row in rows[::2]:  # half the requests leave the rated consumption out
        for name in ("fuel_consumption_city_l_per_100km", "fuel_consumption_hwy_l_per_100km",
                     "fuel_consumption_comb_l_per_100km", "fuel_consumption_comb_mpg"):
            row.pop(name, None)
    assert send(server.url, rows, model="co2", batch=20) == 200
    code, summary = job(str(local_store.root), "--model", "co2", "--dry-run")
    report = _report(local_store, summary)
    assert code == 0 and report["model"]["name"] == "co2" and report["current"]["serving_rows"] == 200
    assert summary["drift"]["report"].startswith("reports/co2/drift/")
    judged = {f["feature"] for f in report["features"]}
    assert judged == {"make", "vehicle_class", "engine_size_l", "cylinders", "transmission", "fuel_type",
                      "fuel_consumption_city_l_per_100km", "fuel_consumption_hwy_l_per_100km",
                      "fuel_consumption_comb_l_per_100km", "fuel_consumption_comb_mpg"}
    assert "engine_size_l" in report["drifted_features"]
    mix = report["prediction_drift"]
    assert mix["feature"] == "predicted_co2_emissions_g_per_km" and mix["kind"] == "numeric"
    html = (Path(local_store.root) / summary["drift"]["report"] / "report.html").read_text()
    assert "Vehicle CO2-emissions regressor" in html and "Predicted co2_emissions_g_per_km distribution" in html


def test_a_binary_models_drift_report_names_its_task_and_compares_its_answers_with_its_labels(tmp_path):
    """The drift report holds no model metrics (a binary model's ROC AUC, PR AUC, Brier score and threshold are in
    its manifest and, beside the live figures, in the monitor's report): it names the task and compares features
    and the answers' yes/no mix with the training labels'."""
    spec = binary_spec(tmp_path / "specs")
    reference = pd.DataFrame(rows(300, seed=31)).assign(approved=["yes" if k % 3 == 0 else "no" for k in range(300)])
    serving = pd.DataFrame(rows(200, seed=32)).assign(predicted=["yes" if k % 2 == 0 else "no" for k in range(200)])
    report = build_report(spec, binary_bundle().contract, reference, serving, pd.DataFrame(),
                          thresholds=DriftThresholds(), window={"from": "a", "to": "b"})
    jsonschema.validate(report, SCHEMA)
    assert report["model"] == {"name": "approvals", "title": "Approval classifier", "task": "binary",
                               "target": "approved"}
    mix = report["prediction_drift"]
    assert (mix["feature"], mix["kind"], mix["histogram"]["categories"]) == ("predicted_approved", "categorical",
                                                                             ["no", "yes"])
    assert mix["drifted"]  # a third yes in training, half the answers
    assert "(binary)" in render_html(report)
