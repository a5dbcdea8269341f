"""Real bundles of the kinds no spec trains yet: a binary classifier and a plain (identity-scale) regressor.

Each is a tiny XGBoost model trained here on seeded synthetic rows and assembled with `make_bundle` as
`retrain_job.train.fit.build_candidate` assembles a candidate: the contract from `shared.contract`'s dataclasses,
the compiled trees beside the booster, and the verification outputs XGBoost gives (a binary model's
P(positive) only, as (rows, 1)). Built once per process (`functools.cache`).

- `binary_bundle()`: target `approved` in ("no", "yes"), the positive label last; binary:logistic; threshold
  `THRESHOLD` (rule best_f1), so that P(positive) in [THRESHOLD, 0.5) is a "yes" that argmax would call "no".
- `plain_bundle()`: target `delta` (any sign); one member "all" with scale "identity", its baseline the mean
  target, its interval a half-width per `colour` level (wider for red) and a pooled one.

Both take `x1` in [0, 10] (required), `x2` in [-5, 5] (optional) and `colour` in blue, green, red.
"""
from __future__ import annotations

from functools import cache

import numpy as np
import xgboost as xgb

from shared.bundle import ALL_ROWS, MODEL_FILE, TREES_FILE, Bundle, make_bundle
from shared.contract import CategoricalFeature, FeatureContract, NumericFeature, Target
from shared.predictor import TreeEnsemble
from shared.validation import build_batch

BINARY_VERSION = "20261101T000000Z-binary00"
PLAIN_VERSION = "20261101T000000Z-plain000"
THRESHOLD = 0.37
LABELS = ("no", "yes")
COLOURS = ("blue", "green", "red")
ROWS = 800
LEVEL = 0.9
PARAMS = {"max_depth": 3, "eta": 0.3, "num_boost_round": 30}


def rows(n: int, seed: int) -> list[dict]:
    """Request-shaped rows within the training ranges; x2 left out of about one in six."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        row = {"x1": round(float(rng.uniform(0.0, 10.0)), 3), "colour": str(rng.choice(COLOURS))}
        if rng.random() > 1 / 6:
            row["x2"] = round(float(rng.uniform(-5.0, 5.0)), 3)
        out.append(row)
    return out


def _contract(target: Target, train: list[dict]) -> FeatureContract:
    x1 = [r["x1"] for r in train]
    x2 = [r["x2"] for r in train if "x2" in r]
    return FeatureContract(
        numeric=(NumericFeature("x1", -100.0, 100.0, min(x1), max(x1), True, "u"),
                 NumericFeature("x2", -100.0, 100.0, min(x2), max(x2), False, "u")),
        categorical=(CategoricalFeature("colour", COLOURS),),
        target=target)


def _signal(train: list[dict]) -> np.ndarray:
    x1 = np.array([r["x1"] for r in train])
    x2 = np.array([r.get("x2", 0.0) for r in train])
    red = np.array([r["colour"] == "red" for r in train])
    return x1, x2, red


def _fit(x: np.ndarray, y: np.ndarray, objective: str) -> xgb.Booster:
    params = {"objective": objective, "max_depth": PARAMS["max_depth"], "eta": PARAMS["eta"], "seed": 0, "nthread": 1}
    return xgb.train(params, xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=PARAMS["num_boost_round"])


def _assemble(version: str, task: str, contract: FeatureContract, booster: xgb.Booster, member: dict,
              check_rows: list[dict], **sections) -> Bundle:
    """The bundle as build_candidate assembles it: files, members, verification outputs from XGBoost."""
    trees = TreeEnsemble.from_xgboost_json(booster.save_raw("json"))
    check_x = build_batch(contract, check_rows).matrix
    expected = np.asarray(booster.inplace_predict(check_x), dtype=np.float64).reshape(len(check_x), -1)
    files = {MODEL_FILE: bytes(booster.save_raw("ubj")), TREES_FILE: trees.to_bytes()}
    return make_bundle(
        version, files, model="synthetic", task=task, contract=contract.to_dict(),
        members=[{**member, "model_file": MODEL_FILE, "trees_file": TREES_FILE}], params=PARAMS, search=[],
        training_data={"rows": ROWS}, verification={"rows": check_rows, "outputs": {member["name"]: np.round(
            expected, 7).tolist()}, "tolerance": 1e-5}, **sections)


@cache
def binary_bundle() -> Bundle:
    train = rows(ROWS, seed=11)
    contract = _contract(Target("approved", "binary", LABELS), train)
    x1, x2, red = _signal(train)
    rng = np.random.default_rng(12)
    logit = 0.9 * (x1 - 6.0) + 1.5 * red - 0.4 * x2
    y = (rng.random(ROWS) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    booster = _fit(build_batch(contract, train).matrix, y, "binary:logistic")
    member = {"name": ALL_ROWS, "needs": [], "baseline": None, "interval": None}
    return _assemble(BINARY_VERSION, "binary", contract, booster, member, rows(20, seed=13), labels=list(LABELS),
                     threshold={"value": THRESHOLD, "rule": "best_f1", "rule_value": None, "reached": True,
                                "rows": ROWS})


@cache
def plain_bundle() -> Bundle:
    train = rows(ROWS, seed=21)
    contract = _contract(Target("delta", "regression", (), "u", -1000.0, 1000.0, LEVEL), train)
    x1, x2, red = _signal(train)
    blue = np.array([r["colour"] == "blue" for r in train])
    rng = np.random.default_rng(22)
    y = 3.0 * x1 - 2.0 * x2 - 12.0 * blue + 15.0 * red - 8.0 + rng.normal(size=ROWS) * (1.0 + 3.0 * red)
    x = build_batch(contract, train).matrix
    mean = float(np.mean(y))
    # split conformal on a third of the rows, per colour (the group), as the regression members' intervals are
    calibration = rng.random(ROWS) < 1 / 3
    probe = _fit(x[~calibration], y[~calibration] - mean, "reg:squarederror")
    scores = np.abs(y[calibration] - mean - probe.inplace_predict(x[calibration]))
    colours = np.array([r["colour"] for r in train])[calibration]

    def quantile(s: np.ndarray) -> float:
        return float(np.quantile(s, min(1.0, np.ceil((len(s) + 1) * LEVEL) / len(s)), method="higher"))

    group_columns = [contract.columns.index(f"colour={c}") for c in COLOURS]
    interval = {"level": LEVEL, "group_columns": group_columns, "q": [quantile(scores[colours == c]) for c in COLOURS],
                "q_pooled": quantile(scores)}
    booster = _fit(x, y - mean, "reg:squarederror")
    member = {"name": ALL_ROWS, "needs": [], "scale": "identity", "interval": interval,
              "baseline": {"columns": [], "betas": [], "group_columns": [], "intercepts": [], "pooled_intercept": mean}}
    return _assemble(PLAIN_VERSION, "regression", contract, booster, member, rows(20, seed=23))
