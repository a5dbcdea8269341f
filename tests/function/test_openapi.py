"""The OpenAPI document states each feature's data rules as the validator applies them."""
from __future__ import annotations

import jsonschema

from function.serving.openapi import openapi_document
from shared.contract import CategoricalFeature, FeatureContract, NumericFeature, Target
from shared.settings import Settings
from shared.validation.schema import schema_errors

CONTRACT = FeatureContract(
    numeric=(NumericFeature("count", 0.0, 20.0, 0.0, 12.0, low_inclusive=True),
             NumericFeature("sensor", 0.0, 100.0, 1.0, 90.0, required=False, missing_values=(0.0, -1.0))),
    categorical=(CategoricalFeature("colour", ("blue", "red"), missing_values=("?",)),),
    target=Target("y", "regression", low=-10.0, high=10.0, interval=0.9))


def _instance_schema() -> dict:
    doc = openapi_document((("demo", CONTRACT),), Settings())
    schema = doc["components"]["schemas"]["DemoInstance"]
    return {**schema, "properties": {k: _to_json_schema(v) for k, v in schema["properties"].items()}}


def _to_json_schema(prop: dict) -> dict:
    """OpenAPI 3.0's boolean exclusiveMinimum and nullable as JSON Schema's."""
    out = {k: v for k, v in prop.items() if k not in ("exclusiveMinimum", "nullable", "anyOf")}
    if prop.get("exclusiveMinimum"):
        out.pop("minimum")
        out["exclusiveMinimum"] = prop["minimum"]
    if "anyOf" in prop:
        out["anyOf"] = [_to_json_schema(p) for p in prop["anyOf"]]
    if prop.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def test_the_document_accepts_exactly_what_the_validator_accepts():
    schema = _instance_schema()
    rows = [{"count": 0, "colour": "red"}, {"count": -1, "colour": "red"}, {"count": 20, "colour": "?"},
            {"count": 3, "sensor": 0, "colour": "blue"}, {"count": 3, "sensor": -1, "colour": "BLUE"},
            {"count": 3, "sensor": -2, "colour": "red"}, {"count": 3, "sensor": None, "colour": "green"}]
    _, errors = schema_errors(CONTRACT, rows)
    for i, row in enumerate(rows):
        valid = jsonschema.Draft7Validator(schema).is_valid(row)
        assert valid == (i not in errors), (row, errors.get(i))
