"""Marshmallow schemas made from a feature contract, and the OpenAPI document generated from them.

Marshmallow is the contract's authority: the column-wise fast path in `features.py` only ever accepts
what these schemas accept, and defers to them to explain anything it rejects.
"""
from __future__ import annotations

import math
from functools import lru_cache

from marshmallow import RAISE, Schema, ValidationError, fields

from shared.contract import MAX_STRING_CHARS, FeatureContract


class Measurement(fields.Field):
    """A strictly numeric JSON value (no strings, no booleans) inside physical bounds (low, high]."""

    def __init__(self, low: float, high: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.low, self.high = low, high

    def _deserialize(self, value, attr, data, **kwargs) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError("must be a number")
        try:
            number = float(value)
        except OverflowError:
            raise ValidationError("number is too large") from None
        if not math.isfinite(number):
            raise ValidationError("must be a finite number")
        if not self.low < number <= self.high:
            raise ValidationError(f"must be greater than {self.low:g} and at most {self.high:g}")
        return number


class Category(fields.Field):
    """A string matched case-insensitively against the contract's levels, returned in canonical case."""

    def __init__(self, levels: tuple[str, ...], **kwargs) -> None:
        super().__init__(**kwargs)
        self.levels = levels
        self.lookup = {level.lower(): level for level in levels}

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        if not isinstance(value, str):
            raise ValidationError("must be a string")
        level = self.lookup.get(value.lower()) if len(value) <= MAX_STRING_CHARS else None
        if level is None:
            raise ValidationError(f"must be one of {', '.join(self.levels)} (any case)")
        return level


class Year(fields.Field):
    """Observation year: optional metadata, an integer in the contract's range; not a model feature."""

    def __init__(self, low: int, high: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.low, self.high = low, high

    def _deserialize(self, value, attr, data, **kwargs) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("must be an integer")
        if not self.low <= value <= self.high:
            raise ValidationError(f"must be between {self.low} and {self.high}")
        return value


@lru_cache(maxsize=8)
def row_schema(contract: FeatureContract) -> Schema:
    """The schema of one prediction instance (unknown fields are rejected)."""
    spec: dict[str, fields.Field] = {}
    for f in contract.numeric:
        spec[f.name] = Measurement(f.hard_min, f.hard_max, required=True,
                                   metadata={"description": f"training range {f.train_min:g} to {f.train_max:g}"})
    for c in contract.categorical:
        spec[c.name] = Category(c.levels, required=c.required, allow_none=not c.required)
    spec["year"] = Year(*contract.year_range, required=False, allow_none=True)
    return Schema.from_dict(spec, name="Instance")(unknown=RAISE)


def schema_errors(contract: FeatureContract, rows: list) -> tuple[list[dict], dict[int, dict]]:
    """Validate rows with Marshmallow: (cleaned rows, {row index: {field: [messages]}})."""
    schema = row_schema(contract)
    cleaned, errors = [], {}
    for i, row in enumerate(rows):
        try:
            cleaned.append(schema.load(row))
        except ValidationError as exc:
            errors[i] = exc.messages
    return cleaned, errors
