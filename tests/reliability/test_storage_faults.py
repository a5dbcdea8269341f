"""Storage faults against the real GCS emulator: the function answers from a fallback (and says so) or
with 503 + Retry-After, never hangs past its timeout, and recovers by itself when storage returns."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from shared.bundle import MANIFEST_FILE, MODEL_FILE, list_versions
from shared.pointer import read_pointer, write_pointer
from shared.store import GcsStore
from testbed.servers import GcsEmulator
from tests.support.bundles import publish
from tests.support.examples import SEED_EXAMPLES
from tests.support.http import get, post
from tests.support.proxy import DelayProxy

V1, V2 = "20261101T000000Z-fault-v1", "20261102T000000Z-fault-v2"
ROW, SPECIES = SEED_EXAMPLES[1]


@pytest.fixture
def durable_emulator():
    """An emulator on disk, so its objects survive a stop and start (an outage, not a wipe)."""
    emulator = GcsEmulator(backend="filesystem").start()
    yield emulator
    emulator.stop()


def _bucket(emulator, monkeypatch) -> GcsStore:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    name = f"fault-{uuid.uuid4().hex[:10]}"
    emulator.create_bucket(name)
    return GcsStore(f"gs://{name}", timeout_s=2.0)


def _answers(url: str, n: int) -> list[tuple[int, dict]]:
    out = []
    for _ in range(n):
        status, body, headers = post(url + "/predict", ROW, timeout=15)
        out.append((status, body, headers))
    return out


def _held(answers, expect_version=None, expect_fallback=None) -> int:
    held = 0
    for status, body, headers in answers:
        ok = status == 200 and body["species"] == SPECIES
        ok = ok or (status == 503 and "Retry-After" in headers)
        if status == 200 and expect_version is not None:
            ok = ok and body["model_version"] == expect_version
        if status == 200 and expect_fallback is not None:
            ok = ok and body["fallback"] is expect_fallback
        held += ok
    return held


def _env(store: GcsStore, emulator_url: str, **extra) -> dict:
    return {"MODEL_STORE": store.uri, "STORAGE_EMULATOR_HOST": emulator_url, "POINTER_TTL_S": "0.3",
            "STORAGE_TIMEOUT_S": "1", "STORAGE_RETRY_MAX_S": "0.5", **extra}


def test_emulator_down_at_cold_start_then_back(serve, durable_emulator, monkeypatch, trained_bundle, tally):
    store = _bucket(durable_emulator, monkeypatch)
    publish(store, trained_bundle, V1)
    durable_emulator.stop()
    server = serve(_env(store, durable_emulator.url))
    started = time.monotonic()
    first = _answers(server.url, 5)
    assert time.monotonic() - started < 10
    assert all(b["fallback"] and s == 200 for s, b, _ in first)  # the shipped model, flagged
    durable_emulator.start()
    deadline = time.monotonic() + 10
    while get(server.url + "/health")[1].get("model_version") != V1 and time.monotonic() < deadline:
        time.sleep(0.2)
    after = _answers(server.url, 5)
    tally.add("storage faults", "emulator down at cold start, then back", 10,
              _held(first, expect_fallback=True) + _held(after, V1, False))
    assert [b["model_version"] for _, b, _ in after] == [V1] * 5


def test_emulator_stopped_mid_traffic(serve, durable_emulator, monkeypatch, trained_bundle, tally):
    store = _bucket(durable_emulator, monkeypatch)
    publish(store, trained_bundle, V1)
    server = serve(_env(store, durable_emulator.url))
    before = _answers(server.url, 5)
    durable_emulator.stop()
    during = []
    for _ in range(4):  # over several pointer refreshes (TTL 0.3 s), each failing against the dead store
        during += _answers(server.url, 5)  # keeps serving the model in hand
        time.sleep(0.4)
    health = get(server.url + "/health")[1]
    durable_emulator.start()
    time.sleep(1.5)
    after = _answers(server.url, 5)
    held = _held(before, V1) + _held(during, V1) + _held(after, V1)
    tally.add("storage faults", "emulator stopped mid-traffic", 30, held)
    assert held == 30 and health["storage_error"]
    assert get(server.url + "/health")[1]["storage_error"] is None


def test_slow_storage_is_bounded_by_the_timeout(serve, durable_emulator, monkeypatch, trained_bundle, tally):
    store = _bucket(durable_emulator, monkeypatch)
    publish(store, trained_bundle, V1)
    proxy = DelayProxy(durable_emulator.port)
    proxy.delay_s = 3.0  # every chunk 3 s late: past the 1 s storage timeout
    try:
        server = serve(_env(store, f"http://127.0.0.1:{proxy.port}"))
        started = time.monotonic()
        slow = _answers(server.url, 3)
        elapsed = time.monotonic() - started
        proxy.delay_s = 0.0
        deadline = time.monotonic() + 15
        while get(server.url + "/health")[1].get("model_version") != V1 and time.monotonic() < deadline:
            time.sleep(0.2)
        fast = _answers(server.url, 3)
    finally:
        proxy.close()
    tally.add("storage faults", "slow storage (3 s per chunk)", 6, _held(slow, expect_fallback=True) + _held(fast, V1))
    assert elapsed < 12, elapsed
    assert all(b["fallback"] for _, b, _ in slow) and all(b["model_version"] == V1 for _, b, _ in fast)


@pytest.mark.parametrize("damage", ["missing version", "truncated model", "checksum mismatch", "unservable contract"])
def test_damaged_stable_serves_previous_version(serve, gcs_store, gcs_emulator, trained_bundle, tally, damage):
    publish(gcs_store, trained_bundle, V2, V1)
    prefix = f"models/penguins/{V2}/"
    if damage == "missing version":
        pointer, gen = read_pointer(gcs_store, "penguins")
        write_pointer(gcs_store, "penguins", pointer.touched(stable="20991231T000000Z-ghost", previous=(V2, V1)), gen)
        prefix = None
    elif damage == "truncated model":
        gcs_store.write(prefix + MODEL_FILE, trained_bundle.files[MODEL_FILE][:1000])
    else:
        manifest = json.loads(gcs_store.read(prefix + MANIFEST_FILE)[0])
        if damage == "checksum mismatch":
            manifest["files"][MODEL_FILE]["sha256"] = "0" * 64
        else:
            manifest["contract"]["categorical"][0]["levels"] = 5  # not a list of levels
        gcs_store.write(prefix + MANIFEST_FILE, json.dumps(manifest).encode())
    server = serve({"MODEL_STORE": gcs_store.uri, "STORAGE_EMULATOR_HOST": gcs_emulator.url})
    answers = _answers(server.url, 5)
    expected = V2 if damage == "missing version" else V1
    tally.add("storage faults", damage, 5, _held(answers, expected, True))
    assert all(b["model_version"] == expected and b["fallback"] for _, b, _ in answers)
    health = get(server.url + "/health")[1]
    assert health["status"] == "degraded" and health["fallback"] is True


def test_the_function_never_writes_to_the_bucket(serve, gcs_store, gcs_emulator, trained_bundle, tally):
    publish(gcs_store, trained_bundle, V1)
    before = gcs_store.list("")
    server = serve({"MODEL_STORE": gcs_store.uri, "STORAGE_EMULATOR_HOST": gcs_emulator.url, "LOG_TO_STORE": "1"})
    answers = _answers(server.url, 10)
    tally.add("storage faults", "function writes nothing to the bucket", 10, _held(answers, V1))
    assert gcs_store.list("") == before and list_versions(gcs_store, "penguins") == [V1]
