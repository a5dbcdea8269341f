"""A bundle made ready to predict: its members' trees compiled and verified, for the function and the job.

A bundle's manifest lists its members: a classifier has one; a regressor has one per input regime (the
rows it serves are those with every input it needs), each with its baseline and interval. Every member's
compiled evaluators must reproduce the outputs XGBoost gave at publish time, or XGBoost itself serves.
"""
from __future__ import annotations

import logging
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


def load_model(name: str, bundle: Bundle, source: str, fast_max_rows: int) -> ServingModel:
    """Build a ServingModel; CorruptBundle if a member or the contract cannot be served."""
    try:
        contract = bundle.contract
        check = bundle.manifest.get("verification") or {}
        x = build_batch(contract, check["rows"]).matrix if check.get("rows") else None
        routed = {}
        for spec in bundle.manifest["members"]:
            booster = BoosterPredictor(bundle.files[spec["model_file"]])
            fast = _verified_trees(bundle, spec, x, check)
            if fast is None:  # fail now, not on the first large batch
                booster.outputs(np.zeros((1, len(contract.columns)), dtype=np.float32))
            routed[spec["name"]] = RoutedPredictor(fast, booster, fast_max_rows)
        predictor = routed[bundle.manifest["members"][0]["name"]] if contract.is_classifier else RegressionPredictor(
            tuple(_member(spec, contract, routed[spec["name"]]) for spec in bundle.manifest["members"]))
    except CorruptBundle:
        raise
    except Exception as exc:  # xgboost and numpy raise a variety of errors on bad model bytes
        raise CorruptBundle(f"{bundle.version}: cannot serve ({type(exc).__name__}: {exc})") from None
    return ServingModel(name, bundle.version, bundle.manifest, contract, predictor, source)


def _member(spec: dict, contract: FeatureContract, routed: RoutedPredictor) -> Member:
    needs = tuple(contract.columns.index(name) for name in spec["needs"])
    return Member(spec["name"], needs, routed, Baseline.from_dict(spec["baseline"]),
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
