"""Fixtures building real files and real servers: stores, a trained bundle, the GCS emulator, the function."""
from __future__ import annotations

import json
import urllib.request
import uuid
from dataclasses import replace

import functions_framework
import pytest

from function.serving import factory
from retrain_job import train
from retrain_job.data import load_base
from shared.bundle import Bundle, make_bundle, write_bundle
from shared.pointer import ServingPointer, read_pointer, write_pointer
from shared.settings import Settings
from shared.store import GcsStore, LocalStore
from testbed.servers import REPO, FunctionServer, GcsEmulator  # noqa: F401 - REPO is re-exported

FAST_PARAMS = {"max_depth": 2, "eta": 0.3, "num_boost_round": 40}


@pytest.fixture(scope="session")
def base_data():
    return load_base()


@pytest.fixture(scope="session")
def trained_bundle(base_data) -> Bundle:
    """One real trained bundle for the session (training once keeps the suite fast)."""
    return train.build_candidate(train.prepare(base_data), FAST_PARAMS, [])


def as_version(bundle: Bundle, version: str) -> Bundle:
    """The same model under another version id (manifest rebuilt, checksums recomputed)."""
    sections = {k: v for k, v in bundle.manifest.items() if k not in {"format", "version", "created_at", "files"}}
    return make_bundle(version, bundle.files, **sections)


def publish(store, bundle: Bundle, *versions: str, canary: str | None = None, percent: float = 0.0) -> None:
    """Write bundles under the given versions; the first is stable, the rest its fallbacks."""
    for v in {*versions, *([canary] if canary else [])}:
        write_bundle(store, "penguins", as_version(bundle, v))
    pointer = ServingPointer(stable=versions[0], previous=tuple(versions[1:]), canary=canary, canary_percent=percent)
    _, generation = read_pointer(store, "penguins")
    write_pointer(store, "penguins", pointer, generation)


@pytest.fixture
def local_store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "bucket")


@pytest.fixture(scope="session")
def gcs_emulator():
    emulator = GcsEmulator().start()
    mp = pytest.MonkeyPatch()
    mp.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    yield emulator
    mp.undo()
    emulator.stop()


@pytest.fixture
def gcs_store(gcs_emulator) -> GcsStore:
    name = f"test-{uuid.uuid4().hex[:12]}"
    gcs_emulator.create_bucket(name)
    return GcsStore(f"gs://{name}/prefix", timeout_s=3.0)


@pytest.fixture(params=["local", "gcs"])
def any_store(request):
    """Each store implementation in turn."""
    return request.getfixturevalue("local_store" if request.param == "local" else "gcs_store")


@pytest.fixture
def settings(local_store) -> Settings:
    return replace(Settings(), model_store=str(local_store.root), pointer_ttl_s=0.2, storage_retry_max_s=0.5)


@pytest.fixture
def serve():
    """Start function servers with given env; all are stopped at the end of the test."""
    servers = []

    def start(env: dict[str, str], **kwargs) -> FunctionServer:
        server = FunctionServer(env, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def post(url: str, body, headers: dict | None = None, raw: bytes | None = None, timeout: float = 10):
    """POST JSON over real HTTP; returns (status, parsed body, headers)."""
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def get(url: str, timeout: float = 10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


STABLE = "20261101T000000Z-stable00"


@pytest.fixture
def published(local_store, trained_bundle):
    publish(local_store, trained_bundle, STABLE)
    return local_store


@pytest.fixture
def make_client(monkeypatch):
    """A Functions Framework test client over function/main.py with the given environment."""
    def make(**env):
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        monkeypatch.setattr(factory, "_app", None)
        app = functions_framework.create_app(target="predict", source=str(REPO / "function" / "main.py"))
        return app.test_client()
    yield make
    monkeypatch.setattr(factory, "_app", None)


@pytest.fixture
def client(make_client, published):
    return make_client(MODEL_STORE=published.root, POINTER_TTL_S=0.2)
