"""The rules of one request field, derived from the contract: what is accepted, and every message.

Each rule is written here once. The Marshmallow schema (`schema.py`) calls `parse` for its verdicts and
messages; the fast row and column paths (`fast.py`) read the same bounds, levels and policies to accept
valid rows without Marshmallow and produce the same warnings; the job's data intake goes through the
schema. Tests hold the paths to the same verdicts.

Two rules every path honours: a feature's low bound is exclusive unless the contract says `low_inclusive`
(the high one is always inclusive), and a value listed in a feature's `missing_values` is served as missing
(never held to the bounds) with `missing_warning`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from shared.contract import CategoricalFeature, NumericFeature, Passthrough, Target

MAX_STRING_CHARS = 64  # longest category value looked up; anything longer is no level of any contract


class Violation(ValueError):
    """A value breaks its field's rule; the message is what the client reads."""


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Violation("must be a number")
    try:
        number = float(value)
    except OverflowError:
        raise Violation("is too large") from None
    if not math.isfinite(number):
        raise Violation("must be a finite number")
    return number


def _missing_warning(name: str, shown: str) -> str:
    return f"{name}={shown} means not measured for this model; it is treated as missing"


@dataclass(frozen=True)
class NumericRule:
    """A measurement within physical bounds (low, high], or [low, high]; outside the training range only warns."""

    feature: NumericFeature

    @cached_property
    def low(self) -> float:
        """The exclusive form of the low bound: `low < x <= high` is the whole check, inclusive low or not."""
        f = self.feature
        return math.nextafter(f.hard_min, -math.inf) if f.low_inclusive else f.hard_min

    @cached_property
    def missing(self) -> frozenset[float]:
        """The values that mean missing, as numbers (0 and 0.0 alike)."""
        return frozenset(map(float, self.feature.missing_values))

    def accepts(self, number: float) -> bool:
        """Whether a number is within the bounds (False for NaN)."""
        return self.low < number <= self.feature.hard_max

    def parse(self, value) -> float | None:
        """The value as a float, None if it means missing, or Violation naming the bound it breaks (and a likely
        unit mistake)."""
        f = self.feature
        number = _number(value)
        if number in self.missing:
            return None
        if not self.accepts(number):
            raise Violation(f"must be {'at least' if f.low_inclusive else 'greater than'} {f.hard_min:g} and at "
                            f"most {f.hard_max:g}{f.unit and ' ' + f.unit}{self.unit_hint(number)}")
        return number

    def warning(self, number: float) -> str:
        """What a value outside the training range is told (with a unit hint when one fits)."""
        f = self.feature
        return (f"{f.name}={number:g} is outside the training range {f.train_min:g} to {f.train_max:g}"
                f"{self.unit_hint(number)}; the prediction is less reliable")

    def missing_warning(self, number: float) -> str:
        """What a value that means missing is told."""
        return _missing_warning(self.feature.name, f"{number:g}")

    def unit_hint(self, number: float) -> str:
        """'; 1998 looks like cm3 (1.998 L)' when the value fits the training range in another unit."""
        f = self.feature
        for unit, factor in f.other_units:
            converted = number * factor
            if f.train_min <= converted <= f.train_max:
                return f"; {number:g} looks like {unit} ({converted:g}{f.unit and ' ' + f.unit})"
        return ""


@dataclass(frozen=True)
class CategoryRule:
    """A string matched ignoring case (and surrounding spaces, where declared) against the levels."""

    feature: CategoricalFeature

    @cached_property
    def missing(self) -> frozenset[str]:
        """Normalised spellings that mean missing (ahead of any level spelt alike)."""
        return frozenset(map(self.normalise, self.feature.missing_values))

    @cached_property
    def lookup(self) -> dict[str, str]:
        """Normalised spelling -> the level's canonical spelling."""
        return {key: level for key, level in zip(map(self.normalise, self.feature.levels), self.feature.levels)
                if key not in self.missing}

    @cached_property
    def index(self) -> dict[str, int]:
        """Normalised spelling -> the level's one-hot column."""
        return {key: i for i, key in enumerate(map(self.normalise, self.feature.levels)) if key not in self.missing}

    def normalise(self, value: str) -> str:
        return value.strip().lower() if self.feature.strip else value.lower()

    def parse(self, value) -> str | None:
        """The canonical level; a level never seen in training that the policy serves as unknown as sent (without
        surrounding spaces where they are ignored); None for a value that means missing."""
        f = self.feature
        if not isinstance(value, str):
            raise Violation("must be a string")
        if len(value) <= MAX_STRING_CHARS:
            key = self.normalise(value)
            level = self.lookup.get(key)
            if level is not None:
                return level
            if key in self.missing:
                return None
        if f.unseen != "missing":
            raise Violation(f"must be one of {', '.join(f.levels)} (any case)")
        if len(value) > MAX_STRING_CHARS:
            raise Violation(f"must be at most {MAX_STRING_CHARS} characters")
        return value.strip() if f.strip else str(value)

    def warning(self, value: str) -> str:
        """What a value never seen in training, served as unknown, is told."""
        return (f"{self.feature.name}={value.strip()!r} was not seen in training; it is treated as unknown and "
                "the prediction is less reliable")

    def missing_warning(self, value: str) -> str:
        """What a value that means missing is told."""
        return _missing_warning(self.feature.name, repr(value.strip()))


@dataclass(frozen=True)
class PassthroughRule:
    """A field accepted and logged but not used by the model: an integer within bounds, or a short string."""

    field: Passthrough

    def parse(self, value):
        """The value unchanged, or Violation."""
        p = self.field
        if p.kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise Violation("must be an integer")
            if p.low is not None and not p.low <= value <= p.high:
                raise Violation(f"must be between {p.low} and {p.high}")
        elif not isinstance(value, str) or len(value) > MAX_STRING_CHARS:
            raise Violation(f"must be a string of at most {MAX_STRING_CHARS} characters")
        return value


@dataclass(frozen=True)
class TargetRule:
    """A true outcome: one of a classifier's labels (any case), or a regressor's number within its plausible bounds
    (the low one inclusive where the target says so)."""

    target: Target

    @cached_property
    def _labels(self) -> dict[str, str]:
        return {label.lower(): label for label in self.target.labels}

    @cached_property
    def _number(self) -> NumericRule:
        t = self.target
        low, high = (t.low, t.high) if t.low is not None else (-math.inf, math.inf)
        return NumericRule(NumericFeature(t.name, low, high, low, high, unit=t.unit, low_inclusive=t.low_inclusive))

    def parse(self, value) -> str | float:
        """The label in its canonical spelling, or the number; Violation otherwise."""
        t = self.target
        if t.task != "regression":
            level = self._labels.get(value.strip().lower()) \
                if isinstance(value, str) and len(value) <= MAX_STRING_CHARS else None
            if level is None:
                raise Violation(f"must be one of {', '.join(t.labels)} (any case)")
            return level
        return self._number.parse(value)
