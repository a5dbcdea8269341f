"""The model card route over real HTTP: the answering version's card, as HTML and as JSON, linked from the model.

Penguins is published and its card written by the job's own writer (retrain_job.card); co2 is not published, so it
answers with its shipped model, which has no card. A card deleted from the store is a 404 at once (never cached).
"""
from __future__ import annotations

import urllib.request

import pytest

from retrain_job.card.store import CARD_HTML, card_key, write_card
from tests.support.bundles import STABLE, publish
from tests.support.http import get


@pytest.fixture
def server(serve, local_store, trained_bundle, penguins_spec):
    publish(local_store, trained_bundle, STABLE)
    write_card(local_store, penguins_spec, STABLE)
    return serve({"MODEL_STORE": str(local_store.root), "MODELS": "penguins,co2", "POINTER_TTL_S": "60"})


def _page(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers["Content-Type"], resp.read().decode()


def test_the_answering_versions_card_as_html_and_json_linked_from_the_model(server, local_store):
    status, body, _ = get(f"{server.url}/v1/models/penguins")
    assert status == 200 and body["card"] == "/v1/models/penguins/card", body
    status, kind, html = _page(server.url + body["card"])
    assert status == 200 and kind.startswith("text/html") and html.lstrip().lower().startswith("<!doctype html")
    assert STABLE in html
    status, card, headers = get(f"{server.url}/v1/models/penguins/card.json")
    assert status == 200 and headers["Content-Type"] == "application/json" and STABLE in str(card)
    local_store.delete(card_key("penguins", STABLE, CARD_HTML))
    status, error, _ = get(f"{server.url}/v1/models/penguins/card")
    assert status == 404 and "has no model card" in error["error"]["message"], error


def test_a_model_without_a_card_is_a_json_404(server):
    status, body, _ = get(f"{server.url}/v1/models/co2")
    assert status == 200 and body["card"] == "/v1/models/co2/card"
    for page in ("card", "card.json"):
        status, error, headers = get(f"{server.url}/v1/models/co2/{page}")
        assert status == 404 and headers["Content-Type"] == "application/json", error
        assert "shipped model, which has no model card" in error["error"]["message"]
    for path in ("/v1/models/penguins/cards", "/v1/models/penguins/card:predict", "/v1/models/nonesuch/card"):
        status, error, _ = get(server.url + path)
        assert status == 404, (path, error)


def test_the_card_routes_are_documented(server):
    status, doc, _ = get(f"{server.url}/openapi.json")
    assert status == 200
    html = doc["paths"]["/v1/models/penguins/card"]["get"]["responses"]
    assert "text/html" in html["200"]["content"] and "404" in html
    assert "application/json" in doc["paths"]["/v1/models/co2/card.json"]["get"]["responses"]["200"]["content"]
