"""A shadow under concurrent load over real HTTP (gunicorn, as deployed): whether its bundle is sound, missing,
corrupt or raising on every request, no answer fails or changes, and /health says how the shadow fares."""
from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from shared.bundle import MODEL_FILE, write_bundle
from tests.support.bundles import STABLE, as_version, publish
from tests.support.examples import SEED_EXAMPLES
from tests.support.http import get, post
from tests.support.threads import run_threads

SHADOW = "20261102T000000Z-shadow00"
TTL = 0.2
CLIENTS, PER_CLIENT = 8, 40


def _answers(url: str, tag: str) -> list[tuple[int, dict]]:
    """CLIENTS threads each posting PER_CLIENT batches at once; (status, answer without its request's ids)."""
    def client(i: int) -> list[tuple[int, dict]]:
        out = []
        for n in range(PER_CLIENT):
            rows = [SEED_EXAMPLES[(i + n + k) % 3][0] for k in range(1 + n % 3)]
            status, body, _ = post(url + "/predict", {"instances": rows}, headers={"X-Request-Id": f"{tag}-{i}-{n}"})
            for p in body.get("predictions", []):
                p.pop("id")
            out.append((status, {k: v for k, v in body.items() if k != "request_id"}))
        return out

    return [answer for each in run_threads(client, range(CLIENTS)) for answer in each]


def _shadow_health(url: str) -> dict:
    status, body, _ = get(url + "/health")
    assert status == 200 and body["status"] == "ok"
    return body["models"]["penguins"]["shadow"]


@pytest.mark.parametrize("shadow", ["sound", "missing", "corrupt", "raising"])
def test_no_answer_fails_or_changes_whatever_the_shadow(serve, local_store, trained_bundle, co2_bundle, shadow, tally):
    publish(local_store, trained_bundle, STABLE)
    if shadow == "sound":
        write_bundle(local_store, "penguins", as_version(trained_bundle, SHADOW))
    elif shadow == "corrupt":
        bundle = as_version(trained_bundle, SHADOW)
        files = {**bundle.files, MODEL_FILE: bundle.files[MODEL_FILE][::-1]}  # its checksum no longer matches
        write_bundle(local_store, "penguins", replace(bundle, files=files))
    elif shadow == "raising":  # loads, but refuses every penguin: a car model's contract
        write_bundle(local_store, "penguins", as_version(co2_bundle, SHADOW))
    env = {"MODEL_STORE": str(local_store.root), "POINTER_TTL_S": str(TTL), "MODELS": "penguins"}
    server = serve(env, workers=1, threads=8)
    before = _answers(server.url, "before")

    pointer = json.loads(local_store.read("models/penguins/serving.json")[0])
    local_store.write("models/penguins/serving.json", json.dumps({**pointer, "shadow": SHADOW}).encode())
    for _ in range(200):  # a request after the next pointer check loads the shadow; the next ones it scores
        health = _shadow_health(server.url)
        if health is not None and (health["scored"] or health["failed"] or health["state"] == "broken"):
            break
        post(server.url + "/predict", SEED_EXAMPLES[0][0])
        time.sleep(0.02)
    warm = health["scored"] + health["dropped"] + health["failed"]  # the warm-up requests' share
    after = _answers(server.url, "after")

    failed = [a for a in after if a[0] != 200]
    tally.add("shadow under load", f"answers, {shadow} shadow", len(after), len(after) - len(failed))
    assert not failed, failed[:3]
    assert after == before  # the same rows, the same answers, to the last digit
    queued = 0 if shadow in ("missing", "corrupt") else warm + len(after)  # an unloaded shadow is given no work
    deadline = time.monotonic() + 30  # the shadow's thread takes the last requests within moments (a first large
    while True:  # batch may load XGBoost first, on a busy machine)
        health = _shadow_health(server.url)
        if health["scored"] + health["dropped"] + health["failed"] >= queued or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert health["version"] == SHADOW
    if shadow == "sound":
        assert health["state"] == "ok" and health["failed"] == 0
        assert health["scored"] + health["dropped"] >= warm + len(after) and health["scored"] > 0
    else:
        assert health["state"] == "broken" and health["reason"] and health["scored"] == 0
        assert (health["failed"] > 0) == (shadow == "raising")
