"""The feature contract: what a model accepts, in which order, and within which bounds.

It travels inside every bundle's manifest, so the request schema follows the model being served: a
retrained model with a new island validates it without a code change.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

MAX_STRING_CHARS = 64  # longest category value looked up; anything longer is no level of any contract


@dataclass(frozen=True)
class NumericFeature:
    """A measurement: possible within (hard_min, hard_max], seen in training within [train_min, train_max]."""

    name: str
    hard_min: float
    hard_max: float
    train_min: float
    train_max: float


@dataclass(frozen=True)
class CategoricalFeature:
    """A category, one-hot encoded in `levels` order; an optional one may be absent or null (missing)."""

    name: str
    levels: tuple[str, ...]
    required: bool = True


@dataclass(frozen=True)
class FeatureContract:
    """Numeric features first, then the one-hot columns of each categorical feature."""

    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]
    labels: tuple[str, ...]
    year_range: tuple[int, int] = (1900, 2100)

    @cached_property
    def _hash(self) -> int:
        return hash((self.numeric, self.categorical, self.labels, self.year_range))

    def __hash__(self) -> int:
        # cached: contracts key the per-request caches of schemas and layouts, and never change
        return self._hash

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
            "numeric": [vars(f) for f in self.numeric],
            "categorical": [{"name": c.name, "levels": list(c.levels), "required": c.required}
                            for c in self.categorical],
            "labels": list(self.labels),
            "metadata": {"year": {"min": self.year_range[0], "max": self.year_range[1]}},
        }

    @classmethod
    def from_dict(cls, data: dict) -> FeatureContract:
        """Inverse of `to_dict`; raises KeyError/TypeError/ValueError on a contract it cannot serve."""
        contract = cls(
            numeric=tuple(NumericFeature(str(f["name"]), float(f["hard_min"]), float(f["hard_max"]),
                                         float(f["train_min"]), float(f["train_max"]))
                          for f in data["numeric"]),
            categorical=tuple(CategoricalFeature(str(c["name"]), tuple(str(v) for v in c["levels"]),
                                                 bool(c.get("required", True)))
                              for c in data["categorical"]),
            labels=tuple(str(label) for label in data["labels"]),
            year_range=(int(data["metadata"]["year"]["min"]), int(data["metadata"]["year"]["max"])),
        )
        if "columns" in data and list(data["columns"]) != contract.columns:
            raise ValueError("contract columns do not match its features")
        if not contract.numeric or len(contract.labels) < 2:
            raise ValueError("contract has no features or fewer than two labels")
        return contract


# Physical limits (low exclusive, high inclusive) of an adult penguin's measurements, generous around
# every species (the emperor is the largest): values outside are not penguins, not just unusual ones.
PHYSICAL_LIMITS = {
    "bill_length_mm": (5.0, 200.0),
    "bill_depth_mm": (2.0, 100.0),
    "flipper_length_mm": (50.0, 400.0),
    "body_mass_g": (500.0, 50_000.0),
}
