"""POST /feedback: truths validated against the model's target, logged (never looked up), nothing lost at SIGTERM."""
from __future__ import annotations

import http.client
import itertools
import json
import signal
import threading
import time

import pytest

from function.serving import logs
from tests.support.bundles import STABLE, publish
from tests.support.http import post
from tests.support.logged import field_of, rows_of


@pytest.fixture
def both(make_client, local_store, trained_bundle, co2_bundle):
    """Both models in a local store, request lines to its sink; and a reader of the feedback lines."""
    publish(local_store, trained_bundle, STABLE)
    publish(local_store, co2_bundle, STABLE, model="co2")
    client = make_client(MODEL_STORE=local_store.root, POINTER_TTL_S=60, LOG_TO_STORE=1)

    def feedback_lines() -> list[dict]:
        logs.flush()
        entries = [json.loads(line)["jsonPayload"] for f in sorted((local_store.root / "logs").rglob("*.json"))
                   for line in f.read_text().splitlines()]
        return [e for e in entries if e["event"] == "feedback"]
    return client, feedback_lines


def _violations(resp) -> dict[str, str]:
    assert resp.status_code == 400, resp.get_json()
    return {v["field"]: v["description"] for v in resp.get_json()["error"]["details"][0]["fieldViolations"]}


def test_one_truth_is_accepted_in_the_labels_spelling_and_logged(both):
    client, lines = both
    resp = client.post("/feedback", json={"id": "req-1-0", "truth": "adelie", "source": "field-team"})
    assert resp.status_code == 202 and resp.get_json()["accepted"] == 1 and resp.get_json()["model"] == "penguins"
    (line,) = lines()
    assert line["model"] == "penguins" and line["source"] == "field-team"
    assert rows_of(line) == [{"id": "req-1-0", "truth": "Adelie"}] and line["first_row"] == 0
    assert line["request_id"] == resp.headers["X-Request-Id"]


def test_a_batch_for_the_regressor(both):
    client, lines = both
    items = [{"id": f"car-{i}", "truth": 200 + i} for i in range(5)]
    resp = client.post("/feedback", json={"model": "co2", "instances": items})
    assert resp.status_code == 202 and resp.get_json()["accepted"] == 5
    (line,) = lines()
    assert line["model"] == "co2" and line["source"] == "unknown" and field_of(line, "truth") == [
        200.0, 201.0, 202.0, 203.0, 204.0]


@pytest.mark.parametrize(("body", "field", "problem"), [
    ({"instances": [{"id": "r-0", "truth": "Adelie"}, {"id": "r-1", "truth": "Emperor"}]}, "instances[1].truth",
     "must be one of Adelie, Chinstrap, Gentoo"),
    ({"instances": [{"id": "r-0", "truth": 3}]}, "instances[0].truth", "must be one of"),
    ({"model": "co2", "instances": [{"id": "r-0", "truth": "lots"}]}, "instances[0].truth", "must be a number"),
    ({"model": "co2", "instances": [{"id": "r-0", "truth": 1e9}]}, "instances[0].truth", "at most"),
    ({"model": "co2", "instances": [{"id": "r-0", "truth": True}]}, "instances[0].truth", "must be a number"),
    ({"instances": [{"id": "no row number", "truth": "Adelie"}]}, "instances[0].id", "prediction id"),
    ({"instances": [{"truth": "Adelie"}]}, "instances[0].id", "prediction id"),
    ({"instances": [{"id": "r-0"}]}, "instances[0].truth", "is required"),
    ({"instances": [{"id": "r-0", "truth": "Adelie", "weight": 2}]}, "instances[0].weight", "unknown field"),
    ({"instances": ["r-0"]}, "instances[0]", "must be an object"),
    ({"instances": []}, "instances", "non-empty list"),
    ({"instances": [{"id": "r-0", "truth": "Adelie"}], "extra": 1}, "extra", "unknown field"),
    ({"id": "r-0", "truth": "Adelie", "source": "a b"}, "source", "must be 1 to 64"),
    ({"id": "r-0", "truth": "Adelie", "model": 7}, "model", "must be a string"),
])
def test_bad_feedback_is_named_and_nothing_is_logged(both, body, field, problem):
    client, lines = both
    violations = _violations(client.post("/feedback", json=body))
    assert field in violations and problem in violations[field], violations
    assert lines() == []


def test_feedback_for_an_unknown_model_is_404_and_too_many_items_413(both):
    client, _ = both
    assert client.post("/feedback", json={"model": "nope", "id": "r-0", "truth": "x"}).status_code == 404
    resp = client.post("/feedback", json={"instances": [{"id": "r-0", "truth": "Adelie"}] * 10_001})
    assert resp.status_code == 413
    assert client.get("/feedback").status_code == 405


def test_a_burst_of_feedback_and_a_sigterm_lose_no_accepted_line(serve, published):
    server = serve({"MODEL_STORE": str(published.root), "LOG_TO_STORE": "1", "MODELS": "penguins"},
                   workers=1, threads=8)
    assert post(server.url + "/feedback", {"id": "warm-0", "truth": "Adelie"})[0] == 202
    numbers, accepted, stop = itertools.count(), [], threading.Event()

    def send() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        while not stop.is_set():
            n = next(numbers)
            try:
                conn.request("POST", "/feedback", json.dumps({"id": f"burst-{n}", "truth": "Gentoo"}),
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                return
            if resp.status == 202:
                accepted.append(f"burst-{n}")

    threads = [threading.Thread(target=send, daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=40) == 0
    stop.set()
    for t in threads:
        t.join(timeout=15)
    logged = [item["id"] for f in sorted((published.root / "logs").rglob("*.json"))
              for line in f.read_text().splitlines()
              if json.loads(line)["jsonPayload"]["event"] == "feedback"
              for item in rows_of(json.loads(line)["jsonPayload"])]
    assert len(accepted) >= 20 and len(logged) == len(set(logged))
    assert not set(accepted) - set(logged), sorted(set(accepted) - set(logged))[:10]
