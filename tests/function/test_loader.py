"""The loader's fallback chain, lazy thread-safe loading, pointer refresh and storage outages."""
from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import FrozenInstanceError, fields, replace

import pytest

from function.serving.loader import ModelLoader, NoModel
from shared.bundle import MANIFEST_FILE, MODEL_FILE, TREES_FILE
from shared.pointer import ServingPointer, read_pointer, write_pointer
from shared.settings import Settings
from shared.store import GcsStore, LocalStore, StoreUnavailable
from tests.support.bundles import publish
from tests.support.threads import run_threads

V1, V2, V3 = "20261101T000000Z-v1", "20261102T000000Z-v2", "20261103T000000Z-v3"


def _key(version: str, filename: str) -> str:
    return f"models/penguins/{version}/{filename}"


@pytest.fixture
def chain(local_store, trained_bundle):
    publish(local_store, trained_bundle, V3, V2, V1)
    return local_store


def _loader(store: LocalStore, **overrides) -> ModelLoader:
    return ModelLoader(replace(Settings(), model_store=str(store.root), pointer_ttl_s=0.05, **overrides))


def test_serves_stable(chain):
    choice = _loader(chain).choose()
    assert (choice.model.version, choice.fallback, choice.role) == (V3, False, "stable")


@pytest.mark.parametrize("damage", ["delete", "truncate", "checksum", "contract"])
def test_broken_stable_falls_back_to_previous(chain, damage):
    if damage == "delete":
        chain.delete(_key(V3, MODEL_FILE))
        chain.delete(_key(V3, MANIFEST_FILE))
    elif damage == "truncate":
        data, _ = chain.read(_key(V3, MODEL_FILE))
        chain.write(_key(V3, MODEL_FILE), data[: len(data) // 2])
    elif damage == "checksum":
        manifest = json.loads(chain.read(_key(V3, MANIFEST_FILE))[0])
        manifest["files"][TREES_FILE]["sha256"] = "f" * 64
        chain.write(_key(V3, MANIFEST_FILE), json.dumps(manifest).encode())
    else:  # a contract this code cannot serve
        manifest = json.loads(chain.read(_key(V3, MANIFEST_FILE))[0])
        manifest["contract"]["numeric"][0].pop("hard_max")
        chain.write(_key(V3, MANIFEST_FILE), json.dumps(manifest).encode())
    choice = _loader(chain).choose()
    assert (choice.model.version, choice.fallback, choice.role) == (V2, True, "fallback")


def test_whole_chain_broken_serves_shipped_model(chain):
    for v in (V3, V2, V1):
        chain.delete(_key(v, MANIFEST_FILE))
    choice = _loader(chain).choose()
    assert choice.role == "shipped" and choice.fallback and choice.model.source == "shipped"


def test_no_model_at_all_raises(tmp_path):
    loader = _loader(LocalStore(tmp_path / "empty"), shipped_model_dir=str(tmp_path / "none"))
    with pytest.raises(NoModel):
        loader.choose()


def test_bad_fast_predictor_falls_back_to_xgboost(chain):
    manifest = json.loads(chain.read(_key(V3, MANIFEST_FILE))[0])
    manifest["verification"]["outputs"]["all"][0][0] += 0.5  # the evaluator now "disagrees" with XGBoost
    chain.write(_key(V3, MANIFEST_FILE), json.dumps(manifest).encode())
    choice = _loader(chain).choose()
    assert choice.model.version == V3 and choice.model.predictor.fast is None


class CountingStore(LocalStore):
    """A real local store that counts reads, to prove concurrent first requests load once."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.reads: list[str] = []
        self._lock = threading.Lock()

    def read(self, key):
        with self._lock:
            self.reads.append(key)
        time.sleep(0.01)  # widen the race window
        return super().read(key)


def test_concurrent_first_requests_load_once(chain):
    store = CountingStore(chain.root)
    loader = ModelLoader(replace(Settings(), model_store=str(chain.root), pointer_ttl_s=60), lambda: store)
    barrier, versions = threading.Barrier(16), []

    def first_request(_):
        barrier.wait()
        versions.append(loader.choose().model.version)

    run_threads(first_request, range(16))
    assert versions == [V3] * 16
    assert store.reads.count(_key(V3, MODEL_FILE)) == 1
    assert store.reads.count("models/penguins/serving.json") == 1


def test_pointer_change_is_picked_up_within_ttl(chain):
    loader = _loader(chain)
    assert loader.choose().model.version == V3
    pointer, gen = read_pointer(chain, "penguins")
    write_pointer(chain, "penguins", replace(pointer, stable=V1, previous=(V3,)), gen)
    time.sleep(0.06)
    loader.choose()  # the refresh happens on this request...
    assert loader.choose().model.version == V1  # ...and every later one sees the new model


def test_canary_split_is_deterministic_by_key(local_store, trained_bundle):
    publish(local_store, trained_bundle, V1, canary=V2, percent=25)
    loader = _loader(local_store)
    roles = [loader.choose(key).role for key in range(10_000)]
    assert roles.count("canary") == 2500
    assert all(loader.choose(k).role == roles[k] for k in range(0, 10_000, 97))


def test_storage_down_at_cold_start_serves_shipped_then_recovers(gcs_emulator, trained_bundle):
    gcs_emulator.create_bucket("outage")
    store = GcsStore("gs://outage", timeout_s=1.0)
    publish(store, trained_bundle, V2)
    gcs_emulator.stop()
    try:
        loader = ModelLoader(replace(Settings(), model_store="gs://outage", storage_timeout_s=1.0, pointer_ttl_s=0.1,
                                     storage_retry_max_s=0.2))
        started = time.monotonic()
        choice = loader.choose()
        assert choice.role == "shipped" and choice.fallback
        assert time.monotonic() - started < 5
        assert loader.status()["storage_error"]
    finally:
        gcs_emulator.start()  # memory backend: the bucket comes back empty, as after a real outage+restore
    gcs_emulator.create_bucket("outage")
    publish(GcsStore("gs://outage"), trained_bundle, V2)
    deadline = time.monotonic() + 5
    while loader.choose().role != "stable" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loader.choose().model.version == V2 and loader.status()["storage_error"] is None


def test_only_the_loading_request_is_cold(chain):
    loader = _loader(chain)
    assert loader.choose().cold is True
    assert loader.choose().cold is False
    time.sleep(0.06)
    assert loader.choose().cold is False  # pointer unchanged: a refresh is not a load
    pointer, gen = read_pointer(chain, "penguins")
    write_pointer(chain, "penguins", replace(pointer, stable=V2, previous=(V3,)), gen)
    time.sleep(0.06)
    assert loader.choose().cold is True


class FlakyStore(LocalStore):
    """A real local store that can be switched off, and counts the model files it reads."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.down = False
        self.model_reads = 0

    def read(self, key):
        if self.down:
            raise StoreUnavailable(key)
        self.model_reads += key.endswith(MODEL_FILE)
        return super().read(key)


def _fields(state) -> tuple:
    return tuple(getattr(state, f.name) for f in fields(state))


def test_refresh_publishes_a_new_state_and_never_changes_a_published_one(chain):
    store, now = FlakyStore(chain.root), [0.0]
    loader = ModelLoader(replace(Settings(), model_store=str(chain.root), pointer_ttl_s=10), lambda: store,
                         clock=lambda: now[0])
    loader.choose()
    published = [loader._state]
    with pytest.raises(FrozenInstanceError):
        published[0].next_check = 0.0
    snapshots = [_fields(published[0])]

    def refresh_after(seconds: float) -> None:
        now[0] += seconds
        loader.choose()
        assert loader._state is not published[-1]
        published.append(loader._state)
        snapshots.append(_fields(loader._state))

    refresh_after(11)  # pointer unchanged: only the check times move
    assert published[1].checked_at == 11 and published[1].stable is published[0].stable
    store.down = True
    refresh_after(11)  # storage fault: same model, the error recorded, a retry scheduled
    assert published[2].storage_error and published[2].failures == 1 and published[2].stable is published[0].stable
    assert loader.status()["storage_error"] == published[2].storage_error
    store.down = False
    refresh_after(11)  # recovered: the model in hand is reused, not loaded again
    assert published[3].storage_error is None and published[3].failures == 0
    assert published[3].stable is published[0].stable and store.model_reads == 1
    assert [_fields(state) for state in published] == snapshots  # no published state ever changed


def test_readers_never_see_half_a_swap(local_store, trained_bundle):
    """Threads choose() without pause while the pointer flips between two states every few milliseconds."""
    publish(local_store, trained_bundle, V3)
    publish(local_store, trained_bundle, V1, canary=V2, percent=50)
    with_canary = ServingPointer(stable=V1, canary=V2, canary_percent=50)
    missing_stable = ServingPointer(stable="20261104T000000Z-never-published", previous=(V3,))
    # what a request may see under either pointer, by canary key; and /health's view of each state
    allowed = {True: {(V2, "canary", False), (V3, "fallback", True)},  # key < 5000
               False: {(V1, "stable", False), (V3, "fallback", True)}}
    statuses = {(V1, "stable", False, V2), (V3, "fallback", True, None)}
    loader = ModelLoader(replace(Settings(), model_store=str(local_store.root), pointer_ttl_s=0.0))
    loader.choose()
    stop, seen, wrong = threading.Event(), set(), []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            key = rng.randrange(10_000)
            choice = loader.choose(key)
            got = (choice.model.version, choice.role, choice.fallback)
            status = loader.status()
            view = (status["model_version"], status["serving"], status["fallback"],
                    status["canary"] and status["canary"]["version"])
            if got not in allowed[key < 5000] or view not in statuses:
                wrong.append((key, got, view))
            seen.add(got)
            time.sleep(0)  # let the flipping and refreshing threads in too

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for flip in range(20):
            _, generation = read_pointer(local_store, "penguins")
            write_pointer(local_store, "penguins", missing_stable if flip % 2 else with_canary, generation)
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not wrong, wrong[:5]
    assert seen == allowed[True] | allowed[False]  # both pointers were served, canary included
