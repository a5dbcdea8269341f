"""Model specs: one small TOML file per model (`specs/<name>/spec.toml`) that drives everything else.

A spec names the task, the target, the features with their units, physical bounds and policies, the
fields accepted but not used, the data file and its checksum, the holdout, the gate and the search
space, and what its model card says of its purpose. The contract in each bundle is derived from a spec and its
training data (`shared.contract`).
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

# SPECS_DIR (shared/settings.py documents and checks it) is read here: the settings list the models it holds
SPECS_DIR = Path(os.environ.get("SPECS_DIR") or Path(__file__).resolve().parent.parent / "specs")
SPEC_FILE = "spec.toml"
EXAMPLES_FILE = "examples.json"
TASKS = ("multiclass", "binary", "regression")
UNSEEN_POLICIES = ("reject", "missing")
PASSTHROUGH_KINDS = ("integer", "string")
# the gate's main metric per task, and the extra settings its [gate] section may hold
GATE_METRICS = {"multiclass": "log_loss", "binary": "log_loss", "regression": "rmse"}
GATE_EXTRAS = {"multiclass": ("accuracy_tolerance", "macro_f1_tolerance", "accuracy_floor"),
               "binary": ("accuracy_tolerance", "macro_f1_tolerance", "accuracy_floor", "roc_auc_tolerance"),
               "regression": ("coverage_min", "coverage_max")}
STRATEGIES = ("plain", "log_baseline")  # how a regressor is built (retrain_job.train.regression)
THRESHOLD_RULES = ("best_f1", "fixed", "min_precision", "min_recall")  # how a binary model's threshold is chosen
BAD_ROWS = ("reject", "drop")  # what a bad row of the training data does: refuse the data set, or drop the row
# what a field's value becomes in the log lines (shared.logline.LogPolicy applies it)
KEEP, HASH, BUCKET, DROP = "keep", "hash", "bucket", "drop"
LOG_POLICIES = (KEEP, HASH, BUCKET, DROP)
# XGBoost training parameters a [search] grid may vary (each key a list of values to cross-validate)
SEARCH_KEYS = {"num_boost_round": int, "max_depth": int, "eta": float, "min_child_weight": float,
               "subsample": float, "colsample_bytree": float, "lambda": float, "alpha": float, "gamma": float,
               "max_bin": int}
DEFAULT_SEARCH = {"max_depth": (3, 4, 6), "num_boost_round": (100, 300), "eta": (0.1,)}
# every key each part of a spec may hold: anything else is a typo, named with these
KEYS = {
    "spec": ("name", "title", "description", "task", "default", "target", "threshold", "features", "passthrough",
             "data", "holdout", "gate", "search", "regression", "segments", "card", "retrain"),
    "target": ("name", "labels", "positive", "unit", "bounds", "low_inclusive", "interval"),
    "threshold": ("rule", "value"),
    "feature": ("name", "kind", "required", "unit", "bounds", "low_inclusive", "other_units", "unseen", "strip",
                "missing_values", "log", "bucket_width"),
    "passthrough": ("name", "kind", "bounds", "log", "bucket_width"),
    "data": ("file", "sha256", "columns", "required", "bad_rows", "max_bad_share", "source", "licence", "period"),
    "holdout": ("fraction", "stratify", "group_by"),
    "regression": ("strategy", "regimes", "group", "min_level_rows"),
    "regime": ("name", "needs", "baseline"),
    "card": ("intended_use", "out_of_scope", "owners", "limitations"),
    "retrain": ("from_feedback",),
}
RESERVED_REGIME = "all"  # the name of a classifier's single member (shared.bundle.ALL_ROWS)
_REGIME_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# a model's name: in URLs, store keys and Cloud Run service names (terraform/variables.tf checks the same)
MODEL_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]")


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
    bounds: tuple[float, float] | None = None  # physical: low exclusive (unless low_inclusive), high inclusive
    other_units: tuple[OtherUnit, ...] = ()
    unseen: str = "reject"  # categorical: "reject" with a 400, or "missing" with a warning
    strip: bool = False  # categorical: ignore surrounding whitespace (case is always ignored)
    low_inclusive: bool = False  # numeric: the low bound is a possible value (the high one always is)
    missing_values: tuple[float | str, ...] = ()  # values that mean "not measured": served and trained as missing
    log: str = KEEP  # what its value becomes in the log lines: one of LOG_POLICIES
    bucket_width: float | None = None  # with log = "bucket": the width of the bins, counted from 0


@dataclass(frozen=True)
class PassthroughSpec:
    """A request field accepted and logged but not used by the model."""

    name: str
    kind: str
    bounds: tuple[int, int] | None = None
    log: str = KEEP
    bucket_width: float | None = None


@dataclass(frozen=True)
class RetrainSpec:
    """How retraining may use what was served: `from_feedback` joins feedback to the logged inputs."""

    from_feedback: bool = True


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
class ThresholdSpec:
    """How a binary model's decision threshold is chosen at training, on out-of-fold probabilities."""

    rule: str = "best_f1"
    value: float | None = None  # fixed: the threshold; min_precision / min_recall: the floor to reach


@dataclass(frozen=True)
class DataSpec:
    """The base training data: a CSV beside the spec, its checksum, column renames, required fields, bad rows."""

    file: str
    sha256: str
    columns: dict[str, str] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    bad_rows: str = "reject"  # a row breaking a rule: "reject" the data set, or "drop" the row
    max_bad_share: float = 0.0  # with "drop": refuse the data set when more than this share of rows is bad
    source: str = ""  # where the file comes from, in words ("" when the spec does not say)
    licence: str = ""  # the licence the file is used under ("" when the spec does not say)
    period: str = ""  # the field whose first and last value the manifest records as the data's date range


@dataclass(frozen=True)
class CardSpec:
    """What the owners say of a model's purpose, for its model card; empty when the spec does not say."""

    intended_use: str = ""
    out_of_scope: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    limitations: tuple[str, ...] = ()  # known limits in the owners' words, beside those the card measures


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
    """How a regressor is built: its strategy (`plain`: the target as it is; `log_baseline`: log(y / b(x)) over
    a least-squares baseline), its input regimes (the last serves every row), the categorical feature whose
    level picks the interval's width (and the baseline's intercept), and the rows a level needs for its own."""

    regimes: tuple[RegimeSpec, ...]
    strategy: str = "plain"
    group: str | None = None
    min_level_rows: int = 30  # calibration rows a group level needs for a width of its own (else the pooled one)

    @property
    def log_scale(self) -> bool:
        """Whether the model works on the log scale (answers b(x) * exp(trees), intervals multiplicative)."""
        return self.strategy == "log_baseline"


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
    threshold: ThresholdSpec | None = None  # binary only
    segments: tuple[str, ...] = ()  # fields whose values live quality and drift are also reported per
    card: CardSpec = CardSpec()
    retrain: RetrainSpec = RetrainSpec()

    @property
    def log_policies(self) -> dict[str, tuple[str, float | None]]:
        """Each field logged otherwise than as sent: its policy and bucket width (an all-keep spec: empty)."""
        return {f.name: (f.log, f.bucket_width) for f in (*self.features, *self.passthrough) if f.log != KEEP}

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"

    @property
    def is_binary(self) -> bool:
        return self.task == "binary"

    @property
    def labels(self) -> tuple[str, ...]:
        """A classifier's labels in output order: a binary model's positive class last."""
        t = self.target
        if self.is_binary:
            return (*(label for label in t.labels if label != t.positive), t.positive)
        return t.labels

    @property
    def data_path(self) -> Path:
        return self.folder / self.data.file

    def examples(self) -> list[dict]:
        """The example requests, each with an optional expected answer (`request`, `expected`, `tolerance`)."""
        path = self.folder / EXAMPLES_FILE
        return json.loads(path.read_text()) if path.is_file() else []

    def read_data(self) -> bytes:
        """The base data's bytes, refused unless they match the spec's checksum."""
        raw = self.data_path.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if digest != self.data.sha256:
            raise SpecError(f"{self.data_path}: sha256 {digest} differs from the spec's {self.data.sha256}")
        return raw


def _known(raw: dict, part: str, where: str) -> None:
    """SpecError naming every unknown key of one part of a spec, with the keys allowed (and a likely meant one)."""
    allowed = KEYS[part]
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(f"{where}: unknown key {key!r}{hint}; allowed: {', '.join(allowed)}")


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{where}: must be a number, not {value!r}")
    return float(value)


def _flag(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{where}: must be true or false, not {value!r}")
    return value


def _pair(value, where: str) -> tuple[float, float]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int | float) for v in value)
            and value[0] < value[1]):
        raise SpecError(f"{where}: bounds must be [low, high] numbers with low < high")
    return float(value[0]), float(value[1])


def _feature(raw: dict, where: str) -> FeatureSpec:
    _known(raw, "feature", where)
    if "name" not in raw:
        raise SpecError(f"{where}: missing 'name'")
    kind = raw.get("kind")
    if kind not in ("numeric", "categorical"):
        raise SpecError(f"{where} kind: must be numeric or categorical, not {kind!r}")
    unseen = raw.get("unseen", "reject")
    if unseen not in UNSEEN_POLICIES:
        raise SpecError(f"{where} unseen: must be one of {UNSEEN_POLICIES}")
    if kind == "numeric" and "bounds" not in raw:
        raise SpecError(f"{where}: a numeric feature needs bounds")
    bounds = _pair(raw["bounds"], f"{where} bounds") if kind == "numeric" else None
    others = tuple(OtherUnit(str(o["unit"]), float(o["factor"])) for o in raw.get("other_units", ()))
    required = _flag(raw.get("required", True), f"{where} required")
    missing = raw.get("missing_values", [])
    expected = (int, float) if kind == "numeric" else (str,)
    if not isinstance(missing, list) or any(isinstance(v, bool) or not isinstance(v, expected) for v in missing):
        raise SpecError(f"{where} missing_values: must be a list of {'numbers' if kind == 'numeric' else 'strings'}")
    if missing and required:
        raise SpecError(f"{where} missing_values: a feature whose values may mean missing must say required = false")
    values = tuple(float(v) for v in missing) if kind == "numeric" else tuple(missing)
    return FeatureSpec(str(raw["name"]), kind, required, str(raw.get("unit", "")), bounds, others, unseen,
                       _flag(raw.get("strip", kind == "categorical" and unseen == "missing"), f"{where} strip"),
                       _flag(raw.get("low_inclusive", False), f"{where} low_inclusive"), values,
                       *_log(raw, kind == "numeric", where))


def _log(raw: dict, numeric: bool, where: str) -> tuple[str, float | None]:
    """A field's log policy and bucket width: a bucket needs a number field and a width above 0."""
    policy = raw.get("log", KEEP)
    if policy not in LOG_POLICIES:
        raise SpecError(f"{where} log: must be one of {', '.join(LOG_POLICIES)}, not {policy!r}")
    if policy != BUCKET:
        if "bucket_width" in raw:
            raise SpecError(f"{where} bucket_width: only a field with log = \"bucket\" has a bucket width")
        return policy, None
    if not numeric:
        raise SpecError(f"{where} log: only a numeric feature or an integer passthrough field can be bucketed")
    if "bucket_width" not in raw:
        raise SpecError(f"{where} bucket_width: log = \"bucket\" needs the width of its bins (a number above 0)")
    width = _number(raw["bucket_width"], f"{where} bucket_width")
    if not width > 0:
        raise SpecError(f"{where} bucket_width: must be above 0, not {width}")
    return policy, width


def _text(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{where}: must be a non-empty string, not {value!r}")
    return value.strip()


def _texts(value, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SpecError(f"{where}: must be a list of non-empty strings, not {value!r}")
    return tuple(_text(v, where) for v in value)


def _names(value, where: str) -> tuple[str, ...]:
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise SpecError(f"{where}: must be a list of field names")
    return tuple(value)


def _target(raw: dict, task: str, where: str) -> TargetSpec:
    _known(raw, "target", f"{where} [target]")
    if "name" not in raw:
        raise SpecError(f"{where} [target]: missing 'name'")
    here = f"{where} [target]"
    if not isinstance(raw.get("labels", []), list):
        raise SpecError(f"{here} labels: a list of labels, e.g. [\"no\", \"yes\"]")
    labels = tuple(str(v) for v in raw.get("labels", ()))
    if task == "regression":
        if labels or "positive" in raw:
            raise SpecError(f"{here}: a regression target has no labels or positive class")
        if "bounds" not in raw:
            raise SpecError(f"{here} bounds: a regression target needs plausible bounds [low, high]")
        interval = _number(raw.get("interval", 0.9), f"{here} interval")
        if not 0.0 < interval < 1.0:
            raise SpecError(f"{here} interval: the interval level must be between 0 and 1, not {interval}")
        return TargetSpec(str(raw["name"]), (), str(raw.get("unit", "")), _pair(raw["bounds"], f"{here} bounds"),
                          interval, _flag(raw.get("low_inclusive", False), f"{here} low_inclusive"))
    if len(set(label.lower() for label in labels)) != len(labels) or len(labels) < 2:
        raise SpecError(f"{here} labels: a {task} target needs at least two distinct labels (case ignored)")
    if task == "binary" and len(labels) != 2:
        raise SpecError(f"{here} labels: a binary target has exactly two labels, not {list(labels)}")
    positive = raw.get("positive")
    if task == "binary" and positive not in labels:
        raise SpecError(f"{here} positive: a binary target names its positive class, one of {list(labels)}")
    if task != "binary" and positive is not None:
        raise SpecError(f"{here} positive: only a binary target has a positive class")
    for key in ("bounds", "interval", "low_inclusive"):
        if key in raw:
            raise SpecError(f"{here} {key}: only a regression target has {key}")
    return TargetSpec(str(raw["name"]), labels, str(raw.get("unit", "")), positive=positive)


def _threshold(raw: dict | None, task: str, where: str) -> ThresholdSpec | None:
    if task != "binary":
        if raw is not None:
            raise SpecError(f"{where} [threshold]: only a binary model has a decision threshold")
        return None
    raw = raw or {}
    here = f"{where} [threshold]"
    _known(raw, "threshold", here)
    rule = raw.get("rule", "best_f1")
    if rule not in THRESHOLD_RULES:
        raise SpecError(f"{here} rule: must be one of {', '.join(THRESHOLD_RULES)}, not {rule!r}")
    if rule == "best_f1":
        if "value" in raw:
            raise SpecError(f"{here} value: the best_f1 rule takes no value")
        return ThresholdSpec(rule)
    if "value" not in raw:
        raise SpecError(f"{here} value: the {rule} rule needs a value between 0 and 1")
    value = _number(raw["value"], f"{here} value")
    if not 0.0 < value < 1.0:
        raise SpecError(f"{here} value: must be between 0 and 1, not {value}")
    return ThresholdSpec(rule, value)


def _data(raw: dict, where: str) -> DataSpec:
    here = f"{where} [data]"
    _known(raw, "data", here)
    for key in ("file", "sha256"):
        if key not in raw:
            raise SpecError(f"{here}: missing {key!r}")
    bad_rows = raw.get("bad_rows", "reject")
    if bad_rows not in BAD_ROWS:
        raise SpecError(f"{here} bad_rows: must be one of {', '.join(BAD_ROWS)}, not {bad_rows!r}")
    share = _number(raw.get("max_bad_share", 0.0), f"{here} max_bad_share")
    if not 0.0 <= share < 1.0 or (bad_rows == "reject" and "max_bad_share" in raw):
        raise SpecError(f"{here} max_bad_share: a share from 0 to below 1, and only with bad_rows = \"drop\"")
    columns = raw.get("columns", {})
    if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
        raise SpecError(f"{here} columns: a table of 'header in the file' = \"field name\"")
    words = {key: _text(raw[key], f"{here} {key}") for key in ("source", "licence", "period") if key in raw}
    return DataSpec(str(raw["file"]), str(raw["sha256"]), dict(columns), _names(raw.get("required", []),
                    f"{here} required"), bad_rows, share, **words)


def _card(raw: object, where: str) -> CardSpec:
    """The [card] section: the intended use, out-of-scope uses, owners and stated limitations, each optional."""
    here = f"{where} [card]"
    if not isinstance(raw, dict):
        raise SpecError(f"{here}: must be a table of {', '.join(KEYS['card'])}")
    _known(raw, "card", here)
    return CardSpec(**{key: (_text if key == "intended_use" else _texts)(value, f"{here} {key}")
                       for key, value in raw.items()})


def _holdout(raw: dict, task: str, where: str) -> HoldoutSpec:
    here = f"{where} [holdout]"
    _known(raw, "holdout", here)
    fraction = _number(raw.get("fraction", 0.2), f"{here} fraction")
    if not 0.0 < fraction < 0.9:
        raise SpecError(f"{here} fraction: must be above 0 and below 0.9, not {fraction}")
    stratify = _flag(raw.get("stratify", task != "regression"), f"{here} stratify")
    if stratify and task == "regression":
        raise SpecError(f"{here} stratify: a regression target has no classes to stratify by")
    group_by = _names(raw.get("group_by", []), f"{here} group_by")
    if stratify and group_by:
        raise SpecError(f"{here}: stratify and group_by cannot both hold; choose one")
    return HoldoutSpec(fraction, stratify, group_by)


def _gate(raw: dict, task: str, where: str) -> GateSpec:
    g = dict(raw)
    if "tolerance" not in g:
        raise SpecError(f"{where} [gate]: missing 'tolerance' (how much worse than stable a candidate may be)")
    metric = str(g.pop("metric", GATE_METRICS[task]))
    tolerance = _number(g.pop("tolerance"), f"{where} [gate] tolerance")
    if metric != GATE_METRICS[task]:
        raise SpecError(f"{where} [gate] metric: a {task} model is gated on {GATE_METRICS[task]!r}, not {metric!r}")
    unknown = sorted(set(g) - set(GATE_EXTRAS[task]))
    if unknown:
        raise SpecError(f"{where} [gate]: unknown setting(s) {unknown} (a {task} gate knows metric, tolerance, "
                        f"{', '.join(GATE_EXTRAS[task])})")
    for key, value in g.items():
        _number(value, f"{where} [gate] {key}")
    if task == "regression":
        low, high = g.get("coverage_min", 0.0), g.get("coverage_max", 1.0)
        if not 0.0 <= low < high <= 1.0:
            raise SpecError(f"{where} [gate]: coverage_min and coverage_max must satisfy 0 <= min < max <= 1")
    return GateSpec(metric, tolerance, {k: float(v) for k, v in g.items()})


def _search(raw: dict | None, where: str) -> dict[str, tuple]:
    if raw is None:
        return dict(DEFAULT_SEARCH)
    here = f"{where} [search]"
    out = {}
    for key, given in raw.items():
        if key not in SEARCH_KEYS:
            close = difflib.get_close_matches(key, SEARCH_KEYS, n=1)
            raise SpecError(f"{here}: unknown key {key!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                            f"allowed: {', '.join(SEARCH_KEYS)}")
        values = given if isinstance(given, list) else [given]
        kind = SEARCH_KEYS[key]
        if not values or any(isinstance(v, bool) or not isinstance(v, int | float) for v in values) \
                or (kind is int and any(not float(v).is_integer() or v < 1 for v in values)):
            raise SpecError(f"{here} {key}: a list of {'integers >= 1' if kind is int else 'numbers'}")
        out[key] = tuple(kind(v) for v in values)
    for key in ("num_boost_round", "max_depth"):
        out.setdefault(key, DEFAULT_SEARCH[key])
    return out


def _regression(raw: dict | None, task: str, features: tuple[FeatureSpec, ...], target: TargetSpec,
                where: str) -> RegressionSpec | None:
    """The [regression] section, checked against the features; SpecError names the field at fault."""
    if task != "regression":
        if raw is not None:
            raise SpecError(f"{where} [regression]: only a regression model has a [regression] section")
        return None
    raw = raw or {}
    here = f"{where} [regression]"
    _known(raw, "regression", here)
    strategy = raw.get("strategy", "plain")
    if strategy not in STRATEGIES:
        raise SpecError(f"{here} strategy: must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    log_scale = strategy == "log_baseline"
    if log_scale and (target.bounds[0] < 0 or (target.bounds[0] == 0 and target.low_inclusive)):
        raise SpecError(f"{where} [target] bounds: the log_baseline strategy models log(y), so its target must be "
                        "above 0 (bounds starting at 0, exclusive, or above); use strategy = \"plain\" otherwise")
    by_name = {f.name: f for f in features}
    group = raw.get("group")
    if group is not None and (group not in by_name or by_name[group].kind != "categorical"):
        raise SpecError(f"{here} group: {group!r} is not a categorical feature")
    raw_regimes = raw.get("regimes", [])
    if log_scale and not raw_regimes:
        raise SpecError(f"{here} regimes: the log_baseline strategy needs at least one [[regression.regimes]]")
    regimes = []
    for i, r in enumerate(raw_regimes):
        name = r.get("name")
        at = f"{where} [[regression.regimes]] {name!r}"
        if not isinstance(name, str) or not _REGIME_NAME.fullmatch(name) or name == RESERVED_REGIME:
            raise SpecError(f"{where} [[regression.regimes]] #{i + 1} name: lower-case letters, digits, '_' or '-', "
                            f"starting with a letter, not {RESERVED_REGIME!r}")
        _known(r, "regime", at)
        needs, baseline = _names(r.get("needs", []), f"{at} needs"), _names(r.get("baseline", []), f"{at} baseline")
        last = i == len(raw_regimes) - 1
        if last and needs:
            raise SpecError(f"{at} needs: the last regime serves every row and needs nothing")
        if not last and not needs:
            raise SpecError(f"{at} needs: every regime but the last needs at least one input")
        for n in needs:
            if n not in by_name or by_name[n].kind != "numeric" or by_name[n].required:
                raise SpecError(f"{at} needs: {n!r} is not an optional numeric feature")
        if baseline and not log_scale:
            raise SpecError(f"{at} baseline: only the log_baseline strategy has a baseline formula")
        for n in baseline:
            f = by_name.get(n)
            if f is None or f.kind != "numeric" or f.bounds[0] < 0 or (f.bounds[0] == 0 and f.low_inclusive):
                # its logarithm is taken: the value must be above 0
                raise SpecError(f"{at} baseline: {n!r} is not a numeric feature whose values are all above 0")
            if not f.required and n not in needs:
                raise SpecError(f"{at} baseline: {n!r} is optional; a baseline input must be required or needed")
        regimes.append(RegimeSpec(name, needs, baseline))
    if len({r.name for r in regimes}) != len(regimes):
        raise SpecError(f"{where} [[regression.regimes]]: names must be unique")
    min_rows = raw.get("min_level_rows", 30)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise SpecError(f"{here} min_level_rows: must be an integer >= 1")
    return RegressionSpec(tuple(regimes) or (RegimeSpec(RESERVED_REGIME),), strategy, group, min_rows)


def _passthrough(raw: dict, where: str) -> PassthroughSpec:
    _known(raw, "passthrough", where)
    if "name" not in raw:
        raise SpecError(f"{where}: missing 'name'")
    kind = raw.get("kind")
    if kind not in PASSTHROUGH_KINDS:
        raise SpecError(f"{where} kind: must be one of {', '.join(PASSTHROUGH_KINDS)}, not {kind!r}")
    bounds = None
    if "bounds" in raw:
        low, high = _pair(raw["bounds"], f"{where} bounds")
        bounds = (int(low), int(high))
    return PassthroughSpec(str(raw["name"]), kind, bounds, *_log(raw, kind == "integer", where))


def _retrain(raw: object, where: str) -> RetrainSpec:
    """The [retrain] section: whether retraining learns from feedback joined to the logged inputs."""
    here = f"{where} [retrain]"
    if not isinstance(raw, dict):
        raise SpecError(f"{here}: must be a table of {', '.join(KEYS['retrain'])}")
    _known(raw, "retrain", here)
    return RetrainSpec(_flag(raw.get("from_feedback", True), f"{here} from_feedback"))


def _check_logged(spec: ModelSpec, where: str) -> None:
    """SpecError unless what the log lines keep is enough for what reads them: retraining from feedback learns
    from the logged features as they are, and segments and holdout groups need their values."""
    for f in spec.features:
        if f.log != KEEP and spec.retrain.from_feedback:
            raise SpecError(f"{where} feature {f.name!r} log: retraining from feedback learns from the logged "
                            f"features, which would not hold {f.name!r} as sent (log = {f.log!r}); log it as "
                            f"\"keep\", or say [retrain] from_feedback = false")
    policies = spec.log_policies
    for name in (*spec.segments, *(spec.holdout.group_by if spec.retrain.from_feedback else ())):
        if policies.get(name, (KEEP,))[0] == DROP:
            raise SpecError(f"{where} {name!r} log: a segment or holdout group field must be logged; it is dropped")


def _segments(raw: object, features: tuple[FeatureSpec, ...], passthrough: tuple[PassthroughSpec, ...],
              where: str) -> tuple[str, ...]:
    """Segment fields: categorical features or text passthrough fields, each named once."""
    allowed = [f.name for f in features if f.kind == "categorical"] + \
              [p.name for p in passthrough if p.kind == "text"]
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw) or len(set(raw)) != len(raw):
        raise SpecError(f"{where} segments: a list of distinct field names, not {raw!r}")
    wrong = [name for name in raw if name not in allowed]
    if wrong:
        raise SpecError(f"{where} segments: {wrong} must be categorical features or text passthrough fields "
                        f"(bounded values), one of {allowed}")
    return tuple(raw)


def parse_spec(raw: dict, folder: Path) -> ModelSpec:
    """A ModelSpec from a parsed TOML document; SpecError names the key at fault (and the keys allowed)."""
    where = str(folder / SPEC_FILE)
    try:
        _known(raw, "spec", where)
        for key in ("name", "task", "target", "features", "data", "gate"):
            if key not in raw:
                raise SpecError(f"{where}: missing {key!r}")
        if not isinstance(raw["name"], str) or not MODEL_NAME.fullmatch(raw["name"]):
            raise SpecError(f"{where} name: 2-32 lower-case letters, digits or '-', starting with a letter and not "
                            f"ending with '-' (it names URLs and cloud resources), not {raw['name']!r}")
        task = raw["task"]
        if task not in TASKS:
            raise SpecError(f"{where} task: must be one of {', '.join(TASKS)}, not {task!r}")
        target = _target(raw["target"], task, where)
        features = tuple(_feature(f, f"{where} feature {f.get('name')!r}") for f in raw["features"])
        if not features:
            raise SpecError(f"{where}: a model needs at least one [[features]]")
        passthrough = tuple(_passthrough(p, f"{where} passthrough {p.get('name')!r}")
                            for p in raw.get("passthrough", ()))
        names = [f.name for f in features] + [p.name for p in passthrough]
        if len(set(names)) != len(names) or target.name in names:
            raise SpecError(f"{where}: field names must be unique and differ from the target's")
        quoted = [n for n in names if '"' in n or "\\" in n or not n.isprintable()]
        if quoted:
            raise SpecError(f"{where}: field names {quoted} may not hold quotes, backslashes or control characters "
                            "(the log queries name them in JSON paths)")
        data = _data(raw["data"], where)
        holdout = _holdout(raw.get("holdout", {}), task, where)
        gate = _gate(raw["gate"], task, where)
        search = _search(raw.get("search"), where)
        unknown_fields = sorted({*holdout.group_by, *data.required, *([data.period] if data.period else [])}
                                - {*names, target.name})
        if unknown_fields:
            raise SpecError(f"{where}: [holdout] group_by, [data] required or [data] period name unknown field(s) "
                            f"{unknown_fields}")
        regression = _regression(raw.get("regression"), task, features, target, where)
        threshold = _threshold(raw.get("threshold"), task, where)
        segments = _segments(raw.get("segments", []), features, passthrough, where)
        card = _card(raw.get("card", {}), where)
        spec = ModelSpec(str(raw["name"]), str(raw.get("title", raw["name"])), str(raw.get("description", "")),
                         task, target, features, passthrough, data, holdout, gate, search, folder, regression,
                         threshold, segments, card, _retrain(raw.get("retrain", {}), where))
        _check_logged(spec, where)
        return spec
    except KeyError as exc:
        raise SpecError(f"{where}: missing {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"{where}: {type(exc).__name__}: {exc}") from None


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
