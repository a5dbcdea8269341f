"""Several models in one function: the CO2 regressor beside the penguin classifier, each by its own route."""
from __future__ import annotations

import pytest

from shared.spec import load_spec
from tests.support.bundles import STABLE, publish

CO2 = load_spec("co2")
CAR = {k: v for k, v in CO2.examples()[0]["request"].items() if not k.startswith("fuel_consumption")}
RATED = CO2.examples()[0]["request"]


@pytest.fixture
def both(make_client, local_store, trained_bundle, co2_bundle):
    publish(local_store, trained_bundle, STABLE)
    publish(local_store, co2_bundle, STABLE, model="co2")
    return make_client(MODEL_STORE=local_store.root, POINTER_TTL_S=60)


def _predict(client, rows: list[dict]) -> list[dict]:
    resp = client.post("/v1/models/co2:predict", json={"instances": rows})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["predictions"]


def test_examples_come_back_within_their_tolerance_with_an_interval(both):
    answers = _predict(both, [e["request"] for e in CO2.examples()])
    for example, answer in zip(CO2.examples(), answers):
        value, interval = answer["co2_emissions_g_per_km"], answer["interval"]
        assert abs(value - example["expected"]) <= example["tolerance"]
        assert interval["lower"] < value < interval["upper"] and interval["level"] == 0.9


def test_without_fuel_consumption_the_interval_is_wider(both):
    characteristics, rated = _predict(both, [CAR, RATED])
    width = lambda a: a["interval"]["upper"] - a["interval"]["lower"]  # noqa: E731
    assert width(characteristics) > 3 * width(rated)


def test_unseen_categories_are_served_with_a_warning(both):
    (answer,) = _predict(both, [{**RATED, "make": "Brand New Motors", "transmission": "A12"}])
    assert answer["co2_emissions_g_per_km"] > 0
    assert any("make='Brand New Motors' was not seen in training" in w for w in answer["warnings"])
    assert any("transmission='A12'" in w for w in answer["warnings"])


def test_a_value_in_another_unit_is_named_in_the_error(both):
    resp = both.post("/v1/models/co2:predict", json={"instances": [{**CAR, "engine_size_l": 1998}]})
    violation = resp.get_json()["error"]["details"][0]["fieldViolations"][0]
    assert resp.status_code == 400 and violation["field"] == "instances[0].engine_size_l"
    assert "looks like cm3 (1.998 L)" in violation["description"]


def test_answers_follow_their_inputs_beyond_the_largest_target_seen(both):
    heavy = {**RATED, "fuel_consumption_comb_l_per_100km": 30.0, "fuel_consumption_city_l_per_100km": 34.0,
             "fuel_consumption_hwy_l_per_100km": 24.0, "fuel_consumption_comb_mpg": 9}
    (answer,) = _predict(both, [heavy])
    assert answer["co2_emissions_g_per_km"] > 600  # the data's largest is 522 g/km
    assert any("outside the training range" in w for w in answer["warnings"])


def test_the_default_route_and_health_cover_both_models(both):
    assert "species" in both.post("/predict", json=load_spec("penguins").examples()[0]["request"]).get_json()
    health = both.get("/health").get_json()
    assert health["status"] == "ok" and set(health["models"]) == {"penguins", "co2"}
    assert all(m["ready"] and m["model_version"] == STABLE for m in health["models"].values())
    assert both.get("/v1/models/co2").get_json()["manifest"]["contract"]["target"]["name"] == "co2_emissions_g_per_km"
    doc = both.get("/openapi.json").get_json()
    assert {"/v1/models/co2:predict", "/v1/models/penguins:predict", "/predict"} <= set(doc["paths"])
    assert doc["components"]["schemas"]["Co2Instance"]["required"]
    assert both.post("/v1/models/cars:predict", json={"instances": [CAR]}).status_code == 404
