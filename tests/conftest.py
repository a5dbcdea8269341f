"""Fixtures building real files and real servers: stores, a trained bundle, the GCS emulator, the function,
a Cloud Monitoring server. Helpers the tests import live in tests/support."""
from __future__ import annotations

import uuid
from dataclasses import replace

import functions_framework
import pytest

from function.serving import factory, logs
from retrain_job.data.labelled import load_base
from retrain_job.train import fit as train
from shared.bundle import Bundle
from shared.settings import Settings
from shared.spec import ModelSpec, load_spec
from shared.store import GcsStore, LocalStore
from testbed.monitoring import FakeMetricService
from testbed.servers import REPO, FunctionServer, GcsEmulator
from tests.support.bundles import FAST_PARAMS, STABLE, as_version, publish  # noqa: F401 - as_version: see below
from tests.support.http import get, post  # noqa: F401 - see below

# as_version, get and post are imported here only for tests/function/test_http.py and test_logs.py, which are
# being edited elsewhere and still import them from this file; drop them once those import from tests.support.


@pytest.fixture(scope="session")
def penguins_spec() -> ModelSpec:
    return load_spec("penguins")


@pytest.fixture(scope="session")
def base_data(penguins_spec):
    """The penguin classifier's base data, as the job loads it from its spec."""
    return load_base(penguins_spec)


@pytest.fixture(scope="session")
def trained_bundle(penguins_spec, base_data) -> Bundle:
    """One real trained penguin bundle for the session (training once keeps the suite fast)."""
    return train.build_candidate(train.prepare(penguins_spec, base_data), FAST_PARAMS, [])


@pytest.fixture(scope="session")
def co2_spec() -> ModelSpec:
    return load_spec("co2")


@pytest.fixture(scope="session")
def co2_data(co2_spec):
    """The CO2 regressor's base data, as the job loads it from its spec."""
    return load_base(co2_spec)


@pytest.fixture(scope="session")
def co2_bundle(co2_spec, co2_data) -> Bundle:
    """One real trained CO2 bundle for the session, with quick fixed parameters per regime (no search)."""
    quick = {"max_depth": 3, "eta": 0.3, "num_boost_round": 100}
    return train.build_candidate(train.prepare(co2_spec, co2_data), {"rated": quick, "characteristics": quick}, [])


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
def monitoring():
    """A local server of the real Cloud Monitoring MetricService protocol, stopped after the test."""
    fake = FakeMetricService().start()
    yield fake
    fake.stop()


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
    """The function serving the penguin model published in a local store (and nothing else)."""
    return make_client(MODEL_STORE=published.root, POINTER_TTL_S=0.2, MODELS="penguins")


@pytest.fixture(autouse=True)
def _flush_request_logs():
    """Write out the request lines an in-process test left in the background writer's buffers, inside its capture."""
    yield
    logs.flush()
