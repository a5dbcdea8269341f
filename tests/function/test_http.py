"""The function under gunicorn over real HTTP, from a local store and from the GCS emulator."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.pointer import read_pointer, write_pointer
from shared.store import GcsStore
from tests.support.bundles import publish
from tests.support.examples import SEED_EXAMPLES
from tests.support.http import get, post
from tests.support.logged import rows_of

V1, V2 = "20261101T000000Z-http-v1", "20261102T000000Z-http-v2"


def _seeds_right(url: str) -> None:
    for row, species in SEED_EXAMPLES:
        status, body, _ = post(url + "/predict", row)
        assert status == 200 and body["species"] == species, body


def test_local_store_over_http(serve, local_store, trained_bundle):
    publish(local_store, trained_bundle, V1)
    server = serve({"MODEL_STORE": str(local_store.root)})
    _seeds_right(server.url)
    status, body, _ = post(server.url + "/predict", None, raw=b"\xff\xfe{bad utf-8")
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    status, body, _ = post(server.url + "/predict", None, raw=b"[" * 2_000_000)
    assert status == 400
    _seeds_right(server.url)  # the worker survived
    deadline = time.monotonic() + 5  # log lines are written in the background, a moment after the answers
    while True:
        logs = [json.loads(line) for line in server.log_lines() if line.startswith("{")]
        predictions = [entry for entry in logs if entry.get("event") == "prediction"]
        if len(predictions) >= 6 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(predictions) >= 6
    entry = predictions[0]
    (row,) = rows_of(entry)
    assert entry["severity"] == "INFO" and entry["model_version"] == V1 and row["predicted"] == "Adelie"
    assert entry["prediction"] == "Adelie" and row["id"] == entry["request_id"] + "-0"
    assert row["instance"]["bill_length_mm"] == 39.1 and entry["latency_ms"] > 0
    assert entry["fallback"] is False and "httpRequest" in entry


def test_gcs_emulator_over_http(serve, gcs_store, gcs_emulator, trained_bundle):
    publish(gcs_store, trained_bundle, V1)
    server = serve({"MODEL_STORE": gcs_store.uri, "STORAGE_EMULATOR_HOST": gcs_emulator.url})
    _seeds_right(server.url)
    status, health, _ = get(server.url + "/health")
    assert status == 200 and health["model_version"] == V1 and health["fallback"] is False


def test_pointer_change_under_load_fails_nothing(serve, gcs_store, gcs_emulator, trained_bundle):
    publish(gcs_store, trained_bundle, V1)
    store = GcsStore(gcs_store.uri)
    from shared.bundle import write_bundle
    from tests.support.bundles import as_version
    write_bundle(store, "penguins", as_version(trained_bundle, V2))
    server = serve({"MODEL_STORE": gcs_store.uri, "STORAGE_EMULATOR_HOST": gcs_emulator.url,
                    "POINTER_TTL_S": "0.3"}, workers=2, threads=4)
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def load_loop(i: int) -> None:
        row, species = SEED_EXAMPLES[i % 3]
        while not stop.is_set():
            status, body, _ = post(server.url + "/predict", row)
            results.append((status, body.get("model_version") if status == 200 and body["species"] == species
                            else f"bad {status} {body}"))

    with ThreadPoolExecutor(6) as pool:
        for i in range(6):
            pool.submit(load_loop, i)
        time.sleep(1.0)
        pointer, gen = read_pointer(store, "penguins")
        write_pointer(store, "penguins", pointer.touched(stable=V2, previous=(V1,)), gen)
        switched_at = time.monotonic()
        while time.monotonic() - switched_at < 3.0:
            time.sleep(0.1)
        stop.set()
    failures = [r for r in results if r[0] != 200 or r[1] not in (V1, V2)]
    assert not failures, failures[:3]
    assert len(results) > 100
    assert results[-1][1] == V2 and results[0][1] == V1


@pytest.mark.parametrize("threads", [8])
def test_concurrent_cold_requests_all_answer(serve, local_store, trained_bundle, threads):
    publish(local_store, trained_bundle, V1)
    server = serve({"MODEL_STORE": str(local_store.root)}, threads=threads)
    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(lambda i: post(server.url + "/predict", SEED_EXAMPLES[i % 3][0]), range(32)))
    assert [a[1]["species"] for a in answers] == [SEED_EXAMPLES[i % 3][1] for i in range(32)]
