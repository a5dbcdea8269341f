"""A bundle made ready to predict: its members' trees compiled and verified, for the function and the job.

A bundle's manifest lists its members: a classifier has one; a regressor has one per input regime (the
rows it serves are those with every input it needs), each with its baseline and interval. Every member's
compiled evaluators must reproduce the outputs XGBoost gave at publish time, or XGBoost itself serves.

A binary classifier (task "binary": two labels, the positive one last, a binary:logistic booster) decides
its label by `manifest["threshold"]["value"]` on P(positive) (0.5 without one); its recorded verification
outputs are P(positive) alone. A regression member's `scale` is "log" (the default, every bundle before
it) or "identity" (its baseline an offset on the target's scale, its interval value -/+ q); every row with
a numeric input outside the contract's training range is flagged and given the member's widest interval.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from shared.bundle import Bundle, CorruptBundle
from shared.contract import FeatureContract
from shared.predictor import (
    Baseline,
    BoosterPredictor,
    Interval,
    Member,
    RegressionPredictor,
    RoutedPredictor,
    TreeEnsemble,
)
from shared.validation import InvalidRows, build_batch

log = logging.getLogger(__name__)
DEFAULT_THRESHOLD = 0.5  # a binary classifier's threshold on P(positive) when its manifest gives none


@dataclass(frozen=True)
class ServingModel:
    """A loaded, verified bundle ready to predict: `predictor` is a RoutedPredictor or a RegressionPredictor."""

    name: str
    version: str
    manifest: dict
    contract: FeatureContract
    predictor: RoutedPredictor | RegressionPredictor
    source: str  # "store" or "shipped"

    @property
    def labels(self) -> tuple[str, ...]:
        return self.contract.labels

    @property
    def threshold(self) -> float | None:
        """A binary classifier's threshold on P(positive) (its label is the positive one at or above it); None
        for any other model."""
        return getattr(self.predictor, "threshold", None)

    @property
    def threshold_rule(self) -> str | None:
        """How training chose the threshold (the manifest's `threshold.rule`), when it says."""
        section = self.manifest.get("threshold")
        rule = section.get("rule") if isinstance(section, dict) else None
        return str(rule) if rule is not None else None


def load_model(name: str, bundle: Bundle, source: str, fast_max_rows: int,
               booster_threads: int | None = None) -> ServingModel:
    """Build a ServingModel; CorruptBundle if a member or the contract cannot be served. XGBoost (large batches)
    uses `booster_threads`, every core when None."""
    try:
        contract = bundle.contract
        check = bundle.manifest.get("verification") or {}
        x = build_batch(contract, check["rows"]).matrix if check.get("rows") else None
        binary = _is_binary(bundle.manifest, contract)
        threshold = _threshold(bundle.manifest) if binary else None
        routed = {}
        for spec in bundle.manifest["members"]:
            booster = BoosterPredictor(bundle.files[spec["model_file"]], booster_threads)
            fast = _verified_trees(bundle, spec, x, check)
            if fast is None:  # fail now, not on the first large batch
                width = booster.outputs(np.zeros((1, len(contract.columns)), dtype=np.float32)).shape[1]
            else:
                width = fast.n_outputs
            if contract.is_classifier and width != len(contract.labels):
                raise CorruptBundle(f"{bundle.version}: {spec['name']} answers {width} columns for "
                                    f"{len(contract.labels)} labels")
            routed[spec["name"]] = RoutedPredictor(fast, booster, fast_max_rows, threshold)
        predictor = routed[bundle.manifest["members"][0]["name"]] if contract.is_classifier else RegressionPredictor(
            tuple(_member(spec, contract, routed[spec["name"]]) for spec in bundle.manifest["members"]),
            training_ranges(contract))
    except CorruptBundle:
        raise
    except Exception as exc:  # xgboost and numpy raise a variety of errors on bad model bytes
        raise CorruptBundle(f"{bundle.version}: cannot serve ({type(exc).__name__}: {exc})") from None
    return ServingModel(name, bundle.version, bundle.manifest, contract, predictor, source)


def training_ranges(contract: FeatureContract) -> tuple[tuple[int, float, float], ...]:
    """(column, train_min, train_max) of each numeric feature (numeric features are the first columns)."""
    return tuple((i, f.train_min, f.train_max) for i, f in enumerate(contract.numeric))


def _is_binary(manifest: dict, contract: FeatureContract) -> bool:
    binary = contract.target.task == "binary"
    if binary != (manifest.get("task") == "binary") and "task" in manifest:
        raise CorruptBundle(f"{manifest['version']}: manifest task {manifest['task']!r} but contract task "
                            f"{contract.target.task!r}")
    if binary and len(contract.labels) != 2:
        raise CorruptBundle(f"{manifest['version']}: a binary classifier needs two labels, not {contract.labels}")
    return binary


def decision_threshold(manifest: Mapping) -> float | None:
    """A binary classifier's threshold on P(positive): the manifest's `threshold.value`, DEFAULT_THRESHOLD
    without a threshold section; None when the value is not a probability (the function and the monitor read
    it through here)."""
    section = manifest.get("threshold")
    if section is None:
        return DEFAULT_THRESHOLD
    value = section.get("value") if isinstance(section, Mapping) else None
    if type(value) not in (int, float) or not 0.0 <= value <= 1.0:  # NaN fails the comparison too
        return None
    return float(value)


def _threshold(manifest: dict) -> float:
    threshold = decision_threshold(manifest)
    if threshold is None:
        raise CorruptBundle(f"{manifest['version']}: threshold {manifest['threshold']!r} is not a probability")
    return threshold


def _member(spec: dict, contract: FeatureContract, routed: RoutedPredictor) -> Member:
    needs = tuple(contract.columns.index(name) for name in spec["needs"])
    # "log" for every bundle from before scales; Baseline refuses any other than SCALES
    return Member(spec["name"], needs, routed, Baseline.from_dict(spec["baseline"], spec.get("scale", "log")),
                  Interval.from_dict(spec["interval"]))


def _verified_trees(bundle: Bundle, spec: dict, x: np.ndarray | None, check: dict) -> TreeEnsemble | None:
    """A member's compiled evaluators, only if they reproduce the outputs recorded at publish time."""
    data = bundle.files.get(spec.get("trees_file") or "")
    if data is None or x is None:
        return None
    try:
        trees = TreeEnsemble.from_bytes(data)
        diff = trees.max_difference(x, np.asarray(check["outputs"][spec["name"]]))
    except (ValueError, KeyError, IndexError, InvalidRows) as exc:
        log.warning("fast predictor of %s/%s unusable: %s", bundle.version, spec["name"], exc)
        return None
    if diff > float(check.get("tolerance", 1e-5)):
        log.warning("fast predictor of %s/%s differs from XGBoost by %g; using XGBoost", bundle.version,
                    spec["name"], diff)
        return None
    return trees
