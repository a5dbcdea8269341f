"""The spec's log policies over real HTTP: a hashed, a bucketed and a dropped field never reach a sink as sent.

The function serves `tests/function/people.py`'s model from a scratch specs folder and store, with the local sink
on. Requests through /v1 (rows) and /v2 (columns), and feedback, are answered; then the process's stdout, the sink's
files and the DuckDB engine's `logged` table are searched for every raw value, and the logged instances checked:
bucketed to the bin's lower bound, hashed with the key generated under the local store, dropped fields absent.
A spec that hashes with no key to hash with stops start-up with one line naming LOG_HASH_KEY. Drift compares
served rows as logged with a reference transformed alike, and skips, with the reason, what it cannot judge.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from retrain_job.data.engine import DuckDBEngine
from retrain_job.drift.stats import DriftThresholds
from retrain_job.report import build_report
from shared.logline import HASH_PREFIX, LOCAL_KEY_FILE, LogPolicy, hashed
from shared.spec import load_spec
from testbed.servers import REPO, FunctionServer
from tests.function.people import BUCKETS, NAME, PEOPLE, RAW, bundle, scratch, server_env
from tests.support.http import post
from tests.support.kinds import rows
from tests.support.logged import rows_of

V2_TYPES = {"x1": "FP64", "x2": "FP64", "colour": "BYTES", "customer_id": "BYTES", "email": "BYTES"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The function's stdout (a file) and store after it answered the requests and stopped (every line flushed)."""
    specs, store = scratch(tmp_path_factory.mktemp("policies"))
    server = FunctionServer(server_env(specs, store)).start()
    try:
        status, body, _ = post(f"{server.url}/v1/models/{NAME}:predict", {"instances": PEOPLE},
                               headers={"X-Request-Id": "rows-1"})
        assert status == 200, body
        status, single, _ = post(f"{server.url}/predict", PEOPLE[0], headers={"X-Request-Id": "single-1"})
        assert status == 200, single
        two = PEOPLE[:2]
        inputs = [{"name": k, "shape": [2], "datatype": t, "data": [p[k] for p in two]} for k, t in V2_TYPES.items()]
        status, answer, _ = post(f"{server.url}/v2/models/{NAME}/infer", {"id": "columns-1", "inputs": inputs},
                                 headers={"X-Request-Id": "columns-1"})
        assert status == 200, answer
        status, fed, _ = post(f"{server.url}/feedback", {"id": body["predictions"][0]["id"], "truth": "yes"})
        assert status == 202, fed
        time.sleep(0.5)
    finally:
        server.stop()
    return server, store


def _sink_text(store) -> str:
    return "".join(p.read_text() for p in sorted((store.root / "logs").rglob("*.json")))


def _payloads(store) -> list[dict]:
    return [json.loads(line)["jsonPayload"] for line in _sink_text(store).splitlines()]


def test_no_raw_value_reaches_stdout(served):
    server, _ = served
    stdout = "\n".join(server.log_lines())
    assert '"event":"prediction"' in stdout and '"event":"feedback"' in stdout  # the lines were written
    assert [raw for raw in RAW if raw in stdout] == []


def test_no_raw_value_reaches_the_local_sink(served):
    _, store = served
    text = _sink_text(store)
    assert "rows-1" in text and "columns-1" in text and "single-1" in text
    assert [raw for raw in RAW if raw in text] == []


def test_each_policy_shapes_the_logged_instance(served):
    _, store = served
    key = (store.root / LOCAL_KEY_FILE).read_text().strip().encode()  # generated under the store on first use
    assert not (REPO / LOCAL_KEY_FILE).exists()
    logged = {p["request_id"]: [r["instance"] for r in rows_of(p)] for p in _payloads(store)
              if p.get("event") == "prediction"}
    for request_id, people in (("rows-1", PEOPLE), ("single-1", PEOPLE[:1]), ("columns-1", PEOPLE[:2])):
        instances = logged[request_id]
        assert [i["x1"] for i in instances] == list(BUCKETS[:len(people)])
        assert all("x2" not in i and "email" not in i for i in instances)
        assert [i["customer_id"] for i in instances] == [hashed(key, p["customer_id"]) for p in people]
        assert [i["colour"] for i in instances] == [hashed(key, p["colour"], fold=True) for p in people]
        assert all(i["colour"].startswith(HASH_PREFIX) for i in instances)


def test_no_raw_value_reaches_the_engine_tables(served):
    _, store = served
    now = datetime.now(UTC)
    engine = DuckDBEngine.for_store(store, "logs", now - timedelta(hours=2), now + timedelta(hours=1))
    try:
        instances = [row[0] for row in engine.rows("SELECT instance FROM logged WHERE instance IS NOT NULL")]
        everything = json.dumps(engine.rows("SELECT * FROM logged"), default=str)
    finally:
        engine.close()
    assert len(instances) == len(PEOPLE) + 1 + 2
    assert [raw for raw in RAW if raw in everything] == []


def test_a_hashing_spec_without_a_key_stops_start_up_naming_the_setting(tmp_path):
    specs, _ = scratch(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOG_HASH_KEY")}
    env.update(SPECS_DIR=str(specs), MODELS=NAME, DEFAULT_MODEL=NAME, MODEL_STORE="gs://some-bucket")
    proc = subprocess.run([sys.executable, "-c", "import function.main"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("function: bad setting LOG_HASH_KEY: unset") and NAME in line, line
    env["LOG_HASH_KEY"] = "s" * 40  # given, it starts; a bad one is never echoed
    assert subprocess.run([sys.executable, "-c", "import function.main"], cwd=REPO, env=env, capture_output=True,
                          timeout=60, check=False).returncode == 0
    env["LOG_HASH_KEY"] = "secret-too-short"
    proc = subprocess.run([sys.executable, "-c", "import function.main"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "secret-too-short" not in proc.stderr and "LOG_HASH_KEY" in proc.stderr


def test_drift_compares_what_is_logged_and_says_what_it_cannot_judge(tmp_path):
    specs, _ = scratch(tmp_path)
    spec, contract = load_spec(NAME, specs), bundle().contract
    key = b"k" * 32
    people = rows(200, seed=7)  # served as trained on: whatever is judged does not drift
    reference = pd.DataFrame(people, columns=contract.field_names)
    served = pd.DataFrame([LogPolicy(spec.log_policies, key, {"colour"}).row(p) for p in people],
                          columns=contract.field_names)
    none = pd.DataFrame(columns=contract.field_names)
    t = DriftThresholds()
    report = build_report(spec, contract, reference, served, none, thresholds=t, window={}, hash_key=key)
    assert report["skipped_features"] == [{"feature": "x2", "reason": "not logged (log = drop)"}]
    assert {f["feature"] for f in report["features"]} == {"x1", "colour"} and report["drifted_features"] == []
    report = build_report(spec, contract, reference, served, none, thresholds=t, window={})
    assert [s["feature"] for s in report["skipped_features"]] == ["x2", "colour"]
    assert "no LOG_HASH_KEY" in report["skipped_features"][1]["reason"]
