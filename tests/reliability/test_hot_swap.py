"""Hot swaps under steady load: publish, canary, roll back, corrupt the previous bundle; nothing fails."""
from __future__ import annotations

import threading
import time
from collections import Counter

from retrain_job.publish import promote, resolve_canary
from shared.bundle import MODEL_FILE, write_bundle
from tests.support.bundles import as_version, publish
from tests.support.examples import SEED_EXAMPLES
from tests.support.http import post

V1, V2, V3 = "20261101T000000Z-swap-v1", "20261102T000000Z-swap-v2", "20261103T000000Z-swap-v3"
TTL = 0.5


class LoadLoop:
    """A bounded load loop on loopback: a few client threads, each posting until stopped (or 60 s)."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.results: list[tuple[float, int, str | None]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, i: int) -> None:
        n, deadline = 0, time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            row, species = SEED_EXAMPLES[n % 3]
            status, body, _ = post(self.url + "/predict", row, headers={"X-Request-Key": f"client-{i}-{n}"})
            ok = status == 200 and body.get("species") == species
            self.results.append((time.monotonic(), status if ok else -status, body.get("model_version")))
            n += 1

    def __enter__(self) -> LoadLoop:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def since(self, t0: float) -> list[tuple[float, int, str | None]]:
        return [r for r in self.results if r[0] >= t0]


def _first_time(results, version: str) -> float | None:
    return next((t for t, _, v in results if v == version), None)


def test_publish_canary_rollback_and_corruption_under_load(serve, gcs_store, gcs_emulator, trained_bundle, tally):
    publish(gcs_store, trained_bundle, V1)
    for v in (V2, V3):
        write_bundle(gcs_store, "penguins", as_version(trained_bundle, v))
    server = serve({"MODEL_STORE": gcs_store.uri, "STORAGE_EMULATOR_HOST": gcs_emulator.url,
                    "POINTER_TTL_S": str(TTL)}, workers=2, threads=4)
    post(server.url + "/predict", SEED_EXAMPLES[0][0])  # warm
    switch_times = {}
    with LoadLoop(server.url) as load:
        time.sleep(1.0)
        t_publish = time.monotonic()
        promote(gcs_store, "penguins", V2)  # V1 becomes the fallback
        time.sleep(2 * TTL + 1.0)
        switch_times["publish"] = _first_time(load.since(t_publish), V2) - t_publish
        t_canary = time.monotonic()
        promote(gcs_store, "penguins", V3, canary_percent=30)
        time.sleep(2 * TTL + 1.5)
        canary_window = load.since(t_canary + TTL + 0.5)
        switch_times["canary"] = _first_time(load.since(t_canary), V3) - t_canary
        t_rollback = time.monotonic()
        resolve_canary(gcs_store, "penguins", accept=False)
        time.sleep(2 * TTL + 1.0)
        t_corrupt = time.monotonic()
        gcs_store.write(f"models/penguins/{V1}/{MODEL_FILE}", b"corrupted")  # the fallback, not the stable
        time.sleep(1.5)
    results = load.results
    failed = [r for r in results if r[1] != 200 or r[2] not in (V1, V2, V3)]
    tally.add("hot swap under load", "requests during publish, canary, rollback, corruption", len(results),
              len(results) - len(failed))
    assert not failed, failed[:5]
    assert len(results) > 200
    assert all(t <= TTL + 1.0 for t in switch_times.values()), switch_times
    mix = Counter(v for _, _, v in canary_window)
    assert 0.15 < mix[V3] / sum(mix.values()) < 0.45, mix  # ~30% by request key
    after_rollback = [v for t, _, v in results if t > t_rollback + TTL + 1.0]
    assert after_rollback and set(after_rollback) == {V2}
    assert {v for t, _, v in results if t > t_corrupt} == {V2}
