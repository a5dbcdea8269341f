"""Marshmallow schemas made from a contract's rules: the judge of anything the fast paths do not accept.

Every field defers to its rule in `rules`, so the verdicts and messages here are the rules' own (a value
that means missing comes out as None, as if it were null); the OpenAPI document is generated from these
schemas (function/serving/openapi.py).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from marshmallow import RAISE, Schema, ValidationError, fields

from shared.contract import FeatureContract
from shared.validation.rules import CategoryRule, NumericRule, PassthroughRule, Violation


class _RuleField(fields.Field):
    """A field whose verdict and cleaned value are its rule's `parse`."""

    def __init__(self, rule, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rule = rule

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return self.rule.parse(value)
        except Violation as exc:
            raise ValidationError(str(exc)) from None


class Measurement(_RuleField):
    """A strictly numeric JSON value (no strings, no booleans) inside physical bounds, or one that means missing."""


class Category(_RuleField):
    """A string matched against the levels, returned in canonical case (unseen ones as sent, if served; None for
    one that means missing)."""


class Passthrough(_RuleField):
    """A field accepted and logged but not used by the model."""


@lru_cache(maxsize=16)
def row_schema(contract: FeatureContract) -> Schema:
    """The schema of one prediction instance (unknown fields are rejected)."""
    spec: dict[str, fields.Field] = {}
    for f in contract.numeric:
        means_missing = f"; {' or '.join(f'{v:g}' for v in f.missing_values)} means not measured" \
            if f.missing_values else ""
        spec[f.name] = Measurement(NumericRule(f), required=f.required, allow_none=not f.required,
                                   metadata={"description": f"{f.unit + ', ' if f.unit else ''}training range "
                                                            f"{f.train_min:g} to {f.train_max:g}{means_missing}"})
    for c in contract.categorical:
        spec[c.name] = Category(CategoryRule(c), required=c.required, allow_none=not c.required)
    for p in contract.passthrough:
        spec[p.name] = Passthrough(PassthroughRule(p), required=False, allow_none=True,
                                   metadata={"description": "accepted and logged, not used by the model"})
    return Schema.from_dict(spec, name="Instance")(unknown=RAISE)


@lru_cache(maxsize=16)
def _field_rules(contract: FeatureContract) -> tuple[dict[str, Callable], frozenset[str]]:
    """Each field's rule (its `parse`, as the schema's field calls it) and the required fields' names."""
    parsers: dict[str, Callable] = {f.name: NumericRule(f).parse for f in contract.numeric}
    parsers |= {c.name: CategoryRule(c).parse for c in contract.categorical}
    parsers |= {p.name: PassthroughRule(p).parse for p in contract.passthrough}
    required = frozenset(f.name for f in (*contract.numeric, *contract.categorical) if f.required)
    return parsers, required


def _accepted(row: object, parsers: dict[str, Callable], required: frozenset[str]) -> dict | None:
    """The row as the schema would clean it if every field's rule accepts it at once, else None (ask the schema)."""
    if not isinstance(row, dict) or not required <= row.keys():
        return None
    out = {}
    try:
        for name, value in row.items():
            if value is None:
                if name in required or name not in parsers:
                    return None
                out[name] = None
            else:
                out[name] = parsers[name](value)
    except (KeyError, Violation):
        return None
    return out


def schema_errors(contract: FeatureContract, rows: list) -> tuple[list[dict], dict[int, dict]]:
    """Validate rows with Marshmallow: (cleaned rows, {row index: {field: [messages]}}); in the cleaned rows a
    value that means missing is None. A row every field's rule accepts is cleaned by the rules directly, as the
    schema's fields would (the same verdict, without Marshmallow's cost per row); any other row goes to the schema,
    which names each bad field."""
    schema = row_schema(contract)
    parsers, required = _field_rules(contract)
    cleaned, errors = [], {}
    for i, row in enumerate(rows):
        quick = _accepted(row, parsers, required)
        if quick is not None:
            cleaned.append(quick)
            continue
        try:
            cleaned.append(schema.load(row))
        except ValidationError as exc:
            errors[i] = exc.messages
    return cleaned, errors
