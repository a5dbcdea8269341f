"""Function fixtures: a published local store and the real app through Functions Framework's test client."""
from __future__ import annotations

import functions_framework
import pytest
from serving import factory

from tests.conftest import REPO, publish

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
