"""Model specs: one small TOML file per model (`specs/<name>/spec.toml`) that drives everything else.

A spec names the task, the target, the features with their units, physical bounds and policies, the
fields accepted but not used, the data file and its checksum, the holdout, the gate and the search
space. The contract in each bundle is derived from a spec and its training data (`shared.contract`).
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"
SPEC_FILE = "spec.toml"
EXAMPLES_FILE = "examples.json"
TASKS = ("multiclass", "binary", "regression")
UNSEEN_POLICIES = ("reject", "missing")
PASSTHROUGH_KINDS = ("integer", "string")


class SpecError(ValueError):
    """A spec file that cannot drive a model: the message names the file and the field."""


@dataclass(frozen=True)
class OtherUnit:
    """A unit a value is often mistakenly sent in: value * factor is the value in the feature's unit."""

    unit: str
    factor: float


@dataclass(frozen=True)
class FeatureSpec:
    """One model input: numeric (unit, physical bounds) or categorical (levels from data, unseen policy)."""

    name: str
    kind: str
    required: bool = True
    unit: str = ""
    bounds: tuple[float, float] | None = None  # physical: low exclusive, high inclusive
    other_units: tuple[OtherUnit, ...] = ()
    unseen: str = "reject"  # categorical: "reject" with a 400, or "missing" with a warning
    strip: bool = False  # categorical: ignore surrounding whitespace (case is always ignored)


@dataclass(frozen=True)
class PassthroughSpec:
    """A request field accepted and logged but not used by the model."""

    name: str
    kind: str
    bounds: tuple[int, int] | None = None


@dataclass(frozen=True)
class TargetSpec:
    """What the model predicts: class labels, or a value with a unit, plausible bounds and an interval level."""

    name: str
    labels: tuple[str, ...] = ()
    unit: str = ""
    bounds: tuple[float, float] | None = None
    interval: float | None = None


@dataclass(frozen=True)
class DataSpec:
    """The base training data: a CSV beside the spec, its checksum, column renames and required fields."""

    file: str
    sha256: str
    columns: dict[str, str] = field(default_factory=dict)
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class HoldoutSpec:
    """The frozen holdout the gate compares models on: a seeded fraction, stratified or grouped."""

    fraction: float = 0.2
    stratify: bool = False
    group_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class GateSpec:
    """The gate's main metric and how much worse than stable a candidate may be, plus task extras."""

    metric: str
    tolerance: float
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """Everything about one model, read from its spec file."""

    name: str
    title: str
    description: str
    task: str
    target: TargetSpec
    features: tuple[FeatureSpec, ...]
    passthrough: tuple[PassthroughSpec, ...]
    data: DataSpec
    holdout: HoldoutSpec
    gate: GateSpec
    search: dict[str, tuple]
    folder: Path

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"

    @property
    def data_path(self) -> Path:
        return self.folder / self.data.file

    def examples(self) -> list[dict]:
        """The example requests with their expected answers (`request`, `expected`, optional `tolerance`)."""
        return json.loads((self.folder / EXAMPLES_FILE).read_text())

    def read_data(self) -> bytes:
        """The base data's bytes, refused unless they match the spec's checksum."""
        raw = self.data_path.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if digest != self.data.sha256:
            raise SpecError(f"{self.data_path}: sha256 {digest} differs from the spec's {self.data.sha256}")
        return raw


def _pair(value, where: str) -> tuple[float, float]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int | float) for v in value)
            and value[0] < value[1]):
        raise SpecError(f"{where}: bounds must be [low, high] numbers with low < high")
    return float(value[0]), float(value[1])


def _feature(raw: dict, where: str) -> FeatureSpec:
    kind = raw.get("kind")
    if kind not in ("numeric", "categorical"):
        raise SpecError(f"{where}: kind must be numeric or categorical")
    unseen = raw.get("unseen", "reject")
    if unseen not in UNSEEN_POLICIES:
        raise SpecError(f"{where}: unseen must be one of {UNSEEN_POLICIES}")
    bounds = _pair(raw["bounds"], where) if kind == "numeric" else None
    if kind == "numeric" and "bounds" not in raw:
        raise SpecError(f"{where}: a numeric feature needs bounds")
    others = tuple(OtherUnit(str(o["unit"]), float(o["factor"])) for o in raw.get("other_units", ()))
    return FeatureSpec(str(raw["name"]), kind, bool(raw.get("required", True)), str(raw.get("unit", "")), bounds,
                       others, unseen, bool(raw.get("strip", kind == "categorical" and unseen == "missing")))


def parse_spec(raw: dict, folder: Path) -> ModelSpec:
    """A ModelSpec from a parsed TOML document; SpecError names what is wrong."""
    where = str(folder / SPEC_FILE)
    try:
        task = raw["task"]
        if task not in TASKS:
            raise SpecError(f"{where}: task must be one of {TASKS}")
        t = raw["target"]
        labels = tuple(str(v) for v in t.get("labels", ()))
        if task != "regression" and len(labels) < 2:
            raise SpecError(f"{where}: a {task} target needs at least two labels")
        target = TargetSpec(str(t["name"]), labels, str(t.get("unit", "")),
                            _pair(t["bounds"], f"{where} target") if "bounds" in t else None,
                            float(t["interval"]) if "interval" in t else None)
        if task == "regression" and target.bounds is None:
            raise SpecError(f"{where}: a regression target needs plausible bounds")
        features = tuple(_feature(f, f"{where} feature {f.get('name')!r}") for f in raw["features"])
        passthrough = tuple(
            PassthroughSpec(str(p["name"]), p["kind"], tuple(int(v) for v in p["bounds"]) if "bounds" in p else None)
            for p in raw.get("passthrough", ()))
        if any(p.kind not in PASSTHROUGH_KINDS for p in passthrough):
            raise SpecError(f"{where}: passthrough kind must be one of {PASSTHROUGH_KINDS}")
        names = [f.name for f in features] + [p.name for p in passthrough]
        if len(set(names)) != len(names) or target.name in names:
            raise SpecError(f"{where}: field names must be unique and differ from the target's")
        d = raw["data"]
        data = DataSpec(str(d["file"]), str(d["sha256"]), dict(d.get("columns", {})), tuple(d.get("required", ())))
        h = raw.get("holdout", {})
        holdout = HoldoutSpec(float(h.get("fraction", 0.2)), bool(h.get("stratify", False)),
                              tuple(h.get("group_by", ())))
        g = dict(raw["gate"])
        gate = GateSpec(str(g.pop("metric")), float(g.pop("tolerance")), g)
        search = {k: tuple(v) for k, v in raw["search"].items()}
        return ModelSpec(str(raw["name"]), str(raw.get("title", raw["name"])), str(raw.get("description", "")),
                         task, target, features, passthrough, data, holdout, gate, search, folder)
    except KeyError as exc:
        raise SpecError(f"{where}: missing {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"{where}: {exc}") from None


@cache
def load_spec(name: str, specs_dir: Path = SPECS_DIR) -> ModelSpec:
    """The spec of one model by name; SpecError if there is none or it is malformed."""
    folder = specs_dir / name
    path = folder / SPEC_FILE
    if not path.is_file():
        raise SpecError(f"no model spec named {name!r} (known: {', '.join(spec_names(specs_dir)) or 'none'})")
    spec = parse_spec(tomllib.loads(path.read_text()), folder)
    if spec.name != name:
        raise SpecError(f"{path}: name {spec.name!r} differs from its folder {name!r}")
    return spec


def spec_names(specs_dir: Path = SPECS_DIR) -> tuple[str, ...]:
    """Every model with a spec in the folder, sorted."""
    return tuple(sorted(p.parent.name for p in specs_dir.glob(f"*/{SPEC_FILE}")))
