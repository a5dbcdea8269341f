"""The feature contract: what a model accepts, in which order, within which bounds, and what it answers.

It is derived from the model's spec and its training data (ranges, levels) and travels inside every
bundle's manifest, so the request rules follow the model being served: a retrained model with a new
category level validates it without a code change.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from shared.spec import ModelSpec


@dataclass(frozen=True)
class NumericFeature:
    """A measurement: possible within (hard_min, hard_max] ([hard_min, hard_max] if low_inclusive), seen in
    training within [train_min, train_max]; a value in missing_values means it was not measured."""

    name: str
    hard_min: float
    hard_max: float
    train_min: float
    train_max: float
    required: bool = True
    unit: str = ""
    other_units: tuple[tuple[str, float], ...] = ()  # (unit, factor): value * factor in this feature's unit
    low_inclusive: bool = False
    missing_values: tuple[float, ...] = ()  # served (and trained) as missing, never held to the bounds


@dataclass(frozen=True)
class CategoricalFeature:
    """A category, one-hot encoded in `levels` order; an optional one may be absent or null (missing)."""

    name: str
    levels: tuple[str, ...]
    required: bool = True
    unseen: str = "reject"  # a level never seen in training: "reject" (400) or "missing" (served, with a warning)
    strip: bool = False  # ignore surrounding whitespace when matching (case is always ignored)
    missing_values: tuple[str, ...] = ()  # matched as levels are; served (and trained) as missing


@dataclass(frozen=True)
class Passthrough:
    """A request field accepted and logged but not a feature: an integer within [low, high], or a string."""

    name: str
    kind: str
    low: int | None = None
    high: int | None = None


@dataclass(frozen=True)
class Target:
    """What the model answers: class labels, or a value in a unit with plausible bounds (low, high] ([low, high] if
    low_inclusive) and an interval level."""

    name: str
    task: str
    labels: tuple[str, ...] = ()
    unit: str = ""
    low: float | None = None
    high: float | None = None
    interval: float | None = None
    low_inclusive: bool = False


@dataclass(frozen=True)
class FeatureContract:
    """Numeric features first, then the one-hot columns of each categorical feature."""

    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]
    target: Target
    passthrough: tuple[Passthrough, ...] = ()

    @cached_property
    def _hash(self) -> int:
        return hash((self.numeric, self.categorical, self.target, self.passthrough))

    def __hash__(self) -> int:
        # cached: contracts key the per-request caches of schemas and layouts, and never change
        return self._hash

    @property
    def labels(self) -> tuple[str, ...]:
        return self.target.labels

    @property
    def is_classifier(self) -> bool:
        return self.target.task != "regression"

    @cached_property
    def columns(self) -> list[str]:
        """Model input columns, in order."""
        return [f.name for f in self.numeric] + [
            f"{c.name}={level}" for c in self.categorical for level in c.levels
        ]

    @cached_property
    def field_names(self) -> list[str]:
        """Request fields the model uses, in contract order."""
        return [f.name for f in self.numeric] + [c.name for c in self.categorical]

    def to_dict(self) -> dict:
        """JSON-ready form stored in the manifest."""
        return {
            "columns": self.columns,
            "numeric": [{**vars(f), "other_units": [list(u) for u in f.other_units],
                         "missing_values": list(f.missing_values)} for f in self.numeric],
            "categorical": [{**vars(c), "levels": list(c.levels), "missing_values": list(c.missing_values)}
                            for c in self.categorical],
            "passthrough": [vars(p) for p in self.passthrough],
            "target": {**vars(self.target), "labels": list(self.target.labels)},
        }

    @classmethod
    def from_dict(cls, data: dict) -> FeatureContract:
        """Inverse of `to_dict`; raises KeyError/TypeError/ValueError on a contract it cannot serve. Keys added since
        the first bundles (`low_inclusive`, `missing_values`) take their defaults when absent."""
        t = data["target"]
        contract = cls(
            numeric=tuple(NumericFeature(str(f["name"]), float(f["hard_min"]), float(f["hard_max"]),
                                         float(f["train_min"]), float(f["train_max"]), bool(f["required"]),
                                         str(f["unit"]), tuple((str(u), float(k)) for u, k in f["other_units"]),
                                         bool(f.get("low_inclusive", False)),
                                         tuple(float(v) for v in f.get("missing_values", ())))
                          for f in data["numeric"]),
            categorical=tuple(CategoricalFeature(str(c["name"]), tuple(str(v) for v in c["levels"]),
                                                 bool(c["required"]), str(c["unseen"]), bool(c["strip"]),
                                                 tuple(str(v) for v in c.get("missing_values", ())))
                              for c in data["categorical"]),
            target=Target(str(t["name"]), str(t["task"]), tuple(str(v) for v in t["labels"]), str(t["unit"]),
                          None if t["low"] is None else float(t["low"]),
                          None if t["high"] is None else float(t["high"]),
                          None if t["interval"] is None else float(t["interval"]),
                          bool(t.get("low_inclusive", False))),
            passthrough=tuple(Passthrough(str(p["name"]), str(p["kind"]), p["low"], p["high"])
                              for p in data["passthrough"]),
        )
        if "columns" in data and list(data["columns"]) != contract.columns:
            raise ValueError("contract columns do not match its features")
        if not contract.columns or (contract.is_classifier and len(contract.labels) < 2):
            raise ValueError("contract has no features, or a classifier with fewer than two labels")
        if any(c.unseen not in ("reject", "missing") for c in contract.categorical):
            raise ValueError("unknown policy for unseen categories")
        return contract


def derive_contract(spec: ModelSpec, train_rows: list[dict], labels: tuple[str, ...] = ()) -> FeatureContract:
    """The contract of a model trained on `train_rows` (request-shaped dicts): ranges and levels from the data (a
    value that means missing is neither)."""
    from shared.validation.rules import CategoryRule  # noqa: PLC0415 - the rules import this module

    numeric = []
    for f in (f for f in spec.features if f.kind == "numeric"):
        missing = tuple(float(v) for v in f.missing_values)
        seen = [row[f.name] for row in train_rows if row.get(f.name) is not None and row[f.name] not in missing]
        if not seen:
            raise ValueError(f"no training value of {f.name}")
        numeric.append(NumericFeature(f.name, *f.bounds, float(min(seen)), float(max(seen)), f.required, f.unit,
                                      tuple((u.unit, u.factor) for u in f.other_units), f.low_inclusive, missing))
    categorical = []
    for f in (f for f in spec.features if f.kind == "categorical"):
        missing = tuple(map(str, f.missing_values))
        rule = CategoryRule(CategoricalFeature(f.name, (), strip=f.strip, missing_values=missing))
        levels = {row[f.name] for row in train_rows
                  if row.get(f.name) is not None and rule.normalise(str(row[f.name])) not in rule.missing}
        categorical.append(CategoricalFeature(f.name, tuple(sorted(levels)), f.required, f.unseen, f.strip, missing))
    t = spec.target
    low, high = t.bounds if t.bounds else (None, None)
    target = Target(t.name, spec.task, labels or t.labels, t.unit, low, high, t.interval, t.low_inclusive)
    passthrough = tuple(Passthrough(p.name, p.kind, *(p.bounds or (None, None))) for p in spec.passthrough)
    return FeatureContract(tuple(numeric), tuple(categorical), target, passthrough)
