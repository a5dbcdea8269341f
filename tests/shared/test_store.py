"""Both store implementations against the same contract: the local directory and the real GCS client."""
from __future__ import annotations

import threading
import time

import pytest

from shared.store import GcsStore, NotFound, PreconditionFailed, StoreUnavailable, open_store
from testbed.servers import free_port
from tests.support.threads import run_threads


def test_roundtrip_and_generation(any_store):
    gen = any_store.write("a/b.json", b"one")
    data, read_gen = any_store.read("a/b.json")
    assert data == b"one" and read_gen == gen and gen > 0


def test_missing_object_is_not_found(any_store):
    with pytest.raises(NotFound):
        any_store.read("nope/never.json")


def test_create_only_once(any_store):
    any_store.write("once.bin", b"x", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        any_store.write("once.bin", b"y", if_generation_match=0)
    assert any_store.read("once.bin")[0] == b"x"


def test_compare_and_swap(any_store):
    gen = any_store.write("pointer.json", b"v1", if_generation_match=0)
    new_gen = any_store.write("pointer.json", b"v2", if_generation_match=gen)
    with pytest.raises(PreconditionFailed):
        any_store.write("pointer.json", b"v3", if_generation_match=gen)  # stale generation
    assert any_store.read("pointer.json") == (b"v2", new_gen)


def test_concurrent_swaps_have_one_winner(any_store):
    gen = any_store.write("pointer.json", b"start", if_generation_match=0)
    wins, barrier = [], threading.Barrier(6)

    def contender(i: int) -> None:
        barrier.wait()
        try:
            any_store.write("pointer.json", f"writer {i}".encode(), if_generation_match=gen)
            wins.append(i)
        except PreconditionFailed:
            pass

    run_threads(contender, range(6))
    assert len(wins) == 1
    assert any_store.read("pointer.json")[0] == f"writer {wins[0]}".encode()


def test_list_and_delete(any_store):
    for key in ("models/m/1/a", "models/m/1/b", "models/m/2/a", "other/x"):
        any_store.write(key, b".")
    assert any_store.list("models/m/") == ["models/m/1/a", "models/m/1/b", "models/m/2/a"]
    any_store.delete("models/m/1/a")
    any_store.delete("models/m/1/a")  # absent is fine
    assert any_store.list("models/m/1/") == ["models/m/1/b"]


def test_open_store_picks_implementation(tmp_path, gcs_emulator):
    assert isinstance(open_store("gs://bucket/prefix"), GcsStore)
    assert open_store(str(tmp_path)).root == tmp_path.resolve()


def test_local_keys_cannot_escape(local_store):
    with pytest.raises(ValueError):
        local_store.write("../outside", b"x")


def test_unreachable_gcs_fails_fast(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    store = GcsStore("gs://bucket", timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.read("models/penguins/serving.json")
    assert time.monotonic() - started < 5
