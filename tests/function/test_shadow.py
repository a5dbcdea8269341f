"""The shadow version in process: its rows logged beside the answer's (same prediction ids, `role: shadow`, to the
real local sink), answers unchanged, a broken shadow (missing, corrupt, raising) reported in /health and never
felt by an answer, its share of requests, and a full queue dropping work rather than waiting."""
from __future__ import annotations

import json
import os
import threading
import zlib
from dataclasses import replace

import orjson
import pytest

from function.serving import factory, logs
from function.serving.loader import SHADOW_BUCKETS
from function.serving.shadow import SHADOW_ROLE, ShadowScorer, ShadowStats, ShadowWork
from retrain_job.publish import promote
from shared.bundle import MODEL_FILE, write_bundle
from shared.logline import PREDICTION, PREDICTION_ROWS
from shared.validation import FeatureBatch
from tests.function.test_v2 import _per_feature_json
from tests.support.bundles import STABLE, as_version, publish
from tests.support.examples import SEED_EXAMPLES
from tests.support.logged import rows_of

SHADOW = "20261102T000000Z-shadow00"
ROWS = [row for row, _ in SEED_EXAMPLES]


def _shadowed_client(make_client, store, trained_bundle, percent: float = 100.0, bundle=None):
    publish(store, trained_bundle, STABLE)
    write_bundle(store, "penguins", bundle or as_version(trained_bundle, SHADOW))
    promote(store, "penguins", SHADOW, shadow_percent=percent)
    return make_client(MODEL_STORE=store.root, POINTER_TTL_S=60, LOG_TO_STORE=1, MODELS="penguins")


def _settled() -> None:
    """Every queued shadow request scored, every log line written."""
    factory._app.shadow.join()
    logs.flush()


def _payloads(store) -> list[dict]:
    lines = [line for path in sorted((store.root / "logs").rglob("*.json")) for line in path.read_bytes().splitlines()]
    return [orjson.loads(line)["jsonPayload"] for line in lines]


def _health(client) -> dict:
    resp = client.get("/health")
    assert resp.status_code == 200
    return resp.get_json()


def test_shadow_rows_are_logged_under_the_answers_ids(make_client, local_store, trained_bundle):
    client = _shadowed_client(make_client, local_store, trained_bundle)
    single = client.post("/predict", json=ROWS[0], headers={"X-Request-Id": "one"})
    batch = client.post("/predict", json={"instances": ROWS}, headers={"X-Request-Id": "three"})
    contract = factory._app.dataplane.choose("penguins").model.contract
    oip = client.post("/v2/models/penguins/infer", json={"id": "cols", "inputs": _per_feature_json(contract, ROWS)},
                      headers={"X-Request-Id": "cols"})
    assert single.status_code == batch.status_code == oip.status_code == 200
    assert single.get_json()["model_version"] == batch.get_json()["model_version"] == STABLE
    _settled()
    payloads = _payloads(local_store)
    shadow_lines = [p for p in payloads if p.get("role") == SHADOW_ROLE]
    # one wake-up's requests are predicted together and logged in one line, under each answer's own ids
    assert all((p["event"], p["model_version"]) == (PREDICTION_ROWS, SHADOW) for p in shadow_lines)
    assert all(p["labels"] == ["Adelie", "Chinstrap", "Gentoo"] and "latency_ms" not in p for p in shadow_lines)
    shadowed = {r["id"]: r for p in shadow_lines for r in rows_of(p)}
    assert sum(p["rows"] for p in shadow_lines) == len(shadowed) == 7  # each answered row scored once
    for request_id, n in (("one", 1), ("three", 3), ("cols", 3)):
        [answer] = [p for p in payloads if p["request_id"] == request_id and p.get("role") == "stable"]
        assert (answer["event"], answer["model_version"]) == (PREDICTION, STABLE)
        ours = rows_of(answer)
        assert [r["id"] for r in ours] == [f"{request_id}-{i}" for i in range(n)]
        theirs = [shadowed[r["id"]] for r in ours]
        assert all("instance" not in r for r in theirs)  # the answer's rows hold the inputs
        assert [r["predicted"] for r in theirs] == [r["predicted"] for r in ours]  # the same trees
    shadow = _health(client)["models"]["penguins"]["shadow"]
    assert shadow == {"version": SHADOW, "percent": 100.0, "state": "ok", "reason": None, "scored": 3, "dropped": 0,
                      "failed": 0}
    assert _health(client)["status"] == "ok"


def test_no_shadow_and_a_pinned_version_score_nothing_more(make_client, local_store, trained_bundle):
    publish(local_store, trained_bundle, STABLE)
    client = make_client(MODEL_STORE=local_store.root, POINTER_TTL_S=60, LOG_TO_STORE=1, MODELS="penguins")
    assert client.post("/predict", json=ROWS[0]).status_code == 200
    assert _health(client)["models"]["penguins"]["shadow"] is None
    logs.flush()
    assert {p.get("role") for p in _payloads(local_store)} == {"stable"}


def test_a_share_of_requests_chosen_by_their_id(make_client, local_store, trained_bundle):
    client = _shadowed_client(make_client, local_store, trained_bundle, percent=30.0)
    ids = [f"req-{i}" for i in range(200)]
    for request_id in ids:
        assert client.post("/predict", json=ROWS[0], headers={"X-Request-Id": request_id}).status_code == 200
    _settled()
    shadowed = {r["id"].rsplit("-", 1)[0] for p in _payloads(local_store) if p.get("role") == SHADOW_ROLE
                for r in rows_of(p)}
    assert shadowed == {i for i in ids if zlib.crc32(i.encode()) % SHADOW_BUCKETS < 30.0 * 100}
    assert 30 < len(shadowed) < 90
    assert _health(client)["models"]["penguins"]["shadow"]["scored"] == len(shadowed)


def _corrupt(bundle):
    files = dict(bundle.files)
    files[MODEL_FILE] = b"not a booster" + files[MODEL_FILE][13:]
    return replace(bundle, files=files)  # the manifest's checksums no longer match


@pytest.mark.parametrize("broken", ["missing", "corrupt"])
def test_an_unloadable_shadow_shows_in_health_and_answers_stay(make_client, local_store, trained_bundle, broken):
    publish(local_store, trained_bundle, STABLE)
    if broken == "corrupt":
        write_bundle(local_store, "penguins", _corrupt(as_version(trained_bundle, SHADOW)))
    pointer_bytes = json.loads(local_store.read("models/penguins/serving.json")[0])
    local_store.write("models/penguins/serving.json", json.dumps({**pointer_bytes, "shadow": SHADOW}).encode())
    client = make_client(MODEL_STORE=local_store.root, POINTER_TTL_S=60, LOG_TO_STORE=1, MODELS="penguins")
    for row, species in SEED_EXAMPLES:
        body = client.post("/predict", json=row).get_json()
        assert (body["species"], body["model_version"], body["fallback"]) == (species, STABLE, False)
    health = _health(client)
    shadow = health["models"]["penguins"]["shadow"]
    assert (shadow["version"], shadow["state"], shadow["scored"]) == (SHADOW, "broken", 0)
    assert shadow["reason"] and health["status"] == "ok"


def test_a_raising_shadow_is_counted_and_never_felt(make_client, local_store, trained_bundle):
    client = _shadowed_client(make_client, local_store, trained_bundle)
    assert client.post("/predict", json=ROWS[0]).status_code == 200  # loads stable and shadow
    loader = factory._app.registry.get("penguins")

    class Raising:
        def predict(self, batch):
            raise RuntimeError("shadow evaluator exploded")

    loader._state = replace(loader._state, shadow=replace(loader._state.shadow, predictor=Raising()))
    for row, species in SEED_EXAMPLES:
        assert client.post("/predict", json=row).get_json()["species"] == species
    _settled()
    shadow = _health(client)["models"]["penguins"]["shadow"]
    assert (shadow["state"], shadow["scored"], shadow["failed"]) == ("broken", 1, 3)
    assert "shadow evaluator exploded" in shadow["reason"]


def test_a_full_queue_drops_shadow_work_without_waiting():
    started, release = threading.Event(), threading.Event()

    class Blocking:
        def predict(self, batch):
            started.set()
            release.wait(10)
            raise RuntimeError("released")

    stats = ShadowStats(SHADOW)
    scorer = ShadowScorer(logs.RequestLog(), capacity=1, validate=None)
    model = type("Model", (), {"predictor": Blocking(), "contract": None, "version": SHADOW, "name": "penguins"})()
    work = [ShadowWork(model, stats, model, FeatureBatch([], rows=[[0.0]]), None, f"r{i}") for i in range(4)]
    scorer.submit(work[0])
    assert started.wait(10)  # the worker holds the first; the queue holds one more; the rest are dropped
    for each in work[1:]:
        scorer.submit(each)
    assert stats.counts() == {"scored": 0, "dropped": 2, "failed": 0}
    release.set()
    scorer.join()
    assert stats.counts() == {"scored": 0, "dropped": 2, "failed": 2}


def test_a_large_wake_up_goes_to_the_shadows_own_single_threaded_xgboost(make_client, local_store, trained_bundle):
    client = _shadowed_client(make_client, local_store, trained_bundle)
    rows = (ROWS * 70)[:200]  # more rows than the compiled trees take (FAST_PREDICTOR_MAX_ROWS): XGBoost's
    answer = client.post("/predict", json={"instances": rows}, headers={"X-Request-Id": "big"})
    assert answer.status_code == 200
    _settled()
    shadowed = {r["id"]: r["predicted"] for p in _payloads(local_store) if p.get("role") == SHADOW_ROLE
                for r in rows_of(p)}
    assert [shadowed[f"big-{i}"] for i in range(200)] == [p["species"] for p in answer.get_json()["predictions"]]
    state = factory._app.registry.get("penguins")._state
    assert state.shadow is not state.stable

    def threads(model) -> int:
        return int(json.loads(model.predictor.booster._load().save_config())["learner"]["generic_param"]["nthread"])

    assert threads(state.shadow) == 1  # never spinning on the cores that answer
    assert threads(state.stable) == (os.cpu_count() or 1)  # large batches that answer: every core
