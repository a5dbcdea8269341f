"""Explanations are bounded at the edge: rows per request (MAX_EXPLAIN_ROWS) and explanations computed at once
(EXPLAIN_CONCURRENCY), so a burst of large `:explain` requests cannot starve predictions and `/health`.

Against the function under gunicorn, over real sockets.
"""
from __future__ import annotations

import json
import statistics
import threading
import time
import urllib.error
import urllib.request

import pytest

from shared.spec import load_spec
from testbed.servers import FunctionServer

SECTION = "edge"
EXAMPLE = load_spec("penguins").examples()[0]["request"]
HEALTH_UNDER_LOAD_MAX_S = 1.5  # /health's slowest answer during 16 concurrent 10,000-row explanations


def _server(tmp_path_factory, **env) -> FunctionServer:
    return FunctionServer({"MODEL_STORE": str(tmp_path_factory.mktemp("empty") / "bucket"), "MODELS": "penguins",
                           **env}, threads=8).start()


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    function = _server(tmp_path_factory)
    yield function
    function.stop()


def post(url: str, body: object) -> tuple[int, dict, dict]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def health_seconds(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url + "/health", timeout=300) as resp:
        resp.read()
    return time.perf_counter() - started


def test_explaining_more_rows_than_max_explain_rows_is_a_413_naming_it(default_server, tally):
    url = default_server.url
    over = {"instances": [EXAMPLE] * 1001}
    cases = [
        (f"{url}/v1/models/penguins:explain", over, 413),
        (f"{url}/v1/models/penguins:predict", {**over, "parameters": {"explain": True}}, 413),
        (f"{url}/v1/models/penguins:predict", over, 200),  # predicting them is not bounded by it
        (f"{url}/v1/models/penguins:explain", {"instances": [EXAMPLE] * 1000}, 200),
    ]
    for path, body, expected in cases:
        status, headers, answer = post(path, body)
        assert status == expected, (path, status, answer)
        if status == 413:
            assert "MAX_EXPLAIN_ROWS" in answer["error"]["message"], answer
    tally.add(SECTION, "explanation rows bounded by MAX_EXPLAIN_ROWS", len(cases), len(cases))


def _explain_burst(url: str, rows: int, clients: int = 16) -> tuple[list[tuple[int, dict]], list[float]]:
    """`clients` concurrent `:explain` requests of `rows` rows while /health is asked every 50 ms:
    (each explanation's status and headers, each /health latency)."""
    body = {"instances": [EXAMPLE] * rows}
    answers, latencies, done = [], [], threading.Event()

    def client():
        status, headers, _ = post(f"{url}/v1/models/penguins:explain", body)
        answers.append((status, headers))

    def prober():
        while not done.is_set():
            latencies.append(health_seconds(url))
            time.sleep(0.05)

    health_seconds(url)  # the model loaded
    probe = threading.Thread(target=prober)
    probe.start()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    probe.join()
    return answers, latencies


def test_a_burst_of_large_explanations_cannot_starve_health(default_server, tally):
    answers, latencies = _explain_burst(default_server.url, 10_000)
    print(f"\n/health during 16 concurrent 10,000-row explanations: {len(latencies)} probes, "
          f"median {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.0f} ms")
    assert {status for status, _ in answers} == {413}
    assert max(latencies) < HEALTH_UNDER_LOAD_MAX_S, latencies
    tally.add(SECTION, "/health answered during an explanation burst", 1, 1)


@pytest.fixture(scope="module")
def one_slot_server(tmp_path_factory):
    """Large explanations allowed, one at a time."""
    function = _server(tmp_path_factory, MAX_EXPLAIN_ROWS="10000", EXPLAIN_CONCURRENCY="1")
    yield function
    function.stop()


def test_explanations_beyond_explain_concurrency_are_a_503_with_retry_after(one_slot_server, tally):
    answers, latencies = _explain_burst(one_slot_server.url, 10_000, clients=8)
    statuses = [status for status, _ in answers]
    print(f"\n8 concurrent 10,000-row explanations, one slot: statuses {sorted(statuses)}; /health max "
          f"{max(latencies) * 1000:.0f} ms over {len(latencies)} probes")
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    assert all(headers.get("Retry-After") for status, headers in answers if status == 503)
    tally.add(SECTION, "explanations beyond EXPLAIN_CONCURRENCY shed with 503", len(answers), len(answers))
