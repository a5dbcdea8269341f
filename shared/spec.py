"""Model specs: one small TOML file per model (`specs/<name>/spec.toml`) that drives everything else.

A spec names the task, the target, the features with their units, physical bounds and policies, the
fields accepted but not used, the data file and its checksum, the holdout, the gate and the search
space. The contract in each bundle is derived from a spec and its training data (`shared.contract`).
"""
from __future__ import annotations

import hashlib
import json
import re
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
# the gate's main metric per task, and the extra settings its [gate] section may hold
GATE_METRICS = {"multiclass": "log_loss", "binary": "log_loss", "regression": "rmse"}
GATE_EXTRAS = {"multiclass": ("accuracy_tolerance", "macro_f1_tolerance", "accuracy_floor"),
               "binary": ("accuracy_tolerance", "macro_f1_tolerance", "accuracy_floor"),
               "regression": ("coverage_min", "coverage_max")}
RESERVED_REGIME = "all"  # the name of a classifier's single member (shared.bundle.ALL_ROWS)
_REGIME_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


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
    low_inclusive: bool = False  # numeric: the low bound is a possible value (the high one always is)
    missing_values: tuple[float | str, ...] = ()  # values that mean "not measured": served and trained as missing


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
    low_inclusive: bool = False  # the low bound is a possible truth (the high one always is)
    positive: str | None = None  # binary: the positive class (the last label in output order)


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
class RegimeSpec:
    """One input regime of a regressor: the rows having every `needs` input, and its baseline's inputs."""

    name: str
    needs: tuple[str, ...] = ()
    baseline: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegressionSpec:
    """How a regressor is built: its input regimes (the last serves every row), the categorical feature whose
    level picks the baseline's intercept and the interval's width, and the conformal calibration."""

    regimes: tuple[RegimeSpec, ...]
    group: str | None = None
    calibration_fraction: float = 0.25  # share of the training groups held out to calibrate the intervals
    min_level_rows: int = 30  # calibration rows a group level needs for a width of its own (else the pooled one)


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
    regression: RegressionSpec | None = None

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


def _names(value, where: str) -> tuple[str, ...]:
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise SpecError(f"{where}: must be a list of field names")
    return tuple(value)


def _gate(raw: dict, task: str, where: str) -> GateSpec:
    g = dict(raw)
    metric, tolerance = str(g.pop("metric")), float(g.pop("tolerance"))
    if metric != GATE_METRICS[task]:
        raise SpecError(f"{where} [gate] metric: a {task} model is gated on {GATE_METRICS[task]!r}, not {metric!r}")
    unknown = sorted(set(g) - set(GATE_EXTRAS[task]))
    if unknown:
        raise SpecError(f"{where} [gate]: unknown setting(s) {unknown} (a {task} gate knows "
                        f"{', '.join(GATE_EXTRAS[task])})")
    for key, value in g.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"{where} [gate] {key}: must be a number")
    if task == "regression":
        low, high = g.get("coverage_min", 0.0), g.get("coverage_max", 1.0)
        if not 0.0 <= low < high <= 1.0:
            raise SpecError(f"{where} [gate]: coverage_min and coverage_max must satisfy 0 <= min < max <= 1")
    return GateSpec(metric, tolerance, {k: float(v) for k, v in g.items()})


def _regression(raw: dict | None, task: str, features: tuple[FeatureSpec, ...], target: TargetSpec,
                where: str) -> RegressionSpec | None:
    """The [regression] section, checked against the features; SpecError names the field at fault."""
    if task != "regression":
        if raw is not None:
            raise SpecError(f"{where} [regression]: only a regression model has input regimes")
        return None
    if raw is None or not raw.get("regimes"):
        raise SpecError(f"{where} [regression]: a regression model needs at least one [[regression.regimes]]")
    if target.interval is None or not 0.0 < target.interval < 1.0:
        raise SpecError(f"{where} target interval: a regression target needs an interval level between 0 and 1")
    if target.bounds[0] < 0:
        raise SpecError(f"{where} target bounds: a regressor's baseline works on the log scale, so its target's "
                        "bounds must start at 0 or above")
    by_name = {f.name: f for f in features}
    group = raw.get("group")
    if group is not None and (group not in by_name or by_name[group].kind != "categorical"):
        raise SpecError(f"{where} [regression] group: {group!r} is not a categorical feature")
    regimes = []
    for i, r in enumerate(raw["regimes"]):
        name = r.get("name")
        here = f"{where} [[regression.regimes]] {name!r}"
        if not isinstance(name, str) or not _REGIME_NAME.fullmatch(name) or name == RESERVED_REGIME:
            raise SpecError(f"{where} [[regression.regimes]] #{i + 1} name: lower-case letters, digits, '_' or '-', "
                            f"starting with a letter, not {RESERVED_REGIME!r}")
        unknown = sorted(set(r) - {"name", "needs", "baseline"})
        if unknown:
            raise SpecError(f"{here}: unknown setting(s) {unknown}")
        needs, baseline = _names(r.get("needs", []), f"{here} needs"), _names(r.get("baseline", []), f"{here} baseline")
        last = i == len(raw["regimes"]) - 1
        if last and needs:
            raise SpecError(f"{here} needs: the last regime serves every row and needs nothing")
        if not last and not needs:
            raise SpecError(f"{here} needs: every regime but the last needs at least one input")
        for n in needs:
            if n not in by_name or by_name[n].kind != "numeric" or by_name[n].required:
                raise SpecError(f"{here} needs: {n!r} is not an optional numeric feature")
        for n in baseline:
            f = by_name.get(n)
            if f is None or f.kind != "numeric" or f.bounds[0] <= 0:
                # its logarithm is taken: a lower bound of 0 would let a denormal through, 0 once rounded to float32
                raise SpecError(f"{here} baseline: {n!r} is not a numeric feature with a positive lower bound")
            if not f.required and n not in needs:
                raise SpecError(f"{here} baseline: {n!r} is optional; a baseline input must be required or needed")
        regimes.append(RegimeSpec(name, needs, baseline))
    if len({r.name for r in regimes}) != len(regimes):
        raise SpecError(f"{where} [[regression.regimes]]: names must be unique")
    unknown = sorted(set(raw) - {"regimes", "group", "calibration_fraction", "min_level_rows"})
    if unknown:
        raise SpecError(f"{where} [regression]: unknown setting(s) {unknown}")
    fraction = float(raw.get("calibration_fraction", 0.25))
    if not 0.0 < fraction < 1.0:
        raise SpecError(f"{where} [regression] calibration_fraction: must be between 0 and 1")
    min_rows = raw.get("min_level_rows", 30)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise SpecError(f"{where} [regression] min_level_rows: must be an integer >= 1")
    return RegressionSpec(tuple(regimes), group, fraction, min_rows)


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
        gate = _gate(raw["gate"], task, where)
        search = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in raw["search"].items()}
        if not search.get("num_boost_round") or not all(search.values()):
            raise SpecError(f"{where} [search]: every key needs at least one value, num_boost_round included")
        unknown_fields = sorted({*h.get("group_by", ()), *data.required} - {*names, target.name})
        if unknown_fields:
            raise SpecError(f"{where}: [holdout] group_by or [data] required name unknown field(s) {unknown_fields}")
        regression = _regression(raw.get("regression"), task, features, target, where)
        return ModelSpec(str(raw["name"]), str(raw.get("title", raw["name"])), str(raw.get("description", "")),
                         task, target, features, passthrough, data, holdout, gate, search, folder, regression)
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


def default_model(specs_dir: Path = SPECS_DIR) -> str:
    """The model whose spec says `default = true` (`POST /predict` answers with it), else the first by name."""
    names = spec_names(specs_dir)
    marked = [n for n in names if tomllib.loads((specs_dir / n / SPEC_FILE).read_text()).get("default") is True]
    return (marked or list(names) or [""])[0]
